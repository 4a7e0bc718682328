"""Adversarial review of #19's deadlock ladder as a paged human meets it: a tie on a decision that needs a human goes
to the `human_captain` step and the wake-up ladder pages; the page's answer links act as an approver, over real HTTP
on 127.0.0.1 and a real SQLite file, on a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from brain_server import Brain, BrainSettings, SqliteStateEngine, build_app, issue_token
from shared_protocol.config import ConsensusConfig
from tests.fakes.serve import serve_app
from tests.wake.test_escalation import Recorder, setup

from .helpers import REVIEWER_LV, Clock, decision_request, ok

pytestmark = pytest.mark.anyio

REVIEWERS = ["rev-a", "rev-b", "rev-c", "rev-d", "rev-e"]


@dataclass
class Paged:
    brain: Brain
    clock: Clock
    sms: Recorder
    client: httpx.AsyncClient
    tokens: dict[str, str]

    async def post(self, path: str, body: Any, *, as_: str) -> httpx.Response:
        return await self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.tokens[as_]}"})


@pytest.fixture
async def paged(tmp_path: Path) -> AsyncIterator[Paged]:
    clock = Clock()
    channels = {name: Recorder(name) for name in ("discord", "sms", "call")}
    state = await SqliteStateEngine.open(tmp_path / "brain.db")
    settings = BrainSettings(consensus=ConsensusConfig(panel=REVIEWERS, quorum=3, deadline_s=600))
    brain = Brain(settings, state=state, clock=clock, wake=setup(channels))
    try:
        async with brain.running(), serve_app(build_app(brain)) as url, httpx.AsyncClient(base_url=url) as client:
            tokens = {
                name: await issue_token(state, role="reviewer", label=name, at=brain.now(), agent=name)
                for name in REVIEWERS
            }
            tokens["claude-body"] = await issue_token(state, role="body", label="cb", at=brain.now(), agent="claude")
            tokens["captain"] = await issue_token(state, role="captain", label="captain", at=brain.now())
            paged = Paged(brain, clock, channels["sms"], client, tokens)
            for name in REVIEWERS:  # (a human captain lets their REVIEWER_LV vote live)
                override = {"agent": name, "logic_version": REVIEWER_LV, "reason": "reviewed", "for_s": 86_400}
                ok(await paged.post("/v1/readiness/overrides", override, as_="captain"), 201)
            yield paged
    finally:
        await state.close()


async def _deadlocked(p: Paged) -> dict[str, Any]:
    request = decision_request("body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py"])
    request["irreversible"] = True
    decision = ok(await p.post("/v1/decisions", request, as_="claude-body"), 201)
    last: dict[str, Any] = {}
    for name, value in zip(REVIEWERS, ["approve", "approve", "deny", "deny", "abstain"], strict=True):
        body = {"value": value, "reason": "r", "logic_version": REVIEWER_LV}
        last = ok(await p.post(f"/v1/decisions/{decision['id']}/votes", body, as_=name))
    assert [s["kind"] for s in last["ladder"]] == ["deadlock", "priority", "human_captain"]
    start = p.clock.now
    for offset in (0, 300):
        p.clock.now = start + offset
        await p.brain.sweep()
        await p.brain.escalator.tick()
    return decision


async def test_the_paged_humans_deny_link_settles_the_deadlock(paged: Paged) -> None:
    decision = await _deadlocked(paged)
    [page] = [pg for pg in paged.sms.pages if pg.subject_id == decision["id"]]
    assert page.links is not None and page.links.deny is not None
    answer = await paged.client.post(httpx.URL(page.links.deny).path)
    assert answer.status_code == 200, answer.text
    assert (await paged.brain.decision(decision["id"])).state == "denied"


async def test_the_paged_humans_approve_link_does_not_claim_success_while_nothing_changes(paged: Paged) -> None:
    decision = await _deadlocked(paged)
    [page] = [pg for pg in paged.sms.pages if pg.subject_id == decision["id"]]
    assert page.links is not None and page.links.approve is not None
    path = httpx.URL(page.links.approve).path
    shown = await paged.client.get(path)  # what the link would do: it says it cannot, and offers no button
    assert shown.status_code == 403 and "human captain" in shown.text and "<form" not in shown.text
    answer = await paged.client.post(path)
    stored = await paged.brain.decision(decision["id"])
    assert stored.state == "pending" and answer.status_code == 403, (answer.status_code, answer.text)
    assert "Nothing was recorded" in answer.text and f"swarm approve {decision['id']}" in answer.text
    assert [v.voter for v in stored.votes if v.role is not None and v.role != "reviewer"] == []
    # The Deny link of the same page still works: the link refused above was not used up either.
    assert page.links.deny is not None
    assert (await paged.client.post(httpx.URL(page.links.deny).path)).status_code == 200
    assert (await paged.brain.decision(decision["id"])).state == "denied"


async def test_an_approve_link_that_only_votes_says_the_decision_is_still_pending(paged: Paged) -> None:
    """Before a quorum, the paged human's approval is the human part of the consensus: recorded, and said to be
    a vote on a decision still pending, never "Done"."""
    request = decision_request("body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py"])
    request["irreversible"] = True
    decision = ok(await paged.post("/v1/decisions", request, as_="claude-body"), 201)
    start = paged.clock.now
    for offset in (0, 300):  # (discord first, then the sms level)
        paged.clock.now = start + offset
        await paged.brain.sweep()
        await paged.brain.escalator.tick()
    [page] = [pg for pg in paged.sms.pages if pg.subject_id == decision["id"]]
    assert page.links is not None and page.links.approve is not None
    answer = await paged.client.post(httpx.URL(page.links.approve).path)
    assert answer.status_code == 200 and "Recorded, still pending" in answer.text and "Done" not in answer.text
    stored = await paged.brain.decision(decision["id"])
    assert stored.state == "pending" and [v.role for v in stored.votes] == ["approver"]
