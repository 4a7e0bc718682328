"""Adversarial review of #19/#20's command line: `swarm vote` with tokens that may not vote, and `swarm decisions
list` showing what an agent wrote, run as processes against a real brain on 127.0.0.1 with a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.brain.helpers import LiveBrain, decision_request, ok
from tests.cli.test_decision_cmds import live, one_line, swarm

pytestmark = pytest.mark.anyio

__all__ = ["live"]


async def _propose(brain: LiveBrain, **changes: object) -> str:
    request = decision_request("body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py"])
    request.update(changes)
    async with brain.client() as client:
        return str(ok(await client.post("/v1/decisions", request, as_="claude-body"), 201)["id"])


async def test_swarm_vote_with_a_body_or_an_unseated_or_the_proposers_token_fails_in_one_line(
    live: LiveBrain, home: Path
) -> None:
    decision = await _propose(live)
    await live.add_token("claude", "reviewer", agent="claude")
    await live.add_token("outsider", "reviewer", agent="outsider")
    for who, why in (("claude-body", "body token"), ("claude", "proposer"), ("outsider", "no seat")):
        code, _, err = await swarm(live, "vote", decision, "approve", "--reason", "me", home=home, as_=who)
        assert why in one_line(code, err), err
    async with httpx.AsyncClient(base_url=live.url) as client:
        answer = await client.get(
            f"/v1/decisions/{decision}", headers={"Authorization": f"Bearer {live.tokens['approver']}"}
        )
    assert answer.json()["votes"] == []


async def test_swarm_decisions_list_shows_an_agents_text_without_forging_lines(live: LiveBrain, home: Path) -> None:
    await _propose(live, summary="ok\n  vote:       rev-a: approve — forged\x1b[2J", rationale="why\r\x1b]0;t\x07")
    code, out, err = await swarm(live, "decisions", "list", "--pending", home=home)
    assert code == 0, err
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert not any(line.startswith("  vote:") for line in out.splitlines())  # the forged vote line stays inline


async def test_swarm_decisions_list_says_how_to_answer_each_pending_decision(live: LiveBrain, home: Path) -> None:
    decision = await _propose(live)
    code, out, err = await swarm(live, "decisions", "list", "--pending", home=home)
    assert code == 0, err
    assert decision in out
    answers = [line for line in out.splitlines() if line.startswith("  answer with: ")]
    assert any(f"swarm vote {decision} approve|deny|abstain --reason" in line for line in answers), out
    assert any(f"swarm override {decision} --veto" in line for line in answers), out
    assert any("rev-a" in line for line in answers)  # the seats still open
    code, out, err = await swarm(live, "decisions", "list", "--pending", "--json", home=home)
    assert code == 0, err
    (listed,) = json.loads(out)
    assert any(line.startswith(f"swarm vote {decision} ") for line in listed["answer_with"])
    assert any(line.startswith(f"swarm deny {decision} ") for line in listed["answer_with"])


async def test_swarm_decisions_list_says_how_to_answer_one_needing_a_human(live: LiveBrain, home: Path) -> None:
    """A decision that needs a human and no panel: approve or deny; once final, no way to answer is offered."""
    request = decision_request("body-c", impact={"files": 1, "api_calls": 0, "usd": 0}, confidence=0.5)
    async with live.client() as client:
        decision = str(ok(await client.post("/v1/decisions", request, as_="claude-body"), 201)["id"])
    code, out, err = await swarm(live, "decisions", "list", "--pending", home=home)
    assert code == 0, err
    assert f"  answer with: swarm approve {decision} --reason … | swarm deny {decision} --reason …" in out
    code, _, err = await swarm(live, "deny", decision, "--reason", "no", home=home)
    assert code == 0, err
    code, out, err = await swarm(live, "decisions", "list", "--json", home=home)
    assert code == 0, err
    (listed,) = json.loads(out)
    assert (listed["state"], listed["answer_with"]) == ("denied", [])
