"""`swarm privacy erase|export`: bad input is one line on stderr and a non-zero exit, nothing changed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import anyio
import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url
from tests.brain.helpers import live_brain
from tests.privacy.plant import plant

from .inprocess import run_swarm, swarm_in_process


def _env(home: Path) -> dict[str, str]:
    """SWARM_HOME, and no brain URL or token from the environment (a test passes them as flags)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SWARM_BRAIN_URL", "SWARM_TOKEN")}
    return env | {"SWARM_HOME": str(home)}


def _swarm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI's entry point in the test's process (`tests/cli/inprocess.py`)."""
    return run_swarm(args, _env(home))


def _one_line_failure(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("command", ["erase", "export"])
def test_a_malformed_subject_is_refused_in_one_line(home: Path, workspace: Path, command: str) -> None:
    line = _one_line_failure(_swarm(home, "privacy", command, "not a subject", "--workspace", str(workspace)))
    assert "is not a subject" in line


@pytest.mark.parametrize("command", ["erase", "export"])
def test_a_subject_nothing_is_held_about_fails_in_one_line(home: Path, workspace: Path, command: str) -> None:
    done = _swarm(home, "privacy", command, plant().email, "--workspace", str(workspace))
    assert done.returncode == 1
    assert "nothing is held" in _one_line_failure(done)
    # (erase tombstones the subject all the same, and says so)
    assert done.stdout.strip() == (
        "body: nothing held; tombstoned (email)" if command == "erase" else "body: nothing held"
    )


def test_without_a_subject_or_a_command_it_says_what_is_missing(home: Path) -> None:
    assert _swarm(home, "privacy", "erase").returncode == 2  # (argparse: SUBJECT is required)
    assert "erase SUBJECT" in _one_line_failure(_swarm(home, "privacy"))


def test_erasing_on_the_brain_needs_a_captain_token(home: Path, workspace: Path, tmp_path: Path) -> None:
    async def check() -> None:
        async with live_brain(BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"))) as brain:
            args = ("privacy", "erase", plant().email, "--workspace", str(workspace), "--brain", brain.url)
            done = await swarm_in_process([*args, "--token", brain.tokens["approver"]], _env(home))
            assert "403" in _one_line_failure(done)

    anyio.run(check)


def test_unerasing_a_subject_not_erased_fails_in_one_line_and_needs_a_reason(home: Path, workspace: Path) -> None:
    scope = ("--workspace", str(workspace))
    done = _swarm(home, "privacy", "unerase", plant().email, *scope, "--reason", "came back")
    assert "not erased here" in _one_line_failure(done) and done.returncode == 1
    assert done.stdout.strip() == "body: not erased"
    assert "is not a subject" in _one_line_failure(_swarm(home, "privacy", "unerase", "nope", *scope, "--reason", "x"))
    assert _swarm(home, "privacy", "unerase", plant().email, *scope).returncode == 2  # (argparse: --reason required)
