"""`swarm snapshot create|list|restore|drill`: exit codes, one-line errors, the ID as the last line, audit. The whole
cycle runs the real CLI, a process per command; the errors run its entry point in the test's process."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

from body_mcp.state import StatePaths
from swarm_cli.main import build_parser

from ..cli.inprocess import swarm_here
from ..conftest import make_body
from ._support import mutate_tree, tree_state

ID = re.compile(r"^snap-\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{4}$")


def _entry() -> list[str]:
    """`swarm` itself once `snapshot` is wired into it; until then the commands' own entry point."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["snapshot", "list"])
    except SystemExit:
        return ["-m", "swarm_cli.snapshot_cmds"]
    return ["-m", "swarm_cli"]


def swarm(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """The CLI's entry point in the test's process (`tests/cli/inprocess.py`: no new Python to start)."""
    return swarm_here(*args, home=home)


def swarm_process(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI, as a process of its own."""
    env = {**os.environ, "SWARM_HOME": str(home)}
    env.pop("SWARM_CONFIG", None)
    return subprocess.run(
        [sys.executable, *_entry(), *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_create_prints_the_id_last_and_restore_list_and_drill_work(ws: Path, home: Path) -> None:
    created = swarm_process("snapshot", "create", "--workspace", str(ws), home=home)
    assert created.returncode == 0, created.stderr
    snapshot_id = created.stdout.strip().splitlines()[-1]
    assert ID.match(snapshot_id)
    state_b = tree_state(ws)

    listed = swarm_process("snapshot", "list", "--workspace", str(ws), home=home)
    assert listed.returncode == 0 and snapshot_id in listed.stdout

    mutate_tree(ws)
    restored = swarm_process("snapshot", "restore", snapshot_id, "--workspace", str(ws), home=home)
    assert restored.returncode == 0, restored.stderr
    assert tree_state(ws) == state_b

    drilled = swarm_process("snapshot", "drill", "--workspace", str(ws), home=home)
    assert drilled.returncode == 0, drilled.stderr
    assert "drill OK" in drilled.stdout

    body = make_body(ws, home)
    try:
        tools = [event.tool for event in body.audit.tail(10)]
        assert body.audit.verify().ok
    finally:
        body.close()
    assert tools == ["snapshot_create", "snapshot_restore", "snapshot_drill"]


def test_an_unknown_id_exits_1_with_one_line_and_leaves_the_workspace_alone(ws: Path, home: Path) -> None:
    assert swarm("snapshot", "create", "--workspace", str(ws), home=home).returncode == 0
    before = tree_state(ws)
    result = swarm("snapshot", "restore", "snap-20990101T000000.000000Z-abcd", "--workspace", str(ws), home=home)
    assert "no snapshot" in one_line_error(result)
    assert tree_state(ws) == before


def test_a_drill_on_a_damaged_snapshot_exits_1_with_one_line(ws: Path, home: Path) -> None:
    assert "no snapshots yet" in one_line_error(swarm("snapshot", "drill", "--workspace", str(ws), home=home))
    assert swarm("snapshot", "create", "--workspace", str(ws), home=home).returncode == 0
    objects = StatePaths(home=home, workspace=ws).dir / "snapshots" / "objects"
    victim = next(p for p in sorted(objects.rglob("*")) if p.is_file())
    os.chmod(victim, 0o600)
    victim.write_bytes(b"bit rot")
    assert "damaged" in one_line_error(swarm("snapshot", "drill", "--workspace", str(ws), home=home))
