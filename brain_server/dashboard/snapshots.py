"""What open dashboards poll, computed at most once per `SNAPSHOT_S` for all of them: `PageSnapshots`.

Every open page asks for the same reads every 5 s (`static/app.js` `refreshAll`: the status, the tasks, the pending
decisions, the two KPI windows, the usage totals), and each one's answer is the same for every page of the same role.
A read made with a dashboard session (its cookie, no bearer token) is answered from the snapshot of that read (the
same path and query, the same role) taken less than `SNAPSHOT_S` ago, if nothing was published on the brain's event
hub since; else it is computed, and kept for the next pages. What the hub publishes is what a page must see at once
(a kill or resume, an agent paused or resumed, a decision asked or answered, a task queued, requeued, ended or
cancelled): the next read after it computes afresh. Whatever else changes (a claim, a heartbeat, a usage record,
the minutes of presence) a page may see up to `SNAPSHOT_S` late.

A bearer token's read (the CLI, a body, a runner, a script) is never answered from a snapshot: only the pages'
polls, which come back every 5 s anyway, trade exactness to the second for a brain that answers N pages at the cost
of one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from ..auth import SESSION_COOKIE, Principal
from ..events import EventHub
from ..shared_reads import SharedReads

SNAPSHOT_S = 2.0
"""How old a snapshot a page may be answered from (seconds)."""

MAX_KEPT_BYTES = 32 * 1024 * 1024
"""The most reply bytes kept in snapshots at once (the oldest go first; a larger reply is not kept: computed each
time, as a bearer token's read is); and `shared_reads.MAX_KEPT` replies at most."""

Handler = Callable[[Request, Principal], Awaitable[Response]]

_Key = tuple[str, str | None, str | None, str, str, int]
_Reply = tuple[bytes, int, str | None]


def _from_a_page(request: Request) -> bool:
    # (`auth.authenticate_request` takes the bearer token when there is one: only a request without one is a session's)
    return request.headers.get("authorization") is None and bool(request.cookies.get(SESSION_COOKIE))


class PageSnapshots:
    """Wraps a GET handler (`shared`) so that dashboard sessions' reads of it share one computation per `max_age_s`."""

    def __init__(self, hub: EventHub, *, clock: Callable[[], float], max_age_s: float = SNAPSHOT_S) -> None:
        self._hub = hub
        # (the key holds the query as sent: bounded, or one session asking `?x=1`, `?x=2`, ... would keep each reply)
        self._reads = SharedReads[_Key, _Reply](
            max_age_s=max_age_s, clock=clock, weigh=lambda reply: len(reply[0]), max_weight=MAX_KEPT_BYTES
        )

    def shared(self, handler: Handler) -> Handler:
        async def read(request: Request, who: Principal) -> Response:
            if not _from_a_page(request):
                return await handler(request, who)
            key: _Key = (
                who.role,
                who.sees_only,
                who.agent,
                request.url.path,
                request.url.query,
                self._hub.published,
            )

            async def compute() -> _Reply:
                response = await handler(request, who)
                return bytes(response.body), response.status_code, response.media_type

            body, status, media_type = await self._reads.read(key, compute)
            return Response(body, status_code=status, media_type=media_type)

        return read
