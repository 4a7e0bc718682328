# pyright: strict
"""Benchmark of workspace snapshots: create, incremental create, restore and drill.

    uv run python bench/bench_snapshots.py                       # 10,000 files / 200 MB + 100 MB SQLite
    uv run python bench/bench_snapshots.py --files 1000 --mb 20 --db-mb 10   # a quick run

Required: restore < 5 min. Targets: restore < 10 s, incremental create (10 files touched) < 1 s.
The workspace is random (incompressible, no duplicates); the database is the workspace's
state DB, backed up into every snapshot with the online backup API.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from body_mcp.snapshots import SnapshotSettings, Snapshotter, _walk

T = TypeVar("T")


def make_workspace(root: Path, files: int, total_bytes: int) -> None:
    """`files` random files in directories of 100, sizes spread from tiny to about 4x the mean."""
    mean = max(total_bytes // max(files, 1), 1)
    for index in range(files):
        directory = root / f"pkg{index // 100:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        size = max(1, mean * (1 + (index % 7)) // 4)
        (directory / f"mod{index:05d}.py").write_bytes(os.urandom(size))


def make_database(path: Path, total_bytes: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    row = 64 * 1024
    conn.execute("BEGIN")
    for _ in range(max(total_bytes // row, 1)):
        conn.execute("INSERT INTO blobs (data) VALUES (?)", (os.urandom(row),))
    conn.execute("COMMIT")
    conn.close()


def touch(root: Path, files: int, count: int, round_: int) -> None:
    """Rewrite `count` files spread over the workspace with new content."""
    for index in range(0, files, max(files // count, 1))[:count]:
        path = root / f"pkg{index // 100:03d}" / f"mod{index:05d}.py"
        path.write_bytes(f"round {round_} file {index}\n".encode() + os.urandom(100))


def add_rows(db: Path, rows: int) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executemany("INSERT INTO blobs (data) VALUES (?)", [(os.urandom(200),) for _ in range(rows)])
    conn.close()


def timed(label: str, func: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = func()
    elapsed = time.perf_counter() - start
    print(f"{label:<52} {elapsed:8.2f} s", flush=True)
    return elapsed, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--mb", type=int, default=200, help="workspace size in MB")
    parser.add_argument("--db-mb", type=int, default=100, help="state database size in MB")
    parser.add_argument("--touch", type=int, default=10, help="files changed before the incremental create")
    parser.add_argument("--dir", type=Path, help="where to build (default: a temp dir; same filesystem as /tmp)")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="bench-snapshots-", dir=args.dir))
    try:
        ws, state = base / "parent" / "ws", base / "state"
        ws.mkdir(parents=True)
        state.mkdir()
        db = state / "state.db"
        print(f"building {args.files} files / {args.mb} MB and a {args.db_mb} MB database in {base}", flush=True)
        make_workspace(ws, args.files, args.mb << 20)
        make_database(db, args.db_mb << 20)
        # An hourly snapshot sees files older than the stat cache's racy window; so does this one.
        time.sleep(_walk.RACY_NS / 1e9 + 0.1)

        snap = Snapshotter(SnapshotSettings(workspace=ws, state_dir=state, state_db=db))
        create_s, first = timed("create (full)", snap.create)
        touch(ws, args.files, args.touch, 1)
        time.sleep(_walk.RACY_NS / 1e9 + 0.1)
        incr_s, incr = timed(f"incremental create ({args.touch} files touched)", snap.create)
        touch(ws, args.files, args.touch, 2)
        add_rows(db, 20)
        time.sleep(_walk.RACY_NS / 1e9 + 0.1)
        incr_db_s, incr_db = timed(f"incremental create ({args.touch} files + 20 DB rows)", snap.create)
        restore_s, _ = timed("restore (first snapshot; verify, undo snapshot, swap)", lambda: snap.restore(first.id))
        drill_s, _ = timed("drill (latest, into scratch)", snap.drill)
        for child in ws.iterdir():  # the disaster case: nothing left to reuse, every byte copied back
            shutil.rmtree(child)
        wiped_s, _ = timed("restore after `rm -rf` of the workspace's contents", lambda: snap.restore(first.id))
        du = sum(f.stat().st_size for f in (state / "snapshots" / "objects").rglob("*") if f.is_file())

        for label, info in (("incremental", incr), ("incremental + DB", incr_db)):
            print(
                f"{label}: {info.objects_written} objects, {info.bytes_written / 1e6:.2f} MB written,"
                f" {info.files_read} files read"
            )
        print(f"object store: {du / 1e6:.0f} MB for {len(snap.store.ids())} snapshots")
        print(
            f"summary: create {create_s:.2f} s, incremental {incr_s:.2f} s (with DB change {incr_db_s:.2f} s), "
            f"restore {restore_s:.2f} s (after rm -rf {wiped_s:.2f} s), drill {drill_s:.2f} s"
        )
        restore_s = max(restore_s, wiped_s)
        ok = restore_s < 300
        print(
            f"restore < 5 min (required): {'PASS' if ok else 'FAIL'}; "
            f"restore < 10 s (target): {'met' if restore_s < 10 else 'missed'}; "
            f"incremental < 1 s (target): {'met' if incr_s < 1 else 'missed'}"
        )
        return 0 if ok else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
