"""The SQLite engine's task queue and compensating records (`TaskStore`, `CompensationStore`).

A claim or an outcome and the record of the row before and after it are written in one
transaction; a reversal reads the rows, checks them (`conflicts_of`) and puts them back in one.
A claim runs whole on the writer's thread (`_write_job`): one round trip while the write lock is held.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import cached_property, partial
from typing import Any, cast

import aiosqlite

from shared_protocol import AuditEvent
from shared_protocol.brain import CompensationKind, Decision, Task, TaskEvent, TaskState

from ..verification import EventKey, Evidence, awaited, settle_task
from ._parsed import Parsed
from ._records import (
    ClaimGrant,
    Compensation,
    CompensationDraft,
    KeptKeys,
    KeptRequest,
    LogEntry,
    Reversal,
    TaskKey,
)
from ._rules import (
    TASK_ROW_FIELDS,
    canonical,
    check_key,
    check_key_store,
    conflicts_of,
    ended_log,
    iso,
    parse_time,
    reversal_id_taken,
    rewritten_row,
    task_from_row,
    task_row,
)
from ._sqlite_db import SqliteDatabase, on_thread
from ._transitions import (
    ENDS_PARKED,
    Step,
    StoredTask,
    TaskTransitions,
    claim,
    claimable,
    end_parked,
    lose_lease,
    reversal_event,
)

_ROW_COLUMNS = ", ".join(TASK_ROW_FIELDS)
_SET_COLUMNS = ", ".join(f"{name} = ?" for name in TASK_ROW_FIELDS if name != "id")

_JOINED_COLUMNS = ", ".join(f"t.{name} AS {name}" for name in TASK_ROW_FIELDS)
_KEY_STORE_SAMPLE = 200
_KEY_STORE_REQUESTS = 20
"""How many keyed request digests the start-up check of the key store reads a request back for (one it can read
settles it)."""
"""How many keyed tasks holding personal data the start-up check of the key store reads (`unpinned_keys`)."""


def _stored(rows: list[sqlite3.Row]) -> StoredTask | None:
    """One task from the rows of its row joined with its history (`event`, in order); None: no rows."""
    if not rows:
        return None
    first = rows[0]
    history = [TaskEvent.model_validate_json(row["event"]) for row in rows if row["event"] is not None]
    task = task_from_row({name: first[name] for name in TASK_ROW_FIELDS}, history)
    return StoredTask(task=task, claim_token=first["claim_token"])


def _snapshot(row: sqlite3.Row) -> dict[str, Any]:
    """A task row exactly as stored, as a compensation keeps it."""
    return {name: row[name] for name in TASK_ROW_FIELDS}


class SqliteTasks(SqliteDatabase, TaskTransitions):
    """Tasks in `tasks` (and their history in `task_events`), their compensating records in `compensations`."""

    @cached_property
    def _parsed_tasks(self) -> Parsed[str, TaskSource, Task]:
        """What the scans parsed, kept for the next (`_parsed.Parsed`); made on the scanner's thread, its only user."""
        return self._keep_parsed(Parsed[str, TaskSource, Task](_task))

    async def _load(self, conn: aiosqlite.Connection, task_id: str) -> StoredTask | None:
        """The task's row and history, in one statement (one round trip)."""
        rows = await conn.execute_fetchall(
            f"SELECT {_JOINED_COLUMNS}, e.event AS event FROM tasks AS t "
            "LEFT JOIN task_events AS e ON e.task_id = t.id WHERE t.id = ? ORDER BY e.id",
            (task_id,),
        )
        return _stored(list(rows))

    async def _rewrite_tasks(
        self, conn: aiosqlite.Connection, change: Callable[[Task], Task | None]
    ) -> tuple[int, int]:
        """Each task through `change`, in the caller's transaction (its history lines' text rewritten in place, the
        gate open: brain schema v23); (tasks, history lines) changed."""
        ids = [str(row[0]) for row in await conn.execute_fetchall("SELECT id FROM tasks ORDER BY seq")]
        tasks = lines = 0
        for task_id in ids:
            stored = await self._load(conn, task_id)
            if stored is None:
                continue
            new = change(stored.task)
            if new is None:
                continue
            row = task_row(new, stored.claim_token)
            values = [row[name] for name in TASK_ROW_FIELDS if name != "id"]
            await conn.execute(f"UPDATE tasks SET {_SET_COLUMNS} WHERE id = ?", (*values, task_id))
            event_ids = await conn.execute_fetchall(
                "SELECT id FROM task_events WHERE task_id = ? ORDER BY id", (task_id,)
            )
            for (event_id,), old, line in zip(event_ids, stored.task.history, new.history, strict=True):
                if line != old:
                    await conn.execute(
                        "UPDATE task_events SET event = ? WHERE id = ?",
                        (canonical(line.model_dump(mode="json")), event_id),
                    )
                    lines += 1
            tasks += 1
        return tasks, lines

    @staticmethod
    async def _store(conn: aiosqlite.Connection, before: StoredTask, after: StoredTask) -> None:
        """Write `after` over the row, the history events it adds to `before`'s, and what it waits for (one round
        trip)."""
        await on_thread(conn, partial(_store_now, before=before, after=after))

    @staticmethod
    async def _sync_waits(conn: aiosqlite.Connection, task: Task, *, had: set[EventKey] | None = None) -> None:
        """Keep `verification_waits` listing the events `task`'s pending verifications wait for (`had`: what it
        listed before, when known: nothing is written if that has not changed)."""
        await on_thread(conn, partial(_sync_waits_now, task=task, had=had))

    @staticmethod
    async def _append_events(conn: aiosqlite.Connection, task_id: str, events: Sequence[TaskEvent]) -> None:
        await on_thread(conn, partial(_append_events_now, task_id=task_id, events=events))

    async def insert_task(self, task: Task, log: LogEntry, *, key: TaskKey | None = None) -> Task:
        async with self._write() as conn:
            if key is not None:
                async with conn.execute("SELECT check_value FROM task_key_secret") as cursor:
                    kept = await cursor.fetchone()
                check_key_store(key, None if kept is None else str(kept[0]))
                if kept is None:
                    await conn.execute(
                        "INSERT INTO task_key_secret (one, check_value) VALUES (1, ?)", (key.secret_check,)
                    )
                async with conn.execute(  # (as sent too: a row kept before `swarm privacy migrate` keyed it)
                    "SELECT request_sha256, task_id FROM task_keys WHERE token_id = ? AND key IN (?, ?) "
                    "ORDER BY key = ? DESC LIMIT 1",
                    (key.token_id, key.key, key.key if key.sent is None else key.sent, key.key),
                ) as cursor:
                    seen = await cursor.fetchone()
                if seen is not None:
                    check_key(key, seen[0])
                    stored = await self._load(conn, seen[1])
                    assert stored is not None, "a keyed task is never deleted"
                    return stored.task
                await conn.execute(
                    "INSERT INTO task_keys (token_id, key, request_sha256, task_id) VALUES (?, ?, ?, ?)",
                    (key.token_id, key.key, key.request_sha256, task.id),
                )
            row = task_row(task, None)
            await conn.execute(
                f"INSERT INTO tasks ({_ROW_COLUMNS}) VALUES ({', '.join('?' for _ in TASK_ROW_FIELDS)})",
                tuple(row[name] for name in TASK_ROW_FIELDS),
            )
            await self._append_events(conn, task.id, task.history)
            await self._log(conn, log)
        return task

    async def accept_key_store(self, secret_check: str, log: LogEntry) -> tuple[bool, int]:
        async with self._write() as conn:
            async with conn.execute("SELECT count(*) FROM task_keys") as cursor:
                row = await cursor.fetchone()
            keys = 0 if row is None else int(row[0])
            async with conn.execute("SELECT check_value FROM task_key_secret") as cursor:
                kept = await cursor.fetchone()
            if kept is not None and kept[0] == secret_check:
                return False, keys
            await conn.execute(
                "INSERT INTO task_key_secret (one, check_value) VALUES (1, ?) "
                "ON CONFLICT (one) DO UPDATE SET check_value = excluded.check_value",
                (secret_check,),
            )
            await self._log(conn, log)
        return True, keys

    async def unpinned_keys(self) -> KeptKeys | None:
        if await self._rows("SELECT 1 FROM task_key_secret"):
            return None
        keys = int((await self._rows("SELECT count(*) FROM task_keys"))[0][0])
        if not keys:
            return None
        rows = await self._rows(
            "SELECT t.title, t.description FROM task_keys AS k JOIN tasks AS t ON t.id = k.task_id "
            "WHERE t.title LIKE '%[pii:%' OR t.description LIKE '%[pii:%' LIMIT ?",
            [_KEY_STORE_SAMPLE],
        )
        erased = await self._rows("SELECT target FROM brain_log WHERE action = 'privacy_erase' AND target IS NOT NULL")
        requests: list[KeptRequest] = []
        for digest, task_id in await self._rows(
            "SELECT request_sha256, task_id FROM task_keys WHERE request_sha256 LIKE 'hmac %' LIMIT ?",
            [_KEY_STORE_REQUESTS],
        ):
            if (task := await self.task(str(task_id))) is not None:
                requests.append(KeptRequest(request_sha256=str(digest), task=task))
        return KeptKeys(
            keys=keys,
            texts=[str(text) for row in rows for text in row],
            erased=frozenset(str(row[0]) for row in erased),
            requests=requests,
        )

    async def pin_key_store(self, secret_check: str) -> bool:
        async with self._write() as conn:
            pinned = await conn.execute(
                "INSERT OR IGNORE INTO task_key_secret (one, check_value) VALUES (1, ?)", (secret_check,)
            )
            return pinned.rowcount == 1

    async def task(self, task_id: str) -> Task | None:
        found = _tasks_of(await self._rows(_select_tasks("WHERE id = ?"), [task_id]))
        return found[0] if found else None

    async def tasks(self, *, state: TaskState | None = None, agent: str | None = None) -> list[Task]:
        where, params = _task_filter(state, agent)

        # (every task with its history, as the dashboard polls it: on the scanner, parsed off the event loop, and
        # only what changed since the last scan)
        def parse(rows: list[sqlite3.Row]) -> list[Task]:
            found = _tasks_of(rows, self._parsed_tasks)
            if not where:
                self._parsed_tasks.keep_only({task.id for task in found})
            return found

        return await self._scan(_select_tasks(f"WHERE {' AND '.join(where)}" if where else ""), params, parse)

    async def task_page(
        self, *, state: TaskState | None = None, agent: str | None = None, limit: int, offset: int = 0
    ) -> tuple[list[Task], int]:
        where, params = _task_filter(state, agent)
        clause = f"WHERE {' AND '.join(where)}" if where else ""

        # (the newest rows by seq and their histories, with the count, in one statement: one snapshot; parsed on
        # the scanner's thread, none of the other tasks read)
        def parse(rows: list[sqlite3.Row]) -> tuple[list[Task], int | None]:
            return _tasks_of(rows), (int(rows[0]["total"]) if rows else None)

        sql = _select_tasks(f"{clause} ORDER BY seq DESC LIMIT ? OFFSET ?", count=clause)
        # (the `?`s in the order they appear: the count's, then the page's)
        found, total = await self._scan(sql, [*params, *params, limit, offset], parse)
        if total is None:  # (a page past the end: the count alone)
            total = int((await self._rows(f"SELECT COUNT(*) FROM tasks {clause}", params))[0][0])
        return found, total

    async def claim_task(
        self, grant: ClaimGrant, log: Callable[[Task], LogEntry], *, compensation: CompensationDraft | None = None
    ) -> Task | None:
        # (nothing is claimable while the kill switch is engaged or the agent is paused: read under the write lock)
        where = [
            "state = 'queued'",
            "NOT (SELECT engaged FROM kill_state WHERE id = 1)",
            "NOT EXISTS (SELECT 1 FROM agent_pauses WHERE agent = ?)",
        ]
        params: list[Any] = [grant.agent]
        if grant.task_id is not None:
            where.append("id = ?")
            params.append(grant.task_id)
        if grant.buckets is not None and grant.waited_before is not None:
            where.append("((swarm_bucket(id) >= ? AND swarm_bucket(id) < ?) OR created_at < ?)")
            params += [*grant.buckets, iso(grant.waited_before)]
        elif grant.buckets is not None:
            where.append("swarm_bucket(id) >= ? AND swarm_bucket(id) < ?")
            params += list(grant.buckets)
        if grant.mode == "shadow":
            where.append(
                "NOT EXISTS (SELECT 1 FROM json_each(tasks.shadow_runs) AS run "
                "WHERE json_extract(run.value, '$.agent') = ? AND json_extract(run.value, '$.logic_version') = ?)"
            )
            params += [grant.agent, grant.logic_version]
        query = (
            f"SELECT {_JOINED_COLUMNS}, e.event AS event, "
            "(SELECT MAX(seq) FROM audit_events WHERE body_id = ?) AS audit_head "
            f"FROM (SELECT * FROM tasks WHERE {' AND '.join(where)} ORDER BY value_usd DESC, seq LIMIT 1) "
            "AS t LEFT JOIN task_events AS e ON e.task_id = t.id ORDER BY e.id"
        )

        def claim_job(conn: sqlite3.Connection) -> Task | None:
            # BEGIN IMMEDIATE holds the write lock from the start: no other claimer can take the row between the
            # read of its "before" and the update. One statement finds the task and reads its row, its history and
            # the claiming body's audit head; the whole claim is one job on the writer's thread.
            rows = conn.execute(query, (grant.body_id, *params)).fetchall()
            before = _stored(rows)
            if before is None:
                return None
            assert claimable(before.task, grant), "read queued in this transaction"
            head = rows[0]["audit_head"]
            won = claim(before, replace(grant, audit_seq=int(head) if head is not None else 0))
            _store_now(conn, before, won)
            if compensation is not None:
                snapshot = task_row(before.task, before.claim_token)
                _compensate_now(conn, compensation, "task_claim", snapshot, grant.at)
            self._log_now(conn, log(won.task))
            return won.task

        return await self._write_job(claim_job)

    async def _change(
        self,
        task_id: str,
        step: Step,
        *,
        log: LogEntry | None = None,
        compensation: tuple[CompensationDraft, str] | None = None,
        at: datetime | None = None,
        settle: bool = False,
    ) -> Task:
        async with self._write() as conn:
            before = await self._load(conn, task_id)
            after = step(before)
            assert before is not None, "a step refuses a task that does not exist"
            if settle:
                assert at is not None, "a verification is settled at a time"
                after = await self._settled(conn, after, at)
            snapshot = task_row(before.task, before.claim_token)
            await self._store(conn, before, after)
            if compensation is not None:
                draft, kind = compensation
                assert at is not None, "a compensation is kept at a time"
                await self._compensate(conn, draft, cast(CompensationKind, kind), snapshot, at)
            if log is not None:
                await self._log(conn, log)
        return after.task

    async def requeue_expired(self, now: datetime, log: Callable[[Task], LogEntry]) -> list[Task]:
        # (every claim, outcome and renewal asks first: a point read by the state index, on the event loop's thread
        # (`_point`), so that nothing expired, the usual answer, costs no write transaction)
        if not await self._point(
            "SELECT 1 FROM tasks WHERE state = 'claimed' AND lease_expires <= ? LIMIT 1", (iso(now),)
        ):
            return []
        async with self._write() as conn:
            expired = await conn.execute_fetchall(
                "SELECT id FROM tasks WHERE state = 'claimed' AND lease_expires <= ? ORDER BY seq", (iso(now),)
            )
            requeued: list[Task] = []
            for row in expired:
                before = await self._load(conn, row["id"])
                assert before is not None, "selected in this transaction"
                after = lose_lease(before, at=now)
                await self._store(conn, before, after)
                await self._log(conn, log(before.task))
                requeued.append(after.task)
        return requeued

    async def _end_parked(self, conn: aiosqlite.Connection, decision: Decision, log: LogEntry) -> list[Task]:
        """In the decision's transaction: end the tasks parked on it, if it came to an end without approval."""
        if decision.state not in ENDS_PARKED:
            return []
        rows = await conn.execute_fetchall(
            "SELECT id FROM tasks WHERE state = 'waiting_approval' AND parked_decision_id = ? ORDER BY seq",
            (decision.id,),
        )
        ended: list[Task] = []
        for row in rows:
            before = await self._load(conn, row["id"])
            assert before is not None, "selected in this transaction"
            after = end_parked(before, decision, at=log.at, by=log.by)
            await self._store(conn, before, after)
            await self._log(conn, ended_log(after.task, decision, log))
            ended.append(after.task)
        return ended

    # -- verification ----------------------------------------------------------------------

    async def _settled(
        self,
        conn: aiosqlite.Connection,
        stored: StoredTask,
        at: datetime,
        *,
        new: Mapping[str, AuditEvent] | None = None,
    ) -> StoredTask:
        """In this transaction: `stored` with the verifications it waits for settled, as far as the evidence allows:
        the `new` events (by id, whatever body wrote them: another body's is a refutation), or else the claiming
        bodies' events stored already. What it confirms is recorded in `verification_uses`."""
        waits = awaited(stored.task)
        if not waits:
            return stored
        evidence = Evidence()
        for body_id, action_id in waits:
            if new is not None:
                found = new.get(action_id)
            else:
                async with conn.execute(
                    "SELECT event FROM audit_events WHERE body_id = ? AND id = ? ORDER BY seq LIMIT 1",
                    (body_id, action_id),
                ) as cursor:
                    row = await cursor.fetchone()
                found = None if row is None else AuditEvent.model_validate_json(row[0])
            if found is None:
                continue
            evidence.events[(body_id, action_id)] = found
            async with conn.execute("SELECT verify_key FROM bodies WHERE body_id = ?", (body_id,)) as cursor:
                key = await cursor.fetchone()
            evidence.keys[body_id] = None if key is None else key[0]
            async with conn.execute(
                "SELECT slot FROM verification_uses WHERE body_id = ? AND action_id = ?", (found.body_id, found.id)
            ) as cursor:
                use = await cursor.fetchone()
            if use is not None:
                evidence.uses[(found.body_id, found.id)] = str(use[0])
        if not evidence.events:
            return stored
        task = settle_task(stored.task, evidence, at=at)
        if task is None:
            return stored
        # (the primary key holds one verification per event, whatever a bug above might let through)
        await conn.executemany(
            "INSERT INTO verification_uses (body_id, action_id, task_id, slot, at) VALUES (?, ?, ?, ?, ?)",
            [(body_id, action_id, task_id, slot, iso(at)) for (body_id, action_id), task_id, slot in evidence.new_uses],
        )
        return StoredTask(task=task, claim_token=stored.claim_token)

    async def _settle_new(self, conn: aiosqlite.Connection, at: datetime, new: Mapping[str, AuditEvent]) -> list[Task]:
        """In the transaction that stores `new` events: settle the verifications that wait for them (by action id)."""
        ids = sorted(new)
        changed: list[Task] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = await conn.execute_fetchall(
                "SELECT w.task_id FROM verification_waits AS w JOIN tasks AS t ON t.id = w.task_id "
                f"WHERE w.action_id IN ({', '.join('?' * len(chunk))}) GROUP BY w.task_id ORDER BY MIN(t.seq)",
                chunk,
            )
            for row in rows:
                before = await self._load(conn, row[0])
                assert before is not None, "selected in this transaction"
                after = await self._settled(conn, before, at, new=new)
                if after is not before:
                    await self._store(conn, before, after)
                    changed.append(after.task)
        return changed

    async def count_tasks(self) -> dict[TaskState, int]:
        rows = await self._rows("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state")
        return {cast(TaskState, row["state"]): int(row["n"]) for row in rows}

    async def count_verified_succeeded(self) -> int:
        rows = await self._rows("SELECT COUNT(*) FROM tasks WHERE state = 'succeeded' AND verified = 1")
        return int(rows[0][0])

    # -- reversal --------------------------------------------------------------------------

    @staticmethod
    async def _task_row(conn: aiosqlite.Connection, task_id: str) -> dict[str, Any] | None:
        return await on_thread(conn, partial(_task_row_now, task_id=task_id))

    async def _compensate(
        self,
        conn: aiosqlite.Connection,
        draft: CompensationDraft,
        kind: CompensationKind,
        before: dict[str, Any],
        at: datetime,
    ) -> None:
        """Write the record of a task update just made in this transaction (its "after" read back from the row)."""
        await on_thread(conn, partial(_compensate_now, draft=draft, kind=kind, before=before, at=at))

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

    async def all_compensations(self) -> list[Compensation]:
        return [self._compensation(row) for row in await self._rows("SELECT * FROM compensations ORDER BY id")]

    @staticmethod
    async def _rewrite_compensations(conn: aiosqlite.Connection, change: Callable[[Task], Task | None]) -> int:
        """The task rows each compensating record keeps (before and after) through `change` as the task's own row
        (`rewritten_row`), in the caller's transaction (the gate open: brain schema v25); the number changed."""
        changed: list[tuple[str, str, int]] = []
        for record_id, before, after in await conn.execute_fetchall("SELECT id, before, after FROM compensations"):
            new_before = rewritten_row(json.loads(before), change)
            new_after = rewritten_row(json.loads(after), change)
            if new_before is None and new_after is None:
                continue
            changed.append(
                (
                    str(before) if new_before is None else canonical(new_before),
                    str(after) if new_after is None else canonical(new_after),
                    int(record_id),
                )
            )
        await conn.executemany("UPDATE compensations SET before = ?, after = ? WHERE id = ?", changed)
        return len(changed)

    async def decision_compensations(self, decision_ids: Collection[str]) -> list[Compensation]:
        # (one read for every decision of a KPI window, on the index compensations_decision)
        return await self._scan(
            "SELECT * FROM compensations WHERE decision_id IN (SELECT value FROM json_each(?)) ORDER BY id",
            (json.dumps(sorted(decision_ids)),),
            lambda rows: [self._compensation(row) for row in rows],
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
                columns = [name for name in TASK_ROW_FIELDS if name != "id" and name in record.before]
                await conn.execute(
                    f"UPDATE tasks SET {', '.join(f'{name} = ?' for name in columns)} WHERE id = ?",
                    (*(record.before[name] for name in columns), record.target),
                )
                restored = await self._load(conn, record.target)
                if restored is not None:
                    await self._sync_waits(conn, restored.task)
                if overwritten is not None:
                    line = reversal_event(record, at=at, by=entry.by, undo_id=as_action)
                    await self._append_events(conn, record.target, [line])
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


# -- the writes themselves, run on the writer's thread (`on_thread`, `_write_job`) -------------


def _store_now(conn: sqlite3.Connection, before: StoredTask, after: StoredTask) -> None:
    """`SqliteTasks._store`, on the writer's thread."""
    row = task_row(after.task, after.claim_token)
    values = [row[name] for name in TASK_ROW_FIELDS if name != "id"]
    conn.execute(f"UPDATE tasks SET {_SET_COLUMNS} WHERE id = ?", (*values, after.task.id))
    _append_events_now(conn, after.task.id, after.task.history[len(before.task.history) :])
    _sync_waits_now(conn, after.task, had=awaited(before.task))


def _sync_waits_now(conn: sqlite3.Connection, task: Task, had: set[EventKey] | None) -> None:
    """`SqliteTasks._sync_waits`, on the writer's thread."""
    now = awaited(task)
    if had is not None and now == had:
        return
    conn.execute("DELETE FROM verification_waits WHERE task_id = ?", (task.id,))
    conn.executemany(
        "INSERT OR IGNORE INTO verification_waits (action_id, task_id, body_id) VALUES (?, ?, ?)",
        [(action_id, task.id, body_id) for body_id, action_id in sorted(now)],
    )


def _append_events_now(conn: sqlite3.Connection, task_id: str, events: Sequence[TaskEvent]) -> None:
    if events:  # (in order: the ids keep the history's order)
        conn.executemany(
            "INSERT INTO task_events (task_id, event) VALUES (?, ?)",
            [(task_id, canonical(line.model_dump(mode="json"))) for line in events],
        )


def _task_row_now(conn: sqlite3.Connection, task_id: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {_ROW_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return None if row is None else _snapshot(row)


def _compensate_now(
    conn: sqlite3.Connection, draft: CompensationDraft, kind: CompensationKind, before: dict[str, Any], at: datetime
) -> None:
    """`SqliteTasks._compensate`, on the writer's thread."""
    after = _task_row_now(conn, before["id"])
    assert after is not None, "tasks are never deleted"
    conn.execute(
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


def _task_filter(state: TaskState | None, agent: str | None) -> tuple[list[str], list[Any]]:
    """The WHERE terms and their parameters that pick tasks by state and by claiming agent (either may be None)."""
    where: list[str] = []
    params: list[Any] = []
    if state is not None:
        where.append("state = ?")
        params.append(state)
    if agent is not None:
        where.append("claimed_agent = ?")
        params.append(agent)
    return where, params


def _select_tasks(clause: str, *, count: str | None = None) -> str:
    """The tasks `clause` selects, oldest first, each row joined with its history's events (one statement, so the
    rows and their histories are read from one snapshot); `_tasks_of` makes them tasks. With `count` (a WHERE
    clause, or ""), each row also has `total`: how many tasks it selects."""
    columns = ", ".join(f"t.{name} AS {name}" for name in TASK_ROW_FIELDS)
    total = "" if count is None else f", (SELECT COUNT(*) FROM tasks {count}) AS total"
    return (
        f"SELECT {columns}, e.event AS event{total} FROM (SELECT * FROM tasks {clause}) AS t "
        "LEFT JOIN task_events AS e ON e.task_id = t.id ORDER BY t.seq, e.id"
    )


TaskSource = tuple[tuple[Any, ...], tuple[str, ...]]
"""What a task is parsed from: its row's values (`TASK_ROW_FIELDS`), and its history's events as stored."""


def _task(source: TaskSource) -> Task:
    values, events = source
    row: dict[str, Any] = dict(zip(TASK_ROW_FIELDS, values, strict=True))
    return task_from_row(row, [TaskEvent.model_validate_json(event) for event in events])


def _tasks_of(rows: Sequence[sqlite3.Row], parsed: Parsed[str, TaskSource, Task] | None = None) -> list[Task]:
    """The tasks `_select_tasks` read, oldest first; with `parsed`, those unchanged since the last scan as parsed
    then (on the scanner's thread)."""
    values: dict[str, tuple[Any, ...]] = {}
    history: dict[str, list[str]] = {}
    for row in rows:
        task_id = row["id"]
        if task_id not in values:
            values[task_id] = tuple(row[name] for name in TASK_ROW_FIELDS)
            history[task_id] = []
        if row["event"] is not None:
            history[task_id].append(row["event"])
    sources = {task_id: (values[task_id], tuple(history[task_id])) for task_id in values}
    if parsed is None:
        return [_task(source) for source in sources.values()]
    return [parsed.get(task_id, source) for task_id, source in sources.items()]
