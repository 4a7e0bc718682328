"""The route the dashboard needs beyond the existing `/v1` ones (the decisions inbox is governance's
`GET /v1/decisions`): one live stream of what changes (the kill switch, decisions, tasks, audit events)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ..auth import APPROVERS, Principal, authenticate_request
from ..events import KEEPALIVE, kill_event
from ..exceptions import ApiError
from ..service import Brain
from ..sessions import request_credentials, session_rules
from .feed import redacted

_RETRY = b"retry: 2000\n\n"


class DashboardApi:
    def __init__(self, brain: Brain) -> None:
        self.brain = brain

    async def stream(self, request: Request, who: Principal) -> Response:
        credentials = request_credentials(request, self.brain.settings)

        async def authorized() -> bool:
            try:
                await authenticate_request(
                    self.brain.state,
                    credentials,
                    APPROVERS,
                    at=self.brain.now(),
                    rules=session_rules(self.brain.settings),
                )
            except ApiError:
                return False
            return True

        return DashboardStream(self.brain, authorized=authorized)


class DashboardStream(Response):
    """`GET /v1/dashboard/stream`: server-sent events for an open dashboard.

        event: kill | resume   data: KillState   (first, then on every change)
        event: decision | task_available | task_cancelled | task_ended   (as `GET /v1/events` sends them)
        event: audit           data: AuditEvent  (the newest `feed.AUDIT_ROWS` stored since the brain started, then
                                                  at each flush at most the newest `AUDIT_ROWS`, and refusals and
                                                  failures up to `ERROR_ROWS`, of those stored since the last)
        event: audit_skipped   data: {"skipped": N}  (before a flush's audit events: how many older ones it left out)

    Personal data is redacted in all of them (`feed.redacted`; the audit feed's chunks come encoded and redacted,
    once for every open stream).

    Its credentials are checked again every `keepalive_s`: a session that ended (logout, timeout, its token
    revoked) ends the stream. A page that does not read is cut off (it reconnects)."""

    media_type = "text/event-stream"

    def __init__(self, brain: Brain, *, authorized: Callable[[], Awaitable[bool]]) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._brain = brain
        self._authorized = authorized

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        brain = self._brain
        lock = anyio.Lock()
        disconnected = False

        async def chunk(data: bytes, *, redact: bool = True) -> None:
            async with lock:
                body = redacted(data) if redact else data
                await send({"type": "http.response.body", "body": body, "more_body": True})

        with brain.hub.subscribe(None) as events, brain.audit_feed.subscribe() as audits:
            first = kill_event(await brain.kill_state()).encode()
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    nonlocal disconnected
                    message: Message = {"type": ""}
                    while message["type"] != "http.disconnect":
                        message = await receive()
                    disconnected = True
                    group.cancel_scope.cancel()

                async def forward_events() -> None:
                    async for event in events:
                        await chunk(event.encode())
                    group.cancel_scope.cancel()  # cut off, or the brain is stopping: the page reconnects

                async def forward_audit() -> None:
                    async for batch in audits:
                        waiting = [batch]
                        with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                            while len(waiting) < 64:  # (what queued while a slow write went out: one write)
                                waiting.append(audits.receive_nowait())
                        await chunk(b"".join(waiting), redact=False)  # (encoded and redacted once, for all)
                    group.cancel_scope.cancel()

                async def keepalive() -> None:
                    while True:
                        await anyio.sleep(brain.settings.keepalive_s)
                        if not await self._authorized():
                            group.cancel_scope.cancel()
                            return
                        await chunk(KEEPALIVE)

                group.start_soon(watch_disconnect)
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                await chunk(_RETRY + redacted(first), redact=False)  # (then the audit feed's backlog, its first chunk)
                group.start_soon(forward_events)
                group.start_soon(forward_audit)
                group.start_soon(keepalive)
        if not disconnected:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
