"""The SQLite engine's two connections and its write transaction, which every part of the engine writes through.

Writes go through one connection, in `BEGIN IMMEDIATE` transactions serialised by a lock in
this process and by SQLite's write lock across processes (the CLI creating a token while the
daemon runs); reads use the other, which sees only committed data. A write transaction is
shielded from cancellation, so a disconnecting client or a shutdown never leaves one half-done:
it commits whole or rolls back whole. Writers queued behind one another share a transaction (group
commit: each in its own savepoint, one commit and one sync for all), and each returns only once it is
committed.

A write that is several statements with Python between them (a claim: find the task, run the state machine on it,
store it, log it) can run whole on the writer connection's thread (`_write_job`): one round trip to that thread
while the write lock is held, instead of one per statement.

Reads that scan many rows and parse each (the task list, usage records, the KPIs' inputs: what an open dashboard
polls) go through a third connection, the scanner (`_scan`), and are parsed on its thread: the reads every request
makes (its token, the kill state) never queue behind one of them on the reader's thread, and the event loop never
spends a scan's parsing (a kill fans out while a dashboard's KPIs are read).

Storage that fails (a malformed or truncated file, a full disk, a failed read or write, the file
deleted or replaced under the engine) is `StateBroken`, for good: the first such error is kept
and every later call raises it, so a broken database is never half-used (`unusable` decides
what counts; a busy lock or a constraint is an ordinary error).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite
import anyio
import anyio.to_thread

from ..canary import bucket
from ..exceptions import StateBroken
from ._parsed import Parsed
from ._records import LogEntry
from ._rules import canonical, iso

_UNUSABLE = {
    "SQLITE_CORRUPT": "it is malformed",
    "SQLITE_NOTADB": "it is not a SQLite database",
    "SQLITE_FULL": "the disk is full",
    "SQLITE_IOERR": "reading or writing it failed",
    "SQLITE_CANTOPEN": "it cannot be opened",
    "SQLITE_READONLY": "it cannot be written",
    "SQLITE_PERM": "permission denied",
    "SQLITE_NOMEM": "out of memory",
}
"""What an SQLite error means for the file, by its result code (extended codes share their primary code's prefix)."""


def unusable(exc: BaseException, path: Path) -> StateBroken | None:
    """`exc` as the one-line reason the database at `path` cannot be used, or None if it says nothing about the
    storage (a busy lock, a constraint, a bug in a query)."""
    if isinstance(exc, StateBroken):
        return exc
    if isinstance(exc, OSError):
        return StateBroken(f"the brain database {path} is unusable: {exc.strerror or exc}")
    if not isinstance(exc, sqlite3.Error):
        return None
    name = str(getattr(exc, "sqlite_errorname", ""))
    why = next((text for prefix, text in _UNUSABLE.items() if name.startswith(prefix)), None)
    if why is None and name == "SQLITE_ERROR" and str(exc).startswith(("no such table", "no such column")):
        why = "its schema is damaged"
    if why is None:
        return None
    detail = " ".join(str(exc).split())
    return StateBroken(f"the brain database {path} is unusable: {why} ({detail})")


async def connect(path: Path, synchronous: str) -> aiosqlite.Connection:
    """A connection in WAL mode, in autocommit (transactions are explicit), waiting up to 30 s for a lock.

    Closed again if setting it up fails (its thread would otherwise keep the process from exiting).
    """
    # A file that cannot be opened at all fails here, in a plain thread: aiosqlite, failing to open, leaves its
    # own thread to finish after the caller has gone (and to report to an event loop that may be closed by then).
    await anyio.to_thread.run_sync(_can_open, path)
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=30)
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA busy_timeout = 30000")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute(f"PRAGMA synchronous = {synchronous}")
        await conn.create_function(  # pyright: ignore[reportUnknownMemberType]
            "swarm_bucket", 1, bucket, deterministic=True
        )  # (a rollout's canary share, by task id)
    except BaseException:
        await close_quietly(conn)
        raise
    return conn


T = TypeVar("T")


def on_thread(conn: aiosqlite.Connection, job: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
    """Run `job` on `conn`'s own thread with its sqlite3 connection: one round trip, whatever `job` executes.

    aiosqlite has no public call for this; its `_execute` (which every public call goes through) and `_conn` are
    used as they are in the version `uv.lock` pins (tests/brain/state/test_write_job.py fails if they change).
    """
    execute = conn._execute  # pyright: ignore[reportPrivateUsage, reportUnknownMemberType, reportUnknownVariableType]
    return cast(Callable[..., Awaitable[T]], execute)(job, conn._conn)  # pyright: ignore[reportPrivateUsage]


def _savepointed(job: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    """`job` inside its own savepoint, on the writer's thread: rolled back to it if `job` raises (see `_write`)."""
    conn.execute("SAVEPOINT swarm_write")
    try:
        result = job(conn)
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK TO swarm_write")
            conn.execute("RELEASE swarm_write")
        raise
    conn.execute("RELEASE swarm_write")
    return result


def _can_open(path: Path) -> None:
    sqlite3.connect(path).close()


async def close_quietly(conn: aiosqlite.Connection) -> None:
    """Close a connection whatever state its file is in, even while being cancelled."""
    with anyio.CancelScope(shield=True), contextlib.suppress(sqlite3.Error, ValueError):
        await conn.close()


_MAX_BATCH = 64
"""Writers that share one transaction at most (a bound on how long the first of them waits for its commit)."""


@dataclass(eq=False)
class _Batch:
    """The open transaction writers share: how many did their work in it, and whether it was lost."""

    members: int = 0
    lost: BaseException | None = None
    committed: anyio.Event = field(default_factory=anyio.Event)


def file_identity(path: Path) -> tuple[int, int]:
    """The device and inode of the database file: another pair later means it was replaced."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


class SqliteDatabase:
    """A writer and a reader on one file, and the lock that serialises this process's writers."""

    def __init__(
        self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, scanner: aiosqlite.Connection, *, path: Path
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._scanner = scanner
        self._parsed: list[Parsed[Any, Any, Any]] = []
        """What scans parsed, kept for the next scan (`_parsed.Parsed`): each part of the engine adds its own."""
        self._lock = anyio.Lock()
        self._batch: _Batch | None = None
        self._path = path
        self._identity = file_identity(path)
        self._broken: StateBroken | None = None
        self._broken_event = anyio.Event()

    @property
    def broken(self) -> StateBroken | None:
        return self._broken

    async def wait_broken(self) -> StateBroken:
        await self._broken_event.wait()
        assert self._broken is not None
        return self._broken

    def _check(self) -> None:
        """Refuse to use a database found broken, or whose file is gone or replaced (its writes would be lost)."""
        if self._broken is not None:
            raise self._broken
        try:
            same = file_identity(self._path) == self._identity
        except FileNotFoundError:
            raise self._fail(StateBroken(f"the brain database {self._path} was deleted while in use")) from None
        except OSError as exc:
            raise self._fail(unusable(exc, self._path) or StateBroken(str(exc))) from None
        if not same:
            raise self._fail(StateBroken(f"the brain database {self._path} was replaced while in use"))

    def _fail(self, broken: StateBroken) -> StateBroken:
        if self._broken is None:
            self._broken = broken
            self._broken_event.set()
        return self._broken

    def _broken_by(self, exc: BaseException) -> StateBroken | None:
        found = unusable(exc, self._path)
        return None if found is None else self._fail(found)

    @asynccontextmanager
    async def _write(self) -> AsyncGenerator[aiosqlite.Connection]:
        """One writer's work, in a transaction it may share with the writers queued behind it (group commit).

        Each writer's work runs alone on the connection, inside its own savepoint: work that raises is rolled back
        to its savepoint (the others' stays). The writer that finds no one queued behind it (or the batch full)
        commits the transaction for everyone in it; a writer returns only once its work is committed, so a reply
        is never sent before its write is durable, and one sync carries a burst of concurrent writes.
        """
        async with self._member():
            await self._writer.execute("SAVEPOINT swarm_write")
            try:
                yield self._writer
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await self._writer.execute("ROLLBACK TO swarm_write")
                    await self._writer.execute("RELEASE swarm_write")
                raise
            await self._writer.execute("RELEASE swarm_write")

    async def _write_job(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """`_write` for work that runs whole on the writer's thread (`job`, given the sqlite3 connection): its
        savepoint, its statements and its release in one round trip. `job` must not block on the event loop."""
        async with self._member():
            return await on_thread(self._writer, partial(_savepointed, job))

    @asynccontextmanager
    async def _member(self) -> AsyncGenerator[None]:
        """A place in the shared write transaction (`_write`): the lock held while inside, the commit awaited on
        the way out."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                self._check()
                batch = self._batch
                try:
                    if batch is None:
                        await self._writer.execute("BEGIN IMMEDIATE")
                        batch = self._batch = _Batch()
                    batch.members += 1
                    yield
                except (sqlite3.Error, OSError) as exc:
                    broken = self._broken_by(exc)
                    if broken is None:
                        raise
                    raise broken from exc
                finally:
                    if batch is not None:
                        if batch.lost is None and (self._broken is not None or not self._writer.in_transaction):
                            # (SQLite rolled the whole transaction back by itself: a full disk, a failed write.)
                            batch.lost = self._broken or StateBroken(
                                f"a write to the brain database {self._path} was rolled back"
                            )
                        if (
                            batch.lost is not None
                            or batch.members >= _MAX_BATCH
                            or not self._lock.statistics().tasks_waiting
                        ):
                            await self._end(batch)
            assert batch is not None, "a writer that got this far joined a batch"
            await batch.committed.wait()
            if batch.lost is not None:
                raise batch.lost

    async def _end(self, batch: _Batch) -> None:
        """Commit `batch` (or roll it back, when a member's failure lost it) and wake its members."""
        self._batch = None
        try:
            if batch.lost is None:
                await self._writer.execute("COMMIT")
            else:
                with contextlib.suppress(sqlite3.Error):
                    await self._writer.execute("ROLLBACK")
        except (sqlite3.Error, OSError) as exc:
            batch.lost = self._broken_by(exc) or exc
            with contextlib.suppress(sqlite3.Error):
                await self._writer.execute("ROLLBACK")
        finally:
            batch.committed.set()

    async def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        self._check()
        try:
            return list(await self._reader.execute_fetchall(sql, tuple(params)))
        except (sqlite3.Error, OSError) as exc:
            broken = self._broken_by(exc)
            if broken is None:
                raise
            raise broken from exc

    async def _scan(self, sql: str, params: Iterable[Any], parse: Callable[[list[sqlite3.Row]], T]) -> T:
        """`parse` of the rows `sql` selects, read on the scanner's connection and parsed on its thread (one
        snapshot, one round trip): for reads of many rows (see the module docstring). `parse` must not touch the
        event loop."""
        self._check()
        values = tuple(params)

        def job(conn: sqlite3.Connection) -> T:
            return parse(conn.execute(sql, values).fetchall())

        try:
            return await on_thread(self._scanner, job)
        except (sqlite3.Error, OSError) as exc:
            broken = self._broken_by(exc)
            if broken is None:
                raise
            raise broken from exc

    async def _forget_parsed(self) -> None:
        """Forget what earlier scans parsed (after a privacy rewrite), on the scanner's thread (where it is used)."""

        def forget(_conn: sqlite3.Connection) -> None:
            for parsed in self._parsed:
                parsed.clear()

        await on_thread(self._scanner, forget)

    async def _row(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = await self._rows(sql, params)
        return rows[0] if rows else None

    @staticmethod
    async def _log(conn: aiosqlite.Connection, entry: LogEntry) -> None:
        await conn.execute(_LOG_INSERT, _log_values(entry))

    @staticmethod
    def _log_now(conn: sqlite3.Connection, entry: LogEntry) -> None:
        """`_log` from a job on the writer's thread (`_write_job`)."""
        conn.execute(_LOG_INSERT, _log_values(entry))


_LOG_INSERT = (
    "INSERT INTO brain_log (at, action, by, token_id, role, reason, target, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _log_values(entry: LogEntry) -> tuple[Any, ...]:
    return (
        iso(entry.at),
        entry.action,
        entry.by,
        entry.token_id,
        entry.role,
        entry.reason,
        entry.target,
        canonical(entry.detail),
    )
