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

A point read of a small table (by an index; the tokens by agent, a scan of a few rows) that every request or claim
makes (a token by its hash, whether an agent
has a token, whether a lease ran out) runs on the event loop's own thread, on a third, read-only connection
(`_point`): ~10-20 us of CPU there against ~90 us and two thread wake-ups for a round trip to the reader's thread.
It never waits for a lock (busy_timeout 0): a busy answer, rare in WAL mode, sends the read to the reader's thread
instead.

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

from shared_protocol.fileid import file_identity

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


def connect_inline(path: Path) -> sqlite3.Connection:
    """The read-only connection for point reads on the event loop's thread (`SqliteDatabase._point`): it never
    waits for a lock, and writes nothing."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


T = TypeVar("T")
P = TypeVar("P", bound=Parsed[Any, Any, Any])


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


@dataclass
class _Done:
    """What `_batched` did on the writer's thread."""

    result: object = None
    failed: BaseException | None = None
    """The job's error (its savepoint rolled back; the batch's other work stays)."""
    committed: bool = False
    commit_error: BaseException | None = None
    """The batch's COMMIT failed (rolled back whole: every member's work is lost)."""


def _batched(
    job: Callable[[sqlite3.Connection], object],
    conn: sqlite3.Connection,
    *,
    begin: bool,
    commit: Callable[[], bool],
) -> _Done:
    """On the writer's thread: `BEGIN IMMEDIATE` if `begin` (its failure raises: nothing is open), `job` in its
    savepoint (`_savepointed`), then `COMMIT` if `commit()` says no writer waits to share the transaction, whether
    or not the job failed (the batch's other work is committed all the same)."""
    if begin:
        conn.execute("BEGIN IMMEDIATE")
    done = _Done()
    try:
        done.result = _savepointed(job, conn)
    except BaseException as exc:  # noqa: BLE001 (raised again on the event loop, once the batch is settled)
        done.failed = exc
    if conn.in_transaction and commit():
        try:
            conn.execute("COMMIT")
            done.committed = True
        except (sqlite3.Error, OSError) as exc:
            done.commit_error = exc
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
    return done


def _can_open(path: Path) -> None:
    sqlite3.connect(path).close()


async def close_quietly(conn: aiosqlite.Connection) -> None:
    """Close a connection whatever state its file is in, even while being cancelled."""
    with anyio.CancelScope(shield=True), contextlib.suppress(sqlite3.Error, ValueError):
        await conn.close()


_MAX_BATCH = 64
"""Writers that share one transaction at most (a bound on how long the first of them waits for its commit)."""


class _CountedLock:
    """An `anyio.Lock` whose waiters are counted in a plain int (`waiting`), which the writer's thread reads when
    a job is done (`SqliteDatabase._write_job`) without touching the event loop's objects."""

    def __init__(self) -> None:
        self._lock = anyio.Lock()
        self.waiting = 0

    async def __aenter__(self) -> None:
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


@dataclass(eq=False)
class _Batch:
    """The open transaction writers share: how many did their work in it, and whether it was lost."""

    members: int = 0
    lost: BaseException | None = None
    committed: anyio.Event = field(default_factory=anyio.Event)


class SqliteDatabase:
    """A writer and a reader on one file (and a read-only connection for point reads on the event loop's thread),
    and the lock that serialises this process's writers."""

    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        scanner: aiosqlite.Connection,
        *,
        path: Path,
        inline: sqlite3.Connection,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._scanner = scanner
        self._inline = inline
        self._parsed: list[Parsed[Any, Any, Any]] = []
        """What scans parsed, kept for the next scan (`_parsed.Parsed`): each part of the engine adds its own."""
        self._lock = _CountedLock()
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
        """`_write` for work that runs whole on the writer's thread (`job`, given the sqlite3 connection): in one
        round trip to that thread, the transaction's `BEGIN IMMEDIATE` when `job` opens the batch, its savepoint,
        its statements, its release, and the batch's `COMMIT` when no writer waits behind it once the job is done
        (else the last of them commits, as in `_write`). `job` must not block on the event loop.

        A round trip costs the event loop ~60 us of CPU and two thread wake-ups (~100 us in all): a lone claim made
        three of them (begin, job, commit), now one."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                self._check()
                batch = self._batch
                begin = batch is None
                if batch is None:
                    batch = self._batch = _Batch()
                batch.members += 1
                members = batch.members

                def last() -> bool:
                    # Asked on the writer's thread once the job is done, as `_member` asks on the way out: a writer
                    # that came to wait for the lock meanwhile shares the transaction (one arriving just after it
                    # opens the next batch).
                    return members >= _MAX_BATCH or not self._lock.waiting

                try:
                    done = await on_thread(self._writer, partial(_batched, job, begin=begin, commit=last))
                except BaseException as exc:  # (its BEGIN failed, or the connection is gone)
                    if begin:  # (no transaction was opened: nothing to end)
                        self._batch = None
                        batch.committed.set()
                    else:
                        batch.lost = self._broken_by(exc) or exc
                        await self._end(batch)
                    broken = self._broken_by(exc)
                    if broken is None:
                        raise
                    raise broken from exc
                if done.commit_error is not None or done.committed:
                    self._batch = None
                    if done.commit_error is not None:
                        batch.lost = self._broken_by(done.commit_error) or done.commit_error
                    batch.committed.set()
                else:
                    if batch.lost is None and (self._broken is not None or not self._writer.in_transaction):
                        # (SQLite rolled the whole transaction back by itself: a full disk, a failed write.)
                        batch.lost = self._broken or StateBroken(
                            f"a write to the brain database {self._path} was rolled back"
                        )
                    if batch.lost is not None or batch.members >= _MAX_BATCH or not self._lock.waiting:
                        await self._end(batch)
            if done.failed is not None:
                failed = done.failed
                if isinstance(failed, (sqlite3.Error, OSError)) and (broken := self._broken_by(failed)) is not None:
                    raise broken from failed
                raise failed
            await batch.committed.wait()
            if batch.lost is not None:
                raise batch.lost
            return cast(T, done.result)
        raise AssertionError("a shielded scope swallows no exception")  # (for the type checker)

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
                        if batch.lost is not None or batch.members >= _MAX_BATCH or not self._lock.waiting:
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

    async def _point(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """`_rows` for a point read by an index of a small table, on the event loop's thread (see the module's
        docstring); on the reader's thread when the inline connection finds the database busy."""
        self._check()
        try:
            return self._inline.execute(sql, tuple(params)).fetchall()
        except (sqlite3.Error, OSError) as exc:  # (a malformed file is a DatabaseError, not an OperationalError)
            if str(getattr(exc, "sqlite_errorname", "")).startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                return await self._rows(sql, params)
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

    def _keep_parsed(self, parsed: P) -> P:
        """Register a part's `Parsed` cache (made lazily, on the scanner's thread) so `_forget_parsed` clears it."""
        self._parsed.append(parsed)
        return parsed

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
