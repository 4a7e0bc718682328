"""`swarm audit verify [--full]`: every event from the first, whatever a body's incremental check verified before.

A body's start (and its daily check) verifies from the last verified event on: an event edited before that
point passes it. `swarm audit verify` reads the whole chain, with or without `--full` (which says so), and the
undo data it vouches for one record at a time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import tracemalloc
from pathlib import Path

from body_mcp import Body

from ..cli.inprocess import swarm_here
from ..conftest import make_body


def _swarm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI's entry point in the test's process (`tests/cli/inprocess.py`: no new Python to start)."""
    return swarm_here(*args, home=home)


def test_verify_full_finds_an_edit_before_the_last_checked_event_that_a_bodys_start_does_not(
    workspace: Path, home: Path
) -> None:
    body = make_body(workspace, home)
    try:
        for n in range(5):
            body.record_human(action="note", rationale=f"note {n}")
        assert body.audit.check().ok  # the checkpoint: verified through the head
    finally:
        body.close()
    ok = _swarm(home, "audit", "verify", "--full", "--workspace", str(workspace))
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr
    assert ok.stdout.strip() == "audit chain OK: 5 events verified", ok.stdout

    with sqlite3.connect(body.paths.db) as conn:  # an edit of event 2, verified before
        conn.execute("DROP TRIGGER audit_events_no_update")
        conn.execute("UPDATE audit_events SET body = replace(body, 'note 1', 'note X') WHERE seq = 2")
    conn.close()
    again = make_body(workspace, home)  # a body's start: from the checkpoint on, so the edit goes unseen
    try:
        assert again.audit.broken is None
    finally:
        again.close()

    for args in (["--full"], []):
        found = _swarm(home, "audit", "verify", *args, "--workspace", str(workspace))
        assert found.returncode == 1 and found.stdout == "", found.stdout
        assert found.stderr.splitlines() == ["audit chain BROKEN at event seq 2: MAC mismatch (event edited)"], (
            found.stderr
        )


def test_verify_names_a_flag_it_does_not_know(workspace: Path, home: Path) -> None:
    result = _swarm(home, "audit", "verify", "--fulll", "--workspace", str(workspace))
    assert result.returncode == 2 and result.stdout == ""
    assert "unrecognized arguments: --fulll" in result.stderr.splitlines()[-1], result.stderr
    result = _swarm(home, "audit", "verify", "--full=yes", "--workspace", str(workspace))
    assert result.returncode == 2 and "--full: ignored explicit argument 'yes'" in result.stderr, result.stderr


def _pending_records(body: Body, count: int) -> None:
    """`count` pending undo records, each naming a pre-image stored in the database."""
    data = b"pre-image"
    sha = hashlib.sha256(data).hexdigest()
    before = json.dumps({"type": "file", "sha256": sha, "mode": 0o644})
    after = json.dumps({"type": "file", "sha256": "0" * 64, "mode": 0o644})
    with sqlite3.connect(body.paths.db) as conn:
        conn.execute("INSERT OR IGNORE INTO blobs (sha256, data) VALUES (?, ?)", (sha, data))
        conn.executemany(
            "INSERT INTO undo_records (action_id, step, path, before, after) VALUES (?, 0, ?, ?, ?)",
            ((f"act_{n:012x}", f"src/pkg/module_{n}.py", before, after) for n in range(count)),
        )
    conn.close()


def _check_peak(body: Body) -> tuple[int, list[str]]:
    tracemalloc.start()
    try:
        problems = body.undo.check()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, problems


def test_the_undo_check_reads_one_pending_record_at_a_time(body: Body) -> None:
    _pending_records(body, 500)
    small, problems = _check_peak(body)
    assert problems == []
    _pending_records(body, 5_000)
    large, problems = _check_peak(body)
    assert problems == []
    assert large < small + 64 * 1024, (small, large)

    with sqlite3.connect(body.paths.db) as conn:  # and it still finds a record whose pre-image is missing
        conn.execute("DELETE FROM blobs")
    conn.close()
    _, problems = _check_peak(body)
    assert len(problems) == 5_500 and problems[0].startswith("undo record 1 of act_000000000000: its pre-image ")
