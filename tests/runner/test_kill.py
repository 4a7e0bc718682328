"""The brain's kill switch stops an agent mid LLM call, end to end: the real `swarm agent run` (in the test's
process where the test does not stop it; its body a process), its model the real OpenAI SDK against the fake OpenAI
API on 127.0.0.1, the real brain.

The fake holds the model request open (`Hang`); the captain's kill must make the runner drop it (the fake sees its
client go away) within a second, no new request may arrive while killed, and the agent's body refuses to change
anything; after the resume the agent takes the step again and finishes the task. And the failsafe: an agent whose
brain is out of reach makes no model call at all.
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_runner.body import BodyLaunch, open_body
from tests.fakes.llm import FakeCall, Hang, Turn
from tests.fakes.openai_api import API_KEY, FakeOpenAI
from tests.fakes.serve import serve_app
from tests.runner.stack import ACCEPTANCE, stack
from tests.runner.stack import FIX as SCRIPTED_FIX

pytestmark = pytest.mark.anyio


def openai_model(url: str) -> str:
    return (
        f'[models.fake]\nprovider = "openai"\nmodel = "gpt-4o"\nbase_url = "{url}/v1"\n'
        'api_key = "env:FAKE_OPENAI_KEY"\nmax_output_tokens = 512\n'
    )


READ = FakeCall(name="read_text_file", arguments={"path": "app.py", "rationale": "see the bug"})
EDIT = FakeCall(
    name="edit_file",
    arguments={"path": "app.py", "edits": [{"old_text": "return 1", "new_text": "return 2"}], "rationale": "fix it"},
)
FIX = [
    Turn(content="Reading.", tool_calls=[READ]),
    Turn(content="Fixing.", tool_calls=[EDIT]),
    Turn(content="main() returns 2 now."),
]


async def test_the_kill_switch_cuts_an_agent_off_mid_llm_call_and_resume_lets_it_finish(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    fake.script(Hang(), *FIX)
    async with serve_app(fake) as fake_url:
        try:
            async with stack(
                tmp_path,
                models=openai_model(fake_url),
                agents=["worker-1"],
                model="fake",
                extra_env={"FAKE_OPENAI_KEY": API_KEY},
            ) as s:
                repo = s.repo_with_bug()
                task = await s.add_task(repo=str(repo))
                env = s.env()
                ran: list[subprocess.CompletedProcess[str]] = []

                async def work() -> None:  # (in the test's process: the same entry point, its body a process)
                    ran.append(await s.agent("worker-1", "--once", "--wait", "30", timeout_s=180, in_process=True))

                async with anyio.create_task_group() as group:
                    group.start_soon(work)
                    with anyio.fail_after(90):
                        await fake.hanging.wait()
                    assert len(fake.requests) == 1

                    killed = await s.captain.post("/v1/kill", json={"reason": "stop everything"})
                    assert killed.status_code == 200, killed.text
                    started = time.monotonic()
                    with anyio.fail_after(5):
                        await fake.disconnected.wait()
                    assert time.monotonic() - started < 1.0, "the in-flight model call was not dropped within 1 s"

                    # The agent's body is killed too: a body of this agent refuses a change (a fresh body behaves
                    # as killed from the start, `brain_unreachable`, until it hears the brain's kill).
                    workspace = tmp_path / "probe"
                    workspace.mkdir()
                    argv = s.cli_argv("body", "--workspace", str(workspace), "--agent", "worker-1", "--brain", s.url)
                    launch = BodyLaunch(argv=argv, env={**env, "SWARM_TOKEN": s.tokens["worker-1"]})
                    async with open_body(launch) as body:
                        code = None
                        with anyio.fail_after(20):
                            while code != "kill_switch_engaged":
                                reply = await body.call(
                                    "write_file", {"path": "x.txt", "content": "x", "rationale": "probe"}
                                )
                                assert reply.is_error, "a killed agent's body wrote a file"
                                code = reply.refusal_code
                                await anyio.sleep(0.2)
                    assert not (workspace / "x.txt").exists()

                    # Nothing new reaches the model while killed.
                    await anyio.sleep(1.5)
                    assert len(fake.requests) == 1, "a model request was made while killed"
                    assert (await s.task(task["id"]))["state"] == "claimed"
                    assert not ran, "a --once runner waits out a kill, paused"

                    resumed = await s.captain.post("/v1/resume", json={"reason": "carry on"})
                    assert resumed.status_code == 200, resumed.text
                ((exit_code, stderr),) = [(done.returncode, done.stderr) for done in ran]
                assert exit_code == 0, stderr
                assert "kill switch engaged" in stderr and "released" in stderr

                after = await s.task(task["id"])
                (run,) = after["shadow_runs"]
                assert run["outcome"] == "succeeded" and run["verification"]["verified"] is True, (run, stderr)
                assert run["verification"]["command"] == ACCEPTANCE
                assert len(fake.requests) == 4, "the cut-off step was taken again, then the rest of the script"
                assert run["spend"]["steps"] == 3
                # The aborted call was settled at its reservation and counted.
                usage = (await s.captain.get("/v1/usage")).json()
                assert usage["by_task"][task["id"]]["calls"] == 4
                assert run["spend"]["usd"] == pytest.approx(usage["by_task"][task["id"]]["usd"])
        finally:
            fake.close()


async def test_an_agent_whose_brain_is_out_of_reach_pauses_and_makes_no_model_call(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    fake.script(*FIX)
    async with serve_app(fake) as fake_url:
        try:
            async with stack(
                tmp_path,
                models=openai_model(fake_url),
                model="fake",
                extra_env={"FAKE_OPENAI_KEY": API_KEY},
                extra_toml="[brain]\nfailsafe_s = 0.5\n",  # (10 s by default; the test need not wait that long)
            ) as s:
                env = s.env() | {"SWARM_BRAIN_URL": "http://127.0.0.1:9"}  # nothing listens there
                with s.log("worker-1").open("w") as log:
                    agent = await anyio.open_process(s.argv("worker-1", "--once", "--wait", "5"), env=env, stderr=log)
                    async with agent:
                        # [brain] failsafe_s without the brain: paused, saying so.
                        with anyio.fail_after(90):
                            while "failsafe" not in s.log("worker-1").read_text():
                                assert agent.returncode is None, s.log("worker-1").read_text()
                                await anyio.sleep(0.2)
                        await anyio.sleep(1)
                        assert agent.returncode is None, "paused: neither working nor exiting"
                        agent.terminate()
                        await agent.wait()
                assert fake.requests == [] and fake.headers == [], "a model call was made without a brain"
        finally:
            fake.close()


async def test_a_task_whose_new_body_reaches_the_brain_late_waits_for_it_and_pages_no_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A task's body is new, and refuses every change until its first registration succeeds (it could not hear a
    kill). Under load the brain answered that registration after the scripted model's first edit: the refusal went
    back to the model as the edit's answer, the task failed its check, and the brain logged a failsafe alert (the
    runner e2e flake). Here the brain answers every registration 1.5 s late, every time."""
    async with stack(tmp_path) as s:
        register = s.brain.register

        async def late(*args: Any, **kwargs: Any) -> Any:
            await anyio.sleep(1.5)
            return await register(*args, **kwargs)

        s.brain.register = late  # type: ignore[method-assign]
        s.script(SCRIPTED_FIX)
        task = await s.add_task(repo=str(s.repo_with_bug()))
        await s.override("worker-1")
        with caplog.at_level(logging.WARNING, logger="brain_server"):
            done = await s.agent("worker-1", "--once", "--live", in_process=True)
        after = await s.task(task["id"])
        assert after["state"] == "succeeded" and after["verified"] is True, (after["state"], done.stderr)
        alerts = [r.getMessage() for r in caplog.records if "alert failsafe" in r.getMessage()]
        assert alerts == [], "the body refused a change before it reached the brain"
