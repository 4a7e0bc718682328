"""Dashboard login over HTTP: `POST /session` (log in with a token), `GET /session` (who, and the CSRF token),
`DELETE /session` (log out); and what a request carries to `auth.authenticate_request`.

The rules (which tokens may log in, timeouts, revocation, the CSRF and Origin checks) are in `auth`; this module
reads and writes the HTTP side: the cookie (HttpOnly, SameSite=Strict, Path=/, Secure over https), the Origin a
request must come from, and the JSON the page reads.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared_protocol.brain import Role

from ._payload import declared_too_large, read_body
from .auth import (
    CSRF_HEADER,
    HUMANS,
    SESSION_COOKIE,
    Credentials,
    SessionRules,
    authenticate_request,
    end_session,
    hash_token,
    open_session,
)
from .dashboard.feed import AUDIT_ROWS, ERROR_ROWS
from .exceptions import ApiError, Forbidden, InvalidRequest, Unauthorized
from .service import Brain
from .settings import BrainSettings

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
"""Sent with the dashboard's page, its files and its session answers."""

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOGIN_MAX_BYTES = 4096


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=512, description="An approver's or captain's bearer token.")


class SessionInfo(BaseModel):
    """`GET /session` (and the answer to a login): who is logged in, the CSRF token, the budget to show, and how many
    audit rows and errors the page keeps (what the live stream sends it at most, `dashboard.feed`)."""

    role: Role
    label: str
    token_id: str
    csrf: str
    csrf_header: str = CSRF_HEADER
    idle_s: int
    max_s: int
    usd_per_hour: float | None
    audit_rows: int = AUDIT_ROWS
    error_rows: int = ERROR_ROWS


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of `url`, or None if it has none."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else None


def own_origins(request: Request, settings: BrainSettings) -> frozenset[str]:
    """Where the dashboard is served from: this request's own origin (its scheme and Host), and `public_url`'s."""
    found = {f"{request.url.scheme}://{request.headers.get('host', '')}".lower()}
    if (public := origin_of(settings.public_url)) is not None:
        found.add(public)
    return frozenset(found)


def request_credentials(request: Request, settings: BrainSettings) -> Credentials:
    authorization = request.headers.get("authorization")
    session = request.cookies.get(SESSION_COOKIE) or None
    return Credentials(
        authorization=authorization,
        session=session,
        csrf=request.headers.get(CSRF_HEADER),
        origin=(request.headers.get("origin") or "").lower() or None,
        # (only a session's request is checked against them, `auth.authenticate_request`: not worked out for a
        # bearer token's, every body's request)
        own_origins=own_origins(request, settings) if authorization is None and session is not None else frozenset(),
        changes_state=request.method not in _SAFE_METHODS,
    )


def session_rules(settings: BrainSettings) -> SessionRules:
    return SessionRules(idle_s=settings.session_idle_s, max_s=settings.session_max_s)


def secure_cookie(request: Request, settings: BrainSettings) -> bool:
    if settings.session_cookie_secure != "auto":
        return settings.session_cookie_secure == "always"
    return request.url.scheme == "https" or settings.public_url.lower().startswith("https://")


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(
        model.model_dump_json(), status_code=status, media_type="application/json", headers=SECURITY_HEADERS
    )


def session_routes(brain: Brain) -> list[Route]:
    settings = brain.settings

    def info(role: Role, label: str, token_id: str, csrf: str) -> SessionInfo:
        return SessionInfo(
            role=role,
            label=label,
            token_id=token_id,
            csrf=csrf,
            idle_s=settings.session_idle_s,
            max_s=settings.session_max_s,
            usd_per_hour=settings.usd_per_hour,
        )

    async def login(request: Request) -> Response:
        # A login is a change too: only from the dashboard's own page (no login CSRF from another site).
        origin = request.headers.get("origin")
        if origin is None or origin.lower() not in own_origins(request, settings):
            raise Forbidden(f"log in from the dashboard's own page (Origin {origin or 'missing'})", field="Origin")
        if (too_large := declared_too_large(request, _LOGIN_MAX_BYTES)) is not None:
            raise too_large
        raw = await read_body(request, _LOGIN_MAX_BYTES)
        try:
            payload = LoginRequest.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidRequest(
                f'log in with JSON {{"token": "<an approver\'s or captain\'s token>"}}: {first["msg"]}',
                field="token",
            ) from None
        cookie, session = await open_session(brain.state, payload.token, at=brain.now(), rules=session_rules(settings))
        token = await brain.state.token_by_hash(session.token_hash)
        assert token is not None
        response = _json(info(token.role, token.label, token.id, session.csrf), 201)
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=settings.session_max_s,
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure_cookie(request, settings),
        )
        return response

    async def current(request: Request) -> Response:
        credentials = request_credentials(request, settings)
        if credentials.session is None:
            raise Unauthorized("not logged in: POST /session with an approver's or captain's token")
        rules = session_rules(settings)
        who = await authenticate_request(brain.state, credentials, HUMANS, at=brain.now(), rules=rules)
        session = await brain.state.session_by_hash(hash_token(credentials.session))
        if session is None:
            raise Unauthorized("this dashboard session has ended: log in again")
        return _json(info(who.role, who.label, who.token_id, session.csrf))

    async def logout(request: Request) -> Response:
        credentials = request_credentials(request, settings)
        if credentials.session is None:
            raise Unauthorized("not logged in")
        rules = session_rules(settings)
        await authenticate_request(brain.state, credentials, HUMANS, at=brain.now(), rules=rules)
        session = await brain.state.session_by_hash(hash_token(credentials.session))
        if session is not None:
            await end_session(brain.state, session, at=brain.now(), reason="logout")
        response = Response(status_code=204, headers=SECURITY_HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def endpoint(request: Request) -> Response:
        try:
            if request.method == "POST":
                return await login(request)
            if request.method == "DELETE":
                return await logout(request)
            return await current(request)
        except ApiError as exc:
            response = Response(
                exc.body().model_dump_json(exclude_none=True),
                status_code=exc.status,
                media_type="application/json",
                headers=SECURITY_HEADERS,
            )
            return response

    return [Route("/session", endpoint, methods=["GET", "POST", "DELETE"])]
