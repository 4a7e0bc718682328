"""The SQLite engine's records of autonomous agents: LLM usage (`usage_records`), readiness reports and the
captains' overrides (`readiness_reports`, `readiness_overrides`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared_protocol.brain import ReadinessOverride, ReadinessReport, UsageRecord

from ._records import LogEntry
from ._rules import canonical, check_usage_record, iso
from ._sqlite_db import SqliteDatabase


class SqliteAutonomy(SqliteDatabase):
    """Usage, readiness reports and overrides; each write one transaction."""

    async def record_usage(self, body_id: str, records: Sequence[UsageRecord]) -> tuple[int, int]:
        new: dict[str, UsageRecord] = {}
        duplicates = 0
        async with self._write() as conn:
            for record in records:
                async with conn.execute(
                    "SELECT body_id, record FROM usage_records WHERE id = ?", (record.id,)
                ) as cursor:
                    seen = await cursor.fetchone()
                if seen is not None:
                    check_usage_record(record, body_id, UsageRecord.model_validate_json(seen[1]), seen[0])
                    duplicates += 1
                elif record.id in new:
                    check_usage_record(record, body_id, new[record.id], body_id)
                    duplicates += 1
                else:
                    new[record.id] = record
            for record in new.values():
                await conn.execute(
                    "INSERT INTO usage_records (id, body_id, record) VALUES (?, ?, ?)",
                    (record.id, body_id, canonical(record.model_dump(mode="json"))),
                )
        return len(new), duplicates

    async def usage(self, *, body_id: str | None = None) -> list[UsageRecord]:
        if body_id is None:
            rows = await self._rows("SELECT record FROM usage_records ORDER BY seq")
        else:
            rows = await self._rows("SELECT record FROM usage_records WHERE body_id = ? ORDER BY seq", (body_id,))
        return [UsageRecord.model_validate_json(row["record"]) for row in rows]

    async def add_readiness_report(self, report: ReadinessReport, log: LogEntry) -> None:
        async with self._write() as conn:
            await conn.execute(
                "INSERT INTO readiness_reports (at, report) VALUES (?, ?)",
                (iso(report.at), canonical(report.model_dump(mode="json"))),
            )
            await self._log(conn, log)

    async def readiness_report(self) -> ReadinessReport | None:
        row = await self._row("SELECT report FROM readiness_reports ORDER BY id DESC LIMIT 1")
        return None if row is None else ReadinessReport.model_validate_json(row["report"])

    async def add_readiness_override(self, override: ReadinessOverride, log: LogEntry) -> None:
        async with self._write() as conn:
            await conn.execute(
                "INSERT INTO readiness_overrides (id, agent, logic_version, expires_at, override) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    override.id,
                    override.agent,
                    override.logic_version,
                    iso(override.expires_at),
                    canonical(override.model_dump(mode="json")),
                ),
            )
            await self._log(conn, log)

    async def readiness_overrides(self, *, at: datetime) -> list[ReadinessOverride]:
        rows = await self._rows(
            "SELECT override FROM readiness_overrides WHERE expires_at > ? ORDER BY rowid", (iso(at),)
        )
        return [ReadinessOverride.model_validate_json(row["override"]) for row in rows]
