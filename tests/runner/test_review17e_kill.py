"""Review of issue #17 (pass e): a killed agent takes no work and spends nothing. The real brain, the real
`swarm agent run` (in the test's process), the scripted model."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import pytest

from .stack import FIX, stack

pytestmark = pytest.mark.anyio


async def test_review17e_an_agent_started_while_the_kill_switch_is_engaged_claims_nothing(tmp_path: Path) -> None:
    """Withstood: the kill switch is engaged before the agent starts, with a task queued: the first event of its
    stream is the kill, so it takes nothing and calls no model (the task stays queued, no usage is recorded) for as
    long as the kill holds; once released, it takes the task."""
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()
        s.script(FIX)
        task = await s.add_task(repo=str(repo))
        assert (await s.captain.post("/v1/kill", json={"reason": "review"})).status_code == 200
        ran: list[subprocess.CompletedProcess[str]] = []

        async def run() -> None:  # (the runner in the test's process: the same entry point, its body a process)
            ran.append(await s.agent("worker-1", "--once", "--wait", "60", timeout_s=180, in_process=True))

        async with anyio.create_task_group() as group:
            group.start_soon(run)
            # Its event stream is open (the brain sends the kill first on it): then 3 s in which it takes nothing.
            with anyio.fail_after(60):
                while s.brain.hub.subscribers == 0:
                    assert not ran, ran[0].stderr
                    await anyio.sleep(0.05)
            await anyio.sleep(3)
            assert (await s.task(task["id"]))["state"] == "queued"
            assert (await s.captain.get("/v1/usage")).json()["by_task"] == {}
            assert not ran, "a --once runner waits out a kill, paused"
            assert (await s.captain.post("/v1/resume", json={"reason": "review done"})).status_code == 200
        ((code, said),) = [(done.returncode, done.stderr) for done in ran]
        assert code == 0, said
        assert "kill switch engaged" in said.split("claimed task")[0], said
        assert (await s.task(task["id"]))["shadow_runs"][0]["outcome"] == "succeeded"
