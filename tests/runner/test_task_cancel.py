"""`swarm task cancel` of a task an agent is working stops the agent's work on it: the real CLI cancels it in the
brain, the brain tells the agent (`task_cancelled`), the runner drops the model call in flight (the fake OpenAI API
sees its client go away), reports no outcome and calls the model no more for it.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.fakes.llm import Hang, Turn
from tests.fakes.openai_api import API_KEY, FakeOpenAI
from tests.fakes.serve import serve_app
from tests.runner.stack import stack
from tests.runner.test_kill import openai_model

pytestmark = pytest.mark.anyio


async def test_cancelling_a_task_stops_the_agent_working_it(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    fake.script(Hang(), Turn(content="should never be asked"))
    async with serve_app(fake) as fake_url:
        try:
            async with stack(
                tmp_path, models=openai_model(fake_url), model="fake", extra_env={"FAKE_OPENAI_KEY": API_KEY}
            ) as s:
                repo = s.repo_with_bug()
                task = await s.add_task(repo=str(repo))
                with s.log("worker-1").open("w") as log:
                    agent = await anyio.open_process(
                        s.argv("worker-1", "--once", "--wait", "30"), env=s.env(), stderr=log
                    )
                    async with agent:
                        with anyio.fail_after(90):
                            await fake.hanging.wait()
                        assert (await s.task(task["id"]))["state"] == "claimed"

                        argv = ["task", "cancel", task["id"], "--reason", "not needed any more"]
                        cancelled = await s.swarm(*argv, token=s.captain_token)
                        assert cancelled.returncode == 0, cancelled.stderr

                        with anyio.fail_after(5):
                            await fake.disconnected.wait()
                        with anyio.fail_after(60):
                            code = await agent.wait()
                stderr = s.log("worker-1").read_text()
                assert code == 0, stderr
                assert "cancelled" in stderr
                after = await s.task(task["id"])
                assert after["state"] == "cancelled"
                kinds = [e["kind"] for e in after["history"]]
                assert kinds == ["created", "claimed", "cancelled"], kinds
                assert after["history"][-1]["detail"]["reason"] == "not needed any more"
                assert len(fake.requests) == 1, "the model was asked again for a cancelled task"
                assert (repo / "app.py").read_text() == "def main():\n    return 1\n"
        finally:
            fake.close()
