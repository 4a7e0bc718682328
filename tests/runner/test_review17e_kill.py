"""Review of issue #17 (pass e): a killed agent takes no work and spends nothing. The real brain, the real
`swarm agent run`, the scripted model."""

from __future__ import annotations

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
        log = s.log("runner").open("wb")
        process = await anyio.open_process(s.argv("worker-1", "--once", "--wait", "60"), env=s.env(), stderr=log)
        try:
            with anyio.fail_after(60):
                while "kill switch engaged" not in s.log("runner").read_text():
                    await anyio.sleep(0.1)
            await anyio.sleep(3)
            assert (await s.task(task["id"]))["state"] == "queued"
            assert (await s.captain.get("/v1/usage")).json()["by_task"] == {}
            assert process.returncode is None, "a --once runner waits out a kill, paused"
            assert (await s.captain.post("/v1/resume", json={"reason": "review done"})).status_code == 200
            with anyio.fail_after(120):
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
            log.close()
        assert code == 0, s.log("runner").read_text()
        assert (await s.task(task["id"]))["shadow_runs"][0]["outcome"] == "succeeded"
