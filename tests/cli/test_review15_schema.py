"""Review of issue 15 (item 11): a state database written by a newer swarm (a schema version this one does not
know) is refused in one line by every command and by the body, rather than used as if it were its own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from body_mcp.exceptions import StateUnusable
from body_mcp.state import StatePaths

from ..conftest import make_body
from .inprocess import swarm_here
from .test_damaged_state import swarm


@pytest.fixture
def newer(home: Path, workspace: Path) -> StatePaths:
    assert swarm_here("status", "--workspace", str(workspace), home=home).returncode == 0
    paths = StatePaths(home=home, workspace=workspace)
    with sqlite3.connect(paths.db) as conn:
        conn.execute("PRAGMA user_version = 99")
    return paths


@pytest.mark.parametrize(
    "argv", [["status"], ["audit", "verify"], ["audit", "tail"], ["snapshot", "create"], ["body"]], ids=" ".join
)
def test_a_state_database_from_a_newer_swarm_is_refused_in_one_line(
    argv: list[str], newer: StatePaths, home: Path, workspace: Path
) -> None:
    # (the body a process of its own, as an IDE starts it; each command through the CLI's entry point in this process)
    run = swarm if argv == ["body"] else swarm_here
    result = run(*argv, "--workspace", str(workspace), home=home)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "schema version 99" in lines[0] and "state.db" in lines[0], lines[0]


def test_a_body_does_not_open_a_state_database_from_a_newer_swarm(
    newer: StatePaths, home: Path, workspace: Path
) -> None:
    with pytest.raises(StateUnusable, match="schema version 99"):
        make_body(workspace, home).close()
    with sqlite3.connect(newer.db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99
