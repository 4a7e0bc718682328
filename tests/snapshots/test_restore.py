"""Restore: byte-identical trees, verification before anything is touched, and undoable restores."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from body_mcp.confinement import Workspace
from body_mcp.snapshots import SnapshotDamaged, SnapshotNotFound, _swap

from ..conftest import make_body
from ._support import mutate_tree, siblings, snapshotter, tree_state


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_restore_brings_back_content_modes_deletions_additions_and_symlinks(
    ws: Path, state_dir: Path, exchange: bool
) -> None:
    swapped: list[Path] = []
    snap = snapshotter(ws, state_dir, exchange=exchange, on_swap=swapped.append)
    state_b = tree_state(ws)
    taken = snap.create()
    mutate_tree(ws)
    state_a = tree_state(ws)
    assert state_a != state_b

    result = snap.restore(taken.id)

    assert tree_state(ws) == state_b
    assert swapped == [ws]
    assert siblings(ws) == []
    assert not snap.store.journal.exists()
    # The restore is undoable: the snapshot it took first holds state A exactly.
    snap.restore(result.undo_snapshot_id)
    assert tree_state(ws) == state_a


def test_a_body_holding_the_old_directory_can_tell_it_was_replaced(ws: Path, state_dir: Path) -> None:
    snap = snapshotter(ws, state_dir)
    taken = snap.create()
    held = Workspace(ws)
    try:
        assert not held.replaced()
        snap.restore(taken.id)
        assert held.replaced()
    finally:
        held.close()


def test_excluded_and_special_paths_are_left_out_and_survive_a_restore(ws: Path, state_dir: Path) -> None:
    (ws / "node_modules" / "pkg").mkdir(parents=True)
    (ws / "node_modules" / "pkg" / "index.js").write_text("v1\n")
    os.mkfifo(ws / "d0" / "pipe")
    snap = snapshotter(ws, state_dir, exclude=("node_modules",))
    taken = snap.create()
    manifest = snap.store.read_manifest(taken.id)
    assert not any(e.path.startswith("node_modules") for e in manifest.entries)
    assert {(s.path, s.reason) for s in manifest.skipped} == {("node_modules", "excluded"), ("d0/pipe", "special")}

    (ws / "node_modules" / "pkg" / "index.js").write_text("v2\n")
    (ws / "d0" / "f000.txt").write_text("changed\n")
    snap.restore(taken.id)

    assert (ws / "node_modules" / "pkg" / "index.js").read_text() == "v2\n"
    assert (ws / "d0" / "pipe").is_fifo()
    assert (ws / "d0" / "f000.txt").read_bytes() == b"file 0\n"


def test_a_corrupted_object_is_detected_before_the_workspace_is_touched(ws: Path, state_dir: Path) -> None:
    snap = snapshotter(ws, state_dir)
    taken = snap.create()
    mutate_tree(ws)
    before = tree_state(ws)
    entry = next(e for e in snap.store.read_manifest(taken.id).entries if e.path == "d1/f001.txt")
    assert entry.sha256 is not None
    obj = snap.store.path(entry.sha256)
    os.chmod(obj, 0o600)
    data = bytearray(obj.read_bytes())
    data[0] ^= 0xFF
    obj.write_bytes(bytes(data))
    count = len(snap.store.ids())

    with pytest.raises(SnapshotDamaged):
        snap.restore(taken.id)

    assert tree_state(ws) == before
    assert len(snap.store.ids()) == count  # not even the pre-restore snapshot was taken
    assert siblings(ws) == []


def test_a_missing_object_is_detected_before_the_workspace_is_touched(ws: Path, state_dir: Path) -> None:
    snap = snapshotter(ws, state_dir)
    taken = snap.create()
    mutate_tree(ws)
    before = tree_state(ws)
    entry = next(e for e in snap.store.read_manifest(taken.id).entries if e.type == "file")
    assert entry.sha256 is not None
    snap.store.path(entry.sha256).unlink()

    with pytest.raises(SnapshotDamaged):
        snap.restore(taken.id)
    assert tree_state(ws) == before


@pytest.mark.parametrize("damage", ["flip_a_byte", "edit_and_keep_json_valid", "truncate"])
def test_a_corrupted_manifest_is_detected_before_the_workspace_is_touched(
    ws: Path, state_dir: Path, damage: str
) -> None:
    snap = snapshotter(ws, state_dir)
    taken = snap.create()
    mutate_tree(ws)
    before = tree_state(ws)
    path = snap.store.manifest_path(taken.id)
    raw = path.read_bytes()
    if damage == "flip_a_byte":
        path.write_bytes(raw.replace(b'"mode":420', b'"mode":421', 1))
    elif damage == "edit_and_keep_json_valid":
        doc = json.loads(raw)
        doc["entries"][0]["path"] = "../escape"
        path.write_text(json.dumps(doc))
    else:
        path.write_bytes(raw[: len(raw) // 2])

    with pytest.raises(SnapshotDamaged):
        snap.restore(taken.id)
    assert tree_state(ws) == before
    assert [i.id for i in snap.list_snapshots() if i.damaged] == [taken.id]


def _rehash(doc: dict[str, Any], *, ascii_only: bool) -> bytes:
    """A manifest's canonical JSON with its hash, as format 1 (UTF-8) or format 2 (ASCII-only) writes it."""
    doc.pop("manifest_sha256", None)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only).encode()
    doc["manifest_sha256"] = hashlib.sha256(canonical).hexdigest()
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only).encode()


def test_a_manifest_written_in_the_first_format_is_still_read_and_restored(ws: Path, state_dir: Path) -> None:
    (ws / "café.txt").write_text("non-ASCII, valid UTF-8\n")
    snap = snapshotter(ws, state_dir)
    state_b = tree_state(ws)
    taken = snap.create()
    path = snap.store.manifest_path(taken.id)
    doc = json.loads(path.read_bytes())
    assert doc["format"] == 2 and b"caf\\u00e9.txt" in path.read_bytes()
    # Rewritten as format 1 wrote it: non-ASCII as UTF-8 bytes, hashed in that form.
    doc["format"] = 1
    path.write_bytes(_rehash(doc, ascii_only=False))
    assert "café.txt".encode() in path.read_bytes()
    mutate_tree(ws)
    (ws / "café.txt").unlink()

    snap.restore(taken.id)

    assert tree_state(ws) == state_b
    assert not [i.id for i in snap.list_snapshots() if i.damaged]


def test_a_manifest_naming_a_path_no_filesystem_name_decodes_to_is_damaged(ws: Path, state_dir: Path) -> None:
    snap = snapshotter(ws, state_dir)
    taken = snap.create()
    path = snap.store.manifest_path(taken.id)
    doc = json.loads(path.read_bytes())
    entry = next(e for e in doc["entries"] if e["type"] == "file" and "/" not in e["path"])
    entry["path"] = "\ud800.txt"  # a lone surrogate outside surrogateescape's range: no bytes give it
    path.write_bytes(_rehash(doc, ascii_only=True))
    before = tree_state(ws)

    with pytest.raises(SnapshotDamaged):
        snap.restore(taken.id)
    assert tree_state(ws) == before


@pytest.mark.parametrize("bad_id", ["snap-20990101T000000.000000Z-abcd", "../../etc", "nope"])
def test_an_unknown_id_is_a_clear_error_and_changes_nothing(ws: Path, state_dir: Path, bad_id: str) -> None:
    snap = snapshotter(ws, state_dir)
    snap.create()
    before = tree_state(ws)
    with pytest.raises(SnapshotNotFound):
        snap.restore(bad_id)
    assert tree_state(ws) == before
    assert len(snap.store.ids()) == 1


def test_the_state_database_rows_at_snapshot_time_are_kept(workspace: Path, home: Path, tmp_path: Path) -> None:
    body = make_body(workspace, home)
    try:
        body.record_human(action="kill", rationale="before the snapshot")
        snap = snapshotter(workspace, body.paths.dir, state_db=body.paths.db)
        with sqlite3.connect(body.paths.db) as conn:
            rows_then = list(conn.iterdump())
        taken = snap.create()
        body.record_human(action="resume", rationale="after the snapshot")
        with sqlite3.connect(body.paths.db) as conn:
            assert list(conn.iterdump()) != rows_then

        snap.restore_extra(taken.id, "state.db", tmp_path / "restored.db")
    finally:
        body.close()
    restored = sqlite3.connect(tmp_path / "restored.db")
    try:
        assert list(restored.iterdump()) == rows_then
    finally:
        restored.close()


@pytest.mark.usefixtures("trust_fresh_stats")
def test_unchanged_files_are_linked_not_copied_and_a_changed_mode_is_not(ws: Path, state_dir: Path) -> None:
    snap = snapshotter(ws, state_dir)
    state_b = tree_state(ws)
    taken = snap.create()
    mutate_tree(ws)
    kept_inode = os.stat(ws / "d1" / "f001.txt").st_ino
    run_sh_inode = os.stat(ws / "bin" / "run.sh").st_ino  # same bytes, mode changed: must not be linked

    snap.restore(taken.id)

    assert tree_state(ws) == state_b
    assert os.stat(ws / "d1" / "f001.txt").st_ino == kept_inode
    assert os.stat(ws / "d1" / "f001.txt").st_nlink == 1
    assert os.stat(ws / "bin" / "run.sh").st_ino != run_sh_inode


@pytest.mark.usefixtures("trust_fresh_stats")
def test_a_linked_file_written_in_place_during_the_restore_is_put_right(
    ws: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = snapshotter(ws, state_dir)
    state_b = tree_state(ws)
    taken = snap.create()
    mutate_tree(ws)
    victim = ws / "d1" / "f004.txt"

    def write_in_place(step: str) -> None:
        if step == "built":
            with open(victim, "r+b") as fh:  # same inode as the file linked into the new tree
                fh.write(b"SCRIBBLE")

    monkeypatch.setattr(_swap, "STEP_HOOK", write_in_place)
    snap.restore(taken.id)

    assert tree_state(ws) == state_b
