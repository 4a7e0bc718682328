"""Create: content-addressed, deduplicated, incremental; symlinks recorded, special files skipped."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from body_mcp.snapshots import SnapshotSettings, Snapshotter

from ._support import snapshotter


def object_count(snap: Snapshotter) -> int:
    return sum(len(files) for _, _, files in os.walk(snap.store.objects))


@pytest.mark.usefixtures("trust_fresh_stats")
def test_an_incremental_create_after_touching_10_files_stores_only_those_10_objects(ws: Path, state_dir: Path) -> None:
    for index in range(200):
        (ws / "many" / f"{index:03d}.txt").parent.mkdir(exist_ok=True)
        (ws / "many" / f"{index:03d}.txt").write_text(f"many {index}\n")
    snap = snapshotter(ws, state_dir)
    first = snap.create()
    objects = object_count(snap)
    assert first.objects_written == objects

    for index in range(10):
        (ws / "many" / f"{index:03d}.txt").write_text(f"touched {index}\n")
    second = snap.create()

    assert second.objects_written == 10
    assert object_count(snap) == objects + 10
    assert second.files_read == 10  # the other files' stat matched: not even read


@pytest.mark.usefixtures("trust_fresh_stats")
def test_an_unchanged_workspace_costs_no_objects_and_no_reads(ws: Path, state_dir: Path) -> None:
    snap = snapshotter(ws, state_dir)
    snap.create()
    again = snap.create()
    assert (again.objects_written, again.files_read) == (0, 0)


def test_files_changed_a_moment_before_the_walk_are_reread_next_time(ws: Path, state_dir: Path) -> None:
    # Same size, same mtime tick: only rereading catches it, so fresh files get no stat cache entry.
    snap = snapshotter(ws, state_dir)
    first = snap.create()
    assert all(e.stat is None for e in snap.store.read_manifest(first.id).entries if e.type == "file")
    (ws / "d0" / "f000.txt").write_bytes(b"FILE 0\n")
    second = snap.create()
    entry = next(e for e in snap.store.read_manifest(second.id).entries if e.path == "d0/f000.txt")
    assert snap.store.path(str(entry.sha256)).read_bytes() == b"FILE 0\n"


def test_identical_files_are_stored_once(ws: Path, state_dir: Path) -> None:
    for index in range(5):
        (ws / f"copy{index}.txt").write_text("same bytes\n")
    snap = snapshotter(ws, state_dir)
    info = snap.create()
    shas = [e.sha256 for e in snap.store.read_manifest(info.id).entries if e.path.startswith("copy")]
    assert len(set(shas)) == 1
    assert info.objects_written == object_count(snap)


def test_symlinks_are_recorded_not_followed(ws: Path, state_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside secret\n")
    os.symlink(outside, ws / "escape")
    snap = snapshotter(ws, state_dir)
    manifest = snap.store.read_manifest(snap.create().id)
    by_path = {e.path: e for e in manifest.entries}
    assert by_path["escape"].type == "symlink"
    assert by_path["escape"].target == str(outside)
    assert not any(p.startswith("escape/") for p in by_path)
    assert all(b"outside secret" not in p.read_bytes() for p in snap.store.objects.rglob("*") if p.is_file())


def test_the_manifest_lists_every_entry_with_type_mode_hash_size_and_target(ws: Path, state_dir: Path) -> None:
    snap = snapshotter(ws, state_dir)
    manifest = snap.store.read_manifest(snap.create().id)
    by_path = {e.path: e for e in manifest.entries}
    assert (by_path["bin/run.sh"].type, by_path["bin/run.sh"].mode) == ("file", 0o755)
    assert (by_path["locked"].type, by_path["locked"].mode) == ("dir", 0o555)
    assert by_path["link-to-dir"].target == "d1"
    assert by_path["d0/f000.txt"].size == len(b"file 0\n")
    assert manifest.workspace == str(ws)


def test_the_config_file_and_state_database_are_kept_in_each_snapshot(
    ws: Path, state_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "swarm.toml"
    config.write_text("[limits]\ncalls_per_minute = 7\n")
    db = state_dir / "state.db"
    with_db = SnapshotSettings(workspace=ws, state_dir=state_dir, state_db=db, config_file=config)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (42)")
    conn.commit()
    conn.close()
    snap = Snapshotter(with_db)
    info = snap.create()
    assert info.extras == ("state.db", "config")

    snap.restore_extra(info.id, "config", tmp_path / "config-copy.toml")
    assert (tmp_path / "config-copy.toml").read_bytes() == config.read_bytes()
    snap.restore_extra(info.id, "state.db", tmp_path / "db-copy.db")
    copy = sqlite3.connect(tmp_path / "db-copy.db")
    assert copy.execute("SELECT x FROM t").fetchall() == [(42,)]
    copy.close()
