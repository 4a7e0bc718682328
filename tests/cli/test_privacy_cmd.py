"""`swarm privacy erase|export`: bad input is one line on stderr and a non-zero exit, nothing changed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url
from tests.body.test_brain_link import run_swarm
from tests.brain.helpers import live_brain
from tests.privacy.plant import plant


def _one_line_failure(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("command", ["erase", "export"])
def test_a_malformed_subject_is_refused_in_one_line(home: Path, workspace: Path, command: str) -> None:
    line = _one_line_failure(run_swarm(home, "privacy", command, "not a subject", "--workspace", str(workspace)))
    assert "is not a subject" in line


@pytest.mark.parametrize("command", ["erase", "export"])
def test_a_subject_nothing_is_held_about_fails_in_one_line(home: Path, workspace: Path, command: str) -> None:
    done = run_swarm(home, "privacy", command, plant().email, "--workspace", str(workspace))
    assert done.returncode == 1
    assert "nothing is held" in _one_line_failure(done)
    assert done.stdout.strip() == "body: nothing held"


def test_without_a_subject_or_a_command_it_says_what_is_missing(home: Path) -> None:
    assert run_swarm(home, "privacy", "erase").returncode == 2  # (argparse: SUBJECT is required)
    assert "erase SUBJECT" in _one_line_failure(run_swarm(home, "privacy"))


def test_erasing_on_the_brain_needs_a_captain_token(home: Path, workspace: Path, tmp_path: Path) -> None:
    async def check() -> None:
        async with live_brain(BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"))) as brain:
            args = ("privacy", "erase", plant().email, "--workspace", str(workspace), "--brain", brain.url)
            done = await anyio.to_thread.run_sync(lambda: run_swarm(home, *args, "--token", brain.tokens["approver"]))
            assert "403" in _one_line_failure(done)

    anyio.run(check)
