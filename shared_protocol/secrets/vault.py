"""`vault:path#field`: a field of a HashiCorp Vault KV version 2 secret, through `hvac`.

    [secrets.vault]
    address = "https://vault.example:8200"
    mount = "secret"                       # GET /v1/secret/data/<path>
    auth = "approle"                        # or "token" (token = "env:VAULT_TOKEN")
    role_id = "env:VAULT_ROLE_ID"
    secret_id = "file:/run/secrets/vault-secret-id"

The provider logs in when it first needs to (AppRole: `POST /v1/auth/<approle_mount>/login`, the token kept for
its lease), reads the secret's latest version, and keeps its data for `[secrets] cache_ttl_s`. A 403 is told
apart: if the token itself is refused (`GET /v1/auth/token/lookup-self`) the reason is `auth_failed`, else the
token may not read that path. Nothing read is logged; errors name the path and field, never a value.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from ._base import SecretScheme, SecretUnavailable
from ._cache import TtlCache
from ._settings import SecretsConfig, VaultSettings
from .env import EnvSecrets
from .file import FileSecrets

_LEASE_MARGIN_S = 30.0
"""A token is renewed (logged in again) this long before its lease ends."""


class VaultSecrets:
    """Reads KV v2 secrets from the Vault `settings.address` names (`read("path#field")`)."""

    def __init__(
        self,
        settings: VaultSettings,
        environ: Mapping[str, str],
        *,
        cache_ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._environ = environ
        self._clock = clock
        self._cache: TtlCache[dict[str, Any]] = TtlCache(cache_ttl_s, clock=clock)
        self._token: tuple[str, float] | None = None
        """The AppRole login's token and when to log in again."""

    def read(self, name: str) -> str:
        path, _, field = name.partition("#")
        if not self._settings.address:
            raise SecretUnavailable("no Vault is configured ([secrets.vault] address)", reason="invalid")
        data = self._cache.get(path, lambda: self._fetch(path))
        value = data.get(field)
        if not isinstance(value, str) or not value:
            kind = "missing" if value is None else ("empty" if value == "" else "not a string")
            raise SecretUnavailable(f"the Vault secret {path} has no field {field!r} ({kind})", reason="field_missing")
        return value

    def _credential(self, ref: str, what: str) -> str:
        scheme, _, rest = ref.partition(":")
        try:
            return EnvSecrets(self._environ).read(rest) if scheme == "env" else FileSecrets().read(rest)
        except SecretUnavailable as exc:
            raise SecretUnavailable(f"Vault's {what} ({ref}): {exc}", reason="auth_failed") from None

    def _client(self, token: str | None) -> Any:
        import hvac  # (imported when a vault: reference is first read: most processes never need it)

        s = self._settings
        verify: bool | str = s.ca_cert or True
        return hvac.Client(
            url=s.address, token=token, namespace=s.namespace or None, timeout=math.ceil(s.timeout_s), verify=verify
        )

    def _login(self) -> str:
        s = self._settings
        if s.auth == "token":
            return self._credential(s.token, "token")
        now = self._clock()
        if self._token is not None and now < self._token[1]:
            return self._token[0]
        role_id = self._credential(s.role_id, "role_id")
        secret_id = self._credential(s.secret_id, "secret_id")
        answer = self._call(
            "log in with AppRole",
            lambda: self._client(None).auth.approle.login(
                role_id=role_id, secret_id=secret_id, use_token=False, mount_point=s.approle_mount
            ),
            denied="auth_failed",
        )
        auth = cast(dict[str, Any], answer.get("auth") or {})
        token = auth.get("client_token")
        if not isinstance(token, str) or not token:
            raise SecretUnavailable("Vault's AppRole login answered without a client token", reason="auth_failed")
        lease = auth.get("lease_duration")
        lease_s = float(lease) if isinstance(lease, (int, float)) and lease > 0 else 3600.0
        self._token = (token, now + max(lease_s - _LEASE_MARGIN_S, lease_s / 2))
        return token

    def _fetch(self, path: str) -> dict[str, Any]:
        token = self._login()
        client = self._client(token)
        kv = client.secrets.kv.v2

        def read() -> Any:
            return kv.read_secret_version(path=path, mount_point=self._settings.mount, raise_on_deleted_version=True)

        try:
            answer = self._call(f"read {path}", read, denied="forbidden")
        except _Forbidden:
            # Whose fault: a token Vault refuses altogether, or one that may not read this path?
            self._token = None
            try:
                self._call("look the token up", lambda: client.auth.token.lookup_self(), denied="forbidden")
            except _Forbidden:
                raise SecretUnavailable("Vault refused the token (permission denied)", reason="auth_failed") from None
            raise SecretUnavailable(
                f"Vault's token may not read {self._settings.mount}/data/{path} (permission denied)",
                reason="denied",
            ) from None
        data = cast(dict[str, Any], answer.get("data") or {}).get("data")
        if not isinstance(data, dict):
            raise SecretUnavailable(f"Vault's answer for {path} holds no KV v2 data", reason="not_found")
        return cast(dict[str, Any], data)

    def _call(self, what: str, call: Callable[[], Any], *, denied: str) -> dict[str, Any]:
        """Run one hvac call; its failures become `SecretUnavailable` with a reason (hvac's messages may quote the
        server's answer, so they are not passed on)."""
        import hvac.exceptions
        import requests

        try:
            answer = call()
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            if denied == "forbidden":
                raise _Forbidden from None
            raise SecretUnavailable(f"Vault refused to {what} (permission denied)", reason="auth_failed") from None
        except hvac.exceptions.InvalidPath:
            raise SecretUnavailable(f"Vault has nothing to {what} (404)", reason="not_found") from None
        except hvac.exceptions.InvalidRequest:
            raise SecretUnavailable(f"Vault refused to {what} (400: bad request)", reason="auth_failed") from None
        except hvac.exceptions.VaultError as exc:
            raise SecretUnavailable(f"Vault failed to {what} ({type(exc).__name__})", reason="unreachable") from None
        except requests.exceptions.RequestException as exc:
            raise SecretUnavailable(
                f"Vault at {self._settings.address} is unreachable ({type(exc).__name__})", reason="unreachable"
            ) from None
        if not isinstance(answer, dict):
            raise SecretUnavailable(f"Vault's answer to {what} is not a JSON object", reason="unreachable")
        return cast(dict[str, Any], answer)


class _Forbidden(Exception):
    """A 403 to be explained (which credential was refused)."""


def _vault_secrets(config: SecretsConfig, environ: Mapping[str, str]) -> VaultSecrets:
    return VaultSecrets(config.vault, environ, cache_ttl_s=config.cache_ttl_s)


SCHEME = SecretScheme(
    name="vault",
    form="vault:path#field",
    syntax=re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*#[A-Za-z0-9_.-]+"),
    provider=_vault_secrets,
)
