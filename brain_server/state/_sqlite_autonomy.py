"""The SQLite engine's records of autonomous agents: LLM usage (`usage_records`), readiness reports and the
captains' overrides (`readiness_reports`, `readiness_overrides`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime

import aiosqlite

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
        # (every record: on the scanner, parsed off the event loop, `SqliteDatabase._scan`)
        if body_id is None:
            return await self._scan("SELECT record FROM usage_records ORDER BY seq", (), usage_records)
        return await self._scan(
            "SELECT record FROM usage_records WHERE body_id = ? ORDER BY seq", (body_id,), usage_records
        )

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

    async def readiness_reports(self) -> list[ReadinessReport]:
        rows = await self._rows("SELECT report FROM readiness_reports ORDER BY id")
        return [ReadinessReport.model_validate_json(row["report"]) for row in rows]

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

    async def readiness_overrides(self, *, at: datetime | None) -> list[ReadinessOverride]:
        if at is None:
            rows = await self._rows("SELECT override FROM readiness_overrides ORDER BY rowid")
        else:
            rows = await self._rows(
                "SELECT override FROM readiness_overrides WHERE expires_at > ? ORDER BY rowid", (iso(at),)
            )
        return [ReadinessOverride.model_validate_json(row["override"]) for row in rows]

    @staticmethod
    async def _rewrite_readiness(
        conn: aiosqlite.Connection,
        report: Callable[[ReadinessReport], ReadinessReport | None],
        override: Callable[[ReadinessOverride], ReadinessOverride | None],
    ) -> tuple[int, int]:
        """Each readiness report and override through `report` and `override`, in the caller's transaction (the
        gate open: brain schema v25 lets their text change, nothing else); (reports, overrides) changed. Only the
        text is set in the stored JSON (`json_set`): the rest stays as it was written, whatever model wrote it."""
        reports = 0
        for report_id, text in await conn.execute_fetchall("SELECT id, report FROM readiness_reports"):
            old = ReadinessReport.model_validate_json(text)
            new = report(old)
            if new is None:
                continue
            paths: list[str] = []
            values: list[str] = []
            for n, (was, now) in enumerate(zip(old.items, new.items, strict=True)):
                for name in ("detail", "fix"):
                    if getattr(was, name) != getattr(now, name):
                        paths.append(f"'$.items[{n}].{name}', ?")
                        values.append(getattr(now, name))
            if paths:
                await conn.execute(
                    f"UPDATE readiness_reports SET report = json_set(report, {', '.join(paths)}) WHERE id = ?",
                    (*values, report_id),
                )
                reports += 1
        changed = [
            (new.reason, override_id)
            for override_id, text in await conn.execute_fetchall("SELECT id, override FROM readiness_overrides")
            if (new := override(ReadinessOverride.model_validate_json(text))) is not None
        ]
        await conn.executemany(
            "UPDATE readiness_overrides SET override = json_set(override, '$.reason', ?) WHERE id = ?", changed
        )
        return reports, len(changed)


def usage_records(rows: Sequence[sqlite3.Row]) -> list[UsageRecord]:
    """Rows of `record` as usage records (on the scanner's thread: `SqliteDatabase._scan`)."""
    return [UsageRecord.model_validate_json(row["record"]) for row in rows]
