"""`SqliteStateEngine`: the brain's state in one SQLite file (WAL), through aiosqlite.

Two connections: writes go through one, in `BEGIN IMMEDIATE` transactions serialised by a
lock in this process and by SQLite's write lock across processes (the CLI creating a token
while the daemon runs); reads use the other, which sees only committed data. A write
transaction is shielded from cancellation, so a disconnecting client or a shutdown never
leaves one half-done: it commits whole or rolls back whole.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiosqlite
import anyio

from shared_protocol import AuditEvent
from shared_protocol.brain import CompensationKind, Decision, KillState, Role, Task, TaskOutcome, TaskState
from shared_protocol.decisions import DecisionState

from ._schema import migrate
from .audit import AuditAppend, link_batch, seqs_to_look_up
from .settings import Durability
from .state import (
    TASK_ROW_FIELDS,
    BodyRecord,
    ClaimGrant,
    Compensation,
    CompensationDraft,
    LogEntry,
    Reversal,
    TaskKey,
    TokenRecord,
    check_holder,
    check_key,
    conflicts_of,
    iso,
    not_current_claim,
    parse_time,
    reversal_id_taken,
    same_question,
    task_from_row,
)
from .wake.records import OPEN_STATES, AnswerToken, AnswerVerb, Escalation

_ROW_COLUMNS = ", ".join(TASK_ROW_FIELDS)
_TASK_COLUMNS = ", ".join(name for name in TASK_ROW_FIELDS if name != "claim_token")
"""What a `Task` is read from: the stored row without its claim token."""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _snapshot(row: sqlite3.Row) -> dict[str, Any]:
    """A task row exactly as stored, as a compensation keeps it."""
    return {name: row[name] for name in TASK_ROW_FIELDS}


async def _connect(path: Path, synchronous: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=30)
    conn.row_factory = sqlite3.Row
    await conn.execute("PRAGMA busy_timeout = 30000")
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


class SqliteStateEngine:
    """The brain's state in `path`. Open with `await SqliteStateEngine.open(path)`; close when done."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._lock = anyio.Lock()

    @classmethod
    async def open(cls, path: Path, *, durability: Durability = "power_loss") -> SqliteStateEngine:
        """Open (creating and migrating if needed) the state file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path, "FULL" if durability == "power_loss" else "NORMAL")
        try:
            await migrate(writer)
            reader = await _connect(path, "NORMAL")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await writer.close()
            raise
        return cls(writer, reader)

    async def close(self) -> None:
        """Close both connections, even when the caller is being cancelled (their threads would outlive it)."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                await self._writer.close()
                await self._reader.close()

    @asynccontextmanager
    async def _write(self) -> AsyncGenerator[aiosqlite.Connection]:
        with anyio.CancelScope(shield=True):
            async with self._lock:
                await self._writer.execute("BEGIN IMMEDIATE")
                try:
                    yield self._writer
                except BaseException:
                    await self._writer.execute("ROLLBACK")
                    raise
                await self._writer.execute("COMMIT")

    async def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return list(await self._reader.execute_fetchall(sql, tuple(params)))

    async def _row(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = await self._rows(sql, params)
        return rows[0] if rows else None

    @staticmethod
    async def _log(conn: aiosqlite.Connection, entry: LogEntry) -> None:
        await conn.execute(
            "INSERT INTO brain_log (at, action, by, token_id, role, reason, target, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                iso(entry.at),
                entry.action,
                entry.by,
                entry.token_id,
                entry.role,
                entry.reason,
                entry.target,
                _canonical(entry.detail),
            ),
        )

    # -- tokens and the log ----------------------------------------------------------------

    async def add_token(self, record: TokenRecord, log: LogEntry) -> None:
        async with self._write() as conn:
            await conn.execute(
                "INSERT INTO tokens (id, token_hash, role, label, created_at) VALUES (?, ?, ?, ?, ?)",
                (record.id, record.token_hash, record.role, record.label, iso(record.created_at)),
            )
            await self._log(conn, log)

    @staticmethod
    def _token(row: sqlite3.Row) -> TokenRecord:
        return TokenRecord(
            id=row["id"],
            token_hash=row["token_hash"],
            role=cast(Role, row["role"]),
            label=row["label"],
            created_at=datetime.fromisoformat(row["created_at"]),
            body_id=row["body_id"],
            revoked_at=parse_time(row["revoked_at"]),
        )

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        # The reader runs each SELECT in its own read transaction: a revocation committed by another process
        # (the CLI) is seen by the very next request.
        row = await self._row("SELECT * FROM tokens WHERE token_hash = ?", (token_hash,))
        return None if row is None else self._token(row)

    async def tokens(self) -> list[TokenRecord]:
        return [self._token(row) for row in await self._rows("SELECT * FROM tokens ORDER BY created_at, rowid")]

    async def bind_token(self, token_id: str, body_id: str, log: LogEntry) -> TokenRecord | None:
        async with self._write() as conn:
            async with conn.execute(
                "UPDATE tokens SET body_id = ? "
                "WHERE id = ? AND role = 'body' AND body_id IS NULL AND revoked_at IS NULL",
                (body_id, token_id),
            ) as cursor:
                bound = cursor.rowcount == 1
            if bound:
                await self._log(conn, log)
            async with conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)) as cursor:
                row = await cursor.fetchone()
        return None if row is None else self._token(row)

    async def revoke_token(self, token_id: str, *, at: datetime, log: LogEntry) -> TokenRecord | None:
        async with self._write() as conn:
            async with conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return None
            before = self._token(row)
            if before.revoked_at is None:
                await conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ?", (iso(at), token_id))
                await self._log(conn, log)
        return before

    async def log_entries(self, *, limit: int = 100) -> list[LogEntry]:
        rows = await self._rows("SELECT * FROM brain_log ORDER BY id DESC LIMIT ?", (limit,))
        return [
            LogEntry(
                at=datetime.fromisoformat(row["at"]),
                action=row["action"],
                by=row["by"],
                token_id=row["token_id"],
                role=row["role"],
                reason=row["reason"],
                target=row["target"],
                detail=json.loads(row["detail"]),
            )
            for row in reversed(rows)
        ]

    # -- kill switch and bodies ------------------------------------------------------------

    async def kill_state(self) -> KillState:
        row = await self._row("SELECT engaged, reason, by, at FROM kill_state WHERE id = 1")
        assert row is not None, "migration v1 inserts the kill_state row"
        return KillState(engaged=bool(row["engaged"]), reason=row["reason"], by=row["by"], at=parse_time(row["at"]))

    async def set_kill_state(self, state: KillState, log: LogEntry) -> None:
        async with self._write() as conn:
            await conn.execute(
                "UPDATE kill_state SET engaged = ?, reason = ?, by = ?, at = ? WHERE id = 1",
                (int(state.engaged), state.reason, state.by, None if state.at is None else iso(state.at)),
            )
            await self._log(conn, log)

    async def upsert_body(self, body: BodyRecord) -> None:
        async with self._write() as conn:
            await conn.execute(
                "INSERT INTO bodies (body_id, workspace, hostname, version, registered_at, last_heartbeat) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (body_id) DO UPDATE SET workspace = excluded.workspace, "
                "hostname = excluded.hostname, version = excluded.version, last_heartbeat = excluded.last_heartbeat",
                (
                    body.body_id,
                    body.workspace,
                    body.hostname,
                    body.version,
                    iso(body.registered_at),
                    iso(body.last_heartbeat),
                ),
            )

    async def touch_body(self, body_id: str, at: datetime) -> bool:
        async with (
            self._write() as conn,
            conn.execute("UPDATE bodies SET last_heartbeat = ? WHERE body_id = ?", (iso(at), body_id)) as cursor,
        ):
            return cursor.rowcount == 1

    async def bodies(self) -> list[BodyRecord]:
        rows = await self._rows("SELECT * FROM bodies ORDER BY body_id")
        return [
            BodyRecord(
                body_id=row["body_id"],
                workspace=row["workspace"],
                hostname=row["hostname"],
                version=row["version"],
                registered_at=datetime.fromisoformat(row["registered_at"]),
                last_heartbeat=datetime.fromisoformat(row["last_heartbeat"]),
            )
            for row in rows
        ]

    # -- audit -----------------------------------------------------------------------------

    async def append_audit(
        self, body_id: str, events: Sequence[AuditEvent], *, log_start_seq: int = 1, at: datetime | None = None
    ) -> AuditAppend:
        received = iso(at or datetime.now(UTC))
        async with self._write() as conn:
            async with conn.execute("SELECT MAX(seq) FROM audit_events WHERE body_id = ?", (body_id,)) as cursor:
                row = await cursor.fetchone()
            head = int(row[0]) if row is not None and row[0] is not None else 0
            async with conn.execute(
                "SELECT MAX(through_seq) FROM audit_prune_marks WHERE body_id = ?", (body_id,)
            ) as cursor:
                mark = await cursor.fetchone()
            floor = int(mark[0]) if mark is not None and mark[0] is not None else 0
            wanted = sorted(seq for seq in seqs_to_look_up(head, events) if seq > floor)
            stored: dict[int, str] = {}
            if wanted:
                marks = ", ".join("?" * len(wanted))
                rows = await conn.execute_fetchall(
                    f"SELECT seq, mac FROM audit_events WHERE body_id = ? AND seq IN ({marks})", (body_id, *wanted)
                )
                stored = {int(r["seq"]): str(r["mac"]) for r in rows}
            plan = link_batch(head, stored, events, log_start_seq=log_start_seq, floor=floor)
            if plan.new:
                await conn.executemany(
                    "INSERT INTO audit_events (body_id, seq, id, ts, mac, event, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (body_id, e.seq, e.id, e.ts, e.mac, _canonical(e.model_dump(mode="json")), received)
                        for e in plan.new
                    ],
                )
        return AuditAppend(stored_through=plan.through(head), problem=plan.problem, stored=len(plan.new))

    async def audit_events(self, body_id: str, *, after_seq: int = 0, limit: int = 1000) -> list[AuditEvent]:
        rows = await self._rows(
            "SELECT event FROM audit_events WHERE body_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (body_id, after_seq, limit),
        )
        return [AuditEvent.model_validate_json(row["event"]) for row in rows]

    async def prune_audit(self, before: datetime, log: LogEntry) -> dict[str, int]:
        pruned: dict[str, int] = {}
        async with self._write() as conn:
            # Per body: the newest seq older than the cutoff, below the body's newest event (which stays).
            rows = await conn.execute_fetchall(
                "SELECT e.body_id, MAX(e.seq) FROM audit_events AS e WHERE e.received_at < ? "
                "AND e.seq < (SELECT MAX(h.seq) FROM audit_events AS h WHERE h.body_id = e.body_id) "
                "GROUP BY e.body_id ORDER BY e.body_id",
                (iso(before),),
            )
            for body_id, through in rows:
                # The mark is what lets the delete trigger pass, for this body's events up to it only.
                await conn.execute(
                    "INSERT INTO audit_prune_marks (body_id, through_seq, at) VALUES (?, ?, ?)",
                    (body_id, through, iso(log.at)),
                )
                cursor = await conn.execute(
                    "DELETE FROM audit_events WHERE body_id = ? AND seq <= ?", (body_id, through)
                )
                pruned[str(body_id)] = cursor.rowcount
            if pruned:
                await self._log(conn, replace(log, detail={**log.detail, "pruned": pruned}))
        return pruned

    # -- decisions -------------------------------------------------------------------------

    async def insert_decision(self, decision: Decision, log: LogEntry, *, reuse_pending: bool = False) -> Decision:
        async with self._write() as conn:
            if reuse_pending:
                async with conn.execute(
                    "SELECT decision FROM decisions WHERE state = 'pending' AND deadline > ? AND body_id = ? "
                    "ORDER BY deadline",
                    (iso(decision.created_at), decision.body_id),
                ) as cursor:
                    for (stored,) in await cursor.fetchall():
                        existing = Decision.model_validate_json(stored)
                        if same_question(existing, decision):
                            return existing
            await conn.execute(
                "INSERT INTO decisions (id, state, deadline, body_id, decision) VALUES (?, ?, ?, ?, ?)",
                (decision.id, decision.state, iso(decision.deadline), decision.body_id, decision.model_dump_json()),
            )
            await self._log(conn, log)
        return decision

    async def decision(self, decision_id: str) -> Decision | None:
        row = await self._row("SELECT decision FROM decisions WHERE id = ?", (decision_id,))
        return None if row is None else Decision.model_validate_json(row["decision"])

    async def replace_decision(self, decision: Decision, *, expected: DecisionState, log: LogEntry) -> bool:
        async with self._write() as conn:
            async with conn.execute(
                "UPDATE decisions SET state = ?, decision = ? WHERE id = ? AND state = ?",
                (decision.state, decision.model_dump_json(), decision.id, expected),
            ) as cursor:
                changed = cursor.rowcount == 1
            if changed:
                await self._log(conn, log)
        return changed

    async def due_decisions(self, now: datetime) -> list[Decision]:
        rows = await self._rows(
            "SELECT decision FROM decisions WHERE state = 'pending' AND deadline <= ? ORDER BY deadline", (iso(now),)
        )
        return [Decision.model_validate_json(row["decision"]) for row in rows]

    async def count_pending_decisions(self, now: datetime) -> int:
        row = await self._row("SELECT COUNT(*) FROM decisions WHERE state = 'pending' AND deadline > ?", (iso(now),))
        return 0 if row is None else int(row[0])

    # -- tasks -----------------------------------------------------------------------------

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
                _canonical(before),
                _canonical(after),
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

    # -- waking humans ---------------------------------------------------------------------

    async def append_log(self, entry: LogEntry) -> None:
        async with self._write() as conn:
            await self._log(conn, entry)

    async def insert_escalation(self, escalation: Escalation, log: LogEntry) -> bool:
        async with self._write() as conn:
            async with conn.execute(
                "INSERT INTO escalations (id, state, next_at, dedup_key, created_at, version, escalation) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    escalation.id,
                    escalation.state,
                    None if escalation.next_at is None else iso(escalation.next_at),
                    escalation.dedup_key,
                    iso(escalation.created_at),
                    escalation.version,
                    escalation.model_dump_json(),
                ),
            ) as cursor:
                inserted = cursor.rowcount == 1
            if inserted:
                await self._log(conn, log)
        return inserted

    async def escalation(self, escalation_id: str) -> Escalation | None:
        row = await self._row("SELECT escalation FROM escalations WHERE id = ?", (escalation_id,))
        return None if row is None else Escalation.model_validate_json(row["escalation"])

    async def replace_escalation(self, escalation: Escalation, *, log: LogEntry | None = None) -> bool:
        async with self._write() as conn:
            async with conn.execute(
                "UPDATE escalations SET state = ?, next_at = ?, version = ?, escalation = ? "
                "WHERE id = ? AND version = ?",
                (
                    escalation.state,
                    None if escalation.next_at is None else iso(escalation.next_at),
                    escalation.version,
                    escalation.model_dump_json(),
                    escalation.id,
                    escalation.version - 1,
                ),
            ) as cursor:
                changed = cursor.rowcount == 1
            if changed and log is not None:
                await self._log(conn, log)
        return changed

    async def due_escalations(self, now: datetime) -> list[Escalation]:
        rows = await self._rows(
            "SELECT escalation FROM escalations WHERE state = 'active' AND next_at IS NOT NULL AND next_at <= ? "
            "ORDER BY next_at",
            (iso(now),),
        )
        return [Escalation.model_validate_json(row["escalation"]) for row in rows]

    async def open_escalation(self, dedup_key: str, *, since: datetime) -> Escalation | None:
        marks = ", ".join("?" * len(OPEN_STATES))
        row = await self._row(
            f"SELECT escalation FROM escalations WHERE dedup_key = ? AND state IN ({marks}) AND created_at >= ? "
            "ORDER BY created_at DESC LIMIT 1",
            (dedup_key, *OPEN_STATES, iso(since)),
        )
        return None if row is None else Escalation.model_validate_json(row["escalation"])

    async def add_answer_tokens(self, tokens: Sequence[AnswerToken], *, now: datetime) -> None:
        async with self._write() as conn:
            await conn.execute("DELETE FROM answer_tokens WHERE expires_at <= ?", (iso(now),))
            await conn.executemany(
                "INSERT INTO answer_tokens (token_hash, page_id, subject_id, verb, channel, target, created_at, "
                "expires_at, used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                [
                    (
                        t.token_hash,
                        t.page_id,
                        t.subject_id,
                        t.verb,
                        t.channel,
                        t.target,
                        iso(t.created_at),
                        iso(t.expires_at),
                    )
                    for t in tokens
                ],
            )

    @staticmethod
    def _answer_token(row: sqlite3.Row) -> AnswerToken:
        return AnswerToken(
            token_hash=row["token_hash"],
            page_id=row["page_id"],
            subject_id=row["subject_id"],
            verb=cast(AnswerVerb, row["verb"]),
            channel=row["channel"],
            target=row["target"],
            created_at=datetime.fromisoformat(row["created_at"]),
            expires_at=datetime.fromisoformat(row["expires_at"]),
            used_at=parse_time(row["used_at"]),
        )

    async def answer_token(self, token_hash: str) -> AnswerToken | None:
        row = await self._row("SELECT * FROM answer_tokens WHERE token_hash = ?", (token_hash,))
        return None if row is None else self._answer_token(row)

    async def use_answer_token(self, token_hash: str, at: datetime) -> AnswerToken | None:
        async with self._write() as conn:
            async with conn.execute(
                "UPDATE answer_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
                (iso(at), token_hash, iso(at)),
            ) as cursor:
                if cursor.rowcount != 1:
                    return None
            rows = await conn.execute_fetchall("SELECT * FROM answer_tokens WHERE token_hash = ?", (token_hash,))
        return self._answer_token(next(iter(rows)))

    async def remember_interaction(self, interaction_id: str, at: datetime, *, forget_before: datetime) -> bool:
        async with self._write() as conn:
            await conn.execute("DELETE FROM interactions_seen WHERE at < ?", (iso(forget_before),))
            async with conn.execute(
                "INSERT INTO interactions_seen (id, at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                (interaction_id, iso(at)),
            ) as cursor:
                return cursor.rowcount == 1
