"""Adversarial review 19b: a real `swarm body` over stdio SIGKILLed at a chosen `fdatasync` of a lone write (strace
attached to the running body injects the signal at its Nth `fdatasync` from then on): the journal's sync on the
event loop before the reply (N=1), then the commit's and the settle's after it. The reply is never seen before the
journal's sync; whatever the point, the chain verifies afterwards and holds every acknowledged write.

Run: python3 -m uv run --frozen pytest -n 0 tests/review19b/test_sigkill_at_sync.py
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from .test_two_stdio_bodies import StdioBody, verify_cli


@pytest.mark.parametrize("nth", [1, 2])
def test_a_lone_write_sigkilled_at_its_nth_sync_leaves_a_verifiable_chain(
    workspace: Path, home: Path, nth: int
) -> None:
    """Held for N = 1 (the loop path's journal sync) and N = 2 (the settle's after the reply: a lone write makes
    two): at N=1 no reply comes; at N=2 the reply's event is in the chain after a restart. Verify passes each
    time."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    home.mkdir(parents=True, exist_ok=True)
    (home / "swarm.toml").write_text("[policy]\ncumulative_window_s = 0\n")
    body = StdioBody(workspace, home)
    acknowledged = body.writes(["warm.txt"])
    body.settle_wait()
    tracer = subprocess.Popen(
        [
            strace,
            "-qq",
            "-f",
            "-o",
            "/dev/null",
            "-p",
            str(body.proc.pid),
            "-e",
            "trace=fsync,fdatasync",
            "-e",
            f"inject=fsync,fdatasync:signal=KILL:when={nth}",
        ],
        stderr=subprocess.PIPE,
    )
    try:
        body.wait_traced()
        answer = body.try_write("x.txt")
        if answer is not None:
            acknowledged.append(answer)
        body.proc.wait(timeout=20)  # (killed at its Nth sync: after the reply, the settle within 50 ms)
    finally:
        if body.proc.poll() is None:
            body.kill()
        tracer.wait(timeout=10)
    if nth == 1:
        assert len(acknowledged) == 1, "a reply came before the journal's sync"
    verify = verify_cli(workspace, home)
    assert verify.returncode == 0 and "audit chain OK" in verify.stdout, verify.stdout + verify.stderr
    [db] = home.rglob("state.db")
    conn = sqlite3.connect(db)
    try:
        stored = {str(row[0]) for row in conn.execute("SELECT id FROM audit_events")}
    finally:
        conn.close()
    assert set(acknowledged) <= stored, (acknowledged, stored)
