"""The captain agent breaks deadlocks by itself (#19), end to end: a `swarm agent run` process of an agent whose role
is captain (scripted model, its reviewer token) waits on the brain's event stream; when a decision reaches the
deadlock ladder's captain-agent step it asks its model, shown the deadlock's votes and rationales, and casts the
deciding vote. The brain stays the authority: on a decision that needs a human the ladder skips the captain agent,
whose runner does nothing, and a captain agent's abstention passes the decision on (captain → priority → deny).
The brain's clock is the test's: the panel's deadline and each ladder step pass when the test moves it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from brain_server import MemoryStateEngine, issue_token
from tests.brain.helpers import decision_request
from tests.runner.stack import Stack, git, stack, token_var

pytestmark = pytest.mark.anyio

CAPTAIN = "cap-1"
STEP_S = 5
FILES = [f"f{n}.txt" for n in range(6)]
WRITE_SIX = "; ".join(f"open('{name}', 'w').write('{n}')" for n, name in enumerate(FILES))
ALL_SIX = "python3 -c 'import os, sys; sys.exit(0 if all(os.path.exists(f\"f{n}.txt\") for n in range(6)) else 1)'"
WORKER: list[dict[str, Any]] = [
    {
        "content": "Write the six files in one go.",
        "tool_calls": [
            {"name": "run_command", "arguments": {"argv": ["python3", "-c", WRITE_SIX], "rationale": "the task"}}
        ],
        "usage": {"input_tokens": 700, "output_tokens": 40},
    },
    {"content": "The six files are written.", "usage": {"input_tokens": 900, "output_tokens": 10}},
]


def captain_toml() -> str:
    """A panel of five human seats nobody fills (so only its deadline ends it) and one captain agent."""
    panel = json.dumps([f"human:nobody-{n}" for n in range(5)])
    return (
        '\n[models.judge]\nprovider = "scripted"\nmodel = "gpt-4o-mini"\nscript = "judge.jsonl"\n'
        f"\n[consensus]\npanel = {panel}\nquorum = 3\ndeadline_s = {STEP_S}\n"
        f'\n[[agents]]\nname = "{CAPTAIN}"\nrole = "captain"\nmodel = "judge"\n'
        f'prompt = "You break deadlocks: approve what is in scope."\ntools = ["read_text_file"]\n'
        f'token = "env:{token_var(CAPTAIN)}"\n'
    )


def verdict(value: str, why: str) -> list[dict[str, Any]]:
    content = json.dumps({"vote": value, "rationale": why})
    return [{"content": content, "usage": {"input_tokens": 1500, "output_tokens": 30}}]


async def captain_token(state: MemoryStateEngine) -> dict[str, str]:
    token = await issue_token(state, role="reviewer", label=CAPTAIN, at=datetime.now(UTC), agent=CAPTAIN)
    return {token_var(CAPTAIN): token}


async def pending_decision(s: Stack, *, timeout_s: float = 90) -> dict[str, Any]:
    with anyio.fail_after(timeout_s):
        while not (found := (await s.captain.get("/v1/decisions", params={"state": "pending"})).json()):
            await anyio.sleep(0.1)
    return found[0]


async def decision(s: Stack, decision_id: str) -> dict[str, Any]:
    answer = await s.captain.get(f"/v1/decisions/{decision_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


async def time_passes(s: Stack, seconds: float) -> None:
    s.clock.advance(seconds)
    await s.brain.sweep()


async def propose(s: Stack, *, confidence: float) -> dict[str, Any]:
    """A 6-file change proposed through worker-1's body token: it needs the panel."""
    request = decision_request(
        "body-w1", agent="worker-1", confidence=confidence, impact={"files": 6, "api_calls": 0, "usd": 0}
    )
    request["files"] = FILES
    answer = await s.captain.post(
        "/v1/decisions", json=request, headers={"Authorization": f"Bearer {s.tokens['worker-1']}"}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_the_captain_agents_runner_breaks_a_deadlock_and_the_change_applies(tmp_path: Path) -> None:
    state = MemoryStateEngine()
    async with stack(tmp_path, extra_toml=captain_toml(), extra_env=await captain_token(state), state=state) as s:
        s.script(WORKER)
        s.script(verdict("approve", "in scope: six new text files; the panel never answered"), name="judge.jsonl")
        repo = s.repo_with_bug()
        task = await s.add_task(title="write six files", acceptance=ALL_SIX, repo=str(repo))
        await s.override("worker-1")
        await s.override(CAPTAIN)  # a human captain lets the captain agent's configured version vote live
        runs: dict[str, tuple[int, str]] = {}

        async def run(name: str, *args: str) -> None:
            # (the worker in the test's process, as only one runner may be; the captain agent in a process of its own)
            done = await s.agent(name, *args, timeout_s=150, in_process=name == "worker-1")
            runs[name] = (done.returncode, done.stderr)

        async with anyio.create_task_group() as group:
            group.start_soon(run, CAPTAIN, "--once", "--wait", "120")
            group.start_soon(run, "worker-1", "--once", "--live")
            parked = await pending_decision(s)
            assert (parked["panel"], parked["ladder"], parked["human_required"]) == (
                [f"human:nobody-{n}" for n in range(5)],
                [],
                False,
            )
            await time_passes(s, STEP_S)  # no quorum by the panel's deadline: the captain agent's step
        assert runs["worker-1"][0] == 0, runs["worker-1"][1]
        assert runs[CAPTAIN][0] == 0, runs[CAPTAIN][1]
        assert "deadlocked at the captain agent's step" in runs[CAPTAIN][1]

        broken = await decision(s, parked["id"])
        assert broken["state"] == "approved", json.dumps(broken, indent=1)
        assert [step["kind"] for step in broken["ladder"]] == ["deadlock", "captain_agent"]
        (vote,) = broken["votes"]
        assert (vote["voter"], vote["value"], vote["role"]) == (CAPTAIN, "approve", "reviewer")
        assert vote["rationale"] == "in scope: six new text files; the panel never answered" and vote["logic_version"]
        answer = broken["answers"][-1]
        assert (answer["by"], answer["role"]) == (CAPTAIN, "reviewer")
        assert answer["reason"].startswith("the captain agent broke the deadlock: in scope")
        logged = [e for e in await state.log_entries() if e.target == parked["id"] and e.action == "vote"]
        assert [(e.by, e.detail["to"]) for e in logged] == [(CAPTAIN, "approved")]

        after = await s.task(task["id"])
        assert after["state"] == "succeeded" and after["verified"] is True, json.dumps(after, indent=1)
        branch = after["evidence"]["branch"]
        assert [git(repo, "show", f"{branch}:{name}") for name in FILES] == [str(n) for n in range(6)]
        # the captain agent's model call is charged to the proposing task, as a reviewer's is
        usage = (await s.captain.get("/v1/usage")).json()
        assert usage["by_agent"][CAPTAIN]["calls"] == 1 and usage["by_agent"][CAPTAIN]["usd"] > 0, usage
        assert usage["by_task"][task["id"]]["calls"] == 2 + 1, usage["by_task"]


async def test_a_deadlock_that_needs_a_human_skips_the_captain_agent_and_is_denied_at_its_deadline(
    tmp_path: Path,
) -> None:
    state = MemoryStateEngine()
    async with stack(tmp_path, extra_toml=captain_toml(), extra_env=await captain_token(state), state=state) as s:
        s.script(verdict("approve", "it would approve, were it asked"), name="judge.jsonl")
        proposed = await propose(s, confidence=0.6)  # under 0.70: a human must approve it
        assert proposed["human_required"] is True
        await time_passes(s, STEP_S)
        stuck = await decision(s, proposed["id"])
        assert [step["kind"] for step in stuck["ladder"]] == ["deadlock", "priority", "human_captain"]

        # (It lists the pending decisions when it connects, before its --wait: the stuck one is looked at whatever
        # the wait, and with the brain's clock standing still nothing new comes meanwhile.)
        idle = await s.agent(CAPTAIN, "--once", "--wait", "0.5", timeout_s=60, in_process=True)
        assert idle.returncode == 3, idle.stderr  # nothing for it: the brain never gave it the step
        assert "deadlocked" not in idle.stderr
        after = await decision(s, proposed["id"])
        assert (after["state"], after["votes"]) == ("pending", [])

        deadline = datetime.fromisoformat(after["deadline"])
        await time_passes(s, (deadline - s.brain.now()).total_seconds())
        final = await decision(s, proposed["id"])
        assert final["state"] == "expired"
        assert [step["kind"] for step in final["ladder"]] == ["deadlock", "priority", "human_captain", "denied"]
        assert CAPTAIN not in (await s.captain.get("/v1/usage")).json()["by_agent"]


async def test_a_captain_agent_that_abstains_passes_the_deadlock_on_captain_then_priority_then_deny(
    tmp_path: Path,
) -> None:
    state = MemoryStateEngine()
    async with stack(tmp_path, extra_toml=captain_toml(), extra_env=await captain_token(state), state=state) as s:
        s.script(verdict("abstain", "cannot tell from what is shown"), name="judge.jsonl")
        proposed = await propose(s, confidence=0.9)
        assert proposed["human_required"] is False
        await time_passes(s, STEP_S)
        at_captain = await decision(s, proposed["id"])
        assert [step["kind"] for step in at_captain["ladder"]] == ["deadlock", "captain_agent"]

        done = await s.agent(CAPTAIN, "--once", "--wait", "60", timeout_s=90, in_process=True)
        assert done.returncode == 0, done.stderr
        passed = await decision(s, proposed["id"])
        assert passed["state"] == "pending"
        assert [(v["voter"], v["value"], v["rationale"]) for v in passed["votes"]] == [
            (CAPTAIN, "abstain", "cannot tell from what is shown")
        ]

        await time_passes(s, STEP_S)  # the captain agent's time is up: the priority, then a human captain
        climbed = await decision(s, proposed["id"])
        kinds = ["deadlock", "captain_agent", "priority", "human_captain"]
        assert [step["kind"] for step in climbed["ladder"]] == kinds
        assert "the captain agent did not decide in time" in climbed["ladder"][2]["reason"]
        deadline = datetime.fromisoformat(climbed["deadline"])
        await time_passes(s, (deadline - s.brain.now()).total_seconds())
        final = await decision(s, proposed["id"])
        assert final["state"] == "expired"
        assert [step["kind"] for step in final["ladder"]] == [*kinds, "denied"]
