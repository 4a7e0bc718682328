"""`swarm agent run` needs the agent's own token: one bound to it (`swarm brain token create --role body --agent
NAME`). With a body token bound to no agent (an IDE body's), it stops at once with one line saying how to make one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner.stack import FIX, stack

pytestmark = pytest.mark.anyio


async def test_an_agent_with_a_token_bound_to_no_agent_stops_with_one_line_naming_the_fix(tmp_path: Path) -> None:
    async with stack(tmp_path, bind_tokens=False) as s:
        s.script(FIX)
        task = await s.add_task(repo=str(s.repo_with_bug()))
        for mode in ("shadow", "live"):
            flags = ["--live"] if mode == "live" else []
            # (the live run in the test's process: the same entry point, minus a new Python's start)
            refused = await s.agent("worker-1", "--once", "--wait", "5", *flags, in_process=mode == "live")
            assert refused.returncode == 1, refused.stderr
            assert "Traceback" not in refused.stderr
            (error,) = [line for line in refused.stderr.splitlines() if line.startswith("swarm:")]
            assert f"bound to no agent, so it claims IDE work only, not {mode} work" in error
            assert "swarm brain token create --role body --agent worker-1" in error
        after = await s.task(task["id"])
        assert (after["state"], after["history"][-1]["kind"]) == ("queued", "created"), "nothing was claimed"
