"""A reviewer agent in process against a live brain: strict JSON votes (anything else abstains, never approves),
decisions made before it started and after, its spend on the proposing task; and its CLI's bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_runner.conversation import ModelTurn, TokenUsage
from agent_runner.exceptions import RateLimited
from agent_runner.loop import AgentProfile
from agent_runner.providers import InMemoryProvider, Reply
from agent_runner.reviewer import ReviewerRunner, parse_vote
from agent_runner.runner import EXIT_NO_TASK, EXIT_WORKED, UsageQueue
from agent_runner.wallet import MemoryLedger, Wallet
from body_mcp.brain_client import BrainClient
from brain_server import BrainSettings
from brain_server.state import sqlite_url
from shared_protocol.config import ConsensusConfig
from tests.brain.helpers import LiveBrain, decision_request, live_brain, ok
from tests.cli.inprocess import swarm_in_process
from tests.runner.stack import stack
from tests.runner.test_wallet import priced

pytestmark = pytest.mark.anyio

PANEL = ["rev-a", "rev-b", "rev-c", "rev-d", "rev-e"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"vote": "approve", "rationale": "in scope"}', "approve"),
        ('  {"rationale": "touches CI", "vote": "deny"}\n', "deny"),
        ('{"vote": "abstain", "rationale": "cannot see the diff"}', "abstain"),
    ],
)
def test_a_strict_json_answer_is_the_vote(text: str, value: str) -> None:
    assert parse_vote(text)[0] == value


@pytest.mark.parametrize(
    "text",
    [
        "I approve this change.",
        '```json\n{"vote": "approve", "rationale": "ok"}\n```',
        '["approve"]',
        '{"vote": "approve", "rationale": "ok", "confidence": 1}',
        '{"vote": "approve"}',
        '{"vote": "approve", "rationale": "   "}',
        '{"vote": "APPROVE", "rationale": "ok"}',
        '{"vote": "yes", "rationale": "ok"}',
        "",
    ],
)
def test_anything_else_abstains_saying_why_and_never_approves(text: str) -> None:
    value, why = parse_vote(text)
    assert value == "abstain" and why


def turn(content: str) -> ModelTurn:
    return ModelTurn(content=content, stop_reason="end_turn", usage=TokenUsage(input_tokens=1000, output_tokens=20))


def reviewer(live: LiveBrain, token: str, replies: list[Reply]) -> tuple[ReviewerRunner, BrainClient, list[str]]:
    brain = BrainClient(live.url, token)
    usage = UsageQueue(brain, None)
    wallet = Wallet(
        MemoryLedger(),
        priced("gpt-4o"),
        provider="openai",
        agent="rev-a",
        logic_version="lv-rev-a",
        max_usd_per_task=1.0,
        sink=usage.put,
    )
    profile = AgentProfile(
        name="rev-a",
        logic_version="lv-rev-a",
        system_prompt="You review changes.",
        tools=(),
        max_steps=1,
        max_usd_per_task=1.0,
        max_output_tokens=4096,
        task_timeout_s=60,
    )
    said: list[str] = []
    runner = ReviewerRunner(
        profile=profile,
        provider=InMemoryProvider(replies),
        brain=brain,
        wallet=wallet,
        usage=usage,
        failsafe_s=5,
        say=said.append,
    )
    return runner, brain, said


async def propose(api: Any, task_id: str | None = None, summary: str = "rewrite the billing module") -> dict[str, Any]:
    if task_id is not None:
        claim = {"body_id": "body-c", "agent": "claude", "task_id": task_id, "mode": "shadow", "logic_version": "x"}
        ok(await api.post("/v1/tasks/claim", claim, as_="claude-body"))
    request = decision_request(
        "body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py"], summary=summary
    )
    return ok(await api.post("/v1/decisions", request, as_="claude-body"), 201)


async def test_a_garbage_answer_abstains_a_model_error_abstains_and_the_spend_goes_to_the_task(tmp_path: Path) -> None:
    settings = BrainSettings(
        database_url=sqlite_url(tmp_path / "brain.db"),
        keepalive_s=0.2,
        consensus=ConsensusConfig(panel=PANEL, quorum=3, deadline_s=600),
    )
    async with live_brain(settings) as live, live.client() as api:
        token = await live.add_token("rev-a", "reviewer", agent="rev-a")
        await api.add_token("claude-body", "body", agent="claude")
        task_id = ok(await api.post("/v1/tasks", {"title": "six files"}, as_="approver"), 201)["id"]
        before = await propose(api, task_id)  # made before the reviewer listens: found when it connects
        failing = RateLimited("rate limited", provider="openai", model="gpt-4o", status=429)
        runner, brain, said = reviewer(live, token, [turn("Looks fine to me, approve!"), failing])
        try:
            assert await runner.run(once=True) == EXIT_WORKED
            first = ok(await api.get(f"/v1/decisions/{before['id']}", as_="approver"))
            (vote,) = first["votes"]
            assert (vote["voter"], vote["value"], vote["logic_version"]) == ("rev-a", "abstain", "lv-rev-a")
            assert "not the JSON object" in vote["rationale"]
            spent = ok(await api.get(f"/v1/usage?task_id={task_id}", as_="approver"))
            assert spent["by_agent"]["rev-a"]["calls"] == 1

            # a decision made while it waits comes on the event stream; a model error abstains too
            async with anyio.create_task_group() as group:
                codes: list[int] = []

                async def wait_one() -> None:
                    codes.append(await runner.run(once=True, wait_s=20))

                group.start_soon(wait_one)
                await anyio.sleep(0.5)
                after = await propose(api, summary="a second change")
            assert codes == [EXIT_WORKED]
            second = ok(await api.get(f"/v1/decisions/{after['id']}", as_="approver"))
            assert [(v["value"], "review failed" in v["rationale"]) for v in second["votes"]] == [("abstain", True)]
            assert any("voted abstain" in line for line in said)

            # nothing left to review: --once with a short wait ends with 3
            assert await runner.run(once=True, wait_s=0.5) == EXIT_NO_TASK
        finally:
            await brain.aclose()


async def test_a_reviewer_does_not_run_live_and_needs_a_brain(tmp_path: Path) -> None:
    reviewer_entry = '\n[[agents]]\nname = "rev-a"\nrole = "reviewer"\nmodel = "scripted"\nprompt = "p"\n'
    reviewer_entry += 'tools = ["read_text_file"]\n'
    async with stack(tmp_path, extra_toml=reviewer_entry) as s:
        s.script([{"content": json.dumps({"vote": "approve", "rationale": "ok"})}])
        # (in the test's process: the same entry point; the last run below is a process of its own)
        live = await swarm_in_process(["agent", "run", "--agent", "rev-a", "--once", "--live", "--token", "x"], s.env())
        assert live.returncode != 0 and len(live.stderr.strip().splitlines()) == 1, live.stderr
        assert "reviews decisions" in live.stderr
        env = s.env() | {"SWARM_BRAIN_URL": ""}
        done = await swarm_in_process(["agent", "run", "--agent", "rev-a", "--once", "--token", "x"], env)
        stderr = done.stderr
        assert done.returncode != 0 and "--brain" in stderr and len(stderr.strip().splitlines()) == 1, stderr
        # a body token is not a reviewer's: the brain refuses its vote stream's usage and votes; the CLI says so
        bad = await s.agent("rev-a", "--once", "--wait", "1", "--token", s.tokens["worker-1"], timeout_s=60)
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode != 0 and "reviewer token" in lines[-1] and "Traceback" not in bad.stderr, bad.stderr
