"""`SqliteStateEngine`: the brain's state in one SQLite file (WAL, versioned migrations), through aiosqlite.

The engine is put together from its parts: the connections and write transaction
(`_sqlite_db`), the task queue with its compensating records (`_sqlite_tasks`) and the
records of waking humans (`_sqlite_wake`); tokens, the log, the kill switch, bodies, audit
events and decisions are here. Its URL is `sqlite:///ABSOLUTE/PATH`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiosqlite
import anyio

from shared_protocol import AuditEvent
from shared_protocol.brain import AgentPause, Decision, KillState, Role
from shared_protocol.decisions import DecisionState

from ..audit import AuditAppend, link_batch, seqs_to_look_up
from ..exceptions import NoDatabase, StateBroken
from . import _kill_note
from ._protocols import Durability, EngineKind, RecordRewrite, StateEngine
from ._records import BodyRecord, DecisionReplaced, LogEntry, Rebinding, TokenRecord
from ._rules import body_key_change, canonical, decision_mark, iso, parse_time, rebind_refusal, same_question
from ._schema import migrate, refuse_foreign
from ._sqlite_autonomy import SqliteAutonomy
from ._sqlite_db import close_quietly, connect, connect_inline, unusable
from ._sqlite_pauses import SqlitePauses
from ._sqlite_rollouts import SqliteRollouts
from ._sqlite_sessions import SqliteSessions
from ._sqlite_tasks import SqliteTasks
from ._sqlite_telemetry import SqliteTelemetry
from ._sqlite_wake import SqliteWake

logger = logging.getLogger(__name__)


class SqliteStateEngine(
    SqliteTasks, SqliteWake, SqliteAutonomy, SqliteTelemetry, SqliteSessions, SqlitePauses, SqliteRollouts
):
    """The brain's state in `path`. Open with `await SqliteStateEngine.open(path)`; close when done."""

    @classmethod
    async def open(cls, path: Path, *, durability: Durability = "power_loss") -> SqliteStateEngine:
        """Open (creating and migrating if needed) the state file, after checking it whole (`PRAGMA quick_check`).

        `StateBroken`, with every connection closed again, when the file cannot be used: malformed, truncated
        (an empty file too: a new database is only ever created where there is none), unreadable, or the disk
        full. Nothing is created then.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file() and path.stat().st_size == 0:
                raise StateBroken(
                    f"the brain database {path} is unusable: the file is empty (truncated?); move it away to start "
                    "a new, empty brain, or restore a backup"
                )
        except OSError as exc:
            raise unusable(exc, path) or exc from None
        await anyio.to_thread.run_sync(refuse_foreign, path)
        writer: aiosqlite.Connection | None = None
        readers: list[aiosqlite.Connection] = []
        try:
            writer = await connect(path, "FULL" if durability == "power_loss" else "NORMAL")
            await _check_whole(writer, path)
            await migrate(writer)
            readers.append(await connect(path, "NORMAL"))
            readers.append(await connect(path, "NORMAL"))  # (the scanner: `SqliteDatabase._scan`)
            inline = connect_inline(path)
        except BaseException as exc:
            for conn in [*readers, *([] if writer is None else [writer])]:
                await close_quietly(conn)
            broken = unusable(exc, path)
            if broken is None:
                raise
            raise broken from None
        reader, scanner = readers
        engine = cls(writer, reader, scanner, path=path, inline=inline)
        engine._note_synced = durability == "power_loss"
        try:
            await engine._replay_kill_note()
        except BaseException:
            await engine.close()
            raise
        return engine

    async def close(self) -> None:
        """Close every connection, even when the caller is being cancelled (their threads would outlive it)."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                if self._batch is not None:  # (writers waiting for their commit: theirs is done first)
                    await self._end(self._batch)
                await close_quietly(self._writer)
                await close_quietly(self._reader)
                await close_quietly(self._scanner)
                with contextlib.suppress(sqlite3.Error):
                    self._inline.close()

    # -- tokens ----------------------------------------------------------------------------

    async def add_token(self, record: TokenRecord, log: LogEntry) -> None:
        async with self._write() as conn:
            await conn.execute(
                "INSERT INTO tokens (id, token_hash, role, label, created_at, agent, pairing_hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.token_hash,
                    record.role,
                    record.label,
                    iso(record.created_at),
                    record.agent,
                    record.pairing_hash,
                ),
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
            agent=row["agent"],
            revoked_at=parse_time(row["revoked_at"]),
            pairing_hash=row["pairing_hash"],
        )

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        # Every request reads its token: a point read on the event loop's thread (`_point`), each in its own read
        # transaction, so a revocation committed by another process (the CLI) is seen by the very next request.
        rows = await self._point("SELECT * FROM tokens WHERE token_hash = ?", (token_hash,))
        return self._token(rows[0]) if rows else None

    async def tokens(self) -> list[TokenRecord]:
        return [self._token(row) for row in await self._rows("SELECT * FROM tokens ORDER BY created_at, rowid")]

    async def has_agent_token(self, agent: str) -> bool:
        return bool(await self._point("SELECT 1 FROM tokens WHERE agent = ? LIMIT 1", (agent,)))

    async def bind_token(self, token_id: str, body_id: str, log: LogEntry) -> TokenRecord | None:
        async with self._write() as conn:
            async with conn.execute(
                "UPDATE tokens SET body_id = ? "
                "WHERE id = ? AND role = 'body' AND body_id IS NULL AND revoked_at IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM tokens AS other WHERE other.body_id = ?)",
                (body_id, token_id, body_id),
            ) as cursor:
                bound = cursor.rowcount == 1
            if bound:
                await self._log(conn, log)
            async with conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)) as cursor:
                row = await cursor.fetchone()
        return None if row is None else self._token(row)

    async def rebind_body(
        self, body_id: str, token_id: str, *, at: datetime, log: LogEntry, revoke_log: LogEntry
    ) -> Rebinding:
        async with self._write() as conn:
            async with conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)) as cursor:
                row = await cursor.fetchone()
            token = None if row is None else self._token(row)
            async with conn.execute("SELECT * FROM tokens WHERE body_id = ?", (body_id,)) as cursor:
                held_by = [self._token(r) for r in await cursor.fetchall()]
            if (refusal := rebind_refusal(token, body_id, held_by)) is not None:
                raise refusal
            assert token is not None
            async with conn.execute(
                "SELECT * FROM tokens WHERE body_id = ? AND revoked_at IS NULL AND id != ?", (body_id, token_id)
            ) as cursor:
                held = await cursor.fetchone()
            holder = None if held is None else self._token(held)
            if holder is not None:
                # First: a body is held by one live token at a time (a unique index says so too).
                await conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ?", (iso(at), holder.id))
                await self._log(conn, replace(revoke_log, target=holder.id))
            await conn.execute("UPDATE tokens SET body_id = ? WHERE id = ?", (body_id, token_id))
            await conn.execute("UPDATE bodies SET verify_key = NULL WHERE body_id = ?", (body_id,))
            await self._log(conn, log)
        return Rebinding(token=replace(token, body_id=body_id), previous=holder)

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

    # -- the log ---------------------------------------------------------------------------

    async def append_log(self, entry: LogEntry) -> None:
        async with self._write() as conn:
            await self._log(conn, entry)

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

    _note_synced = True
    """Whether a kill's note is synced (under power-loss durability) before its commit."""

    async def note_kill(self, state: KillState, log: LogEntry) -> None:
        """Note a kill beside the database before it is published, ahead of its commit (`_kill_note`): a brain that
        dies before `set_kill_state` commits it commits it as it opens again. Written here, on the event loop (a
        few hundred bytes into the page cache, no sync: a process's crash keeps them), so the publication waits for
        no disk; `set_kill_state` syncs it first, under power-loss durability."""
        _kill_note.write(_kill_note.note_path(self._path), state, log, sync=False)

    async def _replay_kill_note(self) -> None:
        """As the engine opens: the kill noted ahead of a commit that never came is committed now."""
        path = _kill_note.note_path(self._path)
        noted = await anyio.to_thread.run_sync(_kill_note.read, path)
        if noted is not None and _kill_note.pending(noted[0], await self.kill_state()):
            await self.set_kill_state(*noted)
            logger.warning("the brain stopped before a kill's commit: the kill noted ahead of it is committed now")
        await anyio.to_thread.run_sync(_kill_note.clear, path)  # (spent, whichever way: see `clear`)
        await anyio.to_thread.run_sync(_kill_note.prepare, path)

    async def set_kill_state(self, state: KillState, log: LogEntry) -> None:
        note = _kill_note.note_path(self._path) if state.engaged and self._note_synced else None

        def job(conn: sqlite3.Connection) -> None:
            # One job on the writer's thread, queued where the kill arrived: a claim queued after it reads it in its
            # own statement (a hop of its own for the note's sync would let later writers ahead of the kill).
            if note is not None:
                # (the kill's note, written as it was published: synced before the commit, so before the answer)
                try:
                    _kill_note.sync(note)
                except OSError as exc:  # (the commit decides: it fails too on a failing disk, and says so)
                    logger.error("the kill's note could not be synced (%s); the kill is committed all the same", exc)
            conn.execute(
                "UPDATE kill_state SET engaged = ?, reason = ?, by = ?, at = ? WHERE id = 1",
                (int(state.engaged), state.reason, state.by, None if state.at is None else iso(state.at)),
            )
            self._log_now(conn, log)

        await self._write_job(job)
        if state.engaged:  # (committed: the note is spent; a truncate, no sync)
            try:
                _kill_note.clear(_kill_note.note_path(self._path))
            except OSError as exc:  # (the kill stands; the next open empties a spent note)
                logger.error("the kill's spent note could not be emptied (%s)", exc)

    async def upsert_body(self, body: BodyRecord, *, key_log: LogEntry | None = None) -> None:
        async with self._write() as conn:
            async with conn.execute("SELECT verify_key FROM bodies WHERE body_id = ?", (body.body_id,)) as cursor:
                row = await cursor.fetchone()
            kept = None if row is None else row[0]
            key_is_new = body_key_change(body.body_id, kept, body.verify_key)
            await conn.execute(
                "INSERT INTO bodies (body_id, workspace, hostname, version, registered_at, last_heartbeat, verify_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (body_id) DO UPDATE SET workspace = excluded.workspace, "
                "hostname = excluded.hostname, version = excluded.version, last_heartbeat = excluded.last_heartbeat, "
                "left_at = NULL, verify_key = COALESCE(bodies.verify_key, excluded.verify_key)",
                (
                    body.body_id,
                    body.workspace,
                    body.hostname,
                    body.version,
                    iso(body.registered_at),
                    iso(body.last_heartbeat),
                    body.verify_key,
                ),
            )
            if key_is_new and key_log is not None:
                await self._log(conn, key_log)

    async def touch_body(self, body_id: str, at: datetime) -> bool:
        async with (
            self._write() as conn,
            conn.execute(
                "UPDATE bodies SET last_heartbeat = ? WHERE body_id = ? AND left_at IS NULL", (iso(at), body_id)
            ) as cursor,
        ):
            return cursor.rowcount == 1

    async def deregister_body(self, body_id: str, *, at: datetime, log: LogEntry) -> bool:
        async with self._write() as conn:
            async with conn.execute("UPDATE bodies SET left_at = ? WHERE body_id = ?", (iso(at), body_id)) as cursor:
                known = cursor.rowcount == 1
            if known:
                await self._log(conn, log)
        return known

    async def bodies(self) -> list[BodyRecord]:
        return [self._body(row) for row in await self._rows("SELECT * FROM bodies ORDER BY body_id")]

    @staticmethod
    def _body(row: sqlite3.Row) -> BodyRecord:
        return BodyRecord(
            body_id=row["body_id"],
            workspace=row["workspace"],
            hostname=row["hostname"],
            version=row["version"],
            registered_at=datetime.fromisoformat(row["registered_at"]),
            last_heartbeat=datetime.fromisoformat(row["last_heartbeat"]),
            left_at=parse_time(row["left_at"]),
            verify_key=row["verify_key"],
        )

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
                        (body_id, e.seq, e.id, e.ts, e.mac, canonical(e.model_dump(mode="json")), received)
                        for e in plan.new
                    ],
                )
                new = {e.id: e for e in plan.new if e.kind == "tool_call"}  # (a re-run a verification may wait for)
                if new:
                    await self._settle_new(conn, at or datetime.now(UTC), new)
        return AuditAppend(stored_through=plan.through(head), problem=plan.problem, stored=len(plan.new))

    async def audit_events(self, body_id: str, *, after_seq: int = 0, limit: int = 1000) -> list[AuditEvent]:
        rows = await self._rows(
            "SELECT event FROM audit_events WHERE body_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (body_id, after_seq, limit),
        )
        return [AuditEvent.model_validate_json(row["event"]) for row in rows]

    async def refused_events(self, agent: str) -> list[AuditEvent]:
        rows = await self._rows(  # (the partial index audit_events_refused, schema v23)
            "SELECT event FROM audit_events WHERE json_extract(event, '$.outcome') = 'refused' "
            "AND json_extract(event, '$.agent') = ? ORDER BY body_id, seq",
            (agent,),
        )
        return [AuditEvent.model_validate_json(row["event"]) for row in rows]

    async def rewrite_audit_events(
        self, rewrite: Callable[[str], str | None], log: LogEntry
    ) -> tuple[int, dict[str, int]]:
        read = 0
        rewritten: dict[str, int] = {}
        async with self._lock:  # (set before the transaction: this connection's writes zero what they free)
            await self._writer.execute("PRAGMA secure_delete = ON")
        async with self._write() as conn:
            after: tuple[str, int] = ("", 0)
            while True:  # (in pages, one transaction: all of it, or nothing)
                rows = list(
                    await conn.execute_fetchall(
                        "SELECT body_id, seq, event FROM audit_events WHERE (body_id, seq) > (?, ?) "
                        "ORDER BY body_id, seq LIMIT 1000",
                        after,
                    )
                )
                if not rows:
                    break
                changed = [(new, r[0], r[1]) for r in rows if (new := rewrite(str(r[2]))) is not None]
                if changed:
                    await conn.execute("UPDATE audit_rewrite_gate SET open = 1 WHERE id = 1")
                    await conn.executemany("UPDATE audit_events SET event = ? WHERE body_id = ? AND seq = ?", changed)
                    await conn.execute("UPDATE audit_rewrite_gate SET open = 0 WHERE id = 1")
                    for _new, body_id, _seq in changed:
                        rewritten[str(body_id)] = rewritten.get(str(body_id), 0) + 1
                read += len(rows)
                last = rows[-1]
                after = (str(last[0]), int(last[1]))
            if rewritten:
                await self._log(conn, replace(log, detail={**log.detail, "rewritten": rewritten, "events": read}))
        if rewritten:
            async with self._lock:  # (the old texts' pages out of the WAL too)
                await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return read, rewritten

    async def rewrite_records(self, change: RecordRewrite, log: LogEntry) -> dict[str, int]:
        counts: dict[str, int] = {}
        async with self._lock:  # (set before the transaction: this connection's writes zero what they free)
            await self._writer.execute("PRAGMA secure_delete = ON")
        async with self._write() as conn:
            await conn.execute("UPDATE audit_rewrite_gate SET open = 1 WHERE id = 1")
            counts["tasks"], counts["task_events"] = await self._rewrite_tasks(conn, change.task)
            decisions = 0
            for decision_id, text in await conn.execute_fetchall("SELECT id, decision FROM decisions"):
                new = change.decision(Decision.model_validate_json(text))
                if new is not None:
                    await conn.execute(
                        "UPDATE decisions SET decision = ? WHERE id = ?", (new.model_dump_json(), decision_id)
                    )
                    decisions += 1
            counts["decisions"] = decisions
            counts["compensations"] = await self._rewrite_compensations(conn, change.task)
            counts["escalations"] = await self._rewrite_escalations(conn, change.escalation)
            entries = 0
            for entry_id, reason, detail in await conn.execute_fetchall("SELECT id, reason, detail FROM brain_log"):
                new_reason = change.reason(str(reason))
                was = json.loads(detail)
                new_detail = change.log_detail(was)
                # (only what changed is set in the stored JSON: brain schema v25 lets `detail.error` alone change)
                paths = (
                    [] if new_detail is None else [key for key, value in new_detail.items() if was.get(key) != value]
                )
                if new_reason is None and not paths:
                    continue
                changes = [(f'$."{key}"', cast(dict[str, Any], new_detail)[key]) for key in paths]
                setting = "detail" if not changes else f"json_set(detail{', ?, ?' * len(changes)})"
                await conn.execute(
                    f"UPDATE brain_log SET reason = ?, detail = {setting} WHERE id = ?",
                    (
                        str(reason) if new_reason is None else new_reason,
                        *(part for change_ in changes for part in change_),
                        int(entry_id),
                    ),
                )
                entries += 1
            counts["log"] = entries
            kill = [
                (new,)
                for (reason,) in await conn.execute_fetchall("SELECT reason FROM kill_state WHERE reason IS NOT NULL")
                if (new := change.reason(str(reason))) is not None
            ]
            await conn.executemany("UPDATE kill_state SET reason = ? WHERE id = 1", kill)
            counts["kill"] = len(kill)
            pauses: list[tuple[str, str]] = []
            for agent, text in await conn.execute_fetchall("SELECT agent, pause FROM agent_pauses"):
                pause = AgentPause.model_validate_json(text)
                if (new := change.reason(pause.reason)) is not None:
                    pauses.append((pause.model_copy(update={"reason": new}).model_dump_json(), agent))
            await conn.executemany("UPDATE agent_pauses SET pause = ? WHERE agent = ?", pauses)
            counts["pauses"] = len(pauses)
            counts["readiness_reports"], counts["readiness_overrides"] = await self._rewrite_readiness(
                conn, change.readiness_report, change.readiness_override
            )
            bodies = [
                (new.workspace, new.hostname, new.body_id)
                for row in await conn.execute_fetchall("SELECT * FROM bodies")
                if (new := change.body(self._body(row))) is not None
            ]
            await conn.executemany("UPDATE bodies SET workspace = ?, hostname = ? WHERE body_id = ?", bodies)
            counts["bodies"] = len(bodies)
            counts["answer_tokens"] = await self._rewrite_answer_targets(conn, change.reason)
            keys: list[tuple[str, str, str, str]] = []  # (each row's key and request digest, keyed where still not)
            for token_id, key, digest in await conn.execute_fetchall(
                "SELECT token_id, key, request_sha256 FROM task_keys"
            ):
                new_key, new_digest = change.task_key(str(token_id), str(key)), change.task_request(str(digest))
                if new_key is not None or new_digest is not None:
                    keys.append((new_key or str(key), new_digest or str(digest), str(token_id), str(key)))
            await conn.executemany(
                "UPDATE task_keys SET key = ?, request_sha256 = ? WHERE token_id = ? AND key = ?", keys
            )
            counts["task_keys"] = len(keys)
            await conn.execute("UPDATE audit_rewrite_gate SET open = 0 WHERE id = 1")
            counts = {kind: n for kind, n in counts.items() if n}
            if counts:
                await self._log(conn, replace(log, detail={**log.detail, "records": counts}))
        if counts:
            async with self._lock:  # (the old texts' pages out of the WAL too)
                await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            await self._forget_parsed()  # (and out of what earlier scans parsed)
        return counts

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

    async def replace_decision(
        self, decision: Decision, *, expected: DecisionState, log: LogEntry, previous: Decision | None = None
    ) -> DecisionReplaced | None:
        async with self._write() as conn:
            if previous is not None:
                async with conn.execute("SELECT decision FROM decisions WHERE id = ?", (decision.id,)) as cursor:
                    row = await cursor.fetchone()
                if row is None or decision_mark(Decision.model_validate_json(row[0])) != decision_mark(previous):
                    return None
            async with conn.execute(
                "UPDATE decisions SET state = ?, decision = ? WHERE id = ? AND state = ?",
                (decision.state, decision.model_dump_json(), decision.id, expected),
            ) as cursor:
                changed = cursor.rowcount == 1
            if not changed:
                return None
            await self._log(conn, log)
            return DecisionReplaced(ended=await self._end_parked(conn, decision, log))

    async def due_decisions(self, now: datetime) -> list[Decision]:
        rows = await self._rows(
            "SELECT decision FROM decisions WHERE state = 'pending' AND deadline <= ? ORDER BY deadline", (iso(now),)
        )
        return [Decision.model_validate_json(row["decision"]) for row in rows]

    async def pending_decisions(self) -> list[Decision]:
        rows = await self._rows("SELECT decision FROM decisions WHERE state = 'pending' ORDER BY deadline, id")
        return [Decision.model_validate_json(row["decision"]) for row in rows]

    async def count_pending_decisions(self, now: datetime) -> int:
        row = await self._row("SELECT COUNT(*) FROM decisions WHERE state = 'pending' AND deadline > ?", (iso(now),))
        return 0 if row is None else int(row[0])


async def _check_whole(conn: aiosqlite.Connection, path: Path) -> None:
    """`StateBroken` naming the first problem `PRAGMA quick_check` finds (a truncated or damaged file)."""
    rows = await conn.execute_fetchall("PRAGMA quick_check(1)")
    verdict = str(next(iter(rows))[0]) if rows else "no verdict"
    if verdict != "ok":
        raise StateBroken(f"the brain database {path} is unusable: it is malformed ({' '.join(verdict.split())})")


def _location_problem(location: str) -> str | None:
    if not Path(location).is_absolute():
        return "the path must be absolute: sqlite:///ABSOLUTE/PATH (three slashes)"
    if location.endswith("/"):
        return "the path names a directory: sqlite:///ABSOLUTE/PATH names the database file"
    return None


async def _open_location(location: str, *, durability: Durability, create: bool) -> StateEngine:
    path = Path(location)
    if not create and not path.exists():
        raise NoDatabase(f"no brain database at {path}")
    return await SqliteStateEngine.open(path, durability=durability)


SQLITE = EngineKind(form="sqlite:///ABSOLUTE/PATH", durable=True, problem=_location_problem, open=_open_location)
"""`sqlite:///ABSOLUTE/PATH`: the file, created (with its directory) and migrated on first open."""
