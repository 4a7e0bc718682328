"""The memory engine's records of autonomous agents: LLM usage, readiness reports and overrides."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from shared_protocol.brain import ReadinessOverride, ReadinessReport, UsageRecord

from ._records import LogEntry
from ._rules import check_usage_record


class MemoryAutonomy:
    """Usage records by id (with their body), readiness reports and overrides, in lists and dictionaries."""

    _log: list[LogEntry]

    def __init__(self) -> None:
        self._usage: dict[str, tuple[str, UsageRecord]] = {}
        self._reports: list[ReadinessReport] = []
        self._overrides: list[ReadinessOverride] = []

    async def record_usage(self, body_id: str, records: Sequence[UsageRecord]) -> tuple[int, int]:
        new: dict[str, UsageRecord] = {}
        duplicates = 0
        for record in records:
            seen = self._usage.get(record.id)
            if seen is not None:
                check_usage_record(record, body_id, seen[1], seen[0])
                duplicates += 1
            elif record.id in new:
                check_usage_record(record, body_id, new[record.id], body_id)
                duplicates += 1
            else:
                new[record.id] = record
        for record in new.values():
            self._usage[record.id] = (body_id, record)
        return len(new), duplicates

    async def usage(self, *, body_id: str | None = None) -> list[UsageRecord]:
        return [record for owner, record in self._usage.values() if body_id is None or owner == body_id]

    async def add_readiness_report(self, report: ReadinessReport, log: LogEntry) -> None:
        self._reports.append(report)
        self._log.append(log)

    async def readiness_report(self) -> ReadinessReport | None:
        return self._reports[-1] if self._reports else None

    async def readiness_reports(self) -> list[ReadinessReport]:
        return list(self._reports)

    async def add_readiness_override(self, override: ReadinessOverride, log: LogEntry) -> None:
        self._overrides.append(override)
        self._log.append(log)

    async def readiness_overrides(self, *, at: datetime | None) -> list[ReadinessOverride]:
        return [o for o in self._overrides if at is None or o.expires_at > at]

    def _rewritten_readiness(
        self,
        report: Callable[[ReadinessReport], ReadinessReport | None],
        override: Callable[[ReadinessOverride], ReadinessOverride | None],
    ) -> tuple[dict[int, ReadinessReport], dict[int, ReadinessOverride]]:
        """The readiness reports and overrides (by index) `report` and `override` change; nothing is changed yet."""
        reports = {n: new for n, r in enumerate(self._reports) if (new := report(r)) is not None}
        overrides = {n: new for n, o in enumerate(self._overrides) if (new := override(o)) is not None}
        return reports, overrides
