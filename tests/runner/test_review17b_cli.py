"""Adversarial review of #17 (second pass): odd flags and config at the agent CLI entry points exit non-zero with
one line on stderr naming the problem, never a traceback, and claim nothing (a real brain on 127.0.0.1).

Each odd case runs `swarm agent run` in the test's process (`tests/cli/inprocess.py`: the same entry point, minus a
new Python's start per case); one of each kind also runs as its own process, for what Python itself reports."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import pytest

from tests.cli.inprocess import swarm_in_process
from tests.runner.stack import Stack, stack

pytestmark = pytest.mark.anyio

ODD_RUNS: list[tuple[str, ...]] = [
    ("--once", "--wait", "-1"),
    ("--once", "--wait", "nan"),
    ("--once", "--wait", "inf"),
    ("--once", "--wait", "1e400"),
    ("--once", "--brain", "ftp://127.0.0.1:1"),
    ("--once", "--brain", "http://[::1"),
    ("--once", "--config", "/dev/null/x"),
]
ODD_AGENTS = ["../../etc", "", "nobody", "worker-1\n", "x" * 5000]
ODD_TOML = [
    "max_usd_per_task = -1\n",
    "max_usd_per_task = nan\n",
    'max_usd_per_task = "lots"\n',
    "task_timeout_s = 1e400\n",
    'tools = ["run_command", "report_outcome"]\n',
    "max_steps = -5\n",
]


def one_line_error(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode not in (0, 3), (done.args[-4:], done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, (done.args, done.stderr)


async def in_a_process(s: Stack, argv: list[str]) -> subprocess.CompletedProcess[str]:
    with anyio.fail_after(120):
        ran = await anyio.run_process(argv, env=s.env(), check=False)
    return subprocess.CompletedProcess(argv, ran.returncode, ran.stdout.decode(), ran.stderr.decode())


async def test_review17b_odd_flags_and_agent_names_are_one_line_errors_and_claim_nothing(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        task = await s.add_task(repo=str(s.repo_with_bug()))
        runs = [["agent", "run", "--agent", "worker-1", *args] for args in ODD_RUNS]
        runs += [["agent", "run", "--agent", name, "--once", "--wait", "1"] for name in ODD_AGENTS]
        for args in runs:
            with anyio.fail_after(60):
                one_line_error(await swarm_in_process(args, s.env()))
        # As processes of their own: an odd flag, an odd agent name.
        one_line_error(await in_a_process(s, s.argv("worker-1", *ODD_RUNS[0])))
        one_line_error(await in_a_process(s, s.argv(ODD_AGENTS[0], "--once", "--wait", "1")))
        assert (await s.task(task["id"]))["state"] == "queued", "an odd run claimed the task"


async def test_review17b_an_odd_agent_config_key_is_a_one_line_error(tmp_path: Path) -> None:
    """Each odd key in a config of its own (`--config`), against one brain with one task queued."""
    async with stack(tmp_path) as s:
        task = await s.add_task(repo=str(s.repo_with_bug()))
        for n, line in enumerate(ODD_TOML):
            config = tmp_path / f"odd-{n}.toml"
            config.write_text(s.config.read_text() + line)
            args = ["agent", "run", "--agent", "worker-1", "--once", "--wait", "1", "--config", str(config)]
            with anyio.fail_after(60):
                done = await swarm_in_process(args, s.env())
            assert "Traceback" not in done.stderr, (line, done.stderr)
            if done.returncode != 0:
                assert len(done.stderr.strip().splitlines()) == 1, (line, done.stderr)
                assert (await s.task(task["id"]))["state"] == "queued", line
        s.config.write_text(s.config.read_text() + ODD_TOML[0])
        done = await s.agent("worker-1", "--once", "--wait", "1")  # (as a process of its own)
        one_line_error(done)
        assert (await s.task(task["id"]))["state"] == "queued"
