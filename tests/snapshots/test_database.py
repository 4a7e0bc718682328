"""State database snapshots: consistent while another process writes, and chunked so a small change is small."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from body_mcp.snapshots import snapshot_database

from ._support import snapshotter

WRITER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode = WAL")
    n = 0
    while True:
        # Two rows per transaction: a consistent copy always holds an even number of rows.
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES (?)", (n,))
        conn.execute("INSERT INTO t (v) VALUES (?)", (-n,))
        conn.execute("COMMIT")
        if n == 0:  # (said after the first commit: a copy taken from now on has rows to hold)
            print("writing", flush=True)
        n += 1
    """
)


def make_db(path: Path, rows: int = 0, blob: int = 0) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(b"x" * blob if blob else i,) for i in range(rows)])
    conn.commit()
    conn.close()


def test_a_database_copy_is_consistent_while_another_process_writes(tmp_path: Path) -> None:
    src = tmp_path / "state.db"
    make_db(src)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(src)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        counts: list[int] = []
        for index in range(5):
            dest = tmp_path / f"copy{index}.db"
            snapshot_database(src, dest)
            copy = sqlite3.connect(dest)
            assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            (count,) = copy.execute("SELECT count(*) FROM t").fetchone()
            (total,) = copy.execute("SELECT coalesce(sum(v), 0) FROM t").fetchone()
            copy.close()
            assert count % 2 == 0 and total == 0
            counts.append(count)
    finally:
        writer.kill()
        writer.wait()
    assert counts[-1] > 0


@pytest.mark.usefixtures("trust_fresh_stats")
def test_an_unchanged_database_is_not_copied_again_and_a_small_change_stores_few_chunks(
    ws: Path, state_dir: Path
) -> None:
    db = state_dir / "state.db"
    make_db(db, rows=400, blob=10_000)  # about 4 MB
    snap = snapshotter(ws, state_dir, state_db=db)
    first = snap.create()
    assert first.objects_written > 4

    assert snap.create().objects_written == 0

    conn = sqlite3.connect(db)
    conn.execute("UPDATE t SET v = 'small' WHERE id = 200")
    conn.commit()
    conn.close()
    changed = snap.create()
    assert 0 < changed.objects_written <= 3
