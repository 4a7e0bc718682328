"""Adversarial review of #17 (second pass): odd flags and config at the agent CLI entry points exit non-zero with
one line on stderr naming the problem, never a traceback, and claim nothing (a real brain on 127.0.0.1)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import pytest

from tests.runner.stack import stack

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


async def test_review17b_odd_flags_and_agent_names_are_one_line_errors_and_claim_nothing(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        task = await s.add_task(repo=str(s.repo_with_bug()))
        runs = [s.argv("worker-1", *args) for args in ODD_RUNS]
        runs += [s.argv(name, "--once", "--wait", "1") for name in ODD_AGENTS]
        for argv in runs:
            with anyio.fail_after(60):
                ran = await anyio.run_process(argv, env=s.env(), check=False)
            done = subprocess.CompletedProcess(argv, ran.returncode, ran.stdout.decode(), ran.stderr.decode())
            assert done.returncode not in (0, 3), (argv[-4:], done.returncode, done.stderr)
            assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, (argv, done.stderr)
        assert (await s.task(task["id"]))["state"] == "queued", "an odd run claimed the task"


@pytest.mark.parametrize("line", ODD_TOML)
async def test_review17b_an_odd_agent_config_key_is_a_one_line_error(tmp_path: Path, line: str) -> None:
    async with stack(tmp_path) as s:
        s.config.write_text(s.config.read_text() + line)
        task = await s.add_task(repo=str(s.repo_with_bug()))
        done = await s.agent("worker-1", "--once", "--wait", "1")
        assert "Traceback" not in done.stderr, done.stderr
        if done.returncode != 0:
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert (await s.task(task["id"]))["state"] == "queued"
