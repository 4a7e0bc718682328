"""The SQLite engine's dashboard sessions (`dashboard_sessions`, schema v14)."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from ._records import LogEntry
from ._rules import iso, parse_time
from ._sessions import SessionRecord
from ._sqlite_db import SqliteDatabase


class SqliteSessions(SqliteDatabase):
    async def add_session(self, record: SessionRecord, log: LogEntry) -> None:
        async with self._write() as conn:
            await conn.execute(
                "INSERT INTO dashboard_sessions (session_hash, token_hash, token_id, csrf, created_at, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.session_hash,
                    record.token_hash,
                    record.token_id,
                    record.csrf,
                    iso(record.created_at),
                    iso(record.last_seen),
                ),
            )
            await self._log(conn, log)

    async def session_by_hash(self, session_hash: str) -> SessionRecord | None:
        row = await self._row("SELECT * FROM dashboard_sessions WHERE session_hash = ?", (session_hash,))
        if row is None:
            return None
        return SessionRecord(
            session_hash=row["session_hash"],
            token_hash=row["token_hash"],
            token_id=row["token_id"],
            csrf=row["csrf"],
            created_at=cast(datetime, parse_time(row["created_at"])),
            last_seen=cast(datetime, parse_time(row["last_seen"])),
        )

    async def touch_session(self, session_hash: str, at: datetime) -> None:
        async with self._write() as conn:
            await conn.execute(
                "UPDATE dashboard_sessions SET last_seen = ? WHERE session_hash = ?", (iso(at), session_hash)
            )

    async def end_session(self, session_hash: str, log: LogEntry) -> bool:
        async with self._write() as conn:
            cursor = await conn.execute("DELETE FROM dashboard_sessions WHERE session_hash = ?", (session_hash,))
            if cursor.rowcount == 0:
                return False
            await self._log(conn, log)
        return True

    async def prune_sessions(self, *, idle_before: datetime, created_before: datetime) -> int:
        async with self._write() as conn:
            cursor = await conn.execute(
                "DELETE FROM dashboard_sessions WHERE last_seen < ? OR created_at < ?",
                (iso(idle_before), iso(created_before)),
            )
            return cursor.rowcount
