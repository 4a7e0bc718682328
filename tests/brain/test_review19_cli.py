"""Adversarial review of #19/#20's command line: `swarm vote` with tokens that may not vote, and `swarm decisions
list` showing what an agent wrote, run as processes against a real brain on 127.0.0.1 with a real SQLite file."""

from __future__ import annotations

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


@pytest.mark.xfail(
    strict=True,
    reason="HOLE (low, a gap against #20 point 5): `swarm decisions list --pending` shows what each decision is "
    "about but not how to answer it (#20: 'showing what each decision is about and how to answer it'): no "
    "`swarm vote ID approve|deny|abstain --reason …` / `swarm approve ID` / `swarm override` line, and for a panel "
    "decision no word on whether the reader's token holds a seat. Fix: `decision_cmds.explain` ends each pending "
    "decision with the commands that answer it.",
)
async def test_swarm_decisions_list_says_how_to_answer_each_pending_decision(live: LiveBrain, home: Path) -> None:
    decision = await _propose(live)
    code, out, err = await swarm(live, "decisions", "list", "--pending", home=home)
    assert code == 0, err
    assert decision in out
    assert f"swarm vote {decision}" in out or f"swarm approve {decision}" in out
