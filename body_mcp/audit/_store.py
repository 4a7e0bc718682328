"""The audit trail: append-only, keyed hash chain, head anchored outside the database.

Each event's `mac` is HMAC-SHA-256 (key in `audit.key`, never in the database) over the
previous event's `mac` and the canonical JSON of the event. After each commit the head
`(seq, mac)` is written to `audit.anchor`. Editing, inserting, deleting or reordering an
event breaks the chain; truncating the tail disagrees with the anchor. A database ahead of
its anchor (valid MACs past it) is a crash between the two writes or anchor writes that
failed, not tampering; an anchor that names an event the database lacks is never written
over (the evidence verify reports).

An event is durable first in `audit.journal` (one write, `_journal.py`), with the statements
its transaction commits alongside it; then it is committed to the database and anchored.
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
import hashlib
import hmac
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
from pydantic import ValidationError

from shared_protocol import NO_IMPACT, AuditEvent, Impact
from shared_protocol.audit import AuditKind, AuditOutcome

from .. import _json
from .._db import StateDB, Writes
from .._factories import empty_dict, empty_list
from . import _journal

logger = logging.getLogger("body_mcp.audit")

_ANCHOR_LEN = 20 + 1 + 64 + 1
_REDACTED_KEYS = frozenset({"content", "old_text", "new_text"})


def new_action_id() -> str:
    """Time-ordered, unique: `act_` + nanoseconds (hex) + 32 random bits (unique, not secret: no syscall)."""
    return f"act_{time.time_ns():x}{random.getrandbits(32):08x}"


canonical_json = _json.canonical
"""What the chain signs: `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`."""


def with_mac(signed: str, mac: str) -> str:
    """`canonical_json` of an event's signed payload plus its `mac`, without encoding it all again (hot path).

    Keys are sorted, so `mac` goes right before the top-level `message`. That is the last `,"message":` in
    the text: every key after it holds a string, a number or null, where a quote is escaped.
    """
    at = signed.rfind(',"message":')
    assert at > 0, "an event payload always has a message key"
    return f'{signed[:at]},"mac":"{mac}"{signed[at:]}'


def redact_arguments(value: Any) -> Any:
    """File contents become `{sha256, size}`: the trail proves what was written without holding it."""
    if type(value) is str:  # (most values: no isinstance chain)
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
            if key in _REDACTED_KEYS and isinstance(item, str):
                data = item.encode()
                out[str(key)] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}  # pyright: ignore[reportUnknownArgumentType]
            elif type(item) is str:  # pyright: ignore[reportUnknownArgumentType]  (most values: no call)
                out[str(key)] = item  # pyright: ignore[reportUnknownArgumentType]
            else:
                out[str(key)] = redact_arguments(item)  # pyright: ignore[reportUnknownArgumentType]
        return out
    if isinstance(value, list):
        return [redact_arguments(item) for item in value]  # pyright: ignore[reportUnknownVariableType]
    return value


@dataclass(kw_only=True)
class EventDraft:
    """An audit event before the chain gives it a `seq`, `prev_mac` and `mac`."""

    id: str
    kind: AuditKind
    agent: str
    session: str
    rationale: str
    outcome: AuditOutcome
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=empty_dict)
    decision_id: str | None = None
    mode: Literal["live", "shadow"] = "live"
    code: str | None = None
    rule: str | None = None
    message: str | None = None
    files: list[str] = field(default_factory=empty_list)
    impact: Impact = NO_IMPACT
    duration_ms: float = 0.0
    detail: dict[str, Any] = field(default_factory=empty_dict)


_MAX_SEQ = 2**63 - 1  # SQLite's largest integer


@dataclass(frozen=True, slots=True)
class Appended:
    """Where an event landed in the chain (the hot path needs no more than this)."""

    id: str
    seq: int
    mac: str


@dataclass(kw_only=True, frozen=True)
class VerifyReport:
    ok: bool
    events: int
    first_bad_seq: int | None = None
    problem: str | None = None
    anchor: Literal["match", "one_behind", "behind", "missing", "mismatch", "empty"] = "match"

    def summary(self) -> str:
        if self.ok:
            notes = {
                "one_behind": " (anchor one event behind: a crash between commit and anchor write, not tampering)",
                "behind": " (anchor behind the verified chain: its writes failed, not tampering)",
            }
            return f"audit chain OK: {self.events} events verified" + notes.get(self.anchor, "")
        where = f" at event seq {self.first_bad_seq}" if self.first_bad_seq is not None else ""
        return f"audit chain BROKEN{where}: {self.problem}"


class _HmacSha256:
    """HMAC-SHA-256 (RFC 2104) with the keyed inner and outer states computed once.

    `hmac.new` and `hmac.digest` look the digest up in OpenSSL on every call, which costs more than hashing
    an event; copying a prepared SHA-256 state does not.
    """

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256().block_size
        padded = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def hexdigest(self, message: bytes) -> str:
        return self.digest(message).hex()


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
        self._hmac = _HmacSha256(key)
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

    # -- chain arithmetic --------------------------------------------------------------

    def _genesis(self) -> str:
        return self._hmac.hexdigest(b"swarm-audit-genesis:" + self.body_id.encode())

    def _mac(self, payload: dict[str, Any]) -> str:
        return self._mac_of(canonical_json(payload))

    def _mac_of(self, signed: str) -> str:
        return self._hmac.hexdigest(signed.encode())

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
        signed = _json.canonical(payload)
        mac = self._hmac.hexdigest(signed.encode())
        body = with_mac(signed, mac)
        record = _journal.encode(
            seq, mac, prev_mac, (draft.id, payload["ts"], draft.decision_id, body), writes, self._hmac.digest
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
        return (0, self._genesis()) if row is None else (int(row[0]), str(row[1]))

    def _recover(self) -> int:
        """Read the head from the database, first committing the journal records it lacks (flock held).

        A record is replayed only where it continues the database's chain and is past the anchor: a record the
        anchor already covers but the database lacks means events were deleted, which verify must report.
        """
        data = os.pread(self._journal_fd, os.fstat(self._journal_fd).st_size, 0)
        records = _journal.decode(data, self._hmac.digest)
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
                    values = self._rechain(item.payload, head)
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
        anchored = self._read_anchor()
        if anchored is None:
            agrees = head[0] <= 1  # (none yet: the first event's anchor may not be written)
        elif anchored[0] >= head[0]:
            agrees = anchored[0] == head[0] and hmac.compare_digest(anchored[1], head[1])
        else:
            row = conn.execute("SELECT mac FROM audit_events WHERE seq = ?", (anchored[0],)).fetchone()
            agrees = row is not None and hmac.compare_digest(str(row[0]), anchored[1])
        if not agrees:
            self._anchor_kept = True
        return agrees

    def _rechain(self, payload: dict[str, Any], head: tuple[int, str]) -> tuple[int, str, str, str | None, str, str]:
        payload = {**payload, "seq": head[0] + 1, "prev_mac": head[1]}
        signed = _json.canonical(payload)
        mac = self._hmac.hexdigest(signed.encode())
        return (head[0] + 1, payload["id"], payload["ts"], payload["decision_id"], with_mac(signed, mac), mac)

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
        _write_all(self._anchor_fd, f"{seq:020d} {mac}\n".encode(), 0)
        if self._db.durability == "power_loss":
            os.fdatasync(self._anchor_fd)

    def _read_anchor(self) -> tuple[int, str] | None:
        data = os.pread(self._anchor_fd, _ANCHOR_LEN, 0)
        if not data:
            return None
        try:
            seq_text, mac = data.decode().split()
            return int(seq_text), mac
        except ValueError:
            return (-1, "")

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
        events: list[AuditEvent] = []
        for seq, action_id, body, mac in rows:
            try:
                event = AuditEvent.model_validate_json(body)
            except ValidationError:
                return VerifyReport(
                    ok=False, events=len(events), first_bad_seq=int(seq), problem="event body unreadable"
                )
            if event.seq != seq or event.id != action_id or event.mac != mac:
                return VerifyReport(
                    ok=False, events=len(events), first_bad_seq=int(seq), problem="indexed columns disagree with event"
                )
            events.append(event)
        checkpoints = {
            int(e.detail.get("through_seq", 0)): str(e.detail.get("mac_at", ""))
            for e in events
            if e.kind == "checkpoint"
        }
        expected_prev = self._genesis()
        expected_seq = 1
        if events and events[0].seq != 1:
            expected_seq = events[0].seq
            expected_prev = checkpoints.get(events[0].seq - 1, "")
            if not expected_prev:
                return VerifyReport(
                    ok=False,
                    events=0,
                    first_bad_seq=events[0].seq,
                    problem="events missing from the start of the chain",
                )
        for index, event in enumerate(events):
            if event.seq != expected_seq:
                return VerifyReport(
                    ok=False,
                    events=index,
                    first_bad_seq=event.seq,
                    problem=f"sequence gap: expected {expected_seq}, found {event.seq} (events deleted or reordered)",
                )
            if event.prev_mac != expected_prev:
                return VerifyReport(
                    ok=False,
                    events=index,
                    first_bad_seq=event.seq,
                    problem="chain link broken (event inserted or deleted)",
                )
            if not hmac.compare_digest(self._mac(event.signed_payload()), event.mac):
                return VerifyReport(
                    ok=False, events=index, first_bad_seq=event.seq, problem="MAC mismatch (event edited)"
                )
            expected_prev = event.mac
            expected_seq += 1
        return self._check_anchor(events)

    def _check_anchor(self, events: list[AuditEvent]) -> VerifyReport:
        anchor = self._read_anchor()
        count = len(events)
        if anchor is None:
            if not events:
                return VerifyReport(ok=True, events=0, anchor="empty")
            if len(events) == 1 and events[0].seq == 1:  # the first event ever, its anchor not written yet
                return VerifyReport(ok=True, events=1, anchor="one_behind")
            return VerifyReport(ok=False, events=count, problem="anchor file missing or empty", anchor="missing")
        seq, mac = anchor
        head = events[-1] if events else None
        if head is not None and seq == head.seq and hmac.compare_digest(mac, head.mac):
            return VerifyReport(ok=True, events=count)
        # Behind a chain whose every MAC verified (and which has no gap): the events past the anchor were written
        # with the key (a crash before the anchor write, or anchor writes that failed), not forged.
        if (
            head is not None
            and events[0].seq <= seq < head.seq
            and hmac.compare_digest(mac, events[seq - events[0].seq].mac)
        ):
            return VerifyReport(ok=True, events=count, anchor="one_behind" if seq == head.seq - 1 else "behind")
        last = head.seq if head is not None else 0
        problem = (
            f"anchor says the chain ends at event {seq} but the database ends at {last} (events truncated)"
            if seq > last
            else f"anchor (event {seq}) does not match the database head (event {last})"
        )
        return VerifyReport(
            ok=False, events=count, first_bad_seq=min(seq, last) or None, problem=problem, anchor="mismatch"
        )

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
        cutoff = ((now or datetime.now(UTC)) - timedelta(days=retention_days)).isoformat(timespec="microseconds")
        limit = _MAX_SEQ if through_at_most is None else through_at_most
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT seq, mac FROM audit_events WHERE ts < ? AND seq < (SELECT MAX(seq) FROM audit_events) "
                "AND seq <= ? ORDER BY seq DESC LIMIT 1",
                (cutoff, limit),
            ).fetchone()
        if row is None:
            return 0
        through_seq, mac_at = int(row[0]), str(row[1])

        draft = EventDraft(
            id=new_action_id(),
            kind="checkpoint",
            agent=agent,
            session="retention",
            rationale=f"retention: events older than {retention_days} days are pruned",
            outcome="ok",
            detail={"through_seq": through_seq, "mac_at": mac_at, "cutoff": cutoff},
        )
        # The mark is what lets the delete trigger pass, for these events only (never the head: the checkpoint
        # is chained onto it in the same transaction).
        writes = Writes()
        writes.add("INSERT INTO audit_prune_marks (through_seq) VALUES (?)", (through_seq,))
        writes.add("DELETE FROM audit_events WHERE seq <= ?", (through_seq,))
        self.append(draft, writes=writes)
        return writes.rowcounts[1] if writes.rowcounts else 0


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


async def keep_retention(
    store: AuditStore,
    *,
    retention_days: int,
    stop: anyio.Event,
    interval_s: float = 86_400.0,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    through_at_most: Callable[[], int | None] = lambda: None,
    on_error: Callable[[Exception], object] | None = None,
) -> None:
    """Prune past the retention at start and then every `interval_s` until `stop`; for a serving body's lifespan.

    Each prune that deletes anything leaves its checkpoint event; one with nothing to delete writes nothing.
    `through_at_most` is asked each time (a linked body: what its brain holds). A failure goes to `on_error`
    and the loop carries on: retention must not take the body down.
    """

    def prune() -> None:
        store.prune(retention_days=retention_days, now=now(), through_at_most=through_at_most())

    while not stop.is_set():
        try:
            await anyio.to_thread.run_sync(prune)
        except Exception as exc:  # noqa: BLE001 - handed to on_error (logged): the body keeps serving
            if on_error is not None:
                on_error(exc)
        with anyio.move_on_after(interval_s):
            await stop.wait()
