"""A kill while the body re-runs the acceptance command does not fail the task: the runner waits for the release and
runs the check again (the real `swarm agent run` process, its body and the brain on 127.0.0.1)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import anyio
import pytest

from swarm_cli.agent_cmds import work_root
from tests.body.helpers import until_running
from tests.runner.stack import FIX, stack

pytestmark = pytest.mark.anyio

MARK = f"slow-check-{uuid.uuid4().hex}"
RELEASED = ".git/swarm-test-released"
SLOW_CHECK = (
    f'python3 -c \'import os, time, app, sys; "{MARK}"; os.path.exists("{RELEASED}") or time.sleep(4); '
    "sys.exit(0 if app.main() == 2 else 1)'"
)
"""The check sleeps 4 s (the kill lands meanwhile), unless the test has marked its shadow clone released (in the
clone's .git, which is no work of the task's): the run after the release need not wait out those 4 s. Its mark on
its command line tells the test it runs."""
VERIFYING = "verifying: the body re-runs"


async def test_a_kill_during_the_acceptance_rerun_waits_for_the_release_and_runs_the_check_again(
    tmp_path: Path,
) -> None:
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()
        s.script(FIX)
        task = await s.add_task(repo=str(repo), acceptance=SLOW_CHECK)
        ran: list[subprocess.CompletedProcess[str]] = []

        async def work() -> None:  # (the runner in the test's process: the same entry point, its body a process)
            ran.append(await s.agent("worker-1", "--once", "--wait", "30", timeout_s=180, in_process=True))

        async with anyio.create_task_group() as group:
            group.start_soon(work)
            await until_running(MARK, timeout_s=90)  # the check runs (for 4 s): the kill lands meanwhile
            killed = await s.captain.post("/v1/kill", json={"reason": "stop mid-check"})
            assert killed.status_code == 200, killed.text
            await anyio.sleep(2.0)
            assert (await s.task(task["id"]))["shadow_runs"] == [], "no outcome while killed"
            (work_root(s.home) / "worker-1" / "shadow" / task["id"] / RELEASED).write_text("")
            resumed = await s.captain.post("/v1/resume", json={"reason": "carry on"})
            assert resumed.status_code == 200, resumed.text
        ((code, said),) = [(done.returncode, done.stderr) for done in ran]
        assert code == 0, said
        assert "kill switch" in said and "runs again" in said, said
        assert said.count(VERIFYING) >= 2, said
        (run,) = (await s.task(task["id"]))["shadow_runs"]
        assert run["outcome"] == "succeeded" and run["verification"]["verified"] is True, run["verification"]
