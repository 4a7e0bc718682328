"""Approval parking end to end: `[policy] approval_min_files = 2`, and the model runs a command that writes two
files. The body holds the command back for approval; the runner asks for it (`request_approval`, its own call) and
parks the task in the brain (`waiting_approval`, no lease). A captain answers the decision in the brain: approved,
the runner resumes the task with a fresh body, replays the held command with the decision, verifies and succeeds;
denied, the task ends abandoned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.runner.stack import Stack, stack

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
POLICY = "[policy]\napproval_min_files = 2\n"


async def parked(s: Stack, task_id: str, agent: anyio.abc.Process) -> str:
    """Wait for the task to be parked; its decision id."""
    with anyio.fail_after(120):
        while (task := await s.task(task_id))["state"] != "waiting_approval":
            assert agent.returncode is None, f"the agent exited with {agent.returncode} before parking"
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
    with s.log("worker-1").open("w") as log:
        agent = await anyio.open_process(s.argv("worker-1", "--once", "--live"), env=s.env(), stderr=log)
        async with agent:
            decision_id = await parked(s, task["id"], agent)
            assert not (repo / "a.txt").exists() and not (repo / "b.txt").exists(), "held back until approved"
            answered = await s.captain.post(f"/v1/decisions/{decision_id}/{answer}", json={"reason": "test"})
            assert answered.status_code == 200, answered.text
            with anyio.fail_after(120):
                code = await agent.wait()
    return await s.task(task["id"]), code, s.log("worker-1").read_text(), repo


async def test_an_approved_decision_resumes_the_parked_task_which_succeeds(tmp_path: Path) -> None:
    async with stack(tmp_path, extra_toml=POLICY) as s:
        s.script(SCRIPT)
        after, code, stderr, repo = await run_to_the_decision(s, "approve")
        assert code == 0, stderr
        assert after["state"] == "succeeded" and after["verified"] is True, json.dumps(after, indent=1)
        assert (repo / "a.txt").read_text() == "a" and (repo / "b.txt").read_text() == "b"
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
