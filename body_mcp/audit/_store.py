"""The store: an event is made durable in the journal, committed to the database, then anchored.

An event is durable first in `audit.journal` (one write, `_journal`), with the statements its
transaction commits alongside it; then it is committed to the database and anchored (`_anchor`).
Appends from several processes (two bodies, the CLI) are serialised by an `flock` on the
anchor file held from the journal write to the anchor write, so that the chain has one order;
the next store to take the flock after one died in between commits what the database lacks.

A serving body commits and anchors a call's event after its reply (`append(finish_later=True)`,
then `finish()`): the event is durable in the journal before the reply, and the store keeps the
flock until it is committed and anchored, and does that before its next append, so the journal
is never more than that one event ahead of the database.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared_protocol import AuditEvent

from .._db import StateDB, Writes
from . import _anchor, _journal
from ._chain import Chain
from ._event import Appended, EventDraft
from ._retention import prune_trail
from ._verify import VerifyReport, verify_trail

logger = logging.getLogger("body_mcp.audit")  # the package's name, not this private module's


@dataclass(slots=True)
class _Uncommitted:
    """An event in the journal, not yet in the database."""

    payload: dict[str, Any]
    """What its MAC signs: kept to chain it again onto another head, should a writer that does not journal
    (an older version) have appended meanwhile."""
    values: tuple[int, str, str, str | None, str, str]
    """Its row: seq, id, ts, decision_id, body, mac."""
    writes: Writes | None
    offset: int
    """Where its record is in the journal."""


_INSERT = "INSERT INTO audit_events (seq, id, ts, decision_id, body, mac) VALUES (?, ?, ?, ?, ?, ?)"


class AuditStore:
    """The chain for one body identity, in the workspace's `state.db`."""

    def __init__(self, db: StateDB, *, key: bytes, anchor_path: Path, journal_path: Path, body_id: str) -> None:
        self._db = db
        self._chain = Chain(key, body_id)
        self._anchor_path = anchor_path
        self.body_id = body_id
        self._anchor_fd = os.open(anchor_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            self._journal_fd = os.open(journal_path, os.O_RDWR | os.O_CREAT, 0o600)
        except BaseException:
            os.close(self._anchor_fd)
            raise
        # flock orders appends between processes; this orders them between this process's threads (retention
        # runs in a worker thread), so that the anchor is always written in commit order.
        self._thread_lock = threading.Lock()
        self._head: tuple[int, str] | None = None
        """(seq, mac) of the chain's last event as this store last wrote or read it (journaled at least)."""
        self._journal_seen: bytes | None = None
        """The prefix of the record at the start of the journal as this store last wrote or read it (None: not a
        record). While it is still there and nothing follows `_journal_tail`, no other process has appended
        (a record's prefix holds its seq and mac, so it is never written again), and `_head` is the head."""
        self._journal_tail = 0
        """Where the records this store knows of end: an end mark (or the end of the file) is there."""
        self._journal_end = 0
        """Where this store writes its next record: after the ones not committed yet, else the start."""
        self._uncommitted: list[_Uncommitted] = []
        self._owed_anchor: tuple[int, str] | None = None
        """A committed head whose anchor is not written yet (`finish_later`, or a failed write to retry)."""
        self._anchor_kept = False
        """The anchor covers events the database lacks (deleted): it stays as verify's evidence, never written over."""
        self._let_go = False
        """The flock was let go while something was owed (a failed write): another process may have appended,
        or replayed this store's journal records, since."""
        self._locked = False
        """This store holds the anchor's flock between appends (something is owed after a reply)."""
        self._closed = False
        if db.durability == "power_loss":  # (a record in a file whose name is not yet on disk is not durable)
            _fsync_dir(journal_path.parent)

    def close(self) -> None:
        """Commit and anchor what is owed and let go of the files (idempotent); appending afterwards raises
        instead of writing to a reused fd. What cannot be committed stays in the journal for the next store."""
        with contextlib.suppress(OSError, sqlite3.Error):
            self.finish()
        with self._thread_lock:
            if not self._closed:
                self._closed = True
                os.close(self._anchor_fd)
                os.close(self._journal_fd)

    # -- writing -----------------------------------------------------------------------

    def append(
        self,
        draft: EventDraft,
        *,
        writes: Writes | None = None,
        finish_later: bool = False,
        happened: bool = False,
    ) -> Appended:
        """Append one event (and `writes`, in its transaction): durable in the journal, then committed and anchored.

        Returns once the event is durable with the configured durability. With `finish_later` its commit and
        anchor are owed until `finish()` (or the next append) does them, and the flock is held till then.
        Whatever is owed is done first; if that fails, nothing is appended, unless what the event records has
        `happened` already (a tool call that ran): then it is journaled all the same, and the failure raised.
        An event whose own commit fails is taken back out of the journal, unless it `happened`.
        """
        with self._thread_lock:
            if self._closed:
                raise RuntimeError("the audit store is closed")
            self._lock()
            try:
                unpaid = False
                if self._uncommitted or self._owed_anchor is not None:
                    try:
                        self._pay()  # never more than one event ahead
                    except (OSError, sqlite3.Error):
                        if not happened:
                            raise
                        # A call that was already running when the trail broke: losing its event would be worse.
                        logger.exception("the audit trail could not commit or anchor what it owes")
                        unpaid = True
                event = self._journal(draft, writes)
                if finish_later and not unpaid:
                    return event
                try:
                    self._pay()
                except BaseException:
                    if not happened:
                        self._take_back(event.seq)  # its caller is told it failed: it must not appear later
                    raise
            except BaseException:
                self._unlock()
                raise
            self._unlock()
        return event

    def finish(self) -> None:
        """Commit and anchor what a `finish_later` append owes, and let other processes append again.

        A failure is raised; what is owed stays owed (the event safe in the journal), retried by the next
        append and by `finish()`.
        """
        with self._thread_lock:
            if self._closed or not (self._uncommitted or self._owed_anchor is not None):
                return
            self._lock()
            try:
                self._pay()
            finally:
                self._unlock()

    @property
    def owed(self) -> bool:
        """An event journaled but not committed, or committed but not anchored."""
        return bool(self._uncommitted) or self._owed_anchor is not None

    def recover(self) -> int:
        """Commit what a store that died after its reply left in the journal; returns how many events."""
        with self._thread_lock:
            if self._closed:
                raise RuntimeError("the audit store is closed")
            self._lock()
            try:
                self._pay()
                replayed = self._recover()
                self._pay()
            finally:
                self._unlock()
        return replayed

    def _journal(self, draft: EventDraft, writes: Writes | None) -> Appended:
        """Chain `draft` onto the head and make it durable in the journal (flock held)."""
        seq, prev_mac = self._current_head()
        seq += 1
        # Built by hand (hot path): the same dict `AuditEvent.signed_payload()` gives back on verify.
        payload: dict[str, Any] = dict(draft.__dict__)  # the dataclass's fields, in order
        impact = draft.impact
        payload["impact"] = {"files": impact.files, "api_calls": impact.api_calls, "usd": impact.usd}
        payload.update(seq=seq, ts=datetime.now(UTC).isoformat(timespec="microseconds"), body_id=self.body_id)
        payload["prev_mac"] = prev_mac
        body, mac = self._chain.sign(payload)
        try:
            record = _journal.encode(
                seq, mac, prev_mac, (draft.id, payload["ts"], draft.decision_id, body), writes, self._chain.tag
            )
        except UnicodeEncodeError:
            # A statement holds a string UTF-8 cannot encode (no tool records such a name: validation and staging
            # refuse them). The event must still be written: it is, saying its statements could not be kept.
            logger.error("audit event %s: its undo records hold a name that is not UTF-8; kept without them", seq)
            payload["detail"] = {**payload["detail"], "writes_dropped": len(writes.statements) if writes else 0}
            writes = None
            body, mac = self._chain.sign(payload)
            record = _journal.encode(
                seq, mac, prev_mac, (draft.id, payload["ts"], draft.decision_id, body), writes, self._chain.tag
            )
        at = self._journal_end
        try:
            _write_all(self._journal_fd, record, at)
            if self._db.durability == "power_loss":
                os.fdatasync(self._journal_fd)
        except BaseException:
            # Its caller is told it failed: it must never be replayed. (Should voiding fail as well, a record
            # whose sync alone failed may be whole and replayed: the one case of an event told it failed.)
            self._void(at)
            raise
        if at == 0:
            self._journal_seen = record[: _journal.PREFIX_LEN]
        self._journal_end = self._journal_tail = at + len(record) - len(_journal.END)
        self._uncommitted.append(
            _Uncommitted(payload, (seq, draft.id, payload["ts"], draft.decision_id, body, mac), writes, at)
        )
        self._head = (seq, mac)
        return Appended(id=draft.id, seq=seq, mac=mac)

    def _take_back(self, seq: int) -> None:
        """Void the journal record of event `seq` if it is still uncommitted (its commit failed)."""
        if not self._uncommitted or self._uncommitted[-1].values[0] != seq:
            return  # committed (its anchor failed): in the trail, as before the journal
        item = self._uncommitted[-1]
        if not self._void(item.offset):
            # Still whole in the journal, so any store would commit it: this one keeps it too, and the trail
            # holds an event whose caller was told it failed (an error is logged), never a fork.
            logger.error("audit event %s could not be taken back after its commit failed; it stays owed", seq)
            return
        self._uncommitted.pop()
        self._journal_end = item.offset
        self._head = (seq - 1, item.payload["prev_mac"])

    def _void(self, at: int) -> bool:
        """Make the record at `at` unreadable; False if that failed too (the record may still be whole)."""
        try:
            _write_all(self._journal_fd, bytes(_journal.PREFIX_LEN), at)
            if self._db.durability == "power_loss":
                os.fdatasync(self._journal_fd)
        except OSError:
            logger.exception("could not void the audit journal record at %d", at)
            return False
        self._journal_tail = at
        return True

    def _current_head(self) -> tuple[int, str]:
        """The chain's head (flock held): this store's own, unread, while the journal shows no other writer."""
        head = self._head
        fd = self._journal_fd
        if (
            head is not None
            and self._journal_seen is not None
            and os.pread(fd, _journal.PREFIX_LEN, 0) == self._journal_seen
            and os.pread(fd, len(_journal.END), self._journal_tail) in (_journal.END, b"")
        ):
            return head
        self._recover()
        assert self._head is not None
        return self._head

    def _db_head(self, conn: sqlite3.Connection) -> tuple[int, str]:
        row = conn.execute("SELECT seq, mac FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, self._chain.genesis()) if row is None else (int(row[0]), str(row[1]))

    def _recover(self) -> int:
        """Read the head from the database, first committing the journal records it lacks (flock held).

        A record is replayed only where it continues the database's chain and is past the anchor: a record the
        anchor already covers but the database lacks means events were deleted, which verify must report.
        """
        data = os.pread(self._journal_fd, os.fstat(self._journal_fd).st_size, 0)
        records = _journal.decode(data, self._chain.tag)
        anchored = self._read_anchor()
        anchored_seq = anchored[0] if anchored is not None else 0
        replayed = 0
        # (Nothing to replay, as at most start-ups: a read, not a write transaction that waits for other writers.)
        with self._db.write() if records else self._db.read() as conn:
            head = self._db_head(conn)
            agrees = self._anchor_agrees(conn, head)
            for record in records:
                if record.seq <= head[0]:
                    continue
                if record.seq != head[0] + 1 or record.prev_mac != head[1] or record.seq <= anchored_seq:
                    logger.debug(  # (events deleted: verify reports it)
                        "audit journal record %s does not continue the database's chain (head %s): not replayed",
                        record.seq,
                        head[0],
                    )
                    break
                record.writes.run(conn)
                conn.execute(_INSERT, (record.seq, *record.row, record.mac))
                head = (record.seq, record.mac)
                replayed += 1
        if replayed:
            logger.warning("replayed %d audit event(s) a body journaled and did not commit", replayed)
            if agrees:
                self._owed_anchor = head
        self._uncommitted.clear()
        self._journal_end = 0
        self._journal_seen = data[: _journal.PREFIX_LEN] if records else None
        self._journal_tail = records[-1].end if records else 0
        self._head = head
        return replayed

    def _pay(self) -> None:
        """Commit the journaled events, then write the anchor (flock held)."""
        assert self._locked
        if self._uncommitted:
            self._commit()
        if self._owed_anchor is not None and self._anchor_kept:
            logger.error(
                "the audit anchor disagrees with the database (events deleted, or the anchor changed): it is kept as "
                "evidence for `swarm audit verify`, not written over; events are still appended (event %s)",
                self._owed_anchor[0],
            )
            self._owed_anchor = None
        if self._owed_anchor is not None:
            owed = self._owed_anchor
            if self._let_go:  # another process may have appended, and anchored, since
                # Only a later head skips the write: our own record may be in the page cache with its sync failed
                # (reported once), so the same seq is written and synced again.
                current = self._read_anchor()
                if current is not None and current[0] > owed[0]:
                    self._owed_anchor = None
            if self._owed_anchor is not None:
                self._write_anchor(*owed)
                self._owed_anchor = None
        self._let_go = False

    def _commit(self) -> None:
        """Commit the journaled events in one transaction: each where it was chained, unless another process
        has replayed it already (it let go after a failure), or a writer that does not journal took its place."""
        with self._db.write() as conn:
            head = self._db_head(conn)
            for item in self._uncommitted:
                values = item.values
                seq, mac = values[0], values[5]
                if seq <= head[0]:
                    row = conn.execute("SELECT mac FROM audit_events WHERE seq = ?", (seq,)).fetchone()
                    if row is not None and row[0] == mac:
                        continue  # replayed by another store
                if seq != head[0] + 1 or item.payload["prev_mac"] != head[1]:
                    logger.warning("audit event %s chained again onto event %s, appended meanwhile", seq, head[0])
                    self._anchor_agrees(conn, head)  # (or the database lost events)
                    values = self._chain.rechain(item.payload, head)
                if item.writes is not None:
                    item.writes.run(conn)
                conn.execute(_INSERT, values)
                head = (values[0], values[5])
        self._uncommitted.clear()
        self._journal_end = 0
        self._head = self._owed_anchor = head

    def _anchor_agrees(self, conn: sqlite3.Connection, head: tuple[int, str]) -> bool:
        """Whether the anchor names an event the database holds, as verify requires; if not, events it covered
        were deleted, and from now on this store keeps it as it is, the evidence verify reports."""
        agrees = _anchor.agrees(self._read_anchor(), conn, head)
        if not agrees:
            self._anchor_kept = True
        return agrees

    def _lock(self) -> None:
        if not self._locked:
            fcntl.flock(self._anchor_fd, fcntl.LOCK_EX)
            self._locked = True

    def _unlock(self) -> None:
        if self._locked:
            self._locked = False
            self._let_go = self._let_go or self.owed
            fcntl.flock(self._anchor_fd, fcntl.LOCK_UN)

    def _write_anchor(self, seq: int, mac: str) -> None:
        _write_all(self._anchor_fd, _anchor.encode(seq, mac), 0)
        if self._db.durability == "power_loss":
            os.fdatasync(self._anchor_fd)

    def _read_anchor(self) -> tuple[int, str] | None:
        return _anchor.decode(os.pread(self._anchor_fd, _anchor.LEN, 0))

    # -- reading -----------------------------------------------------------------------

    def get(self, action_id: str) -> AuditEvent | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT body FROM audit_events WHERE id = ? ORDER BY seq LIMIT 1", (action_id,)
            ).fetchone()
        return None if row is None else AuditEvent.model_validate_json(row[0])

    def tail(self, count: int = 20) -> list[AuditEvent]:
        with self._db.read() as conn:
            rows = conn.execute("SELECT body FROM audit_events ORDER BY seq DESC LIMIT ?", (count,)).fetchall()
        return [AuditEvent.model_validate_json(body) for (body,) in reversed(rows)]

    # -- verification and retention ----------------------------------------------------

    def verify(self) -> VerifyReport:
        """Recompute the whole chain and compare its head with the anchor (after committing what a body that
        died after its reply left in the journal, if the files can be written)."""
        with contextlib.suppress(OSError, sqlite3.Error):
            self.recover()
        with self._db.read() as conn:
            rows = conn.execute("SELECT seq, id, body, mac FROM audit_events ORDER BY seq").fetchall()
        return verify_trail(rows, chain=self._chain, read_anchor=self._read_anchor)

    def prune(
        self,
        *,
        retention_days: int,
        now: datetime | None = None,
        agent: str = "swarm",
        through_at_most: int | None = None,
    ) -> int:
        """Delete events older than the retention through a checkpoint that keeps the chain verifiable.

        `through_at_most`: never past this seq (a linked body keeps what its brain has not acknowledged yet).
        """
        return prune_trail(
            self._db,
            self.append,
            retention_days=retention_days,
            now=now,
            agent=agent,
            through_at_most=through_at_most,
        )


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:  # (a regular file: the next write would say why)
            raise OSError(errno.EIO, "short write")
        view, offset = view[written:], offset + written


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
