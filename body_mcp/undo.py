"""Undo: pre-images of every change, content-addressed, and the reversal of actions.

Before a tool changes a path, the recorder captures what is there (`EntryState` plus the
bytes, stored once per sha256). After the change it notes what is there now. Undo walks an
action's records backwards: if every path still holds what the action left (else a
conflict, unless forced), it restores each pre-image. Undo is itself an action with its
own records, so an undo can be undone.

Small pre-images are stored in the database, in the same transaction as the audit event;
large ones as files under `blobs/` (fsync'd when durability is `power_loss`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shared_protocol import FileChange, RefusalCode
from shared_protocol.refusals import Rule

from . import _fsops, _json
from ._db import StateDB, Writes
from ._factories import empty_dict, empty_list
from ._fsops import ABSENT, EntryState
from .confinement import Workspace
from .exceptions import ToolRefused, UndoRefused
from .git import move_ref, read_ref

INLINE_MAX = 256 * 1024
_HEX = frozenset("0123456789abcdef")


@dataclass(kw_only=True)
class UndoRecord:
    step: int
    op: Literal["state", "rename", "git_ref"]
    path: str
    """A workspace path; for `git_ref`, the ref moved (`refs/heads/B`)."""
    before: EntryState
    after: EntryState
    source: str | None = None
    """For a rename: where the entry came from (`path` is where it went)."""
    before_actions: tuple[str, ...] = ()
    after_actions: tuple[str, ...] = ()
    """For `git_ref`: the audited actions whose changes the commit at `before`/`after` newly holds (git_commit)."""


@dataclass(kw_only=True)
class Recorder:
    """Collects one action's undo records and pre-image blobs until its audit commit."""

    store: UndoStore
    ws: Workspace
    records: list[UndoRecord] = field(default_factory=empty_list)
    blobs: dict[str, bytes] = field(default_factory=empty_dict)

    def before(self, parts: tuple[str, ...]) -> EntryState:
        state, data = _fsops.read_entry(self.ws, parts)
        return self._keep(state, data)

    def before_at(self, parent: int, parts: tuple[str, ...]) -> EntryState:
        """`before`, through a descriptor of the parent directory the caller already holds."""
        state, data = _fsops.entry_at(parent, parts)
        return self._keep(state, data)

    def _keep(self, state: EntryState, data: bytes | None) -> EntryState:
        if state.type == "file" and data is not None and state.sha256 is not None:
            self.store.keep_blob(state.sha256, data, self.blobs)
        return state

    def open_parent(self, parts: tuple[str, ...]) -> int:
        """A descriptor (the caller closes it) of the parent of `parts`, creating and recording missing ancestors."""
        try:
            return self.ws.open_dir_fd(parts[:-1])
        except ToolRefused as exc:
            if exc.code != RefusalCode.NOT_FOUND:
                raise
        self.make_parents(parts)
        return self.ws.open_dir_fd(parts[:-1])

    def make_parents(self, parts: tuple[str, ...]) -> None:
        """Create the missing ancestors of `parts`, recording each so undo removes them again."""
        if len(parts) <= 1 or self.ws.is_dir(parts[:-1]):
            return
        for end in range(1, len(parts)):
            prefix = parts[:end]
            state, _ = _fsops.read_entry(self.ws, prefix)
            if state.type == "absent":
                _fsops.make_dir(self.ws, prefix)
                self.changed(prefix, ABSENT)

    def changed(self, parts: tuple[str, ...], before: EntryState, *, after: EntryState | None = None) -> None:
        """Note a change at `parts`; `after` may be given when the caller knows it (saves re-reading)."""
        if after is None:
            after, _ = _fsops.read_entry(self.ws, parts)
        self.records.append(
            UndoRecord(step=len(self.records), op="state", path="/".join(parts), before=before, after=after)
        )

    def renamed(self, source: tuple[str, ...], destination: tuple[str, ...], state: EntryState) -> None:
        self.records.append(
            UndoRecord(
                step=len(self.records),
                op="rename",
                path="/".join(destination),
                source="/".join(source),
                before=ABSENT,
                after=state,
            )
        )

    def ref_moved(
        self,
        ref: str,
        *,
        before: str | None,
        after: str | None,
        before_actions: tuple[str, ...] = (),
        after_actions: tuple[str, ...] = (),
    ) -> None:
        """Note a git ref moved from commit `before` to `after` (None: the ref did not exist / no longer does)."""
        self.records.append(
            UndoRecord(
                step=len(self.records),
                op="git_ref",
                path=ref,
                before=ref_state(before),
                after=ref_state(after),
                before_actions=before_actions,
                after_actions=after_actions,
            )
        )

    def flush(self, writes: Writes, *, action_id: str, decision_id: str | None) -> None:
        """Add this action's records and pre-images to what its audit event commits."""
        for sha, data in self.blobs.items():
            writes.add("INSERT OR IGNORE INTO blobs (sha256, data) VALUES (?, ?)", (sha, data))
        for record in self.records:
            before = record.before.to_json() | ({"source": record.source} if record.source else {})
            # Where it happened: an agent's body keeps one undo store for the many workspaces its tasks work in.
            after = record.after.to_json() | {"op": record.op, "workspace": str(self.ws.root)}
            if record.op == "git_ref":
                before["actions"], after["actions"] = list(record.before_actions), list(record.after_actions)
            writes.add(
                "INSERT INTO undo_records (action_id, decision_id, step, path, before, after) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (action_id, decision_id, record.step, record.path, _json.compact(before), _json.compact(after)),
            )


@dataclass(kw_only=True, frozen=True)
class StoredRecord:
    row_id: int
    action_id: str
    record: UndoRecord
    workspace: str | None = None
    """The workspace the change was made in (None: recorded before bodies noted it)."""


class UndoStore:
    def __init__(self, db: StateDB, *, blob_dir: Path) -> None:
        self._db = db
        self._blob_dir = blob_dir

    def keep_blob(self, sha: str, data: bytes, pending: dict[str, bytes]) -> None:
        if len(data) <= INLINE_MAX:
            pending[sha] = data
            return
        path = self._blob_dir / sha[:2] / sha
        if path.exists():
            return
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(f".{sha}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            if self._db.durability == "power_loss":
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)

    def load_blob(self, sha: str) -> bytes:
        """A pre-image, checked against its hash (`UndoRefused`, `undo_damaged`, if it is missing or damaged)."""
        with self._db.read() as conn:
            row = conn.execute("SELECT data FROM blobs WHERE sha256 = ?", (sha,)).fetchone()
        try:
            data = bytes(row[0]) if row is not None else self._blob_path(sha).read_bytes()
        except FileNotFoundError:
            raise _damaged(f"pre-image {sha[:12]} is missing") from None
        if hashlib.sha256(data).hexdigest() != sha:
            raise _damaged(f"pre-image {sha[:12]} does not match its hash")
        return data

    def _check_pre_image(self, sha: str) -> None:
        """`load_blob` without keeping the bytes (a file is hashed as it is read): undo checks every pre-image
        before it changes anything."""
        with self._db.read() as conn:
            row = conn.execute("SELECT data FROM blobs WHERE sha256 = ?", (sha,)).fetchone()
        if row is not None:
            found = hashlib.sha256(row[0]).hexdigest()
        else:
            try:
                found = _file_sha256(self._blob_path(sha))
            except FileNotFoundError:
                raise _damaged(f"pre-image {sha[:12]} is missing") from None
        if found != sha:
            raise _damaged(f"pre-image {sha[:12]} does not match its hash")

    def _blob_path(self, sha: str) -> Path:
        return self._blob_dir / sha[:2] / sha

    def check(self) -> list[str]:
        """What is wrong with the undo data, one line each: pre-images that do not match their hash, pending
        records that cannot be read or whose pre-image is missing (`swarm audit verify`).

        One pre-image and one record at a time (cursors, and a look-up per record): memory does not grow with
        the records or the pre-images, only with the problems found."""
        problems: list[str] = []
        with self._db.read() as conn:
            for sha, data in conn.execute("SELECT sha256, data FROM blobs"):
                if hashlib.sha256(data).hexdigest() != sha:
                    problems.append(f"undo pre-image {str(sha)[:12]} in state.db does not match its hash")
            for path in self._blob_files():
                if _file_sha256(path) != path.name:
                    problems.append(
                        f"undo pre-image file {path.relative_to(self._blob_dir.parent)} does not match its hash"
                    )
            pending = conn.execute("SELECT id, action_id, before FROM undo_records WHERE undone_by IS NULL ORDER BY id")
            for row_id, action_id, before_json in pending:
                try:
                    before = EntryState.from_json(json.loads(before_json))
                except (ValueError, TypeError, KeyError, AttributeError):
                    problems.append(f"undo record {row_id} of {action_id} cannot be read")
                    continue
                sha = before.sha256
                if before.type == "file" and sha is not None and not self._has_blob(conn, sha):
                    problems.append(f"undo record {row_id} of {action_id}: its pre-image {sha[:12]} is missing")
        return problems

    def _blob_files(self) -> Iterator[Path]:
        """The pre-image files, read as the directories list them (not sorted: that would hold every name), a
        write in progress left out."""
        if not self._blob_dir.is_dir():
            return
        for shard in sorted(self._blob_dir.glob("??")):
            if not shard.is_dir():
                continue
            with os.scandir(shard) as entries:
                for entry in entries:
                    if not entry.name.startswith("."):
                        yield Path(entry.path)

    def _has_blob(self, conn: sqlite3.Connection, sha: str) -> bool:
        """A pre-image is stored, in the database or as a file (whether it matches its hash is checked apart)."""
        if conn.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (sha,)).fetchone() is not None:
            return True
        return len(sha) == 64 and all(c in _HEX for c in sha) and self._blob_path(sha).is_file()

    def recorder(self, ws: Workspace) -> Recorder:
        return Recorder(store=self, ws=ws)

    def pending_records(self, target_id: str) -> list[StoredRecord]:
        """Not-yet-undone records of an action, or of every action of a decision; newest first."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT id, action_id, step, path, before, after FROM undo_records "
                "WHERE (action_id = ? OR decision_id = ?) AND undone_by IS NULL ORDER BY id DESC",
                (target_id, target_id),
            ).fetchall()
        return [_stored(*row) for row in rows]

    def workspace_records(self, workspace: str) -> list[StoredRecord]:
        """Every not-yet-undone record of changes made in `workspace`, oldest first (what git_commit may commit)."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT id, action_id, step, path, before, after FROM undo_records "
                "WHERE undone_by IS NULL AND json_extract(after, '$.workspace') = ? ORDER BY id",
                (workspace,),
            ).fetchall()
        return [_stored(*row) for row in rows]

    def workspaces_of(self, target_id: str) -> set[str]:
        """The workspaces where `target_id`'s not-yet-undone changes were made (as far as recorded)."""
        return {item.workspace for item in self.pending_records(target_id) if item.workspace is not None}

    def reverse(
        self, ws: Workspace, target_id: str, *, force: bool
    ) -> tuple[Recorder, list[str], list[FileChange], list[int]]:
        """Restore pre-images for `target_id` (action or decision). All conflicts are found before any change."""
        stored = self.pending_records(target_id)
        if not stored:
            raise UndoRefused(f"nothing to undo for '{target_id}' (unknown id, read-only action, or already undone)")
        here = str(ws.root)
        elsewhere = sorted({item.workspace for item in stored if item.workspace is not None and item.workspace != here})
        if elsewhere:
            raise UndoRefused(
                f"'{target_id}' changed files in another workspace ({', '.join(elsewhere)}), not in {ws.root}; "
                "nothing was undone"
            )
        # Walk newest first over a simulated workspace: each record must find what it left,
        # as seen after the newer records of the same target have been reversed.
        conflicts: list[str] = []
        simulated: dict[str, EntryState] = {}

        def now(path: str) -> EntryState:
            if path not in simulated:
                simulated[path] = _fsops.read_entry(ws, tuple(path.split("/")))[0]
            return simulated[path]

        _check_refs(ws, [item for item in stored if item.record.op == "git_ref"])
        for item in stored:
            rec = item.record
            if rec.op == "git_ref":
                continue
            if not _same(now(rec.path), rec.after):
                conflicts.append(f"{rec.path} (changed since {item.action_id})")
            if rec.op == "rename" and rec.source is not None:
                if now(rec.source).type != "absent":
                    conflicts.append(f"{rec.source} (exists again; cannot move back)")
                simulated[rec.source] = rec.after
                simulated[rec.path] = ABSENT
            else:
                simulated[rec.path] = rec.before
        # Every pre-image is checked against its hash before anything is restored: damaged undo data is refused
        # whole, never restored in part or as garbage.
        for item in stored:
            rec = item.record
            if rec.op == "state" and rec.before.type == "file" and rec.before.sha256 is not None:
                self._check_pre_image(rec.before.sha256)
        if conflicts and not force:
            raise UndoRefused(
                "undo would overwrite changes made since: " + ", ".join(conflicts) + ". Undo with force to overwrite.",
                code=RefusalCode.UNDO_CONFLICT,
                rule=Rule.UNDO_CONFLICT,
            )
        recorder = self.recorder(ws)
        changes: list[FileChange] = []
        for item in stored:
            rec = item.record
            if rec.op == "git_ref":
                move_ref(ws.root, rec.path, expected=rec.after.target, to=rec.before.target)
                recorder.ref_moved(
                    rec.path,
                    before=rec.after.target,
                    after=rec.before.target,
                    before_actions=rec.after_actions,
                    after_actions=rec.before_actions,
                )
                continue
            parts = tuple(rec.path.split("/"))
            if rec.op == "rename" and rec.source is not None:
                source = tuple(rec.source.split("/"))
                before_src = recorder.before(source)
                if before_src.type != "absent":
                    _fsops.remove_entry(ws, source)
                _fsops.rename(ws, parts, source)
                recorder.renamed(parts, source, rec.after)
                changes.append(FileChange(path=rec.source, kind="moved"))
                continue
            before = recorder.before(parts)
            self._restore(ws, parts, rec.before, current=before)
            recorder.changed(parts, before)
            changes.append(FileChange(path=rec.path, kind=_kind(before, rec.before)))
        actions = list(dict.fromkeys(item.action_id for item in stored))
        return recorder, actions, changes, [item.row_id for item in stored]

    def _restore(self, ws: Workspace, parts: tuple[str, ...], state: EntryState, *, current: EntryState) -> None:
        if state.type == "absent":
            if current.type != "absent":
                _fsops.remove_entry(ws, parts)
        elif state.type == "file" and state.sha256 is not None:
            if current.type == "dir":
                _fsops.remove_entry(ws, parts)
            _fsops.write_atomic(ws, parts, self.load_blob(state.sha256), mode=state.mode)
        elif state.type == "dir":
            if current.type not in ("dir", "absent"):
                _fsops.remove_entry(ws, parts)
            _fsops.make_dir(ws, parts, state.mode)
        elif state.type == "symlink" and state.target is not None:
            if current.type != "absent":
                _fsops.remove_entry(ws, parts)
            _fsops.make_symlink(ws, parts, state.target)

    @staticmethod
    def mark_undone(writes: Writes, row_ids: list[int], undo_action_id: str) -> None:
        for row_id in row_ids:
            writes.add("UPDATE undo_records SET undone_by = ? WHERE id = ?", (undo_action_id, row_id))


def _stored(row_id: int, action_id: str, step: int, path: str, before_json: str, after_json: str) -> StoredRecord:
    try:
        before = json.loads(before_json)
        after = json.loads(after_json)
        workspace = after.pop("workspace", None)
        record = UndoRecord(
            step=int(step),
            op=after.pop("op", "state"),
            path=str(path),
            source=before.pop("source", None),
            before_actions=tuple(str(a) for a in before.pop("actions", ())),
            after_actions=tuple(str(a) for a in after.pop("actions", ())),
            before=EntryState.from_json(before),
            after=EntryState.from_json(after),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        raise _damaged(f"undo record {row_id} of {action_id} cannot be read") from None
    return StoredRecord(
        row_id=int(row_id),
        action_id=str(action_id),
        record=record,
        workspace=workspace if isinstance(workspace, str) else None,
    )


def _check_refs(ws: Workspace, items: list[StoredRecord]) -> None:
    """A commit is undone only while its ref still names it: moving it back past later commits would drop them
    (refused even with force; undo those first)."""
    for item in items:
        rec = item.record
        now = read_ref(ws.root, rec.path)
        if now != rec.after.target:
            where = f"it now names {now[:12]}" if now is not None else "it no longer exists"
            raise UndoRefused(
                f"{rec.path} moved since {item.action_id} ({where}): undoing it would drop what came after; "
                "nothing was undone",
                code=RefusalCode.UNDO_CONFLICT,
                rule=Rule.UNDO_CONFLICT,
            )


def ref_state(commit: str | None) -> EntryState:
    """A git ref's value as an undo record keeps it: the commit it names, or absent."""
    return ABSENT if commit is None else EntryState(type="file", target=commit)


def _damaged(what: str) -> UndoRefused:
    return UndoRefused(
        f"the undo data is damaged: {what}; nothing was restored (`swarm audit verify` lists what is wrong)",
        code=RefusalCode.UNDO_DAMAGED,
        rule=Rule.UNDO_INTEGRITY,
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _same(a: EntryState, b: EntryState) -> bool:
    if a.type != b.type:
        return False
    if a.type == "file":
        return a.sha256 == b.sha256
    if a.type == "symlink":
        return a.target == b.target
    return True


def _kind(current: EntryState, restored: EntryState) -> Literal["created", "modified", "deleted", "moved"]:
    if restored.type == "absent":
        return "deleted"
    if current.type == "absent":
        return "created"
    return "modified"
