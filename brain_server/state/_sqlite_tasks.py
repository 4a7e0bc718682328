"""The SQLite engine's task queue and compensating records (`TaskStore`, `CompensationStore`).

A claim or an outcome and the record of the row before and after it are written in one
transaction; a reversal reads the rows, checks them (`conflicts_of`) and puts them back in one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

import aiosqlite

from shared_protocol.brain import CompensationKind, Task, TaskOutcome, TaskState

from ._records import ClaimGrant, Compensation, CompensationDraft, LogEntry, Reversal, TaskKey
from ._rules import (
    TASK_ROW_FIELDS,
    check_holder,
    check_key,
    conflicts_of,
    iso,
    not_current_claim,
    parse_time,
    reversal_id_taken,
    task_from_row,
)
from ._sqlite_db import SqliteDatabase, canonical

_ROW_COLUMNS = ", ".join(TASK_ROW_FIELDS)
_TASK_COLUMNS = ", ".join(name for name in TASK_ROW_FIELDS if name != "claim_token")
"""What a `Task` is read from: the stored row without its claim token."""


def _snapshot(row: sqlite3.Row) -> dict[str, Any]:
    """A task row exactly as stored, as a compensation keeps it."""
    return {name: row[name] for name in TASK_ROW_FIELDS}


class SqliteTasks(SqliteDatabase):
    """Tasks and their compensating records in `tasks` and `compensations`."""

    @staticmethod
    def _task(row: sqlite3.Row) -> Task:
        return task_from_row(dict(row))

    async def insert_task(self, task: Task, log: LogEntry, *, key: TaskKey | None = None) -> Task:
        async with self._write() as conn:
            if key is not None:
                async with conn.execute(
                    "SELECT request_sha256, task_id FROM task_keys WHERE token_id = ? AND key = ?",
                    (key.token_id, key.key),
                ) as cursor:
                    seen = await cursor.fetchone()
                if seen is not None:
                    check_key(key, seen[0])
                    async with conn.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (seen[1],)) as cursor:
                        row = await cursor.fetchone()
                    assert row is not None, "a keyed task is never deleted"
                    return self._task(row)
                await conn.execute(
                    "INSERT INTO task_keys (token_id, key, request_sha256, task_id) VALUES (?, ?, ?, ?)",
                    (key.token_id, key.key, key.request_sha256, task.id),
                )
            await conn.execute(
                "INSERT INTO tasks (id, title, description, value_usd, state, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    task.id,
                    task.title,
                    task.description,
                    task.value_usd,
                    task.state,
                    iso(task.created_at),
                    task.created_by,
                ),
            )
            await self._log(conn, log)
        return task

    async def task(self, task_id: str) -> Task | None:
        row = await self._row(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,))
        return None if row is None else self._task(row)

    async def claim_task(
        self, grant: ClaimGrant, log: Callable[[Task], LogEntry], *, compensation: CompensationDraft | None = None
    ) -> Task | None:
        async with self._write() as conn:
            # BEGIN IMMEDIATE holds the write lock from the start: no other claimer can take the row between the
            # read of its "before" and the update.
            async with conn.execute(
                f"SELECT seq, {_ROW_COLUMNS} FROM tasks WHERE state = 'queued' ORDER BY value_usd DESC, seq LIMIT 1"
            ) as cursor:
                before = await cursor.fetchone()
            if before is None:
                return None
            async with conn.execute(
                "UPDATE tasks SET state = 'claimed', claimed_body = ?, claimed_agent = ?, claimed_at = ?, "
                "lease_expires = ?, claim_token = ?, attempts = attempts + 1 "
                f"WHERE seq = ? AND state = 'queued' RETURNING {_TASK_COLUMNS}",
                (grant.body_id, grant.agent, iso(grant.at), iso(grant.lease_expires), grant.claim_token, before["seq"]),
            ) as cursor:
                row = await cursor.fetchone()
            assert row is not None, "read queued in this transaction"
            task = self._task(row)
            if compensation is not None:
                await self._compensate(conn, compensation, "task_claim", _snapshot(before), grant.at)
            await self._log(conn, log(task))
        return task

    async def finish_task(
        self,
        task_id: str,
        *,
        claim_token: str,
        outcome: TaskOutcome,
        summary: str,
        at: datetime,
        log: LogEntry,
        compensation: CompensationDraft | None = None,
        holder: str | None = None,
    ) -> Task:
        async with self._write() as conn:
            before = await self._task_row(conn, task_id)
            check_holder(task_id, before, holder)
            async with conn.execute(
                "UPDATE tasks SET state = ?, outcome_summary = ?, finished_at = ?, lease_expires = NULL, "
                f"claim_token = NULL WHERE id = ? AND state = 'claimed' AND claim_token = ? RETURNING {_TASK_COLUMNS}",
                (outcome, summary, iso(at), task_id, claim_token),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                raise not_current_claim(task_id, before)
            assert before is not None, "updated in this transaction"
            task = self._task(row)
            if compensation is not None:
                await self._compensate(conn, compensation, "task_outcome", before, at)
            await self._log(conn, log)
        return task

    async def renew_lease(
        self, task_id: str, *, claim_token: str, lease_expires: datetime, holder: str | None = None
    ) -> Task:
        async with self._write() as conn:
            before = await self._task_row(conn, task_id)
            check_holder(task_id, before, holder)
            async with conn.execute(
                f"UPDATE tasks SET lease_expires = ? WHERE id = ? AND state = 'claimed' AND claim_token = ? "
                f"RETURNING {_TASK_COLUMNS}",
                (iso(lease_expires), task_id, claim_token),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                raise not_current_claim(task_id, before)
        return self._task(row)

    async def requeue_expired(self, now: datetime, log: Callable[[Task], LogEntry]) -> list[Task]:
        async with self._write() as conn:
            expired = [
                self._task(row)
                for row in await conn.execute_fetchall(
                    f"SELECT {_TASK_COLUMNS} FROM tasks WHERE state = 'claimed' AND lease_expires <= ? ORDER BY seq",
                    (iso(now),),
                )
            ]
            requeued: list[Task] = []
            for task in expired:
                async with conn.execute(
                    "UPDATE tasks SET state = 'queued', claimed_body = NULL, claimed_agent = NULL, claimed_at = NULL, "
                    f"lease_expires = NULL, claim_token = NULL WHERE id = ? RETURNING {_TASK_COLUMNS}",
                    (task.id,),
                ) as cursor:
                    row = await cursor.fetchone()
                assert row is not None, "selected in this transaction"
                await self._log(conn, log(task))
                requeued.append(self._task(row))
        return requeued

    async def count_tasks(self) -> dict[TaskState, int]:
        rows = await self._rows("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state")
        return {cast(TaskState, row["state"]): int(row["n"]) for row in rows}

    # -- reversal --------------------------------------------------------------------------

    @staticmethod
    async def _task_row(conn: aiosqlite.Connection, task_id: str) -> dict[str, Any] | None:
        async with conn.execute(f"SELECT {_ROW_COLUMNS} FROM tasks WHERE id = ?", (task_id,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _snapshot(row)

    async def _compensate(
        self,
        conn: aiosqlite.Connection,
        draft: CompensationDraft,
        kind: CompensationKind,
        before: dict[str, Any],
        at: datetime,
    ) -> None:
        """Write the record of a task update just made in this transaction (its "after" read back from the row)."""
        after = await self._task_row(conn, before["id"])
        assert after is not None, "tasks are never deleted"
        await conn.execute(
            "INSERT INTO compensations (action_id, decision_id, body_id, kind, target, before, after, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                draft.action_id,
                draft.decision_id,
                draft.body_id or before["claimed_body"],
                kind,
                before["id"],
                canonical(before),
                canonical(after),
                iso(at),
            ),
        )

    @staticmethod
    def _compensation(row: sqlite3.Row) -> Compensation:
        return Compensation(
            id=int(row["id"]),
            action_id=row["action_id"],
            decision_id=row["decision_id"],
            body_id=row["body_id"],
            kind=cast(CompensationKind, row["kind"]),
            target=row["target"],
            before=json.loads(row["before"]),
            after=json.loads(row["after"]),
            created_at=datetime.fromisoformat(row["created_at"]),
            reversed_at=parse_time(row["reversed_at"]),
            reversed_by=row["reversed_by"],
        )

    async def compensations(self, target_id: str) -> list[Compensation]:
        rows = await self._rows(
            "SELECT * FROM compensations WHERE action_id = ? OR decision_id = ? ORDER BY id", (target_id, target_id)
        )
        return [self._compensation(row) for row in rows]

    async def reverse(
        self,
        target_id: str,
        *,
        force: bool,
        at: datetime,
        log: Callable[[Compensation], LogEntry],
        dry_run: bool = False,
        as_action: str | None = None,
    ) -> Reversal:
        async with self._write() as conn:
            if as_action is not None:
                async with conn.execute(
                    "SELECT 1 FROM compensations WHERE action_id = ? OR decision_id = ? LIMIT 1", (as_action, as_action)
                ) as cursor:
                    if await cursor.fetchone() is not None:
                        raise reversal_id_taken(as_action)
            pending = [
                self._compensation(row)
                for row in await conn.execute_fetchall(
                    "SELECT * FROM compensations WHERE (action_id = ? OR decision_id = ?) AND reversed_at IS NULL "
                    "ORDER BY id DESC",
                    (target_id, target_id),
                )
            ]
            current: dict[str, dict[str, Any] | None] = {}
            for record in pending:
                if record.target not in current:
                    current[record.target] = await self._task_row(conn, record.target)
            conflicts = conflicts_of(pending, current)
            if conflicts and not force:
                return Reversal(reversed=[], conflicts=conflicts)
            if dry_run:
                return Reversal(reversed=pending, conflicts=conflicts)
            reversed_: list[Compensation] = []
            for record in pending:
                entry = log(record)
                overwritten = await self._task_row(conn, record.target)
                columns = [name for name in TASK_ROW_FIELDS if name != "id"]
                await conn.execute(
                    f"UPDATE tasks SET {', '.join(f'{name} = ?' for name in columns)} WHERE id = ?",
                    (*(record.before[name] for name in columns), record.target),
                )
                if as_action is not None and overwritten is not None:
                    draft = CompensationDraft(action_id=as_action, body_id=record.body_id)
                    await self._compensate(conn, draft, "reversal", overwritten, at)
                await conn.execute(
                    "UPDATE compensations SET reversed_at = ?, reversed_by = ? WHERE id = ?",
                    (iso(at), entry.by, record.id),
                )
                await self._log(conn, entry)
                reversed_.append(replace(record, reversed_at=at, reversed_by=entry.by))
        return Reversal(reversed=reversed_, conflicts=conflicts)
