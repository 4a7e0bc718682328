"""A restore killed with SIGKILL at any step leaves the old or the new tree, and the next call cleans up."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from body_mcp import Admin, BodySettings
from body_mcp.state import StatePaths
from shared_protocol.config import SwarmConfig

from ..cli.inprocess import swarm_here
from ..conftest import make_body
from ._support import mutate_tree, siblings, snapshotter, tree_state

ROOT = Path(__file__).resolve().parents[2]

# (step, nth time reached, exchange, link unchanged files, which state the workspace holds right after the kill)
CASES = [
    ("verified", 1, True, False, "old"),
    ("undo_snapshot", 1, True, False, "old"),
    ("build.file", 7, True, False, "old"),
    ("built", 1, True, False, "old"),
    ("swap", 1, True, False, "old"),
    ("swapped", 1, True, False, "new"),
    ("carried", 1, True, False, "new"),
    ("build.file", 3, False, False, "old"),
    ("swap", 1, False, False, "old"),
    ("between_renames", 1, False, False, "absent"),
    ("swapped", 1, False, False, "new"),
    ("build.file", 20, True, True, "old"),
    ("swapped", 1, True, True, "new"),
]


def kill_restore_at(
    ws: Path, state_dir: Path, snapshot_id: str, step: str, nth: int, exchange: bool, link: bool = False
) -> None:
    args = [str(ws), str(state_dir), snapshot_id, step, str(nth), "1" if exchange else "0", "1" if link else "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.snapshots._restore_child", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the restore never reached the step"
        assert proc.stdout.readline().strip() == "PAUSED"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()


@pytest.mark.parametrize(("step", "nth", "exchange", "link", "right_after"), CASES)
def test_a_restore_killed_part_way_leaves_one_state_and_the_next_call_cleans_up(
    ws: Path, state_dir: Path, step: str, nth: int, exchange: bool, link: bool, right_after: str
) -> None:
    (ws / "node_modules").mkdir()
    (ws / "node_modules" / "dep.js").write_text("kept\n")
    snap = snapshotter(ws, state_dir, exclude=("node_modules",))
    new_state = tree_state(ws)
    taken = snap.create()
    mutate_tree(ws)
    old_state = tree_state(ws)

    kill_restore_at(ws, state_dir, taken.id, step, nth, exchange, link)

    expected = {"old": old_state, "new": new_state}
    if right_after == "absent":
        assert not ws.exists()  # between the fallback's two renames: neither tree, never a mix
    elif right_after == "new" and step == "swapped":
        # Swapped, excluded paths not carried over yet: the snapshot's own tree exactly.
        assert tree_state(ws) == {k: v for k, v in new_state.items() if not k.startswith("node_modules")}
    else:
        assert tree_state(ws) == expected[right_after]

    snap.create()  # any later call finishes or rolls back the killed restore

    final = tree_state(ws)
    assert final in (old_state, new_state)
    assert final == (old_state if right_after == "old" else new_state)
    assert siblings(ws) == []
    assert not snap.store.journal.exists()
    assert os.listdir(snap.store.tmp) == []


def test_a_later_restore_also_cleans_up_and_then_succeeds(ws: Path, state_dir: Path) -> None:
    snap = snapshotter(ws, state_dir)
    new_state = tree_state(ws)
    taken = snap.create()
    mutate_tree(ws)
    kill_restore_at(ws, state_dir, taken.id, "build.file", 5, True)
    assert siblings(ws) != []

    snap.restore(taken.id)

    assert tree_state(ws) == new_state
    assert siblings(ws) == []


def swarm(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """The CLI's entry point in the test's process (`tests/cli/inprocess.py`); the restore it finds killed was a
    process of its own."""
    return swarm_here(*args, home=home)


# (step, nth, exchange, which tree the workspace ends with, what opens the workspace next)
OPENERS = [
    ("build.file", 7, True, "old", "status"),
    ("built", 1, True, "old", "audit tail"),
    ("swap", 1, True, "old", "snapshot list"),
    ("swapped", 1, True, "new", "status"),
    ("carried", 1, True, "new", "audit tail"),
    ("build.file", 3, False, "old", "body"),
    ("between_renames", 1, False, "new", "status"),
    ("between_renames", 1, False, "new", "body"),
]


@pytest.mark.parametrize(("step", "nth", "exchange", "ends_with", "opener"), OPENERS)
def test_any_command_that_opens_the_workspace_finishes_a_killed_restore(
    ws: Path, home: Path, step: str, nth: int, exchange: bool, ends_with: str, opener: str
) -> None:
    paths = StatePaths(home=home, workspace=ws)
    (ws / "node_modules").mkdir()
    (ws / "node_modules" / "dep.js").write_text("kept\n")
    new_state = tree_state(ws)
    taken = snapshotter(ws, paths.dir, exclude=("node_modules",)).create()
    mutate_tree(ws)
    old_state = tree_state(ws)
    kill_restore_at(ws, paths.dir, taken.id, step, nth, exchange)
    assert siblings(ws) != []

    if opener == "body":
        make_body(ws, home).close()
    else:
        result = swarm(*opener.split(), "--workspace", str(ws), home=home)
        assert result.returncode == 0, result.stderr

    assert siblings(ws) == []
    assert tree_state(ws) == (old_state if ends_with == "old" else new_state)  # whole: never a mix
    with Admin.open(BodySettings(workspace=ws, home=home, config=SwarmConfig()), by="human:test") as admin:
        recovered = [e for e in admin.tail(20) if (e.tool or "").endswith("snapshot_recover")]
    assert len(recovered) == 1  # audited: the killed restore itself recorded nothing


def test_opening_the_workspace_leaves_a_restore_that_is_still_running_alone(ws: Path, state_dir: Path) -> None:
    snap = snapshotter(ws, state_dir)
    taken = snap.create()
    mutate_tree(ws)
    old_state = tree_state(ws)
    kill_restore_at(ws, state_dir, taken.id, "built", 1, True)

    with snap.store.locked():  # as a restore that is still running holds it
        assert snapshotter(ws, state_dir).finish_interrupted() is None
        assert siblings(ws) != []

    assert snapshotter(ws, state_dir).finish_interrupted() == "rolled_back"
    assert siblings(ws) == []
    assert tree_state(ws) == old_state
