"""The memory engine's telemetry: presence minutes in sets, and summaries computed from the other stores' records."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from shared_protocol.brain import FINAL_TASK_STATES, Decision, Task, UsageRecord
from shared_protocol.decisions import DecisionState

from ._records import DecisionTiming, LogEntry, Presence, TaskTiming, UsageSummary


class MemoryTelemetry:
    """Presence minutes per subject; the rest reads the dictionaries of the engine this is part of."""

    _log: list[LogEntry]
    _decisions: dict[str, Decision]
    _tasks: dict[str, Task]
    _usage: dict[str, tuple[str, UsageRecord]]

    def __init__(self) -> None:
        self._presence: dict[str, set[datetime]] = {}

    async def mark_presence(self, subjects: Sequence[str], minute: datetime) -> None:
        for subject in subjects:
            self._presence.setdefault(subject, set()).add(minute)

    async def presence(self, *, since: datetime) -> list[Presence]:
        found: list[Presence] = []
        for subject, minutes in sorted(self._presence.items()):
            recent = [m for m in minutes if m >= since]
            if recent:
                found.append(Presence(subject=subject, minutes=len(recent), first=min(minutes)))
        return found

    async def prune_telemetry(self, before: datetime, log: LogEntry) -> int:
        pruned = 0
        for subject, minutes in list(self._presence.items()):
            old = {m for m in minutes if m < before}
            pruned += len(old)
            minutes -= old
            if not minutes:
                del self._presence[subject]
        if pruned:
            self._log.append(log)
        return pruned

    async def decisions(self) -> list[Decision]:
        return sorted(self._decisions.values(), key=lambda d: d.created_at)

    async def count_decisions(self) -> dict[DecisionState, int]:
        counts: dict[DecisionState, int] = {}
        for decision in self._decisions.values():
            counts[decision.state] = counts.get(decision.state, 0) + 1
        return counts

    async def usage_for_kpi(self, *, since: datetime, until: datetime, task_ids: Collection[str]) -> list[UsageRecord]:
        return [r for _, r in self._usage.values() if since <= r.at <= until or r.task_id in task_ids]

    async def usage_summary(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[UsageSummary]:
        sums: dict[tuple[str, str, str], UsageSummary] = {}
        for _, r in self._usage.values():
            if (since is not None and r.at < since) or (until is not None and r.at > until):
                continue
            key = (r.agent, r.model, r.outcome)
            seen = sums.get(key)
            sums[key] = UsageSummary(
                agent=r.agent,
                model=r.model,
                outcome=r.outcome,
                calls=(seen.calls if seen else 0) + 1,
                usd=(seen.usd if seen else 0.0) + r.usd,
                input_tokens=(seen.input_tokens if seen else 0) + r.input_tokens,
                output_tokens=(seen.output_tokens if seen else 0) + r.output_tokens,
                cache_read_tokens=(seen.cache_read_tokens if seen else 0) + r.cache_read_tokens,
                cache_write_tokens=(seen.cache_write_tokens if seen else 0) + r.cache_write_tokens,
            )
        return [sums[key] for key in sorted(sums)]

    async def task_timings(self) -> list[TaskTiming]:
        return [
            TaskTiming(task_id=t.id, state=t.state, created_at=t.created_at, finished_at=t.finished_at)
            for t in self._tasks.values()
            if t.state in FINAL_TASK_STATES and t.finished_at is not None
        ]

    async def decision_timings(self) -> list[DecisionTiming]:
        return [
            DecisionTiming(decision_id=d.id, state=d.state, created_at=d.created_at, answered_at=d.answers[0].at)
            for d in self._decisions.values()
            if d.state != "pending" and d.answers
        ]
