"""The body's SQLite state file: one per workspace, WAL, versioned migrations.

It holds the audit chain (append-only, enforced by triggers), the undo records and their
pre-images, commands' output, a standalone body's decisions, and what the approval gate
remembers (decisions used up, files changed recently). The limits are not here
(`_limits_table.py`): a guarded call commits once, with its audit event. One connection,
committing with the configured durability (but for a transaction that asks not to be synced,
`write(synced=False)`: the audit store's, whose journal keeps each event durable until
`sync_wal()`); one, not two: in WAL mode a write by another connection empties this one's page cache.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from .exceptions import StateUnusable

Durability = Literal["power_loss", "crash"]

SqlValue = str | int | float | bytes | None


class Writes:
    """Statements to commit in one transaction with an audit event, as data rather than code: the event's
    journal record carries them, so that what a body replied about is replayed whole if it dies before
    committing it (`audit/_store.py`)."""

    __slots__ = ("rowcounts", "statements")

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[SqlValue, ...]]] = []
        self.rowcounts: list[int] = []
        """Rows each statement changed, once `run`."""

    def add(self, sql: str, params: tuple[SqlValue, ...] = ()) -> None:
        self.statements.append((sql, params))

    def run(self, conn: sqlite3.Connection) -> None:
        self.rowcounts = [conn.execute(sql, params).rowcount for sql, params in self.statements]


_MIGRATIONS: list[str] = [
    # v1
    """
    CREATE TABLE audit_events (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        ts TEXT NOT NULL,
        decision_id TEXT,
        body TEXT NOT NULL,
        mac TEXT NOT NULL
    );
    CREATE INDEX audit_events_id ON audit_events(id);
    CREATE INDEX audit_events_decision ON audit_events(decision_id);
    CREATE TABLE audit_prune_marks (through_seq INTEGER NOT NULL);
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        WHEN OLD.seq > (SELECT COALESCE(MAX(through_seq), 0) FROM audit_prune_marks)
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
    CREATE TRIGGER audit_prune_marks_no_update BEFORE UPDATE ON audit_prune_marks
        BEGIN SELECT RAISE(ABORT, 'audit_prune_marks is append-only'); END;
    CREATE TRIGGER audit_prune_marks_no_delete BEFORE DELETE ON audit_prune_marks
        BEGIN SELECT RAISE(ABORT, 'audit_prune_marks is append-only'); END;

    CREATE TABLE calls_by_second (second INTEGER PRIMARY KEY, calls INTEGER NOT NULL);
    CREATE TABLE usage_by_minute (
        minute INTEGER PRIMARY KEY,
        files INTEGER NOT NULL DEFAULT 0,
        api_calls INTEGER NOT NULL DEFAULT 0,
        usd REAL NOT NULL DEFAULT 0
    );
    CREATE TABLE reservations (
        id INTEGER PRIMARY KEY,
        second INTEGER NOT NULL,
        expires REAL NOT NULL,
        files INTEGER NOT NULL,
        api_calls INTEGER NOT NULL,
        usd REAL NOT NULL
    );
    CREATE TABLE breaker (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        state TEXT NOT NULL,
        opened_at REAL NOT NULL DEFAULT 0,
        consecutive_failures INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO breaker (id, state) VALUES (1, 'closed');
    CREATE TABLE breaches (ts REAL NOT NULL);

    CREATE TABLE undo_records (
        id INTEGER PRIMARY KEY,
        action_id TEXT NOT NULL,
        decision_id TEXT,
        step INTEGER NOT NULL,
        path TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL,
        undone_by TEXT
    );
    CREATE INDEX undo_records_action ON undo_records(action_id);
    CREATE INDEX undo_records_decision ON undo_records(decision_id);
    CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
    """,
    # v2: decisions of a standalone body (a linked body asks its brain)
    """
    CREATE TABLE decisions (id TEXT PRIMARY KEY, state TEXT NOT NULL, body TEXT NOT NULL);
    """,
    # v3: how far the audit chain has been shipped to the brain
    """
    CREATE TABLE brain_outbox (id INTEGER PRIMARY KEY CHECK (id = 1), shipped_through INTEGER NOT NULL);
    INSERT INTO brain_outbox (id, shipped_through) VALUES (1, 0);
    """,
    # v4: most calls name no decision; a partial index leaves their writes one page lighter each
    """
    DROP INDEX audit_events_decision;
    CREATE INDEX audit_events_decision ON audit_events(decision_id) WHERE decision_id IS NOT NULL;
    DROP INDEX undo_records_decision;
    CREATE INDEX undo_records_decision ON undo_records(decision_id) WHERE decision_id IS NOT NULL;
    """,
    # v5: the limits moved to a table every body of the workspace maps (`_limits_table.py`): a call's
    # budget check and settling cost no transaction of their own
    """
    DROP TABLE reservations;
    DROP TABLE calls_by_second;
    DROP TABLE usage_by_minute;
    DROP TABLE breaker;
    DROP TABLE breaches;
    """,
    # v6: commands' output, kept to be read back (`outputs.py`); `data` is NULL when it is in a file
    """
    CREATE TABLE command_outputs (
        action_id TEXT NOT NULL,
        stream TEXT NOT NULL,
        ts REAL NOT NULL,
        size INTEGER NOT NULL,
        printed INTEGER NOT NULL,
        truncated INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        data BLOB,
        PRIMARY KEY (action_id, stream)
    );
    CREATE INDEX command_outputs_ts ON command_outputs(ts);
    """,
    # v7: what the approval gate must remember across restarts and between processes (`approval.py`): the
    # decisions actions were carried out under (one action each), and the files changed within the window
    """
    CREATE TABLE decision_uses (decision_id TEXT PRIMARY KEY, action_id TEXT NOT NULL, at REAL NOT NULL);
    CREATE TABLE recent_changes (path TEXT PRIMARY KEY, at REAL NOT NULL);
    CREATE INDEX recent_changes_at ON recent_changes(at);
    """,
    # v8: a file an action is about to change is counted from when its approval is checked (the action's id marks
    # it until the action is carried out, and takes it back if it is not): processes racing see each other's
    """
    ALTER TABLE recent_changes ADD COLUMN action_id TEXT;
    CREATE INDEX recent_changes_action ON recent_changes(action_id) WHERE action_id IS NOT NULL;
    """,
    # v9: `swarm privacy migrate` encrypts the personal data of events written before `[privacy]`: an event's text
    # may change only inside the transaction of the `privacy.migrate` event that records it (which opens the gate
    # and closes it again), and never its seq, id, time, decision or MAC (the chain's links)
    """
    CREATE TABLE audit_rewrite_gate (id INTEGER PRIMARY KEY CHECK (id = 1), open INTEGER NOT NULL);
    INSERT INTO audit_rewrite_gate (id, open) VALUES (1, 0);
    DROP TRIGGER audit_events_no_update;
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        WHEN (SELECT open FROM audit_rewrite_gate) = 0 OR NEW.seq IS NOT OLD.seq OR NEW.id IS NOT OLD.id
            OR NEW.ts IS NOT OLD.ts OR NEW.decision_id IS NOT OLD.decision_id OR NEW.mac IS NOT OLD.mac
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
    """,
]


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    except BaseException:
        conn.close()
        raise
    return conn


class StateDB:
    """Connections to one workspace's `state.db`, with explicit write transactions."""

    def __init__(self, path: Path, *, durability: Durability = "power_loss") -> None:
        self.path = path
        self.durability: Durability = durability
        self.created = not path.exists()
        """The file did not exist: this opened it afresh (the audit store tells a new chain from a lost one)."""
        try:
            self.conn = _connect(path, "FULL" if durability == "power_loss" else "NORMAL")
        except sqlite3.DatabaseError as exc:
            raise StateUnusable.from_sqlite(path, exc) from None
        self._lock = threading.RLock()
        self._now_lock = threading.Lock()
        self._now_conn: sqlite3.Connection | None = None
        """`read_now`'s connection: read-only, never waiting (opened on first use)."""
        self._now_closed = False
        self._synchronous_full = durability == "power_loss"
        """What the connection's `synchronous` is now: `write(synced=False)` lowers it for its commit."""
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StateUnusable.from_sqlite(path, exc) from None
        except StateUnusable:
            self.conn.close()
            raise

    def _migrate(self) -> None:
        with self.read() as conn:
            current = int(conn.execute("PRAGMA user_version").fetchone()[0]) == len(_MIGRATIONS)
        if current:
            return  # (as at nearly every open: no write transaction, which would wait for any writer's)
        with self.write() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > len(_MIGRATIONS):
                # A newer swarm's file: its tables, triggers and rules are not this code's to use or to write.
                raise StateUnusable(
                    self.path,
                    f"written by a newer swarm (schema version {version}, this one knows {len(_MIGRATIONS)}): "
                    "upgrade swarm",
                )
            for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in _split(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    def write(self, *, synced: bool = True) -> _Transaction:
        """`with db.write() as conn`: a `BEGIN IMMEDIATE` transaction, serialised against every other writer
        in any process; committed on leaving, rolled back on an exception.

        With power-loss durability the commit is synced (`synchronous=FULL`), unless not `synced`: then it is
        consistent after a power loss but may be lost (`synchronous=NORMAL`: WAL frames are not synced on commit),
        until `sync_wal()`, a later synced commit or a checkpoint. Only a caller that keeps what it commits
        durable elsewhere meanwhile asks for that (the audit store: its journal)."""
        return _Transaction(self, synced)

    def sync_wal(self) -> None:
        """Make every commit so far durable, unsynced ones included (an `fdatasync` of the WAL file, which is
        what a `synchronous=FULL` commit does; SQLite recovers a WAL's frames in order, so after a power loss the
        database holds every transaction committed before this sync began, and is consistent whatever follows)."""
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # (no WAL: SQLite removes it only after checkpointing it, synced, into the database file)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def rewrite_durably(self) -> bool:
        """After a failed `sync_wal`: write every commit into the database file afresh and sync it (a `TRUNCATE`
        checkpoint: the WAL's frames copied into the file, which is synced, then the WAL emptied), so that pages a
        failed sync may have dropped from the writeback (Linux marks them clean: a later sync does not write them)
        are written again. Whether it completed (not while another connection reads an older snapshot)."""
        try:
            with self._lock:
                busy, _log, _done = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:  # (a full disk: the file cannot grow)
            raise OSError(errno.EIO, f"rewriting the database failed: {exc}") from exc
        if busy:
            return False
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(
                fd
            )  # (SQLite syncs a completed checkpoint at `synchronous` NORMAL and above; again, whatever it is)
        finally:
            os.close(fd)
        return True

    @contextmanager
    def read(self) -> Generator[sqlite3.Connection]:
        with self._lock:
            yield self.conn

    def read_now(self, sql: str, params: tuple[SqlValue, ...] = ()) -> list[tuple[Any, ...]] | None:
        """One read that never waits, for the event loop's thread: on a read-only connection of its own (not the
        one a write transaction may hold), with a busy timeout of 0. None when it would have to wait (another
        thread is using that connection, or SQLite is busy): the caller then reads from a worker thread. In WAL
        mode a read does not wait for a writer, so that is rare."""
        if not self._now_lock.acquire(blocking=False):
            return None
        try:
            conn = self._now_conn
            if conn is None:
                if self._now_closed:
                    return None
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
                conn.execute("PRAGMA query_only = 1")
                self._now_conn = conn
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    return None
                raise
        finally:
            self._now_lock.release()

    def integrity_problems(self) -> list[str]:
        """What SQLite's `integrity_check` finds wrong with the file's pages and indexes, one line each."""
        try:
            with self.read() as conn:
                rows = conn.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return [f"state.db cannot be checked: {exc}"]
        found = [str(row[0]) for row in rows]
        return [] if found == ["ok"] else [f"state.db: {line}" for line in found]

    def close(self) -> None:
        with self._now_lock:
            self._now_closed = True
            if self._now_conn is not None:
                self._now_conn.close()
                self._now_conn = None
        with self._lock:
            self.conn.close()


class _Transaction:
    """The context manager of `StateDB.write` (a class: cheaper than a generator on the hot path)."""

    __slots__ = ("_db", "_synced")

    def __init__(self, db: StateDB, synced: bool) -> None:
        self._db = db
        self._synced = synced

    def __enter__(self) -> sqlite3.Connection:
        db = self._db
        db._lock.acquire()  # pyright: ignore[reportPrivateUsage]
        try:
            full = self._synced and db.durability == "power_loss"
            if full is not db._synchronous_full:  # pyright: ignore[reportPrivateUsage]
                db.conn.execute("PRAGMA synchronous = FULL" if full else "PRAGMA synchronous = NORMAL")
                db._synchronous_full = full  # pyright: ignore[reportPrivateUsage]
            db.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            db._lock.release()  # pyright: ignore[reportPrivateUsage]
            raise
        return db.conn

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        db = self._db
        conn = db.conn
        try:
            if exc_type is not None:
                if conn.in_transaction:  # (SQLite may have rolled back already: a full disk, an I/O error)
                    conn.execute("ROLLBACK")
                return
            try:
                conn.execute("COMMIT")
            except BaseException:
                # A commit that failed leaves nothing half-done behind it, nor a transaction still open.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        finally:
            db._lock.release()  # pyright: ignore[reportPrivateUsage]


def _split(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (which contain `;`) whole."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.strip().splitlines():
        current.append(line)
        candidate = "\n".join(current).strip()
        if candidate and sqlite3.complete_statement(candidate):
            statements.append(candidate)
            current = []
    return statements
