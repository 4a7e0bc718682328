"""The store: an event is made durable in the journal, committed to the database, then anchored.

An event is durable first in `audit.journal` (one write, `_journal`), with the statements its
transaction commits alongside it; then it is committed to the database and anchored (`_anchor`).
Appends from several processes (two bodies, the CLI) are serialised by an `flock` on the
anchor file held from the journal write to the anchor write, so that the chain has one order;
the next store to take the flock after one died in between commits what the database lacks.

With power-loss durability a commit is not synced by itself (`synchronous=NORMAL`): the journal keeps the
records of committed events until one sync of the database covers them all (`settle`, or any `finish()`
that anchors), and only then is the anchor written and the journal emptied, so the anchor is never durable
ahead of the database; after a power loss the next store replays what the database lost from the journal.

A serving body commits and anchors a call's event after its reply (`append(finish_later=True)`,
then `finish()`), from a worker thread (`AuditWriter`), never on its event loop. The flock is held
around the journal write only: the record is synced after it is let go (`sync_journal`), so that
concurrent calls, of this process or others, share one `fdatasync`; a mutating call's reply still
waits for that sync. A writer that takes the flock while another's records are in the journal,
uncommitted, commits them first (as after a crash), so the chain keeps one order. A read's event
is `lazy`: journaled (not synced) before its reply, it is committed with the next batch — the next
mutating call's, a timer's, or at `OWED_AT_MOST` events — so reads share one commit and anchor.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hmac
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared_protocol import AuditEvent
from shared_protocol.audit import SIGNED_WHEN_SET
from shared_protocol.privacy import Protector

from .._db import StateDB, Writes
from ..exceptions import AuditIntegrityError
from . import _anchor, _journal
from ._anchor import Head
from ._chain import Attester, Chain
from ._event import Appended, EventDraft, new_action_id, protect_fields
from ._files import AuditFiles, KeyDamaged, create_key, hold_shared, read_key, sync_dir, upgrade_key
from ._migrate import Migration, migrate_trail, protect_payload
from ._retention import prune_trail
from ._verify import BROKEN, VerifyReport, broken, verify_trail

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


OWED_AT_MOST = 64
"""How many lazy events (reads') a store lets wait in the journal for one commit and one anchor write."""
ANCHOR_SYNC_AT_MOST_S = 0.05
"""How long a serving body's commit may wait for the database's sync, its anchor for its write and sync (`settle`)."""

_INSERT = "INSERT INTO audit_events (seq, id, ts, decision_id, body, mac) VALUES (?, ?, ?, ?, ?, ?)"


class AuditStore:
    """The chain for one body identity, in the workspace's `state.db`."""

    def __init__(
        self,
        db: StateDB,
        *,
        files: AuditFiles,
        body_id: str,
        logic_version: str | None = None,
        privacy: Protector | None = None,
    ) -> None:
        """Open the chain's files (held shared against `swarm audit reset`) and its key: created for a new
        chain only. What makes the chain unverifiable before reading it (no key, no database) is noted in
        `broken`, and `sealed` when nothing can be appended; `check()` verifies the rest. `logic_version` (an
        agent's body) is recorded on every event appended that names none. `privacy` (`[privacy] redaction`)
        encrypts the personal data in every event before it is journaled (`protect_fields`): the chain signs
        ciphertext, so erasing a subject's key leaves it verifiable."""
        self._db = db
        self.privacy = privacy
        self._files = files
        self.body_id = body_id
        self.logic_version = logic_version
        self.broken: str | None = None
        """Why the chain does not verify against its anchor and key, as far as checked (None: it does)."""
        self.sealed = False
        """Nothing can be appended (the key is missing or damaged, the database unreadable): `append` raises."""
        self._lock_fd = hold_shared(files.lock)
        try:
            self._anchor_fd = os.open(files.anchor, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                self._journal_fd = os.open(files.journal, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except BaseException:
                os.close(self._anchor_fd)
                raise
        except BaseException:
            os.close(self._lock_fd)
            raise
        # flock orders appends between processes; this orders them between this process's threads (retention
        # runs in a worker thread), so that the anchor is always written in commit order.
        self._thread_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        """Held around a deferred journal sync (`sync_journal`), so that concurrent callers share one."""
        self._journaled_seq = 0
        """The last event this store journaled."""
        self._synced_seq = 0
        """The last event this store journaled that a sync has made durable since."""
        self.failing = False
        """Committing or anchoring what is owed failed, and has not worked since: a body refuses new calls."""
        self._head: tuple[int, str] | None = None
        """(seq, mac) of the chain's last event as this store last wrote or read it (journaled at least)."""
        self._journal_seen: bytes | None = None
        """The prefix of the record at the start of the journal as this store last wrote or read it, or that prefix
        behind the end mark that emptied the journal (`_empty_journal`) (None: unknown). While it is still there and
        nothing follows `_journal_tail`, no other process has appended (a record's prefix holds its seq and mac, so
        it is never written again), and `_head` is the head."""
        self._journal_tail = 0
        """Where the records this store knows of end: an end mark (or the end of the file) is there."""
        self._journal_end = 0
        """Where this store writes its next record: after the ones not committed yet, else the start."""
        self._uncommitted: list[_Uncommitted] = []
        self._owed_anchor: tuple[int, str] | None = None
        """A committed head whose anchor is not written yet (`finish_later`, or a failed write to retry)."""
        self._anchor_unsynced = False
        """The anchor was written, its sync left for later (power-loss durability only)."""
        self._unsynced_commits = db.durability == "power_loss"
        """Commits are not synced one by one (`synchronous=NORMAL`): the journal keeps their records until one sync
        of the database covers many (`_settle`), and the anchor is written only after that sync."""
        self._db_unsynced = False
        """This store committed since its last sync of the database (`_unsynced_commits`)."""
        self._commits = 0
        """Transactions this store committed (a settle that synced before taking the locks checks it)."""
        self._sync_failed = False
        """A sync of the database failed: the pages it was writing may be dropped (Linux marks them clean after a
        writeback error, so a later sync succeeds without them), so no later sync is trusted for them: the journal
        keeps their records until `StateDB.rewrite_durably` writes the database afresh (`_sync_database`)."""
        self._journal_sync_failed = False
        """A sync of the journal failed: no later one is trusted until the database holds its records, synced
        (`_sync_journal_locked`)."""
        self._anchor_writes = 0
        self._committed: tuple[int, str] | None = None
        """The last event this store committed: a database that no longer holds it (nor pruned it) lost events while
        this store ran, which the anchor is made to say (`_check_committed`)."""
        self._anchor_kept = False
        """The anchor covers events the database lacks (deleted): it stays as verify's evidence, never written over."""
        self._let_go = False
        """The flock was let go while something was owed (a failed write): another process may have appended,
        or replayed this store's journal records, since."""
        self._locked = False
        """This store holds the anchor's flock between appends (something is owed after a reply)."""
        self._closed = False
        self._recorded_broken = False
        self._legacy_key = False
        """The key file is from before anchors were tagged: an untagged anchor is read, until a check upgrades."""
        self._key = self._open_key()
        self._chain = Chain(self._key, body_id)
        if not self._has_written(both=True):
            # A record in a file whose name is not yet on disk is not durable. Every store syncs the directory when
            # it finds the journal or the anchor empty (just created, here or by a store that died before this
            # sync), before it writes to either, whatever its durability: so once both hold data, their names are
            # on disk, and a store opening them (a hook, on every audited call) spares the directory's sync.
            sync_dir(files.journal.parent)
        if self.broken is not None and not self.sealed:
            # (A database created afresh beside an existing key: recorded in it, so it does not pass for new.)
            self._record_broken(self.broken)

    def _open_key(self) -> bytes:
        """The key; created when the chain is new. Without one for an existing chain, a random key stands in
        (never written anywhere) and the store is sealed: nothing signed with it could ever be verified."""
        files = self._files
        try:
            found = read_key(files.key)
            if found is not None:
                self._legacy_key = found.legacy
                if self._db.created and (self._has_written() or files.checkpoint.exists()):
                    # (A key alone is what a first start leaves before its first event, or beside a body starting
                    # at the same moment: no event can have been lost.)
                    self.broken = "state.db was missing while the chain's anchor, journal or checkpoint existed"
                return found.key
            with self._db.read() as conn:
                has_events = conn.execute("SELECT 1 FROM audit_events LIMIT 1").fetchone() is not None
        except KeyDamaged as exc:
            self._seal(str(exc))
            return secrets.token_bytes(32)
        except sqlite3.DatabaseError as exc:
            self._seal(f"state.db cannot be read ({exc})")
            return secrets.token_bytes(32)
        if has_events or self._has_written():
            self._seal(f"{files.key.name} is missing: the chain's events cannot be verified or appended to")
            return secrets.token_bytes(32)
        return create_key(files.key)  # a new chain

    def _has_written(self, *, both: bool = False) -> bool:
        """An anchor or a journal record has been written: the chain is not new (`both`: each has been written)."""
        anchor, journal = os.fstat(self._anchor_fd).st_size, os.fstat(self._journal_fd).st_size
        return bool(anchor and journal) if both else bool(anchor or journal)

    def _seal(self, problem: str) -> None:
        self.broken = problem
        self.sealed = True
        self._anchor_kept = True

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
                os.close(self._lock_fd)
                if self.privacy is not None:
                    self.privacy.close()

    # -- writing -----------------------------------------------------------------------

    def append(
        self,
        draft: EventDraft,
        *,
        writes: Writes | None = None,
        finish_later: bool = False,
        happened: bool = False,
        lazy: bool = False,
    ) -> Appended:
        """Append one event (and `writes`, in its transaction): durable in the journal, then committed and anchored.

        Returns once the event is durable with the configured durability; with `finish_later`, once it is
        journaled: `sync_journal(seq)` then makes it durable (calls share that sync), and its commit and anchor
        are owed until `finish()` (or a later append) does them. The flock is let go on return, never held
        until a reply is written. Whatever is owed is done first — unless this event is `lazy` (a read's:
        its commit may wait, and what is owed with it, up to `OWED_AT_MOST` events) — and if that fails,
        nothing is appended, unless what the event records has `happened` already (a tool call that ran):
        then it is journaled all the same, and the failure raised. An event whose own commit fails is taken
        back out of the journal, unless it `happened`.
        """
        with self._thread_lock:
            if self._closed:
                raise RuntimeError("the audit store is closed")
            if self.sealed:
                raise AuditIntegrityError(f"the audit trail cannot be written: {self.broken}")
            self._lock()
            try:
                unpaid = False
                # (With unsynced commits, an anchor owed waits for the settle that syncs the database, unless an
                # earlier settle failed: retried here, before anything else is appended.)
                owes = (self._owed_anchor is not None and (self.failing or not self._unsynced_commits)) or (
                    self._journal_sync_failed
                )
                if (self._uncommitted or owes) and not (
                    lazy and finish_later and len(self._uncommitted) < OWED_AT_MOST and not self.failing
                ):
                    try:
                        self._pay(settle=self.failing)
                    except (OSError, sqlite3.Error):
                        self.failing = True
                        if not happened:
                            raise
                        # A call that was already running when the trail broke: losing its event would be worse.
                        logger.exception("the audit trail could not commit or anchor what it owes")
                        unpaid = True
                    else:
                        self.failing = False
                # (finish_later: synced by `sync_journal`, after the flock is let go, so that calls share a sync)
                event = self._journal(draft, writes, sync=not finish_later or unpaid)
                if finish_later and not unpaid:
                    self._unlock()  # not held until the commit: another writer replays this record if it comes first
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

    def try_append_now(self, draft: EventDraft, writes: Writes | None = None, *, lazy: bool = True) -> Appended | None:
        """`append(draft, writes=writes, finish_later=True, lazy=lazy)` at once (not synced), if that needs no
        waiting: None when another thread or process holds the locks, something must be paid or replayed first
        (a `lazy` event, a read's, lets up to `OWED_AT_MOST` events wait for their commit; any other, none), or
        the trail is failing or sealed (then `append` does it, from a worker thread). Cheap enough for an event
        loop: the event's HMAC and JSON, a `pwrite` and two `pread`s."""
        if not self._thread_lock.acquire(blocking=False):
            return None
        try:
            if self._closed or self.sealed or self.failing:
                return None
            if lazy:
                if len(self._uncommitted) >= OWED_AT_MOST:
                    return None
            elif self._uncommitted or (self._owed_anchor is not None and not self._unsynced_commits):
                return None  # (paid first by `append`, in the writer's thread: a commit, or an anchor's write)
            try:
                fcntl.flock(self._anchor_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            self._locked = True
            try:
                # (Another writer appended: replaying is a write transaction. Else the head is this store's own,
                # seen unchanged here once, not read again by `_journal`.)
                head = self._head
                if head is None or not self._head_unchanged():
                    return None
                return self._journal(draft, writes, sync=False, head=head)
            finally:
                self._unlock()
        finally:
            self._thread_lock.release()

    def try_sync_journal(self, seq: int) -> bool:
        """`sync_journal(seq)` if no other thread is syncing the journal (never waits for it): False if one is."""
        if self._db.durability != "power_loss" or self._synced_seq >= seq:
            return True
        if not self._sync_lock.acquire(blocking=False):
            return False
        try:
            if self._synced_seq < seq:
                self._sync_journal_locked()
        finally:
            self._sync_lock.release()
        return True

    def sync_journal(self, seq: int) -> None:
        """Make the journal durable through event `seq` (with power-loss durability; with crash durability the
        write is enough): one `fdatasync` for every record journaled before it, this process's and any other's.

        Without the flock: a record another writer overwrote in the meantime was committed by it first, with
        the same durability."""
        if self._db.durability != "power_loss" or self._synced_seq >= seq:
            return
        with self._sync_lock:
            if self._synced_seq >= seq:
                return  # a sync that started after it was journaled covered it
            self._sync_journal_locked()

    def _sync_journal_locked(self) -> None:
        """One `fdatasync` of the journal (`_sync_lock` held). After a failed one no later one is trusted: the
        pages it failed to write may be dropped (Linux marks them clean after a writeback error, and a later sync
        succeeds without writing them), so a record after them would not continue the chain on disk. Until a sync
        of the database covers every record in the journal (`_sync_database`), each journal sync fails, and the
        store is `failing`: the next call waits for a settle (`finish()`) first."""
        if self._journal_sync_failed:
            raise OSError(errno.EIO, "an earlier sync of the audit journal failed: a settle must sync the database")
        through = self._journaled_seq
        try:
            os.fdatasync(self._journal_fd)
        except OSError:
            self._journal_sync_failed = True
            self.failing = True
            raise
        self._synced_seq = max(self._synced_seq, through)

    def finish(self, *, anchor_sync: bool = True) -> None:
        """Commit what `finish_later` appends owe, in one transaction, and anchor it (one anchor write, synced).

        With `anchor_sync=False` (a serving body's mutating call, after its reply) no sync is waited for here: with
        power-loss durability the commit is not synced either (`synchronous=NORMAL`) and the anchor is not written
        yet; `settle()`, which the serving body's `AuditWriter` runs within `ANCHOR_SYNC_AT_MOST_S`, syncs the
        database once for every commit made meanwhile, then writes the anchor and syncs it. With crash durability
        the anchor is written at once (nothing is synced).

        Why a commit and its anchor may wait for a sync: each event is durable in the journal before its reply, and
        its record stays there until a sync of the database covers its commit (`_settle`); a power loss in
        between loses at most the unsynced commits (SQLite's WAL keeps a prefix of them), which the next store
        replays from the journal. The anchor is written only after that sync, so that it is never durable ahead
        of the database (a record the anchor covers is never replayed: it would hide a deleted event). So the
        anchor is up to 50 ms behind the database in normal running; verify reports a database ahead of its
        anchor as such (as after a crash between a commit and its anchor), not as tampering. Syncing each commit,
        and each anchor, were two more syncs on every mutating call that the next call waited for.

        A failure is raised, and `failing` set until it works; what is owed stays owed (the events safe in the
        journal), retried by the next append and by `finish()`.
        """
        with self._thread_lock:
            if self._closed:
                return
            settle = anchor_sync or not self._unsynced_commits
            due = bool(self._uncommitted) or (settle and self._settle_due())
            if not due and not (anchor_sync and self._anchor_unsynced):
                return
            try:
                if due:
                    self._lock()
                    try:
                        self._pay(anchor_sync=anchor_sync, settle=settle)
                    finally:
                        self._unlock()
                if anchor_sync:
                    self._sync_anchor()
            except BaseException:
                self.failing = True
                raise
            if settle:
                self.failing = False

    def settle(self) -> None:
        """What `finish(anchor_sync=False)` left owed, if still owed: with power-loss durability, one sync of the
        database for the commits made since the last, then the anchor's write and its sync (`_settle`); with crash
        durability, the anchor's sync. The next call need not wait for it: the database's sync is done before the
        locks are taken (then done again under them only if something was committed meanwhile), and the anchor's
        after they are let go. A failure is raised, and `failing` set until a settle or `finish()` works."""
        if self._unsynced_commits:
            with self._thread_lock:
                if self._closed or not self._settle_due():
                    return
                commits = self._commits
            try:
                if self._sync_failed:
                    commits = -1  # (only a rewrite will do, under the locks)
                else:
                    self._db.sync_wal()
            except OSError:
                self._sync_failed = True
                commits = -1  # (the rewrite under the locks says why)
            with self._thread_lock:
                if self._closed:
                    return
                try:
                    self._lock()
                    try:
                        self._pay(anchor_sync=False, synced_at=commits)
                    finally:
                        self._unlock()
                except BaseException:
                    self.failing = True
                    raise
        with self._thread_lock:
            if self._closed or not self._anchor_unsynced:
                return
            writes = self._anchor_writes
            fd = os.dup(self._anchor_fd)  # (synced without the lock: `close()` may close the store's fd meanwhile)
        try:
            os.fdatasync(fd)
        except OSError:
            with self._thread_lock:
                self._anchor_sync_failed()
                self.failing = True
            raise
        finally:
            os.close(fd)
        with self._thread_lock:
            if self._anchor_writes == writes:  # (else a later write still needs its sync)
                self._anchor_unsynced = False
            if not self.owed and not self._anchor_unsynced:
                self.failing = False

    def _settle_due(self) -> bool:
        return self._owed_anchor is not None or self._db_unsynced or self._journal_end > 0

    @property
    def sync_owed(self) -> bool:
        """`settle()` has something to do: a sync of the database, or the anchor's write or its sync."""
        return self._anchor_unsynced or (self._unsynced_commits and self._settle_due())

    def attester(self) -> Attester | None:
        """What attests this chain's events to a brain; None for a sealed store (its key is gone: a stand-in key's
        attestations would vouch for nothing)."""
        return None if self.sealed else Attester(self._chain, self._key, self.body_id)

    @property
    def owed(self) -> bool:
        """An event journaled but not committed, or committed but not anchored."""
        return bool(self._uncommitted) or self._owed_anchor is not None

    def recover(self) -> int:
        """Commit what a store that died after its reply left in the journal; returns how many events."""
        with self._thread_lock:
            if self._closed:
                raise RuntimeError("the audit store is closed")
            if self.sealed:
                return 0  # (a journal tagged with a key that is gone cannot be read)
            self._lock()
            try:
                self._pay(settle=False)  # (a settle replays first what it finds: counted below)
                replayed = self._recover()
                self._pay()
            finally:
                self._unlock()
        return replayed

    def _journal(
        self, draft: EventDraft, writes: Writes | None, *, sync: bool = True, head: tuple[int, str] | None = None
    ) -> Appended:
        """Chain `draft` onto the head (`head`, when its caller has just seen it unchanged) and make it durable in
        the journal (flock held)."""
        seq, prev_mac = self._current_head() if head is None else head
        seq += 1
        # Built by hand (hot path): the same dict `AuditEvent.signed_payload()` gives back on verify.
        payload: dict[str, Any] = dict(draft.__dict__)  # the dataclass's fields, in order
        if self.privacy is not None:
            protect_fields(self.privacy, payload)  # (in the dict: no second draft made)
        if payload["logic_version"] is None:
            payload["logic_version"] = self.logic_version
        for key in SIGNED_WHEN_SET:
            if payload[key] is None:
                del payload[key]
        impact = draft.impact
        payload["impact"] = {"files": impact.files, "api_calls": impact.api_calls, "usd": impact.usd}
        payload.update(seq=seq, ts=datetime.now(UTC).isoformat(timespec="microseconds"), body_id=self.body_id)
        payload["prev_mac"] = prev_mac
        # (The event encoded once and hashed once: its MAC's keyed hash goes on over the record for its tag.)
        signed, body, mac, hashed = self._chain.sign_hashed(payload)
        try:
            record = _journal.encode(seq, mac, signed, hashed, writes, self._chain.tag)
        except UnicodeEncodeError:
            # A statement holds a string UTF-8 cannot encode (no tool records such a name: validation and staging
            # refuse them). The event must still be written: it is, saying its statements could not be kept.
            logger.error("audit event %s: its undo records hold a name that is not UTF-8; kept without them", seq)
            payload["detail"] = {**payload["detail"], "writes_dropped": len(writes.statements) if writes else 0}
            writes = None
            signed, body, mac, hashed = self._chain.sign_hashed(payload)
            record = _journal.encode(seq, mac, signed, hashed, writes, self._chain.tag)
        at = self._journal_end
        try:
            _write_all(self._journal_fd, record, at)
            if sync and self._db.durability == "power_loss":
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
        self._journaled_seq = seq
        if sync:
            self._synced_seq = seq
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
        if head is not None and self._head_unchanged():
            return head
        self._recover(handoff=True)
        assert self._head is not None
        return self._head

    def _head_unchanged(self) -> bool:
        """No other writer has appended since this store last wrote or read the journal (flock held)."""
        fd = self._journal_fd
        return (
            self._head is not None
            and self._journal_seen is not None
            and os.pread(fd, _journal.PREFIX_LEN, 0) == self._journal_seen
            and os.pread(fd, len(_journal.END), self._journal_tail) in (_journal.END, b"")
        )

    def _db_head(self, conn: sqlite3.Connection) -> tuple[int, str]:
        row = conn.execute("SELECT seq, mac FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, self._chain.genesis()) if row is None else (int(row[0]), str(row[1]))

    def _recover(self, *, handoff: bool = False) -> int:
        """Read the head from the database, first committing the journal records it lacks (flock held).

        A record is replayed only where it continues the database's chain and is past the anchor: a record the
        anchor already covers but the database lacks means events were deleted, which verify must report.
        """
        data = os.pread(self._journal_fd, os.fstat(self._journal_fd).st_size, 0)
        records = _journal.decode(data, self._chain.tag)
        anchored = self._read_anchor()
        anchored_seq = anchored[0] if anchored is not None else 0
        replayed = 0
        keep = 0
        """Where the records this store must keep end (with unsynced commits: those the database holds may not be
        durable in it yet); records after it do not continue the chain and are never replayed."""
        # (Nothing to replay, as at most start-ups: a read, not a write transaction that waits for other writers.)
        opened = self._db.write(synced=not self._unsynced_commits) if records else self._db.read()
        with opened as conn:
            head: tuple[int, str] = self._db_head(conn)
            self._check_committed(conn, head)
            # No anchor yet, and every event in the database still in the journal from the first: a new chain's
            # first commits, whose first anchor waits for the settle that syncs them (not an anchor deleted).
            first = anchored is None and bool(records) and records[0].seq == 1
            agrees = (first and any(r.seq == head[0] and r.mac == head[1] for r in records)) or self._anchor_agrees(
                conn, head
            )
            held: tuple[int, str] | None = None
            """The last record past the anchor that the database holds already (committed, not anchored)."""
            for record in records:
                if record.seq <= head[0]:
                    keep = record.end
                    if record.seq > anchored_seq:
                        held = (record.seq, record.mac)
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
                keep = record.end
            if not replayed and held is not None and agrees and self._unsynced_commits:
                # A store that died between its commit and the database's sync (the anchor's write comes after it):
                # anchored by the next settle, if the database holds that very event.
                row = conn.execute("SELECT mac FROM audit_events WHERE seq = ?", (held[0],)).fetchone()
                owed = self._owed_anchor
                if row is not None and row[0] == held[1] and (owed is None or owed[0] < held[0]):
                    self._owed_anchor = held
        if held is not None and not self._unsynced_commits:
            # Records the database holds past the anchor: a store with power-loss durability (another process's
            # `[audit] durability`) keeps them until the database is synced. This one (crash durability) is about to
            # write over them, or to anchor them: the database is synced first, so that they are never lost.
            self._db.sync_wal()
        if records:
            self._commits += 1
        if replayed:
            self._committed = head
            self._db_unsynced = self._unsynced_commits
            # (A handoff: another writer's records, journaled before it let go of the flock, are committed first.)
            log = logger.debug if handoff else logger.warning
            log("replayed %d audit event(s) a body journaled and did not commit", replayed)
            if agrees:
                self._owed_anchor = head
        self._uncommitted.clear()
        self._journal_end = keep if self._unsynced_commits else 0
        self._journal_seen = data[: _journal.PREFIX_LEN] if records else None
        self._journal_tail = records[-1].end if records else 0
        self._head = head
        return replayed

    def _pay(self, *, anchor_sync: bool = True, settle: bool = True, synced_at: int = -1) -> None:
        """Commit the journaled events, then write the anchor (flock held); synced unless not `anchor_sync`.

        With unsynced commits (power-loss durability), the anchor is written only when `settle`: after a sync
        of the database that covers every record in the journal, which is then emptied. `synced_at`: the database
        was synced without the locks when this store had committed that many transactions (`settle()`)."""
        assert self._locked
        if self._uncommitted:
            self._commit()
        if self._unsynced_commits:
            if not settle:
                return  # (the flock let go with the anchor owed: `_let_go` is set, as for any anchor owed)
            self._sync_database(synced_at)
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
                if anchor_sync:
                    self._sync_anchor()
        if self._unsynced_commits:
            self._empty_journal()
        self._let_go = False

    def _sync_database(self, synced_at: int) -> None:
        """Make every event whose record is in the journal durable in the database (flock held): another writer's
        records committed first; then one sync of the database, unless one that began before this store's last
        commit and last look at the journal (`synced_at`) covers them all already."""
        unchanged = self._head_unchanged()
        if not unchanged:
            self._recover(handoff=True)
        # (Another writer commits only records it journaled, under the flock: after this store's last look at the
        # journal it would have changed it. So with the journal unchanged, only this store's commits count.)
        covered = unchanged and synced_at == self._commits and not self._sync_failed
        if not covered and (self._db_unsynced or self._journal_end > 0 or self._sync_failed):
            if self._sync_failed:
                if not self._db.rewrite_durably():
                    raise OSError(errno.EIO, "a sync of the audit database failed; rewriting it must wait for a reader")
                self._sync_failed = False
            else:
                try:
                    self._db.sync_wal()
                except OSError:
                    self._sync_failed = True
                    raise
        self._db_unsynced = False
        self._journal_sync_failed = False  # (every record in the journal is durable in the database now)

    def _empty_journal(self) -> None:
        """Mark the journal empty (flock held, every record in it durable in the database): the next record is
        written at its start. The mark needs no sync: records it hides are in the database, should it be lost."""
        if self._journal_end > 0 or self._journal_tail > 0:
            seen = self._journal_seen
            _write_all(self._journal_fd, _journal.END, 0)
            self._journal_end = self._journal_tail = 0
            # The mark leaves the rest of the first record's prefix behind it (its seq and mac: never at the start
            # again). While those bytes are still there, no other writer has appended (it would write its record at
            # the start: it finds none before it), so the next append chains onto this store's head without reading
            # it from the database (a write after a settle paid that read, under the locks, before its reply).
            self._journal_seen = None if seen is None else _journal.END + seen[len(_journal.END) :]

    def _commit(self) -> None:
        """Commit the journaled events in one transaction: each where it was chained, unless another process
        has replayed it already (it let go after a failure), or a writer that does not journal took its place.
        With unsynced commits, their records stay in the journal until a sync of the database (`_settle`)."""
        with self._db.write(synced=not self._unsynced_commits) as conn:
            head = self._db_head(conn)
            self._check_committed(conn, head)
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
        self._commits += 1
        self._committed = head
        if self._unsynced_commits:
            self._db_unsynced = True
        else:
            self._journal_end = 0
        self._head = self._owed_anchor = head

    def _check_committed(self, conn: sqlite3.Connection, head: tuple[int, str]) -> None:
        """Report events this store committed that the database (its head `head`) has lost since (flock held): the
        anchor is kept as the evidence verify reports, written first to name the last of them if it still agrees
        with the database. (Else the next append, chained onto what is left, would be anchored: events deleted
        before their anchor, up to a settle's 50 ms of writes, would go unreported.) Retention prunes only behind
        the head: a pruned event is not lost."""
        committed = self._committed
        if committed is None or self._anchor_kept:
            return
        if _against_checkpoint(conn, committed) is None:
            return
        logger.error(
            "the audit database no longer holds event %s, which this store committed (events deleted, or the "
            "database replaced): the anchor is kept as evidence for `swarm audit verify`",
            committed[0],
        )
        if _anchor.agrees(self._read_anchor(), conn, head):  # (else it is evidence already: a forged one, say)
            self._write_anchor(*committed)
        self._anchor_kept = True

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
        """Write the anchor; its sync (power-loss durability) is owed until `_sync_anchor`."""
        _write_all(self._anchor_fd, _anchor.encode(seq, mac, self._chain.anchor_tag), 0)
        self._anchor_writes += 1
        self._anchor_unsynced = self._db.durability == "power_loss"

    def _sync_anchor(self) -> None:
        if self._anchor_unsynced:
            try:
                os.fdatasync(self._anchor_fd)
            except OSError:
                self._anchor_sync_failed()
                raise
            self._anchor_unsynced = False

    def _anchor_sync_failed(self) -> None:
        if not self._uncommitted and self._owed_anchor is None:
            # Written again before the next sync: a failed sync may have dropped the dirty page. (Unless
            # another process anchored a later head since: the flock may have been let go.)
            self._owed_anchor = self._head
            self._let_go = True

    def _read_anchor(self) -> Head | None:
        data = os.pread(self._anchor_fd, _anchor.LEN, 0)
        return _anchor.decode(data, self._chain.anchor_tag, untagged_ok=self._legacy_key)

    # -- a privacy migration ------------------------------------------------------------

    def migrate_privacy(
        self,
        protector: Protector,
        *,
        record: Callable[[dict[str, Any], Writes], Appended],
        progress: Callable[[int, int], None] = lambda done, total: None,
        batch: int = 2000,
    ) -> Migration:
        """Encrypt the personal data of every event written before `[privacy]` (`_migrate`), each batch recorded by
        `record` (which appends its `privacy.migrate` event with the batch's `writes`); then empty the journal of
        the records that held the old texts."""
        if self.sealed:
            raise AuditIntegrityError(f"the audit trail cannot be written: {self.broken}")
        result = migrate_trail(
            self._db,
            self._chain,
            change=lambda payload: protect_payload(protector, payload),
            record=record,
            progress=progress,
            batch=batch,
        )
        if result.recorded:
            self.scrub_journal()
        return result

    def scrub_journal(self) -> None:
        """Empty the journal once everything in it is committed (its records may hold texts since rewritten)."""
        with self._thread_lock:
            if self._closed:
                return
            self._lock()
            try:
                self._pay()
                if not self.owed:
                    os.ftruncate(self._journal_fd, 0)
                    os.fsync(self._journal_fd)
                    self._journal_seen = None
                    self._journal_tail = self._journal_end = 0
            finally:
                self._unlock()

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

    def after(self, seq: int, limit: int = 1000) -> list[AuditEvent]:
        """The events after `seq`, oldest first, at most `limit` (what `swarm audit tail --follow` reads next)."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT body FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
        return [AuditEvent.model_validate_json(body) for (body,) in rows]

    # -- verification and retention ----------------------------------------------------

    def verify(self) -> VerifyReport:
        """Recompute the whole chain and compare its head with the anchor (after committing what a body that
        died after its reply left in the journal, if the files can be written)."""
        with contextlib.suppress(OSError, sqlite3.Error):
            self.recover()
        return self._settle(self._verify(incremental=False))

    def check(self) -> VerifyReport:
        """Verify the chain from the last verified point to its head and anchor: a body's start, and daily.

        Start-up thus grows with what was appended since, not with the log (`swarm audit verify` reads it
        all). A chain found broken sets `broken` (a body refuses mutating calls), gets a `BROKEN` event that
        keeps it so, and its anchor is never written over again; one that verifies moves the checkpoint on.
        """
        report = self._settle(self._verify(incremental=True))
        if not report.ok and not self.sealed and not self._recorded_broken:
            with contextlib.suppress(OSError, sqlite3.Error):
                self._record_broken(report.summary())
        return report

    def _verify(self, *, incremental: bool) -> VerifyReport:
        if self.sealed:
            assert self.broken is not None
            return broken(self.broken)
        anchor = self._read_anchor()  # (first: whatever it names is committed by the time the rows are read)
        verified = self._read_checkpoint()
        try:
            with self._db.read() as conn:
                # The checkpoint is evidence too: the database must still hold the event it names (or have pruned it).
                problem = _against_checkpoint(conn, verified) if verified is not None else None
                start: Head | None = None
                if incremental and verified is not None:
                    if problem is not None:
                        return broken(problem, first_bad_seq=verified[0])
                    if _holds(conn, verified[0]):
                        start = verified
                # A cursor: one row at a time, whatever the log's size.
                rows = conn.execute(
                    "SELECT seq, id, body, mac FROM audit_events WHERE seq > ? ORDER BY seq",
                    (start[0] if start is not None else 0,),
                )

                def lookup(seq: int) -> str | None:
                    row = conn.execute("SELECT mac FROM audit_events WHERE seq = ?", (seq,)).fetchone()
                    return None if row is None else str(row[0])

                def checkpoint(through_seq: int) -> str | None:
                    return _checkpoint_mac(conn, through_seq)

                report = verify_trail(
                    rows, chain=self._chain, anchor=anchor, start=start, lookup=lookup, checkpoint=checkpoint
                )
        except sqlite3.DatabaseError as exc:
            return broken(f"state.db cannot be read ({exc})")
        if report.ok and problem is not None:  # (the whole chain read: its own first bad event said first)
            assert verified is not None
            return broken(problem, first_bad_seq=verified[0])
        if self.broken is not None and report.ok:  # (found when opening: a database created afresh)
            return broken(self.broken)
        return report

    def _settle(self, report: VerifyReport) -> VerifyReport:
        """Keep what a check found: broken (the anchor frozen as evidence), or verified (the checkpoint moved on,
        and a legacy anchor and key upgraded)."""
        if not report.ok:
            self.broken = report.problem or report.summary()
            with self._thread_lock:
                self._anchor_kept = True
            return report
        with self._thread_lock:
            if self._closed:
                return report
            if report.head is not None:  # (what it verified: not a head appended since)
                with contextlib.suppress(OSError):
                    self._write_checkpoint(*report.head)
            if self._legacy_key:
                with contextlib.suppress(OSError):
                    self._upgrade_legacy()
        return report

    def _upgrade_legacy(self) -> None:
        """The anchor it verified, written tagged; then the key file's header, after which only a tagged
        anchor is read (thread lock held)."""
        self._lock()
        try:
            anchored = self._read_anchor()
            if anchored is not None and anchored != _anchor.NOT_AUTHENTIC and not self._anchor_kept:
                self._write_anchor(*anchored)
                self._sync_anchor()
            upgrade_key(self._files.key, self._key)
            self._legacy_key = False
            logger.warning("the audit anchor is now tagged with the key (%s upgraded)", self._files.key.name)
        finally:
            self._unlock()

    def _record_broken(self, problem: str) -> None:
        """A `BROKEN` event: the chain stays broken, whatever is appended to it later, until a reset (one per
        store: a body's start, and the CLI's finding of a database created afresh)."""
        self._recorded_broken = True
        self.append(
            EventDraft(
                id=new_action_id(),
                kind="system",
                agent="swarm",
                session="audit",
                rationale="the audit chain does not verify: mutating calls are refused until `swarm audit reset`",
                outcome="failed",
                tool=BROKEN,
                detail={"problem": problem},
            )
        )

    def _read_checkpoint(self) -> Head | None:
        try:
            data = self._files.checkpoint.read_bytes()[: _anchor.LEN]
        except FileNotFoundError:
            return None
        found = _anchor.decode(data, self._chain.checkpoint_tag)
        return None if found == _anchor.NOT_AUTHENTIC else found  # (unreadable: verify from the start)

    def _write_checkpoint(self, seq: int, mac: str) -> None:
        fd = os.open(self._files.checkpoint, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, _anchor.encode(seq, mac, self._chain.checkpoint_tag), 0)
        finally:
            os.close(fd)

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


def _holds(conn: sqlite3.Connection, seq: int) -> bool:
    return conn.execute("SELECT 1 FROM audit_events WHERE seq = ?", (seq,)).fetchone() is not None


def _against_checkpoint(conn: sqlite3.Connection, verified: Head) -> str | None:
    """What is wrong with the database, given that a check verified it through `verified` before (None: nothing;
    retention may have pruned that event since)."""
    seq, mac = verified
    row = conn.execute("SELECT mac FROM audit_events WHERE seq = ?", (seq,)).fetchone()
    if row is not None:
        if hmac.compare_digest(str(row[0]), mac):
            return None
        return f"event {seq} is not the one verified earlier (the database was replaced or edited)"
    first, last = conn.execute("SELECT MIN(seq), MAX(seq) FROM audit_events").fetchone()
    if last is None or seq > last:
        return (
            f"the database ends before event {seq}, verified earlier (events truncated, the database deleted, or "
            "an older copy of it restored)"
        )
    if seq < first:
        return None  # pruned by retention
    return f"event {seq}, verified earlier, is missing"


def _checkpoint_mac(conn: sqlite3.Connection, through_seq: int) -> str | None:
    """The `mac_at` of the last checkpoint event that names `through_seq` (a pruned chain resumes after it)."""
    found: str | None = None
    for (body,) in conn.execute('SELECT body FROM audit_events WHERE body LIKE \'%"kind":"checkpoint"%\' ORDER BY seq'):
        try:
            event = AuditEvent.model_validate_json(body)
        except ValueError:
            continue  # (verify reports it when it reaches it)
        if event.kind == "checkpoint" and int(event.detail.get("through_seq", 0)) == through_seq:
            found = str(event.detail.get("mac_at", ""))
    return found
