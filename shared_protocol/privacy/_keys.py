"""Subject keys: one AES-256 key per data subject, in a SQLite file of their own.

The store is kept apart from everything it protects (never in the audit database, never in a snapshot or a
backup), so destroying a key makes every copy of that subject's ciphertext unreadable: crypto-shredding. A
subject is looked up by a keyed hash (the store's own secret), never kept in clear; ids are random. Rows are
deleted under `PRAGMA secure_delete=ON` (freed pages are zeroed) and the WAL is checkpointed and truncated
after each erasure, so no copy of an erased key survives in the file or its journal.

An erased subject keeps a tombstone (`erased_subjects`: its keyed-hash lookup, its kind and when; never the
subject, never a key), so work already under way when it was erased (a runner mid-task, a body serving its calls)
cannot make it a new key: `key_for` raises `SubjectErased` and the protector redacts the value instead. It is
written whether or not this store held a key: an erasure is a statement about the subject (the brain held their
data, this body never saw it, and a runner given the task before the erasure names them to it afterwards). Only a
human's `unerase` (`swarm privacy unerase`: a subject who comes back) lifts it.

One store may be open in several processes at once (an agent's body and its runner share the body's): WAL, a
busy timeout, no key kept in memory (an erasure is seen at the next read), and a subject's lookup as the primary
key, so two processes making the same subject's key at once end with one (`tests/privacy/test_key_store_processes`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

from .exceptions import KeyStoreUnusable, SubjectErased

KEY_STORE_FILE = "privacy.db"
"""Its name in a body's state directory and beside a brain's database."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS store_secret (one INTEGER PRIMARY KEY CHECK (one = 1), secret BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS subject_keys (
    lookup BLOB PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    key BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS erased_subjects (lookup BLOB PRIMARY KEY, kind TEXT NOT NULL, erased REAL NOT NULL);
"""


class SubjectKeys(Protocol):
    """Where subject keys are: `SqliteSubjectKeys`, or `MemorySubjectKeys` in tests."""

    made: bool
    """Whether opening the store made its secret (a new store: nothing kept before it was keyed or encrypted under
    it; the brain's start-up check of its key store, `brain_server.privacy.key_store_holds`)."""

    def key_for(self, kind: str, subject: str) -> tuple[str, bytes]:
        """The subject's (id, key), created on first use; `SubjectErased` once the subject was erased."""
        ...

    def find(self, kind: str, subject: str) -> str | None:
        """The subject's id, or None: never seen, or erased."""
        ...

    def key_by_id(self, subject_id: str) -> bytes | None: ...

    def erase(self, kind: str, subject: str) -> str | None:
        """Destroy the subject's key, if one is held, and tombstone the subject either way (a tombstone already there
        keeps its time); the destroyed key's id, or None if none was held."""
        ...

    def keyed_hash(self, purpose: str, text: str) -> str:
        """An HMAC-SHA256 (hex) of `text` under the store's secret, apart from subjects' lookups by `purpose`: how
        a guessable identifier that may name a person (the brain's `Idempotency-Key`s) is kept and found."""
        ...

    def erased_at(self, kind: str, subject: str) -> float | None:
        """When the subject was erased (a Unix time), or None: never erased, or unerased since."""
        ...

    def unerase(self, kind: str, subject: str) -> bool:
        """Lift the subject's tombstone (a subject who comes back gets a new key); False if there was none."""
        ...

    def close(self) -> None: ...


def new_subject_id() -> str:
    return "s" + secrets.token_hex(8)


def _keyed_hash(secret: bytes, purpose: str, text: str) -> str:
    # (a purpose is no subject kind: those are `[a-z][a-z0-9_]*`, so `-` keeps the two apart)
    return hmac.new(secret, f"-{purpose}\0{text}".encode(), hashlib.sha256).hexdigest()


class MemorySubjectKeys:
    def __init__(self) -> None:
        self._by_subject: dict[tuple[str, str], str] = {}
        self._keys: dict[str, bytes] = {}
        self._erased: dict[tuple[str, str], float] = {}
        self._secret = secrets.token_bytes(32)
        self.made = True

    def keyed_hash(self, purpose: str, text: str) -> str:
        return _keyed_hash(self._secret, purpose, text)

    def key_for(self, kind: str, subject: str) -> tuple[str, bytes]:
        sid = self._by_subject.get((kind, subject))
        if sid is None:
            if (kind, subject) in self._erased:
                raise SubjectErased(f"that {kind} was erased: no new key is made for it")
            sid = new_subject_id()
            self._by_subject[(kind, subject)] = sid
            self._keys[sid] = secrets.token_bytes(32)
        return sid, self._keys[sid]

    def find(self, kind: str, subject: str) -> str | None:
        return self._by_subject.get((kind, subject))

    def key_by_id(self, subject_id: str) -> bytes | None:
        return self._keys.get(subject_id)

    def erase(self, kind: str, subject: str) -> str | None:
        sid = self._by_subject.pop((kind, subject), None)
        if sid is not None:
            del self._keys[sid]
        self._erased.setdefault((kind, subject), time.time())
        return sid

    def erased_at(self, kind: str, subject: str) -> float | None:
        return self._erased.get((kind, subject))

    def unerase(self, kind: str, subject: str) -> bool:
        return self._erased.pop((kind, subject), None) is not None

    def close(self) -> None:
        pass


_OPEN_TIMEOUT_S = 30.0


def _busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or any(
        word in str(exc) for word in ("locked", "busy")
    )


class SqliteSubjectKeys:
    """The subject keys of one body or brain, in `path` (created 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.close(fd)
            deadline = time.monotonic() + _OPEN_TIMEOUT_S
            while True:
                self._conn = sqlite3.connect(
                    path, timeout=_OPEN_TIMEOUT_S, isolation_level=None, check_same_thread=False
                )
                try:
                    self.made, self._secret = self._set_up()
                    break
                except sqlite3.OperationalError as exc:
                    # Two processes making a new store at once (a body and its runner): switching a new file to
                    # WAL, or its schema, can answer "locked" at once where no busy handler waits. Again, afresh.
                    self._conn.close()
                    if not _busy(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        except (OSError, sqlite3.Error) as exc:
            raise KeyStoreUnusable(f"the subject key store {path} cannot be opened: {exc}") from None
        self._lock = threading.Lock()

    def _set_up(self) -> tuple[bool, bytes]:
        """(Whether this open made the store's secret, the secret.) The pragmas and schema, then the secret."""
        self._conn.execute("PRAGMA secure_delete = ON")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.executescript(_SCHEMA)
        made = self._conn.execute(
            "INSERT OR IGNORE INTO store_secret (one, secret) VALUES (1, ?)", (secrets.token_bytes(32),)
        )
        (secret,) = self._conn.execute("SELECT secret FROM store_secret").fetchone()
        return made.rowcount == 1, secret

    def close(self) -> None:
        self._conn.close()

    def keyed_hash(self, purpose: str, text: str) -> str:
        return _keyed_hash(self._secret, purpose, text)

    def _lookup(self, kind: str, subject: str) -> bytes:
        return hmac.new(self._secret, f"{kind}\0{subject}".encode(), hashlib.sha256).digest()

    def key_for(self, kind: str, subject: str) -> tuple[str, bytes]:
        lookup = self._lookup(kind, subject)
        with self._lock:
            try:
                row = self._conn.execute("SELECT id, key FROM subject_keys WHERE lookup = ?", (lookup,)).fetchone()
                # Another process on the same store (an agent's body and its runner) may make the subject's key at
                # the same moment: the lookup is the primary key, so one insert wins and both read the winner's
                # key back. (A new id that happens to be taken is ignored too: another is drawn.) The insert and the
                # tombstone's check are one statement, so an erasure in another process is never overtaken.
                while row is None:
                    sid, key = new_subject_id(), secrets.token_bytes(32)
                    self._conn.execute(
                        "INSERT OR IGNORE INTO subject_keys (lookup, id, kind, key, created) SELECT ?, ?, ?, ?, ? "
                        "WHERE NOT EXISTS (SELECT 1 FROM erased_subjects WHERE lookup = ?)",
                        (lookup, sid, kind, key, time.time(), lookup),
                    )
                    row = self._conn.execute("SELECT id, key FROM subject_keys WHERE lookup = ?", (lookup,)).fetchone()
                    if row is None and self._tombstoned(lookup):
                        raise SubjectErased(f"that {kind} was erased: no new key is made for it")
            except sqlite3.Error as exc:
                raise KeyStoreUnusable(f"the subject key store {self.path}: {exc}") from None
        return str(row[0]), bytes(row[1])

    def find(self, kind: str, subject: str) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT id FROM subject_keys WHERE lookup = ?", (self._lookup(kind, subject),)
            ).fetchone()
        return None if row is None else str(row[0])

    def key_by_id(self, subject_id: str) -> bytes | None:
        with self._lock:
            row = self._conn.execute("SELECT key FROM subject_keys WHERE id = ?", (subject_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def _tombstoned(self, lookup: bytes) -> bool:
        return self._conn.execute("SELECT 1 FROM erased_subjects WHERE lookup = ?", (lookup,)).fetchone() is not None

    def erased_at(self, kind: str, subject: str) -> float | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT erased FROM erased_subjects WHERE lookup = ?", (self._lookup(kind, subject),)
            ).fetchone()
        return None if row is None else float(row[0])

    def unerase(self, kind: str, subject: str) -> bool:
        with self._lock:
            try:
                gone = self._conn.execute(
                    "DELETE FROM erased_subjects WHERE lookup = ?", (self._lookup(kind, subject),)
                ).rowcount
            except sqlite3.Error as exc:
                raise KeyStoreUnusable(f"the subject key store {self.path}: {exc}") from None
        return gone > 0

    def erase(self, kind: str, subject: str) -> str | None:
        lookup = self._lookup(kind, subject)
        with self._lock:
            try:
                # The key gone and the tombstone set at once (`key_for` sees both or neither); the tombstone whether
                # or not a key was held here (an erasure is about the subject, not about this store's key).
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    row = self._conn.execute(
                        "SELECT id, kind, key, created FROM subject_keys WHERE lookup = ?", (lookup,)
                    ).fetchone()
                    self._conn.execute("DELETE FROM subject_keys WHERE lookup = ?", (lookup,))
                    tombstoned = self._conn.execute(
                        "INSERT OR IGNORE INTO erased_subjects (lookup, kind, erased) VALUES (?, ?, ?)",
                        (lookup, kind, time.time()),
                    ).rowcount
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                # No copy of the key left: freed pages were zeroed (secure_delete), the WAL is folded in and emptied.
                # (Also when no row was found: a copy may be left by an erasure that failed below.)
                for _ in range(50):
                    busy, _log, _done = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                    if not busy:
                        break
                    time.sleep(0.1)  # (another process reading the store: its snapshot ends with its read)
                else:
                    # All or nothing: the key is put back and a tombstone this call wrote lifted, so the erasure run
                    # again finds it, erases it and is audited (a key deleted here would leave a rerun nothing to
                    # find, and no record of it).
                    self._conn.execute("BEGIN IMMEDIATE")
                    if tombstoned:
                        self._conn.execute("DELETE FROM erased_subjects WHERE lookup = ?", (lookup,))
                    if row is not None:
                        self._conn.execute(
                            "INSERT OR IGNORE INTO subject_keys (lookup, id, kind, key, created) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (lookup, *row),
                        )
                    self._conn.execute("COMMIT")
                    raise KeyStoreUnusable(
                        f"the subject key store {self.path}: its WAL could not be emptied while another process reads "
                        "it, so nothing was erased; run the erasure again"
                    )
            except sqlite3.Error as exc:
                raise KeyStoreUnusable(f"the subject key store {self.path}: {exc}") from None
        return None if row is None else str(row[0])
