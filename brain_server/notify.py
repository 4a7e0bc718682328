"""Telling a human that something needs them: the `Notifier` edge and its first channels.

The brain calls `notify` in the background when a decision needs a human (or consensus,
for which a human stands in until voting exists); the request that created the decision
never waits for a channel. A channel that fails loses nothing: the decision stays pending
and, unanswered, expires to a denial (silence is never consent). Real channels (Discord,
SMS, phone, ntfy, email) and the wake-up ladder are a later issue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import anyio

from shared_protocol import Impact
from shared_protocol.decisions import Needs

logger = logging.getLogger(__name__)


@dataclass(kw_only=True, frozen=True)
class Notification:
    """What needs a human: a decision, what it is about, and until when it can be answered."""

    decision_id: str
    summary: str
    needs: Needs
    deadline: datetime
    body_id: str
    agent: str
    confidence: float
    impact: Impact


class Notifier(Protocol):
    async def notify(self, message: Notification) -> None:
        """Deliver `message`; raise if it could not be delivered (the brain logs it)."""
        ...


class LogNotifier:
    """Writes each notification to the log (the console of `swarm brain serve`)."""

    def __init__(self, logger_: logging.Logger | None = None) -> None:
        self._logger = logger_ or logger

    async def notify(self, message: Notification) -> None:
        self._logger.warning(
            "decision %s needs %s by %s: %s (agent %s on body %s, confidence %.2f, %d files, %d API calls, $%.2f)",
            message.decision_id,
            "a human" if message.needs == "human" else message.needs,
            message.deadline.isoformat(timespec="seconds"),
            message.summary,
            message.agent,
            message.body_id,
            message.confidence,
            message.impact.files,
            message.impact.api_calls,
            message.impact.usd,
        )


class MemoryNotifier:
    """Keeps every notification, for tests: `await wait_for(n)` instead of sleeping."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self._changed = anyio.Event()

    async def notify(self, message: Notification) -> None:
        self.sent.append(message)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, count: int) -> list[Notification]:
        """Wait until at least `count` notifications were sent; returns them all."""
        while len(self.sent) < count:
            await self._changed.wait()
        return list(self.sent)
