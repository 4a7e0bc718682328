"""Point reads on the event loop's thread (`SqliteDatabase._point`: a token by its hash, an agent's token, the lease
probe): they see what another process committed at once (a revocation by the CLI refuses the very next request),
never wait for a lock (a busy database sends the read to the reader's thread), and write nothing."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from brain_server import SqliteStateEngine

from .records import LATER, entry, token_record

pytestmark = [pytest.mark.anyio, pytest.mark.sqlite]


async def test_a_token_revoked_by_another_process_is_seen_revoked_by_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "brain.db"
    state = await SqliteStateEngine.open(path)
    cli = await SqliteStateEngine.open(path)  # (another engine on the file: the CLI while the brain serves)
    reader = state._reader  # pyright: ignore[reportPrivateUsage]
    original = reader.execute_fetchall  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    hops: list[str] = []

    async def recording(sql: str, params: object = ()) -> object:
        hops.append(sql)
        return await original(sql, params)  # pyright: ignore[reportUnknownVariableType, reportArgumentType]

    reader.execute_fetchall = recording  # pyright: ignore[reportAttributeAccessIssue]
    try:
        await cli.add_token(replace(token_record(1), agent="worker"), entry("token_create"))
        found = await state.token_by_hash("hash_1")
        assert found is not None and found.revoked_at is None
        assert await state.has_agent_token("worker")
        await cli.revoke_token("tok_1", at=LATER, log=entry("token_revoke"))
        found = await state.token_by_hash("hash_1")
        assert found is not None and found.revoked_at == LATER, "the revocation was not seen by the next read"
        assert hops == [], f"point reads went to the reader's thread: {hops}"
    finally:
        await cli.close()
        await state.close()


class _BusyOnce:
    """The inline connection, answering its next read as SQLite does while another connection holds a lock it
    needs (SQLITE_BUSY: in WAL mode a reader meets it only during a recovery or a checkpoint's reset, which a test
    cannot hold open)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.refused: list[str] = []

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        if not self.refused:
            self.refused.append(sql)
            busy = sqlite3.OperationalError("database is locked")
            busy.sqlite_errorname = "SQLITE_BUSY"  # pyright: ignore[reportAttributeAccessIssue]
            raise busy
        return self.conn.execute(sql, params)


async def test_a_point_read_the_database_answers_busy_is_made_on_the_readers_thread(tmp_path: Path) -> None:
    """The event loop never waits for a lock: a busy answer sends the read to the reader's thread (which waits for
    the lock as every other read does), and the answer is the same."""
    state = await SqliteStateEngine.open(tmp_path / "brain.db")
    await state.add_token(token_record(1), entry("token_create"))
    inline = state._inline  # pyright: ignore[reportPrivateUsage]
    busy = _BusyOnce(inline)
    state._inline = busy  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue]
    reader = state._reader  # pyright: ignore[reportPrivateUsage]
    original = reader.execute_fetchall  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    threads: list[int] = []

    async def recording(sql: str, params: object = ()) -> object:
        threads.append(threading.get_ident())
        return await original(sql, params)  # pyright: ignore[reportUnknownVariableType, reportArgumentType]

    reader.execute_fetchall = recording  # pyright: ignore[reportAttributeAccessIssue]
    try:
        found = await state.token_by_hash("hash_1")
        assert found is not None and found.id == "tok_1"
        assert busy.refused and len(threads) == 1, "the busy read was not made again on the reader's thread"
        assert await state.token_by_hash("hash_1") == found
        assert len(threads) == 1, "a read the database did not refuse went to the reader's thread"
    finally:
        state._inline = inline  # pyright: ignore[reportPrivateUsage]
        await state.close()


async def test_the_point_read_connection_writes_nothing(tmp_path: Path) -> None:
    state = await SqliteStateEngine.open(tmp_path / "brain.db")
    try:
        inline = state._inline  # pyright: ignore[reportPrivateUsage]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            inline.execute("DELETE FROM tokens")
    finally:
        await state.close()
