"""The SQLite engine's two connections and its write transaction, which every part of the engine writes through.

Writes go through one connection, in `BEGIN IMMEDIATE` transactions serialised by a lock in
this process and by SQLite's write lock across processes (the CLI creating a token while the
daemon runs); reads use the other, which sees only committed data. A write transaction is
shielded from cancellation, so a disconnecting client or a shutdown never leaves one half-done:
it commits whole or rolls back whole.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncGenerator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from ._records import LogEntry
from ._rules import iso


def canonical(value: Any) -> str:
    """JSON as stored: sorted keys, no spaces, so that equal values are equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


async def connect(path: Path, synchronous: str) -> aiosqlite.Connection:
    """A connection in WAL mode, in autocommit (transactions are explicit), waiting up to 30 s for a lock."""
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=30)
    conn.row_factory = sqlite3.Row
    await conn.execute("PRAGMA busy_timeout = 30000")
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


class SqliteDatabase:
    """A writer and a reader on one file, and the lock that serialises this process's writers."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._lock = anyio.Lock()

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
                canonical(entry.detail),
            ),
        )
