"""Adversarial review of #17 (second pass): the default acceptance inputs must cover the files an acceptance command
names however it names them: `./check.py`, through a symlink, or inside a shell command line (`sh -c '...'`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent_runner.runner import acceptance_inputs
from body_mcp.confinement import Workspace
from body_mcp.policy import PathPolicy
from shared_protocol.brain import Task


def protected(acceptance: str, workspace: Path, rel: str) -> bool:
    task = Task(
        id="task_1",
        title="t",
        description="",
        value_usd=0,
        state="claimed",
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
        created_by="approver",
        acceptance=acceptance,
    )
    policy = PathPolicy(denied=(), read_only=()).with_acceptance_inputs(acceptance_inputs(task, workspace))
    space = Workspace(workspace)
    try:
        return policy.classify(space.resolve(rel))[0] == "acceptance_input"
    finally:
        space.close()


@pytest.mark.parametrize(
    "acceptance",
    [
        "python3 check.py",
        "python3 ./check.py",
        "python3 lib/../check.py",
        "sh -c 'python3 check.py'",
        "bash -lc 'cd . && python3 check.py --strict'",
        "env FOO=1 python3 check.py",
    ],
)
def test_review17b_the_check_a_command_names_is_protected_however_it_is_named(tmp_path: Path, acceptance: str) -> None:
    """Fixed for `sh -c '...'`: the words of a command line passed as one argument are looked at too."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "check.py").write_text("raise SystemExit(1)\n")
    assert protected(acceptance, tmp_path, "check.py")


def test_review17b_a_check_reached_through_a_symlink_is_protected_by_both_names(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "check.py").write_text("raise SystemExit(1)\n")
    (tmp_path / "check.py").symlink_to(tmp_path / "real" / "check.py")
    assert protected("python3 check.py", tmp_path, "real/check.py")
    assert protected("python3 check.py", tmp_path, "check.py")
