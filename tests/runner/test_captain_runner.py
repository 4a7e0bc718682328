"""The captain agent's runner in process against a live brain: it votes on its panel seat like any reviewer and,
when that vote leaves the panel tied, breaks the deadlock with a second model call shown the votes and rationales
so far; what it is shown, and when it owes a break (`breaks`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_runner.conversation import UserMessage
from agent_runner.loop import AgentProfile
from agent_runner.providers import InMemoryProvider
from agent_runner.reviewer import CAPTAIN_INSTRUCTIONS, INSTRUCTIONS, ReviewerRunner, breaks, deadlock_prompt
from agent_runner.runner import UsageQueue
from agent_runner.wallet import MemoryLedger, Wallet
from body_mcp.brain_client import BrainClient
from brain_server import BrainSettings
from brain_server.state import sqlite_url
from shared_protocol.config import ConsensusConfig
from shared_protocol.decisions import Decision, Impact, LadderStep, Vote
from tests.brain.helpers import REVIEWER_LV, LiveBrain, live_brain, live_reviewers, ok
from tests.runner.test_reviewer import propose, turn
from tests.runner.test_wallet import priced

pytestmark = pytest.mark.anyio

SEATS = ["rev-a", "rev-b", "rev-c", "rev-d", "cap"]


def captain(live: LiveBrain, token: str, provider: InMemoryProvider) -> tuple[ReviewerRunner, BrainClient]:
    brain = BrainClient(live.url, token)
    usage = UsageQueue(brain, None)
    wallet = Wallet(
        MemoryLedger(),
        priced("gpt-4o"),
        provider="openai",
        agent="cap",
        logic_version="lv-cap",
        max_usd_per_task=1.0,
        sink=usage.put,
    )
    profile = AgentProfile(
        name="cap",
        logic_version="lv-cap",
        system_prompt="You keep the swarm moving.",
        tools=(),
        max_steps=1,
        max_usd_per_task=1.0,
        max_output_tokens=4096,
        task_timeout_s=60,
    )
    runner = ReviewerRunner(
        profile=profile, provider=provider, brain=brain, wallet=wallet, usage=usage, failsafe_s=5, captain=True
    )
    return runner, brain


async def test_the_captain_votes_its_seat_then_breaks_the_tie_it_left_shown_every_vote(tmp_path: Path) -> None:
    settings = BrainSettings(
        database_url=sqlite_url(tmp_path / "brain.db"),
        keepalive_s=0.2,
        consensus=ConsensusConfig(panel=SEATS, quorum=3, deadline_s=600),
        captain_agents=["cap"],
    )
    async with live_brain(settings) as live, live.client() as api:
        token = await live.add_token("cap", "reviewer", agent="cap")
        for name in SEATS[:4]:
            await api.add_token(name, "reviewer", agent=name)
        await live_reviewers(api, SEATS[:4])
        await live_reviewers(api, ["cap"], "lv-cap")  # (the captain agent's version votes live: a captain's override)
        await api.add_token("claude-body", "body", agent="claude")
        task_id = ok(await api.post("/v1/tasks", {"title": "six files"}, as_="approver"), 201)["id"]
        decision = await propose(api, task_id)
        for name, value in (("rev-a", "approve"), ("rev-b", "approve"), ("rev-c", "deny"), ("rev-d", "deny")):
            body = {"value": value, "reason": f"{name} thinks {value}", "logic_version": REVIEWER_LV}
            ok(await api.post(f"/v1/decisions/{decision['id']}/votes", body, as_=name))
        provider = InMemoryProvider(
            [
                turn('{"vote": "abstain", "rationale": "split down the middle"}'),
                turn('{"vote": "deny", "rationale": "the deniers named a risk nobody answered"}'),
            ]
        )
        runner, brain = captain(live, token, provider)
        path = f"/v1/decisions/{decision['id']}"
        try:
            with anyio.fail_after(30):
                async with anyio.create_task_group() as group:
                    group.start_soon(runner.run)
                    while ok(await api.get(path, as_="approver"))["state"] == "pending":
                        await anyio.sleep(0.1)
                    group.cancel_scope.cancel()
        finally:
            await brain.aclose()
        now: dict[str, Any] = ok(await api.get(path, as_="approver"))
        assert now["state"] == "denied", now
        assert [s["kind"] for s in now["ladder"]] == ["deadlock", "captain_agent"]
        assert [(v["voter"], v["value"]) for v in now["votes"]][-2:] == [("cap", "abstain"), ("cap", "deny")]
        assert now["answers"][-1]["reason"] == (
            "the captain agent broke the deadlock: the deniers named a risk nobody answered"
        )
        seat, deadlock = provider.requests
        assert INSTRUCTIONS in seat.system and CAPTAIN_INSTRUCTIONS not in seat.system
        assert CAPTAIN_INSTRUCTIONS in deadlock.system and deadlock.system.startswith("You keep the swarm moving.")
        (message,) = deadlock.messages
        assert isinstance(message, UserMessage)
        shown = message.content
        for name, value in (("rev-a", "approve"), ("rev-b", "approve"), ("rev-c", "deny"), ("rev-d", "deny")):
            assert f'{name} (reviewer): {value}: "{name} thinks {value}"' in shown
        assert 'cap (reviewer): abstain: "split down the middle"' in shown
        assert 'captain_agent: "the captain agent may approve or deny' in shown
        spent = ok(await api.get(f"/v1/usage?task_id={task_id}", as_="approver"))
        assert spent["by_agent"]["cap"]["calls"] == 2


def decision(**changes: Any) -> Decision:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    fields: dict[str, Any] = {
        "id": "dec_1",
        "state": "pending",
        "needs": "consensus",
        "summary": "six files",
        "rationale": "the task",
        "confidence": 0.9,
        "impact": Impact(files=6, api_calls=0, usd=0),
        "options": [],
        "agent": "worker-1",
        "body_id": "body-1",
        "action": None,
        "created_at": at,
        "deadline": at + timedelta(hours=1),
        "answers": [],
        "rules_version": "r1",
        "panel": ["rev-a", "human:h1", "human:h2"],
        "quorum": 2,
        "ladder": [
            LadderStep(kind="deadlock", at=at, reason="a tie"),
            LadderStep(kind="captain_agent", at=at, reason="the captain agent may approve or deny"),
        ],
    }
    return Decision.model_validate(fields | changes)


def test_a_break_is_owed_only_at_the_captain_agent_step_on_a_pending_decision_not_its_own_nor_voted_on_since() -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    assert breaks(decision(), "cap")
    assert not breaks(decision(), "worker-1"), "a proposer never decides its own"
    assert not breaks(decision(state="approved"), "cap")
    assert not breaks(decision(ladder=[]), "cap")
    human = [LadderStep(kind="deadlock", at=at, reason="a tie"), LadderStep(kind="priority", at=at, reason="p")]
    assert not breaks(decision(ladder=human), "cap"), "the ladder skipped the captain agent: not its to decide"
    before = Vote(voter="cap", value="approve", rationale="seat", at=at)
    assert breaks(decision(votes=[before]), "cap"), "a vote up to the step's start is its seat's, not a break"
    after = before.model_copy(update={"at": at + timedelta(seconds=1)})
    assert not breaks(decision(votes=[after]), "cap")


def test_the_deadlock_prompt_shows_the_proposal_every_vote_and_the_ladder() -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    votes = [
        Vote(voter="rules:cost", value="deny", rationale="over half", at=at),
        Vote(voter="rev-a", value="approve", rationale="fine", at=at, role="reviewer", agent="rev-a"),
    ]
    shown = deadlock_prompt(decision(votes=votes, files=["a.txt"]))
    assert shown.startswith("Decision dec_1, proposed by agent worker-1")
    assert 'rules:cost (rule reviewer): deny: "over half' in shown and 'rev-a (reviewer): approve: "fine"' in shown
    assert '  - deadlock: "a tie"\n  - captain_agent: "the captain agent may approve or deny' in shown
    assert "(none)" in deadlock_prompt(decision())
