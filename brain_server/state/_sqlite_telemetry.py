"""The SQLite engine's telemetry: presence minutes (`telemetry_presence`, schema v11) and summaries computed in
SQL from the tables the other stores keep, so that a `/metrics` scrape never parses whole records in Python."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from functools import cached_property
from typing import cast

from shared_protocol.brain import Decision, UsageRecord
from shared_protocol.decisions import DecisionState

from ._parsed import Parsed
from ._records import DecisionTiming, LogEntry, Presence, TaskTiming, UsageSummary
from ._rules import iso, parse_time
from ._sqlite_db import SqliteDatabase

_USAGE_SUMMARY = """
    SELECT json_extract(record, '$.agent') AS agent, json_extract(record, '$.model') AS model,
        COALESCE(json_extract(record, '$.outcome'), 'answered') AS outcome, COUNT(*) AS calls,
        TOTAL(json_extract(record, '$.usd')) AS usd,
        TOTAL(json_extract(record, '$.input_tokens')) AS input_tokens,
        TOTAL(json_extract(record, '$.output_tokens')) AS output_tokens,
        TOTAL(json_extract(record, '$.cache_read_tokens')) AS cache_read_tokens,
        TOTAL(json_extract(record, '$.cache_write_tokens')) AS cache_write_tokens
    FROM usage_records {where}
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""

_USAGE_TOTALS = """
    SELECT agent, model, outcome, calls, usd, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens
    FROM usage_totals ORDER BY 1, 2, 3
"""
_KEEP_SCANS = 4
"""KPI scans a usage record stays parsed for unused (the two windows a page polls, a few pages apart)."""
_AT = "julianday(json_extract(record, '$.at'))"
"""A usage record's time, as the index `usage_records_at` holds it."""


def _presence(rows: Sequence[sqlite3.Row]) -> list[Presence]:
    return [
        Presence(subject=row["subject"], minutes=int(row["minutes"]), first=cast(datetime, parse_time(row["first"])))
        for row in rows
    ]


def _decisions(rows: Sequence[sqlite3.Row]) -> list[Decision]:
    return sorted((Decision.model_validate_json(row[0]) for row in rows), key=lambda d: d.created_at)


class SqliteTelemetry(SqliteDatabase):
    """Presence minutes, and the summaries `/metrics` and the KPIs read."""

    @cached_property
    def _parsed_usage(self) -> Parsed[int, str, UsageRecord]:
        """What the scans parsed, kept for the next (`_parsed.Parsed`); made on the scanner's thread, its only user."""
        return self._keep_parsed(Parsed[int, str, UsageRecord](UsageRecord.model_validate_json))

    async def mark_presence(self, subjects: Sequence[str], minute: datetime) -> None:
        async with self._write() as conn:
            await conn.executemany(
                "INSERT OR IGNORE INTO telemetry_presence (subject, minute) VALUES (?, ?)",
                [(subject, iso(minute)) for subject in subjects],
            )

    async def presence(self, *, since: datetime) -> list[Presence]:
        return await self._scan(
            "SELECT subject, COUNT(*) AS minutes, (SELECT MIN(minute) FROM telemetry_presence AS p "
            "WHERE p.subject = t.subject) AS first FROM telemetry_presence AS t WHERE minute >= ? "
            "GROUP BY subject ORDER BY subject",
            (iso(since),),
            _presence,
        )

    async def prune_telemetry(self, before: datetime, log: LogEntry) -> int:
        async with self._write() as conn:
            cursor = await conn.execute("DELETE FROM telemetry_presence WHERE minute < ?", (iso(before),))
            pruned = cursor.rowcount
            if pruned:
                await self._log(conn, log)
        return pruned

    async def decisions(self) -> list[Decision]:
        return await self._scan("SELECT decision FROM decisions", (), _decisions)

    async def count_decisions(self) -> dict[DecisionState, int]:
        rows = await self._rows("SELECT state, COUNT(*) FROM decisions GROUP BY state")
        return {cast(DecisionState, row[0]): int(row[1]) for row in rows}

    async def usage_for_kpi(self, *, since: datetime, until: datetime, task_ids: Collection[str]) -> list[UsageRecord]:
        # (both sides of the OR on an index of schema v14: usage_records_at and usage_records_task)
        # (a KPI window's records, every poll of every page: what the last scans parsed is reused, `_parsed`)
        def parse(rows: list[sqlite3.Row]) -> list[UsageRecord]:
            found = [self._parsed_usage.get(int(row["seq"]), str(row["record"])) for row in rows]
            self._parsed_usage.end_scan(keep=_KEEP_SCANS)
            return found

        return await self._scan(
            f"SELECT seq, record FROM usage_records WHERE ({_AT} >= julianday(?) AND {_AT} <= julianday(?)) "
            "OR json_extract(record, '$.task_id') IN (SELECT value FROM json_each(?)) ORDER BY seq",
            (iso(since), iso(until), json.dumps(sorted(task_ids))),
            parse,
        )

    async def usage_summary(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[UsageSummary]:
        if since is None and until is None:
            # (the running totals the insert trigger keeps, schema v14: no scan of the records)
            rows = await self._rows(_USAGE_TOTALS)
        else:
            # (julianday reads any offset the record was written with, text order would not; the index
            # usage_records_at is on this very expression)
            clauses: list[str] = []
            params: list[str] = []
            if since is not None:
                clauses.append(f"{_AT} >= julianday(?)")
                params.append(iso(since))
            if until is not None:
                clauses.append(f"{_AT} <= julianday(?)")
                params.append(iso(until))
            rows = await self._rows(_USAGE_SUMMARY.format(where=f"WHERE {' AND '.join(clauses)}"), tuple(params))
        return [
            UsageSummary(
                agent=str(row["agent"]),
                model=str(row["model"]),
                outcome=str(row["outcome"]),
                calls=int(row["calls"]),
                usd=float(row["usd"]),
                input_tokens=int(row["input_tokens"]),
                output_tokens=int(row["output_tokens"]),
                cache_read_tokens=int(row["cache_read_tokens"]),
                cache_write_tokens=int(row["cache_write_tokens"]),
            )
            for row in rows
        ]

    async def task_timings(self) -> list[TaskTiming]:
        rows = await self._rows(
            "SELECT id, state, created_at, finished_at FROM tasks "
            "WHERE finished_at IS NOT NULL AND state IN ('succeeded', 'failed', 'abandoned', 'cancelled')"
        )
        return [
            TaskTiming(
                task_id=str(row["id"]),
                state=str(row["state"]),
                created_at=cast(datetime, parse_time(row["created_at"])),
                finished_at=cast(datetime, parse_time(row["finished_at"])),
            )
            for row in rows
        ]

    async def decision_timings(self) -> list[DecisionTiming]:
        rows = await self._rows(
            "SELECT id, state, json_extract(decision, '$.created_at') AS created_at, "
            "json_extract(decision, '$.answers[0].at') AS answered_at FROM decisions "
            "WHERE state != 'pending' AND json_extract(decision, '$.answers[0].at') IS NOT NULL"
        )
        return [
            DecisionTiming(
                decision_id=str(row["id"]),
                state=str(row["state"]),
                created_at=cast(datetime, parse_time(row["created_at"])),
                answered_at=cast(datetime, parse_time(row["answered_at"])),
            )
            for row in rows
        ]
