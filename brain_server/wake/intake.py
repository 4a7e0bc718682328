"""What the unauthenticated endpoints (Discord interactions, Twilio gather, answer links) share.

Anyone on the internet can reach them, so nobody may make them read an unbounded body or fill
the brain's append-only log: bodies are capped, and refusals of requests nobody vouches for are
written to the log at a bounded rate (the rest go to the process log, and the next line written
says how many were left out). A refusal of a genuine request from someone on the allow-list (a
listed Discord user asking for more than they may) is always written: junk traffic cannot hide
it. A valid signature alone is not enough: Discord signs a stranger's request too, and a captured
one can be replayed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from starlette.requests import Request

from .._payload import read_body as read_capped
from ..exceptions import PayloadTooLarge
from ..state import BrainLog, LogEntry

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
"""Far above any interaction or Twilio callback (Discord's are a few KB)."""


BodyTooLarge = PayloadTooLarge
"""The request body is over `MAX_BODY_BYTES`; nothing was read past it."""


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing (`BodyTooLarge`) as soon as it is known to be over `limit` bytes."""
    return await read_capped(request, limit)


class RefusalLog:
    """Writes refusals to the brain's log: those of a listed sender always, the others at most `per_minute` a
    minute (the rest only to the process log)."""

    def __init__(self, log: BrainLog, now: Callable[[], datetime], *, per_minute: int = 20) -> None:
        self._log = log
        self._now = now
        self._per_minute = per_minute
        self._window_start: datetime | None = None
        self._written = 0
        self._left_out = 0

    async def record(self, entry: LogEntry, *, proven: bool = False) -> None:
        """`proven`: a genuine request from a listed sender, who alone can make more of these."""
        logger.warning("%s (%s): %s", entry.action, entry.by, entry.reason)
        if proven:
            await self._log.append_log(entry)
            return
        now = self._now()
        if self._window_start is None or now - self._window_start >= timedelta(minutes=1):
            self._window_start, self._written = now, 0
        if self._written >= self._per_minute:
            self._left_out += 1
            return
        self._written += 1
        if self._left_out:
            entry = replace(entry, detail={**entry.detail, "refusals_not_logged_before": self._left_out})
            self._left_out = 0
        await self._log.append_log(entry)
