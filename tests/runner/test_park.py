"""Approval parking end to end: `[policy] approval_min_files = 2`, and the model runs a command that writes two
files. The body holds the command back for approval; the runner asks for it (`request_approval`, its own call) and
parks the task in the brain (`waiting_approval`, no lease). A captain answers the decision in the brain: approved,
the runner resumes the task with a fresh body, replays the held command with the decision, verifies and succeeds;
denied, the brain ends the task abandoned and the runner drops it. A runner killed while a task is parked takes it
up again when it starts (its saved state under the agent's work dir); a cancelled parked task leaves nothing behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from swarm_cli.agent_cmds import work_root
from tests.runner.stack import Stack, git, stack

pytestmark = pytest.mark.anyio

WRITE_TWO = "open('a.txt', 'w').write('a'); open('b.txt', 'w').write('b')"
BOTH = 'python3 -c \'import os, sys; sys.exit(0 if os.path.exists("a.txt") and os.path.exists("b.txt") else 1)\''
SCRIPT: list[dict[str, Any]] = [
    {
        "content": "Write both files in one go.",
        "tool_calls": [
            {"name": "run_command", "arguments": {"argv": ["python3", "-c", WRITE_TWO], "rationale": "the task"}}
        ],
        "usage": {"input_tokens": 700, "output_tokens": 40},
    },
    {"content": "a.txt and b.txt are written.", "usage": {"input_tokens": 900, "output_tokens": 10}},
]
POLICY = '[policy]\napproval_min_files = 2\n\n[consensus]\npanel = ["human:captain"]\nquorum = 1\n'
"""Two files need consensus; the panel is the captain alone (its token's label), so its vote settles it."""


async def parked(s: Stack, task_id: str, agent: anyio.abc.Process | Callable[[], int | None]) -> str:
    """Wait for the task to be parked (`agent`, a process or what says how a run in this process ended, has not
    exited meanwhile); its decision id."""
    with anyio.fail_after(120):
        while (task := await s.task(task_id))["state"] != "waiting_approval":
            code = agent() if callable(agent) else agent.returncode
            assert code is None, f"the agent exited with {code} before parking"
            await anyio.sleep(0.2)
    assert task["lease_expires"] is None
    decision_id = task["parked_decision_id"]
    assert isinstance(decision_id, str)
    decision = (await s.captain.get(f"/v1/decisions/{decision_id}")).json()
    assert decision["state"] == "pending", decision
    return decision_id


async def run_to_the_decision(s: Stack, answer: str) -> tuple[dict[str, Any], int, str, Path]:
    repo = s.repo_with_bug()
    task = await s.add_task(title="write a.txt and b.txt", acceptance=BOTH, repo=str(repo))
    await s.override("worker-1")
    ran: list[subprocess.CompletedProcess[str]] = []

    async def run() -> None:  # (in the test's process: a runner killed or restarted is the test below)
        ran.append(await s.agent("worker-1", "--once", "--live", timeout_s=240, in_process=True))

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        decision_id = await parked(s, task["id"], lambda: ran[0].returncode if ran else None)
        assert not (repo / "a.txt").exists() and not (repo / "b.txt").exists(), "held back until approved"
        answered = await s.captain.post(f"/v1/decisions/{decision_id}/{answer}", json={"reason": "test"})
        assert answered.status_code == 200, answered.text
    (done,) = ran
    return await s.task(task["id"]), done.returncode, done.stderr, repo


async def test_an_approved_decision_resumes_the_parked_task_which_succeeds(tmp_path: Path) -> None:
    async with stack(tmp_path, extra_toml=POLICY) as s:
        s.script(SCRIPT)
        after, code, stderr, repo = await run_to_the_decision(s, "approve")
        assert code == 0, stderr
        assert after["state"] == "succeeded" and after["verified"] is True, json.dumps(after, indent=1)
        branch = after["evidence"]["branch"]  # the work is on the task's branch (the checkout is untouched)
        assert git(repo, "show", f"{branch}:a.txt") == "a" and git(repo, "show", f"{branch}:b.txt") == "b"
        assert not (repo / "a.txt").exists()
        kinds = [e["kind"] for e in after["history"]]
        assert kinds == ["created", "claimed", "parked", "resumed", "outcome", "verification"], kinds
        assert after["spend"]["steps"] == 2
        assert "parked" in stderr and "approved: resuming" in stderr


async def test_a_denied_decision_abandons_the_parked_task(tmp_path: Path) -> None:
    async with stack(tmp_path, extra_toml=POLICY) as s:
        s.script(SCRIPT)
        after, code, stderr, repo = await run_to_the_decision(s, "deny")
        assert code == 0, stderr
        assert after["state"] == "abandoned" and after["verified"] is False, json.dumps(after, indent=1)
        assert "denied" in after["outcome_summary"]
        assert not (repo / "a.txt").exists() and not (repo / "b.txt").exists()
        kinds = [e["kind"] for e in after["history"]]
        assert kinds == ["created", "claimed", "parked", "outcome"], kinds
        assert after["history"][-1]["by"] == "captain", "the brain ended it with the decision, not the runner"
        assert "dropping the task" in stderr or "is dropped" in stderr, stderr
        assert not (work_root(s.home) / "worker-1" / "parked" / f"{after['id']}.json").exists()


async def park_one(s: Stack, name: str, *args: str) -> tuple[str, str, anyio.abc.Process]:
    """Queue a task and start the agent (shadow) until it parks it: (task id, decision id, the agent)."""
    task = await s.add_task(title=name, acceptance=BOTH, repo=str(s.repo_with_bug(name)))
    log = s.log(name).open("w")
    agent = await anyio.open_process(s.argv("worker-1", *args), env=s.env(), stderr=log)
    log.close()
    return task["id"], await parked(s, task["id"], agent), agent


async def test_a_restarted_runner_takes_up_its_parked_tasks_and_a_cancelled_one_leaves_nothing(tmp_path: Path) -> None:
    async with stack(tmp_path, extra_toml=POLICY) as s:
        work = work_root(s.home) / "worker-1"
        s.script(SCRIPT[:1] * 2)
        # Not --once: the runner parks the first task, goes on to the second and parks it too.
        broken = (await s.add_task(title="broken", acceptance=BOTH, repo=str(s.repo_with_bug("broken"))))["id"]
        first, first_decision, agent = await park_one(s, "first")
        await parked(s, broken, agent)
        copy, saved = work / "shadow" / first, work / "parked" / f"{first}.json"
        assert copy.is_dir() and saved.is_file(), "the shadow copy and the parked state are kept on disk"
        agent.send_signal(signal.SIGKILL)  # the runner dies while the tasks wait for their decisions
        await agent.wait()
        await agent.aclose()
        (work / "parked" / f"{broken}.json").write_text('{"format": 1, "task": ')  # cut off mid-write
        answered = await s.captain.post(f"/v1/decisions/{first_decision}/approve", json={"reason": "go on"})
        assert answered.status_code == 200, answered.text

        # Started again (as `swarm agents up` restarts it), it finds both in the brain and its saved states.
        s.script(SCRIPT[1:])  # (the model's turns after the approval)
        done = await s.agent("worker-1", "--once", in_process=True)
        assert done.returncode == 0, done.stderr
        assert "parked before a restart" in done.stderr and "approved: resuming" in done.stderr, done.stderr
        after = await s.task(first)
        (run,) = after["shadow_runs"]
        assert (run["outcome"], run["verification"]["verified"]) == ("succeeded", True), json.dumps(after, indent=1)
        # (the shadow run's verification is settled by the brain once the body's re-run event is in)
        assert [e["kind"] for e in after["history"]][-4:] == ["parked", "resumed", "shadow_run", "verification"]
        assert not copy.exists() and not saved.exists(), "the finished task left its copy or state behind"
        assert not (tmp_path / "first" / "a.txt").exists(), "shadow: the held call ran in the copy only"
        given_up = await s.task(broken)
        (lost,) = given_up["shadow_runs"]
        assert (given_up["state"], lost["outcome"]) == ("queued", "abandoned"), json.dumps(given_up, indent=1)
        assert "saved state" in lost["summary"] and "corrupt" in lost["summary"], lost["summary"]
        assert not (work / "shadow" / broken).exists() and not (work / "parked" / f"{broken}.json").exists()

        # A parked task cancelled by a human: the runner drops it, and its shadow copy and saved state go.
        # (This runner in the test's process, in the background while the test cancels: none is killed.)
        s.script(SCRIPT[:1])
        third = (await s.add_task(title="third", acceptance=BOTH, repo=str(s.repo_with_bug("third"))))["id"]
        ran: list[subprocess.CompletedProcess[str]] = []

        async def run_third() -> None:
            ran.append(await s.agent("worker-1", "--once", timeout_s=120, in_process=True))

        async with anyio.create_task_group() as group:
            group.start_soon(run_third)
            await parked(s, third, lambda: ran[0].returncode if ran else None)
            assert (work / "shadow" / third).is_dir()
            # (by the API: the runner holds the in-process CLI; `swarm task cancel` is tests/cli/test_task_cmds.py's)
            cancelled = await s.captain.post(f"/v1/tasks/{third}/cancel", json={"reason": "not needed any more"})
            assert cancelled.status_code == 200, cancelled.text
        (done,) = ran
        assert done.returncode == 0, done.stderr
        assert (await s.task(third))["state"] == "cancelled"
        assert not (work / "shadow" / third).exists(), "a cancelled parked task's shadow copy was left on disk"
        assert not (work / "parked" / f"{third}.json").exists()
