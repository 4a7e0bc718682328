"""Governance over the brain's HTTP API, on every state engine: votes, the panel's count, a human's part, the
deadlock ladder under a clock the test moves, and captains' overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from brain_server import Brain, BrainSettings
from brain_server.wake.memory import MemoryChannel
from shared_protocol.config import ConsensusConfig

from .helpers import REVIEWER_LV, BrainClient, Clock, decision_request, engine_url, live_reviewers, ok, refused

pytestmark = pytest.mark.anyio

REVIEWERS = ["rev-a", "rev-b", "rev-c", "rev-d", "rev-e"]
STEP_S = 600


@pytest.fixture
def settings(tmp_path: Path) -> BrainSettings:
    """A panel of five reviewer agents (no rule reviewers: every vote is the test's), and a captain agent."""
    return BrainSettings(
        database_url=engine_url("sqlite", tmp_path),
        consensus=ConsensusConfig(panel=REVIEWERS, quorum=3, deadline_s=STEP_S),
        captain_agents=["cap"],
    )


@pytest.fixture
async def panel(api: BrainClient) -> BrainClient:
    """Reviewer tokens for the five seats, the captain agent, an agent without a seat, and a second captain."""
    for name in [*REVIEWERS, "cap", "outsider", "claude"]:
        await api.add_token(name, "reviewer", agent=name)
    await live_reviewers(api, [*REVIEWERS, "cap", "outsider", "claude"])
    await api.add_token("captain-2", "captain")
    await api.add_token("claude-body", "body", agent="claude")  # the proposing agent's own body token
    return api


async def propose(api: BrainClient, **changes: Any) -> dict[str, Any]:
    """A 6-file change by agent claude: it needs the panel."""
    request = decision_request("body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py"])
    request.update(changes)
    return ok(await api.post("/v1/decisions", request, as_="claude-body"), 201)


async def vote(api: BrainClient, decision_id: str, as_: str, value: str = "approve", **extra: Any) -> dict[str, Any]:
    body = {"value": value, "reason": f"{as_} says {value}", "logic_version": REVIEWER_LV, **extra}
    return ok(await api.post(f"/v1/decisions/{decision_id}/votes", body, as_=as_))


async def test_a_six_file_change_goes_to_the_panel_and_three_approvals_apply_it(
    panel: BrainClient, brain: Brain
) -> None:
    decision = await propose(panel)
    assert (decision["state"], decision["needs"], decision["panel"], decision["quorum"]) == (
        "pending",
        "consensus",
        REVIEWERS,
        3,
    )
    assert decision["human_required"] is False and decision["votes"] == []
    await vote(panel, decision["id"], "rev-a")
    await vote(panel, decision["id"], "rev-b")
    approved = await vote(panel, decision["id"], "rev-c")
    assert approved["state"] == "approved"
    assert [(v["voter"], v["value"], v["role"], v["agent"]) for v in approved["votes"]] == [
        (name, "approve", "reviewer", name) for name in ("rev-a", "rev-b", "rev-c")
    ]
    assert (
        approved["votes"][0]["logic_version"] == REVIEWER_LV
        and approved["votes"][0]["rationale"] == "rev-a says approve"
    )
    (answer,) = approved["answers"]
    assert (answer["verdict"], answer["by"]) == ("approved", "panel")
    assert "3 approve" in answer["reason"]
    logged = [
        (e.action, e.by, e.detail["value"], e.detail["to"])
        for e in await brain.state.log_entries()
        if e.action == "vote"
    ]
    assert logged == [
        ("vote", "rev-a", "approve", "pending"),
        ("vote", "rev-b", "approve", "pending"),
        ("vote", "rev-c", "approve", "approved"),
    ]
    refused(
        await panel.post(f"/v1/decisions/{decision['id']}/votes", {"value": "deny", "reason": "late"}, as_="rev-d"),
        409,
        "not_pending",
    )


async def test_three_denials_deny_it_and_a_panel_that_cannot_reach_three_is_denied(panel: BrainClient) -> None:
    denied = await propose(panel)
    for name in ("rev-a", "rev-b", "rev-c"):
        last = await vote(panel, denied["id"], name, "deny")
    assert (last["state"], last["answers"][0]["by"]) == ("denied", "panel")

    short = await propose(panel, summary="another")
    await vote(panel, short["id"], "rev-a", "approve")
    await vote(panel, short["id"], "rev-b", "deny")
    await vote(panel, short["id"], "rev-c", "deny")
    out = await vote(panel, short["id"], "rev-d", "abstain")
    assert out["state"] == "denied" and "can no longer reach 3" in out["answers"][0]["reason"]


async def test_a_later_vote_replaces_the_first_and_both_are_kept(panel: BrainClient, brain: Brain) -> None:
    decision = await propose(panel)
    await vote(panel, decision["id"], "rev-a", "approve")
    await vote(panel, decision["id"], "rev-b", "approve")
    changed = await vote(panel, decision["id"], "rev-a", "deny")
    assert [(v["voter"], v["value"]) for v in changed["votes"]] == [
        ("rev-a", "approve"),
        ("rev-b", "approve"),
        ("rev-a", "deny"),
    ]
    assert (await vote(panel, decision["id"], "rev-c", "approve"))["state"] == "pending"  # 2 approve, not 3
    assert (await vote(panel, decision["id"], "rev-d", "approve"))["state"] == "approved"


async def test_who_may_not_vote_is_refused_and_nothing_is_written(panel: BrainClient, brain: Brain) -> None:
    decision = await propose(panel)
    path = f"/v1/decisions/{decision['id']}/votes"
    good = {"value": "approve", "reason": "fine", "logic_version": REVIEWER_LV}
    refused(await panel.post(path, good, as_="body"), 403, "forbidden")  # a body token never votes
    refused(await panel.post(path, good, as_="outsider"), 403, "forbidden")  # no seat
    refused(await panel.post(path, good, as_="claude"), 403, "forbidden")  # the proposer
    refused(await panel.post(path, good, as_=None), 401, "unauthorized")
    refused(await panel.post(path, {"value": "maybe", "reason": "?"}, as_="rev-a"), 422, "invalid_request")
    refused(await panel.post(path, {"value": "approve", "reason": "  "}, as_="rev-a"), 422, "invalid_request")
    unversioned = refused(
        await panel.post(path, {"value": "approve", "reason": "x"}, as_="rev-a"), 422, "invalid_request"
    )
    assert "logic version" in unversioned["message"], unversioned
    refused(
        await panel.post(path, {"value": "approve", "reason": "x", "voter": "rev-b"}, as_="rev-a"),
        422,
        "invalid_request",
    )
    refused(await panel.post("/v1/decisions/dec_nope/votes", good, as_="rev-a"), 404, "not_found")
    assert ok(await panel.get(f"/v1/decisions/{decision['id']}", as_="rev-a"))["votes"] == []
    assert not [e for e in await brain.state.log_entries() if e.action == "vote"]


async def test_a_human_approval_alone_does_not_settle_a_consensus_but_a_human_deny_does(panel: BrainClient) -> None:
    decision = await propose(panel)
    path = f"/v1/decisions/{decision['id']}"
    still = ok(await panel.post(f"{path}/approve", {"reason": "I like it"}, as_="approver"))
    assert still["state"] == "pending"
    assert [(v["voter"], v["value"], v["role"]) for v in still["votes"]] == [
        ("human:approver-1", "approve", "approver")
    ]
    denied = ok(await panel.post(f"{path}/deny", {"reason": "not today"}, as_="approver"))
    assert (denied["state"], denied["answers"][-1]["by"]) == ("denied", "approver-1")


async def test_a_decision_that_also_needs_a_human_waits_for_one_after_the_quorum(
    panel: BrainClient, brain: Brain, pages: MemoryChannel
) -> None:
    decision = await propose(panel, confidence=0.6)
    assert decision["human_required"] is True
    await brain.escalator.tick()
    assert [p.subject_id for p in pages.pages] == [decision["id"]]
    for name in ("rev-a", "rev-b", "rev-c"):
        waiting = await vote(panel, decision["id"], name)
    assert waiting["state"] == "pending"
    approved = ok(await panel.post(f"/v1/decisions/{decision['id']}/approve", {"reason": "ok"}, as_="approver"))
    assert approved["state"] == "approved"
    assert "a human approved" in approved["answers"][-1]["reason"]

    first = await propose(panel, confidence=0.6, summary="the human first")
    ok(await panel.post(f"/v1/decisions/{first['id']}/approve", {"reason": "ok"}, as_="approver"))
    for name in ("rev-a", "rev-b"):
        await vote(panel, first["id"], name)
    assert (await vote(panel, first["id"], "rev-c"))["state"] == "approved"


async def test_a_tie_goes_to_the_captain_agent_who_may_break_it(panel: BrainClient) -> None:
    decision = await propose(panel)
    for name, value in (("rev-a", "approve"), ("rev-b", "approve"), ("rev-c", "deny"), ("rev-d", "deny")):
        await vote(panel, decision["id"], name, value)
    tied = await vote(panel, decision["id"], "rev-e", "abstain")
    assert tied["state"] == "pending"
    assert [s["kind"] for s in tied["ladder"]] == ["deadlock", "captain_agent"]
    assert "a tie" in tied["ladder"][0]["reason"]
    broken = await vote(panel, decision["id"], "cap", "approve")
    assert broken["state"] == "approved"
    assert (broken["answers"][-1]["by"], broken["answers"][-1]["role"]) == ("cap", "reviewer")
    assert "the captain agent broke the deadlock" in broken["answers"][-1]["reason"]


async def test_the_captain_agent_cannot_break_a_deadlock_that_needs_a_human(
    panel: BrainClient, brain: Brain, pages: MemoryChannel
) -> None:
    decision = await propose(panel, confidence=0.6)
    for name, value in (("rev-a", "approve"), ("rev-b", "approve"), ("rev-c", "deny"), ("rev-d", "deny")):
        await vote(panel, decision["id"], name, value)
    tied = await vote(panel, decision["id"], "rev-e", "abstain")
    assert [s["kind"] for s in tied["ladder"]] == ["deadlock", "priority", "human_captain"]
    assert "never approves" in tied["ladder"][1]["reason"]
    path = f"/v1/decisions/{decision['id']}/votes"
    refused(
        await panel.post(path, {"value": "approve", "reason": "go", "logic_version": REVIEWER_LV}, as_="cap"),
        403,
        "forbidden",
    )
    # an approver's approval is the human's part, not a captain's deadlock break
    assert ok(await panel.post(path, {"value": "approve", "reason": "ok"}, as_="approver"))["state"] == "pending"
    settled = ok(await panel.post(path, {"value": "approve", "reason": "ship it"}, as_="captain"))
    assert (settled["state"], settled["answers"][-1]["by"]) == ("approved", "captain-1")


async def test_no_quorum_by_the_deadline_climbs_captain_agent_then_human_captain_then_deny(
    panel: BrainClient, brain: Brain, clock: Clock, pages: MemoryChannel
) -> None:
    decision = await propose(panel)
    await vote(panel, decision["id"], "rev-a")
    clock.advance(STEP_S - 1)
    await brain.sweep()
    assert ok(await panel.get(f"/v1/decisions/{decision['id']}", as_="approver"))["ladder"] == []
    clock.advance(1)
    await brain.sweep()
    at_captain = ok(await panel.get(f"/v1/decisions/{decision['id']}", as_="approver"))
    assert [s["kind"] for s in at_captain["ladder"]] == ["deadlock", "captain_agent"]
    assert "no quorum by the panel's deadline" in at_captain["ladder"][0]["reason"]
    await brain.escalator.tick()
    assert pages.pages == []  # nobody is woken while the captain agent may decide
    clock.advance(STEP_S)
    await brain.sweep()
    at_human = ok(await panel.get(f"/v1/decisions/{decision['id']}", as_="approver"))
    assert [s["kind"] for s in at_human["ladder"]] == ["deadlock", "captain_agent", "priority", "human_captain"]
    await brain.escalator.tick()
    assert [(p.subject_id, p.facts["Needs"].startswith("consensus: deadlocked")) for p in pages.pages] == [
        (decision["id"], True)
    ]
    clock.advance(3600 - 2 * STEP_S - 1)  # the decision's own deadline (the default hour) ends the human's turn
    assert (await brain.sweep()).expired == []
    clock.advance(1)
    report = await brain.sweep()
    assert report.expired == [decision["id"]]
    final = ok(await panel.get(f"/v1/decisions/{decision['id']}", as_="approver"))
    assert final["state"] == "expired"
    assert [s["kind"] for s in final["ladder"]][-1] == "denied"
    assert [e.action for e in await brain.state.log_entries() if e.target == decision["id"]].count("deadlock") == 2


async def test_captain_overrides_veto_and_force_and_only_another_human_captain_reverses_one(
    panel: BrainClient, brain: Brain
) -> None:
    decision = await propose(panel)
    path = f"/v1/decisions/{decision['id']}/override"
    for name in ("rev-a", "rev-b", "rev-c"):
        await vote(panel, decision["id"], name)
    vetoed = ok(await panel.post(path, {"reason": "not this week", "action": "veto"}, as_="captain"))
    assert vetoed["state"] == "overridden"
    assert (vetoed["answers"][-1]["override"], vetoed["answers"][-1]["by"]) == ("veto", "captain-1")
    refused(await panel.post(path, {"reason": "changed my mind", "action": "force"}, as_="captain"), 403, "forbidden")
    refused(await panel.post(path, {"reason": "go", "action": "force"}, as_="cap"), 403, "forbidden")
    forced = ok(await panel.post(path, {"reason": "we need it", "action": "force"}, as_="captain-2"))
    assert (forced["state"], forced["answers"][-1]["override"]) == ("approved", "force")
    refused(await panel.post(path, {"reason": "no", "action": "veto"}, as_="cap"), 403, "forbidden")
    refused(await panel.post(path, {"reason": "no"}, as_="approver"), 403, "forbidden")
    refused(await panel.post(path, {"reason": "no", "action": "banish"}, as_="captain"), 422, "invalid_request")
    refused(await panel.post(path, {"reason": ""}, as_="captain"), 422, "invalid_request")
    refused(await panel.post("/v1/decisions/dec_nope/override", {"reason": "x"}, as_="captain"), 404, "not_found")
    logged = [(e.action, e.detail.get("override")) for e in await brain.state.log_entries() if e.action == "override"]
    assert logged == [("override", "veto"), ("override", "force")]


async def test_the_captain_agent_may_veto_but_never_force_and_other_reviewers_may_not_override(
    panel: BrainClient,
) -> None:
    decision = await propose(panel)
    path = f"/v1/decisions/{decision['id']}/override"
    refused(await panel.post(path, {"reason": "mine", "action": "veto"}, as_="rev-a"), 403, "forbidden")
    refused(await panel.post(path, {"reason": "mine", "action": "force"}, as_="cap"), 403, "forbidden")
    vetoed = ok(await panel.post(path, {"reason": "too risky", "logic_version": REVIEWER_LV}, as_="cap"))
    assert (vetoed["state"], vetoed["answers"][-1]["role"]) == ("overridden", "reviewer")
    refused(await panel.post(path, {"reason": "again", "logic_version": REVIEWER_LV}, as_="cap"), 409, "already_final")
    forced = ok(await panel.post(path, {"reason": "a human disagrees", "action": "force"}, as_="captain"))
    assert forced["state"] == "approved"
    refused(await panel.post(path, {"reason": "twice", "action": "force"}, as_="captain-2"), 409, "already_final")


async def test_the_inbox_lists_pending_decisions_with_their_votes(panel: BrainClient, brain: Brain) -> None:
    pending = await propose(panel)
    await vote(panel, pending["id"], "rev-a")
    settled = await propose(panel, summary="small", impact={"files": 1, "api_calls": 0, "usd": 0})
    assert settled["state"] == "approved"
    for as_ in ("approver", "rev-b", "claude-body"):
        response = await panel.get("/v1/decisions?state=pending", as_=as_)
        assert response.status_code == 200
        listed = response.json()
        assert isinstance(listed, list)
        assert [(d["id"], len(d["votes"])) for d in listed] == [(pending["id"], 1)]
    everything = (await panel.get("/v1/decisions", as_="approver")).json()
    assert {d["id"] for d in everything} == {pending["id"], settled["id"]}
    assert [d["id"] for d in (await panel.get("/v1/decisions?state=approved", as_="captain")).json()] == [settled["id"]]
    refused(await panel.get("/v1/decisions?state=maybe", as_="approver"), 422, "invalid_request")
    assert (await panel.get("/v1/decisions?state=pending", as_="body")).json() == []  # another body's: not shown


async def test_a_vote_read_before_another_was_written_is_judged_again_not_lost(
    panel: BrainClient, brain: Brain
) -> None:
    decision = await propose(panel)
    stale = await brain.decision(decision["id"])
    await vote(panel, decision["id"], "rev-a")
    from brain_server.state import LogEntry

    late = stale.model_copy(update={"votes": []})
    log = LogEntry(at=brain.now(), action="vote", by="test")
    assert await brain.state.replace_decision(late, expected="pending", log=log, previous=stale) is None
    assert [v["voter"] for v in (await vote(panel, decision["id"], "rev-b"))["votes"]] == ["rev-a", "rev-b"]


async def test_concurrent_votes_are_all_counted(panel: BrainClient, brain: Brain) -> None:
    decision = await propose(panel)

    async def one(name: str, value: str) -> None:
        await vote(panel, decision["id"], name, value)

    async with anyio.create_task_group() as group:  # (2 approve, 2 deny: no order of them settles it)
        for name, value in zip(REVIEWERS[:4], ["approve", "deny", "approve", "deny"], strict=True):
            group.start_soon(one, name, value)
    stored = await brain.decision(decision["id"])
    assert sorted(v.voter for v in stored.votes) == REVIEWERS[:4]
    assert len([e for e in await brain.state.log_entries() if e.action == "vote"]) == 4


async def test_the_task_value_orders_the_inbox_and_is_the_priority_step_never_an_approval(
    panel: BrainClient, brain: Brain
) -> None:
    cheap_request = decision_request(
        "body-a", agent="ide", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/b.py"]
    )
    cheap = ok(await panel.post("/v1/decisions", cheap_request, as_="body"), 201)  # another body, holding no task
    ok(await panel.post("/v1/tasks", {"title": "valuable", "value_usd": 500}, as_="captain"), 201)
    claim = {"body_id": "body-c", "agent": "claude", "mode": "shadow", "logic_version": "v1"}
    claimed = ok(await panel.post("/v1/tasks/claim", claim, as_="claude-body"))
    assert claimed["task"]["value_usd"] == 500
    valuable = await propose(panel, summary="valuable", confidence=0.6)
    listed = (await panel.get("/v1/decisions?state=pending", as_="approver")).json()
    assert [d["id"] for d in listed] == [valuable["id"], cheap["id"]]
    for name, value in (("rev-a", "approve"), ("rev-b", "approve"), ("rev-c", "deny"), ("rev-d", "deny")):
        await vote(panel, valuable["id"], name, value)
    tied = await vote(panel, valuable["id"], "rev-e", "abstain")
    assert tied["state"] == "pending" and "task value $500.00" in tied["ladder"][1]["reason"]


async def test_a_discord_or_link_override_is_a_veto_and_a_body_never_votes_through_the_brain(
    panel: BrainClient, brain: Brain
) -> None:
    from brain_server.auth import Principal
    from brain_server.exceptions import Forbidden

    decision = await propose(panel)
    body = Principal(token_id="tok_b", role="body", label="b", body_id="body-c", agent="claude")
    with pytest.raises(Forbidden):
        await brain.answer(body, decision["id"], "approve", "mine")
    captain = Principal(token_id="tok_c", role="captain", label="on-call")
    vetoed = await brain.answer(captain, decision["id"], "override", "Discord /captain-override")
    assert (vetoed.state, vetoed.answers[-1].override) == ("overridden", "veto")
