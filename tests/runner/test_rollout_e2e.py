"""A new logic version of an agent end to end: the real CLI's runner, its body, the scripted provider and a real
brain. The live version works live; a changed prompt is a new version that shadows (nothing applied), then takes
its canary share by task-id bucket, and is promoted to live on verified successes. The runs to their end run the
runner in the test's process (`Stack.agent(in_process=True)`), the one left running is a process of its own."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from brain_server.canary import bucket
from shared_protocol.agents import agent_logic_version
from shared_protocol.config import load_config
from tests.runner.stack import FIX, Stack, stack

pytestmark = pytest.mark.anyio

ROLLOUT = "[rollout]\nshadow_days = 0\nmin_shadow_tasks = 1\nsteps = [50, 100]\nmin_tasks_per_step = 1\n"


async def _rollout(s: Stack) -> dict[str, object]:
    answer = await s.captain.get("/v1/agents/worker-1/rollout")
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _task_in(s: Stack, repo: Path, low: int, high: int) -> str:
    while True:
        task = await s.add_task(repo=str(repo))
        if low <= bucket(task["id"]) < high:
            return task["id"]
        cancelled = await s.captain.post(f"/v1/tasks/{task['id']}/cancel", json={"reason": "not in this bucket"})
        assert cancelled.status_code == 200, cancelled.text


async def test_a_changed_prompt_shadows_then_is_promoted_through_the_canary_to_live(tmp_path: Path) -> None:
    async with stack(tmp_path, extra_toml=ROLLOUT) as s:
        repo = s.repo_with_bug()
        s.script(FIX)
        old = agent_logic_version(load_config(s.config), "worker-1")
        first = await s.add_task(repo=str(repo))
        await s.override("worker-1")
        done = await s.agent("worker-1", "--once", "--live", in_process=True)
        assert done.returncode == 0, done.stderr
        assert (await s.task(first["id"]))["verified"] is True
        assert (await _rollout(s))["state"]["live_version"] == old  # type: ignore[index]

        # A new prompt: a new logic version, which starts in shadow; its live claims are refused.
        s.config.write_text(s.config.read_text().replace("You fix small bugs.", "You fix small bugs, carefully."))
        new = agent_logic_version(load_config(s.config), "worker-1")
        assert new != old
        await s.override("worker-1")  # (readiness for the new version; the rollout still decides)
        shadowed = await s.add_task(repo=str(repo))
        refused = await s.agent("worker-1", "--once", "--live", in_process=True)
        assert refused.returncode == 1 and "shadow" in refused.stderr, refused.stderr
        done = await s.agent("worker-1", "--once", "--shadow", in_process=True)
        assert done.returncode == 0, done.stderr
        (run,) = (await s.task(shadowed["id"]))["shadow_runs"]
        assert run["logic_version"] == new and run["verification"]["verified"] is True
        assert (repo / "app.py").read_text() == "def main():\n    return 1\n", "nothing applied in shadow"
        cancelled = await s.captain.post(f"/v1/tasks/{shadowed['id']}/cancel", json={"reason": "done with it"})
        assert cancelled.status_code == 200

        # Shadow done (one task, no days) and the metrics hold: canary at 50%, then 100%, then live.
        report = await _rollout(s)
        assert (report["state"]["stage"], report["percent"]) == ("canary", 50), report  # type: ignore[index]
        for low, high in ((0, 50), (0, 100)):
            task_id = await _task_in(s, repo, low, high)
            done = await s.agent("worker-1", "--once", "--live", in_process=True)
            assert done.returncode == 0, done.stderr
            after = await s.task(task_id)
            assert after["logic_version"] == new and after["verified"] is True, after
        final = await _rollout(s)
        assert final["state"]["live_version"] == new and final["state"]["candidate"] is None, final  # type: ignore[index]
        shown = await s.swarm("rollout", "status", "worker-1", "--json", "--token", s.captain_token)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["state"]["live_version"] == new


async def test_with_no_flag_the_runner_claims_as_the_rollout_says_and_goes_live_by_itself_at_the_first_canary_step(
    tmp_path: Path,
) -> None:
    """No --shadow or --live: the live version claims live; a changed prompt's runner (one process, running on)
    shadows its first task, then, the shadow period done (no days, one task: the brain's clock does not matter), the
    rollout's first canary step makes its next claim live, with no restart. --shadow stays shadow whatever the
    rollout (and --live an override the brain refuses a candidate in shadow: the test above)."""
    async with stack(tmp_path, extra_toml=ROLLOUT) as s:
        repo = s.repo_with_bug()
        s.script(FIX)
        old = agent_logic_version(load_config(s.config), "worker-1")
        first = await s.add_task(repo=str(repo))
        fresh = await s.agent("worker-1", "--once", "--wait", "5", in_process=True)  # no rollout yet: shadow
        assert fresh.returncode == 0 and "the rollout says shadow" in fresh.stderr, fresh.stderr
        assert "(no rollout yet)" in fresh.stderr and "(shadow)" in fresh.stderr, fresh.stderr
        assert (await s.task(first["id"]))["state"] == "queued"
        await s.override("worker-1")
        done = await s.agent(
            "worker-1", "--once", "--live", in_process=True
        )  # the agent's first live version is a human's choice
        assert done.returncode == 0, done.stderr
        second = await _task_in(s, repo, 0, 100)
        again = await s.agent("worker-1", "--once", in_process=True)
        assert again.returncode == 0 and "the rollout says live" in again.stderr, again.stderr
        assert "(the live version)" in again.stderr, again.stderr
        after = await s.task(second)
        assert after["state"] == "succeeded" and after["logic_version"] == old, after

        s.config.write_text(s.config.read_text().replace("You fix small bugs.", "You fix small bugs, carefully."))
        new = agent_logic_version(load_config(s.config), "worker-1")
        await s.override("worker-1")
        s.script(FIX + FIX)  # one process: its shadow run, then its live run
        task_id = await _task_in(s, repo, 0, 50)  # in the candidate's first canary share
        with s.log("runner").open("w") as log:
            runner = await anyio.open_process(s.argv("worker-1"), env=s.env(), stderr=log)
            async with runner:
                try:
                    after = await s.wait_for(task_id, "succeeded", timeout_s=120, log=s.log("runner"))
                finally:
                    runner.terminate()
        text = s.log("runner").read_text()
        assert after["logic_version"] == new and after["verified"] is True, after
        assert after["evidence"]["mode"] == "live", after
        said = [line for line in text.splitlines() if "the rollout says" in line]
        assert len(said) == 2, text
        assert "says shadow" in said[0] and "a new version: it starts in shadow" in said[0], said
        assert "says live" in said[1] and "the candidate, 50% canary" in said[1], said
        (run,) = after["shadow_runs"]  # its shadow run came first, by the same process
        assert run["logic_version"] == new, run
        report = await _rollout(s)  # (one task per step: its live success carried it on through 100%)
        assert report["state"]["live_version"] == new, report  # type: ignore[index]

        # --shadow pins shadow whatever the rollout says (here: live): the task it takes stays queued, nothing applied.
        s.script(FIX)
        pinned_id = await _task_in(s, repo, 0, 50)
        pinned = await s.agent("worker-1", "--once", "--shadow", in_process=True)
        assert pinned.returncode == 0 and "the rollout says" not in pinned.stderr, pinned.stderr
        pinned_task = await s.task(pinned_id)
        assert pinned_task["state"] == "queued" and len(pinned_task["shadow_runs"]) == 1, pinned_task
