"""Telemetry: the minutes the brain and its bodies are seen up, their retention, and the KPIs over a window.

Most of what the KPIs read the brain keeps already (tasks with their history, usage records, decisions and their
compensating records); only presence is recorded here, once a minute by the sweep (`tick`): the brain is up in a
minute its sweep ran (and in the minutes between two runs no further apart than the sweep interval), a body when it
was connected then (streaming, or a heartbeat within the failsafe time).
Presence older than `[brain] telemetry_retention_days` is pruned with the audit events (`prune`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

import anyio
import anyio.to_thread

from shared_protocol.telemetry import KpiReport

from . import kpi
from .events import EventHub
from .settings import BrainSettings
from .shared_reads import SharedReads
from .state import LogEntry, StateEngine


class Telemetry:
    """Presence ticks, their retention, and `kpi`; one per brain."""

    def __init__(
        self, state: StateEngine, *, settings: BrainSettings, hub: EventHub, now: Callable[[], datetime]
    ) -> None:
        self._state = state
        self._settings = settings
        self._hub = hub
        self._now = now
        self._marked: datetime | None = None
        self._reports = SharedReads[int, KpiReport]()

    async def tick(self, now: datetime) -> None:
        """Mark this minute up for the brain and every connected body (one write a minute, whatever the sweeps)."""
        minute = kpi.minute_of(now)
        if minute == self._marked:
            return
        streaming = self._hub.connected()
        recent = now - timedelta(seconds=self._settings.failsafe_s)
        subjects = [kpi.BRAIN] + [
            kpi.body_subject(b.body_id)
            for b in await self._state.bodies()
            if b.left_at is None and (b.body_id in streaming or b.last_heartbeat >= recent)
        ]
        await self._state.mark_presence(subjects, minute)
        previous = self._marked
        if previous is not None and previous < minute:
            # (the sweeper of this process ran at `previous` and now, no later than its interval allows: the brain
            # served the minutes between, however long `[brain] sweep_interval_s` is; a longer gap is a stall)
            gap = (minute - previous).total_seconds()
            if gap <= self._settings.sweep_interval_s + 60:
                between = [previous + timedelta(minutes=n) for n in range(1, int(gap // 60))]
                for skipped in between:
                    await self._state.mark_presence([kpi.BRAIN], skipped)
        self._marked = minute

    async def prune(self) -> int:
        """Delete presence older than `telemetry_retention_days`; how many minutes went."""
        now = self._now()
        days = self._settings.telemetry_retention_days
        log = LogEntry(at=now, action="telemetry_prune", by="retention", reason=f"telemetry older than {days} days")
        return await self._state.prune_telemetry(now - timedelta(days=days), log)

    async def kpi(self, *, window_s: int) -> KpiReport:
        """The KPIs of the last `window_s` seconds (asked for while the same window is being computed: that
        computation's report, `SharedReads`)."""
        return await self._reports.read(window_s, partial(self._kpi, window_s))

    async def _kpi(self, window_s: int) -> KpiReport:
        until = self._now()
        since = until - timedelta(seconds=window_s)
        state = self._state
        tasks = await state.tasks()
        decisions = await state.decisions()
        bodies = await state.bodies()
        updates: dict[str, set[str]] = {}
        undone: set[str] = set()
        approved = [d.id for d in decisions if d.state == "approved" and d.created_at >= since]
        for record in await state.decision_compensations(approved) if approved else []:
            assert record.decision_id is not None
            updates.setdefault(record.decision_id, set()).add(record.target)
            if record.reversed_at is not None:
                undone.add(record.decision_id)
        usage = await state.usage_for_kpi(
            since=since,
            until=until,
            task_ids={t.id for t in tasks if t.state in kpi.FINISHED and t.finished_at is not None},
        )
        presence = await state.presence(since=kpi.minute_of(since))
        # (pure, and over every task kept: on a worker thread, not on the event loop a kill fans out on)
        compute = partial(
            kpi.compute,
            since=since,
            until=until,
            tasks=tasks,
            usage=usage,
            decisions=decisions,
            presence=presence,
            body_left={b.body_id: b.left_at for b in bodies},
            body_registered={b.body_id: b.registered_at for b in bodies},
            decision_updates=updates,
            undone_decisions=undone,
        )
        return await anyio.to_thread.run_sync(compute)
