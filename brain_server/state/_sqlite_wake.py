"""The SQLite engine's part for waking humans: escalations, answer tokens and the interactions seen lately."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import cast

import aiosqlite

from ..wake.records import OPEN_STATES, AnswerToken, AnswerVerb, Escalation
from ._records import LogEntry
from ._rules import iso, parse_time
from ._sqlite_db import SqliteDatabase


class SqliteWake(SqliteDatabase):
    """`EscalationStore`, `AnswerTokenStore` and `InteractionStore` in `escalations`, `answer_tokens` and
    `interactions_seen`."""

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

    async def escalations(self) -> list[Escalation]:
        rows = await self._rows("SELECT escalation FROM escalations ORDER BY created_at, id")
        return [Escalation.model_validate_json(row["escalation"]) for row in rows]

    @staticmethod
    async def _rewrite_escalations(
        conn: aiosqlite.Connection, change: Callable[[Escalation], Escalation | None]
    ) -> int:
        """Each escalation record through `change`, in the caller's transaction (its version kept: a rewrite is not
        a step of its ladder); the number changed."""
        rows = await conn.execute_fetchall("SELECT id, escalation FROM escalations")
        changed = 0
        for escalation_id, text in rows:
            new = change(Escalation.model_validate_json(text))
            if new is not None:
                await conn.execute(
                    "UPDATE escalations SET escalation = ? WHERE id = ?", (new.model_dump_json(), escalation_id)
                )
                changed += 1
        return changed

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

    async def answer_tokens(self) -> list[AnswerToken]:
        rows = await self._rows("SELECT * FROM answer_tokens ORDER BY created_at, rowid")
        return [self._answer_token(row) for row in rows]

    @staticmethod
    async def _rewrite_answer_targets(conn: aiosqlite.Connection, change: Callable[[str], str | None]) -> int:
        """Each answer link's recipient through `change`, in the caller's transaction; the number changed."""
        rows = await conn.execute_fetchall("SELECT token_hash, target FROM answer_tokens")
        changed = [(new, token_hash) for token_hash, target in rows if (new := change(str(target))) is not None]
        await conn.executemany("UPDATE answer_tokens SET target = ? WHERE token_hash = ?", changed)
        return len(changed)

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
