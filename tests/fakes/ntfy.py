"""A fake ntfy server: publishing as JSON (`POST /`), checked the way ntfy checks it.

`FakeNtfy` is an ASGI app (serve it with `serve_app`). With a `token` it demands
`Authorization: Bearer <token>` (403 without one, 401 with a wrong one, ntfy's error JSON); it
refuses a bad topic, priority or action list with ntfy's codes, and answers an accepted message
with ntfy's message JSON (its `id`, `time`, `expires`, and an `id` per action).
"""

from __future__ import annotations

import json
import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")
ACTIONS_MAX = 3
HTTP_METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"}
MESSAGE_EXPIRY_S = 12 * 3600

_ERRORS = {
    "json": (400, 40017, "invalid request: request body must be message JSON"),
    "topic": (400, 40009, "invalid request: topic invalid"),
    "priority": (400, 40007, "invalid priority parameter"),
    "actions": (400, 40018, "invalid request: actions invalid"),
    "unauthorized": (401, 40101, "unauthorized"),
    "forbidden": (403, 40301, "forbidden"),
    "too_large": (413, 41303, "JSON body too large"),
}
_SCRIPTED = {
    429: (42901, "limit reached: too many requests"),
    500: (50001, "internal server error"),
    502: (50201, "bad gateway"),
    503: (50301, "service unavailable"),
}


@dataclass(kw_only=True)
class NtfyRequest:
    """One publish request as received (recorded before any check)."""

    authorization: str | None
    content_type: str
    body: Any
    """The parsed JSON, or the raw text when it is not JSON."""


class FakeNtfy:
    """`published` holds every accepted message as ntfy answered it; `requests` every request."""

    def __init__(self, *, token: str | None = None, max_body_bytes: int = 32768) -> None:
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.requests: list[NtfyRequest] = []
        self.published: list[dict[str, Any]] = []
        self._scripted: list[tuple[int, str | None]] = []
        self.app = Starlette(routes=[Route("/", self._publish, methods=["POST", "PUT"])])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def fail_next(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next `times` requests with `status` (429, 500, 502 or 503) and ntfy's error JSON, with a
        `Retry-After` header if given."""
        self._scripted += [(status, retry_after)] * times

    async def _publish(self, request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        authorization = request.headers.get("authorization")
        self.requests.append(
            NtfyRequest(authorization=authorization, content_type=request.headers.get("content-type", ""), body=body)
        )
        if self._scripted:
            status, retry_after = self._scripted.pop(0)
            code, message = _SCRIPTED.get(status, (status * 100 + 1, "error"))
            response = _error_json(status, code, message)
            if retry_after is not None:
                response.headers["Retry-After"] = retry_after
            return response
        if self.token is not None:
            if authorization is None:
                return _error("forbidden")
            if authorization != f"Bearer {self.token}":
                return _error("unauthorized")
        if len(raw) > self.max_body_bytes:
            return _error("too_large")
        if not isinstance(body, dict):
            return _error("json")
        return self._accept(cast(dict[str, Any], body))

    def _accept(self, body: dict[str, Any]) -> JSONResponse:
        topic = body.get("topic")
        if not isinstance(topic, str) or not TOPIC.match(topic):
            return _error("topic")
        priority = body.get("priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 5:
            return _error("priority")
        for key in ("title", "message", "click"):
            if key in body and not isinstance(body[key], str):
                return _error("json")
        tags = body.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in cast(list[Any], tags)):
            return _error("json")
        actions, problem = _actions(body.get("actions", []))
        if problem:
            status, code, error = _ERRORS["actions"]
            return _error_json(status, code, f"{error}, {problem}")
        now = int(time.time())
        message: dict[str, Any] = {
            "id": _random(12),
            "time": now,
            "expires": now + MESSAGE_EXPIRY_S,
            "event": "message",
            "topic": topic,
        }
        for key in ("title", "message", "click"):
            if body.get(key):
                message[key] = body[key]
        message["message"] = message.get("message") or "triggered"
        if priority:
            message["priority"] = priority
        if tags:
            message["tags"] = tags
        if actions:
            message["actions"] = actions
        self.published.append(message)
        return JSONResponse(message)


def _actions(value: Any) -> tuple[list[dict[str, Any]], str]:
    if not isinstance(value, list):
        return [], "actions must be a list"
    items = cast(list[Any], value)
    if len(items) > ACTIONS_MAX:
        return [], f"only {ACTIONS_MAX} actions allowed"
    actions: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            return [], "each action must be an object"
        action = cast(dict[str, Any], item)
        kind = str(action.get("action", "")).lower()
        method = str(action.get("method", "POST")).upper()
        if kind not in {"view", "broadcast", "http"}:
            return [], f"action '{kind}' unknown"
        if not action.get("label"):
            return [], "parameter 'label' is required"
        if kind in {"view", "http"} and not action.get("url"):
            return [], f"parameter 'url' is required for action '{kind}'"
        if kind == "http" and method not in HTTP_METHODS:
            return [], f"method '{method}' unknown"
        if kind == "http" and method in {"GET", "HEAD"} and action.get("body"):
            return [], f"parameter 'body' cannot be set if method is {method}"
        if "clear" in action and not isinstance(action["clear"], bool):
            return [], "parameter 'clear' must be a boolean"
        answered: dict[str, Any] = {
            "id": _random(10),
            "action": kind,
            "label": action["label"],
            "clear": action.get("clear", False),
        }
        if action.get("url"):
            answered["url"] = action["url"]
        if kind == "http":
            answered["method"] = method
        actions.append(answered)
    return actions, ""


def _random(length: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


def _error(kind: str) -> JSONResponse:
    return _error_json(*_ERRORS[kind])


def _error_json(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "http": status, "error": message}, status_code=status)
