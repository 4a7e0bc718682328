"""A fake HashiCorp Vault: KV version 2 reads, token lookup and AppRole login, in Vault's own HTTP shapes.

`FakeVault` is an ASGI app (serve it with `serve_app`). It knows tokens (`tokens`: token -> the paths it may read,
`None` for any), KV v2 secrets (`secrets`: "mount/path" -> data) and AppRole credentials (`approles`: role_id ->
secret_id). What it answers, as Vault does:

    GET  /v1/{mount}/data/{path}       X-Vault-Token: 200 {"data": {"data": {...}, "metadata": {...}}, ...}
                                       404 {"errors": []}; 403 {"errors": ["permission denied"]}
    GET  /v1/auth/token/lookup-self    200 {"data": {"id": ..., "ttl": ..., "policies": [...]}}; 403
    POST /v1/auth/approle/login        {"role_id", "secret_id"} -> 200 {"auth": {"client_token", "lease_duration",
                                       ...}}; 400 {"errors": ["invalid role or secret ID"]}

`requests` records each request's method, path and whether it carried a token (never the token), so a test can
count how often the provider really asked.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_DENIED = {"errors": ["permission denied"]}


@dataclass(kw_only=True)
class VaultRequest:
    method: str
    path: str
    namespace: str | None


@dataclass(kw_only=True)
class FakeVault:
    tokens: dict[str, set[str] | None] = field(default_factory=dict[str, "set[str] | None"])
    """Token -> the KV paths ("mount/path") it may read; None: every path."""
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict[str, dict[str, Any]])
    """"mount/path" -> the secret's data (its latest version)."""
    approles: dict[str, str] = field(default_factory=dict[str, str])
    """role_id -> secret_id; a login's token may read `approle_paths`."""
    approle_paths: set[str] | None = None
    lease_duration: int = 2764800
    requests: list[VaultRequest] = field(default_factory=list[VaultRequest])

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/auth/token/lookup-self", self._lookup_self, methods=["GET"]),
                Route("/v1/auth/{mount}/login", self._approle_login, methods=["POST", "PUT"]),
                Route("/v1/{mount}/data/{path:path}", self._read, methods=["GET"]),
            ]
        )

    def _record(self, request: Request) -> None:
        self.requests.append(
            VaultRequest(
                method=request.method, path=request.url.path, namespace=request.headers.get("x-vault-namespace")
            )
        )

    def _token(self, request: Request) -> str | None:
        token = request.headers.get("x-vault-token")
        return token if token in self.tokens else None

    async def _lookup_self(self, request: Request) -> JSONResponse:
        self._record(request)
        token = self._token(request)
        if token is None:
            return JSONResponse(_DENIED, status_code=403)
        data = {"id": token, "ttl": self.lease_duration, "policies": ["default"], "renewable": True}
        return JSONResponse({"request_id": secrets.token_hex(8), "data": data, "lease_duration": 0})

    async def _approle_login(self, request: Request) -> JSONResponse:
        self._record(request)
        if request.path_params["mount"] != "approle":
            return JSONResponse({"errors": [f"no handler for route '{request.url.path}'"]}, status_code=404)
        body = await request.json()
        role_id, secret_id = body.get("role_id"), body.get("secret_id")
        if not isinstance(role_id, str) or self.approles.get(role_id) != secret_id:
            return JSONResponse({"errors": ["invalid role or secret ID"]}, status_code=400)
        token = "hvs." + secrets.token_urlsafe(24)
        self.tokens[token] = self.approle_paths
        auth = {
            "client_token": token,
            "accessor": secrets.token_hex(12),
            "policies": ["default"],
            "token_policies": ["default"],
            "lease_duration": self.lease_duration,
            "renewable": True,
            "metadata": {"role_name": "swarm"},
        }
        return JSONResponse({"request_id": secrets.token_hex(8), "auth": auth, "data": None, "lease_duration": 0})

    async def _read(self, request: Request) -> JSONResponse:
        self._record(request)
        token = self._token(request)
        key = f"{request.path_params['mount']}/{request.path_params['path']}"
        if token is None:
            return JSONResponse(_DENIED, status_code=403)
        allowed = self.tokens[token]
        if allowed is not None and key not in allowed:
            return JSONResponse(_DENIED, status_code=403)
        if key not in self.secrets:
            return JSONResponse({"errors": []}, status_code=404)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        metadata = {"created_time": now, "custom_metadata": None, "deletion_time": "", "destroyed": False, "version": 1}
        data = {"data": dict(self.secrets[key]), "metadata": metadata}
        return JSONResponse(
            {"request_id": secrets.token_hex(8), "lease_id": "", "renewable": False, "lease_duration": 0, "data": data}
        )
