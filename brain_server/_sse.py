"""The `GET /v1/events` response: a server-sent event stream held open until either side ends it.

It subscribes before reading the kill state, so a kill that lands in between is sent (twice
at worst, never missed); then sends that state (for an agent-bound token: the effective one,
its agent's pause included, `pauses.py`) as the first event, then every event the hub
publishes to it, and a keepalive comment whenever the stream has been quiet for
`keepalive_s`. A client disconnect ends it at once and unsubscribes. With `authorized`,
the stream's token is checked again at most every `keepalive_s` (after an event is sent,
never before, so a kill is not delayed): a stream whose token was revoked ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from shared_protocol.brain import KillState

from .events import KEEPALIVE, EventHub, kill_event

_RETRY = b"retry: 1000\n\n"
"""Tells EventSource-style clients to reconnect after a second."""


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        *,
        hub: EventHub,
        body_id: str | None,
        agent: str | None = None,
        kill_state: Callable[[], Awaitable[KillState]],
        keepalive_s: float,
        authorized: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        # No `super().__init__`: it would declare a Content-Length for an empty body.
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._hub = hub
        self._body_id = body_id
        self._agent = agent
        self._kill_state = kill_state
        self._keepalive_s = keepalive_s
        self._authorized = authorized

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = False

        async def chunk(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        with self._hub.subscribe(self._body_id, agent=self._agent) as events:
            # Read before the task group: a state that cannot be read is then a plain error answer (503).
            first = kill_event(await self._kill_state()).encode()
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    nonlocal disconnected
                    message: Message = {"type": ""}
                    while message["type"] != "http.disconnect":
                        message = await receive()
                    disconnected = True
                    group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                await chunk(_RETRY + first)
                check_at = anyio.current_time() + self._keepalive_s
                while True:
                    data = KEEPALIVE
                    with anyio.move_on_after(self._keepalive_s):
                        try:
                            data = (await events.receive()).encode()
                        except anyio.EndOfStream:
                            break
                    await chunk(data)
                    if self._authorized is not None and anyio.current_time() >= check_at:
                        if not await self._authorized():
                            break
                        check_at = anyio.current_time() + self._keepalive_s
                group.cancel_scope.cancel()
        if not disconnected:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
