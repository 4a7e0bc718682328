"""Adversarial review of #19's governance and #20's per-agent pause, over real HTTP on 127.0.0.1 and a real SQLite
file, with a clock the test moves: votes twice, as the proposer, with a body token, without a seat, after final,
racing; captains (agent and human) overriding; the deadlock ladder; config that would make quorum trivial; a paused
agent's claims and votes; forged audit events steering the anomaly watch.

The holes it found (each was a strict xfail) are fixed: their tests say "Was a hole" and assert the behaviour the issue
asks for. The other tests are attacks the code withstood."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pydantic import ValidationError

from brain_server import Brain, BrainSettings, build_app, issue_token
from brain_server.state import open_engine
from brain_server.wake.memory import MemoryChannel
from brain_server.wake.setup import WakeSetup
from shared_protocol import AuditEvent
from shared_protocol.config import AnomalyConfig, ConsensusConfig
from tests.fakes.serve import serve_app

from .helpers import REVIEWER_LV, Clock, decision_request, engine_url, ok, refused, registration

pytestmark = pytest.mark.anyio

REVIEWERS = ["rev-a", "rev-b", "rev-c", "rev-d", "rev-e"]
STEP_S = 60


class Http:
    """A client of the brain on 127.0.0.1, with a token per name."""

    def __init__(self, client: httpx.AsyncClient, brain: Brain) -> None:
        self.client = client
        self.brain = brain
        self.tokens: dict[str, str] = {}

    async def token(self, name: str, role: Any, agent: str | None = None) -> None:
        self.tokens[name] = await issue_token(self.brain.state, role=role, label=name, at=self.brain.now(), agent=agent)

    async def post(self, path: str, body: Any, *, as_: str) -> httpx.Response:
        return await self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.tokens[as_]}"})

    async def get(self, path: str, *, as_: str) -> httpx.Response:
        return await self.client.get(path, headers={"Authorization": f"Bearer {self.tokens[as_]}"})


def _settings(tmp_path: Path, **changes: Any) -> BrainSettings:
    base: dict[str, Any] = {
        "database_url": engine_url("sqlite", tmp_path),
        "consensus": ConsensusConfig(panel=REVIEWERS, quorum=3, deadline_s=STEP_S),
        "captain_agents": ["cap"],
        "anomaly": AnomalyConfig(interval_s=60, window=10, min_samples=5),
    }
    return BrainSettings(**{**base, **changes})


@pytest.fixture
async def http(tmp_path: Path, clock: Clock) -> AsyncIterator[Http]:
    """A brain on a SQLite file, served by uvicorn on 127.0.0.1, on the test's clock; tokens for the five seats, the
    captain agent, an agent without a seat, the proposer (its reviewer and body tokens), humans, and an IDE body."""
    settings = _settings(tmp_path)
    state = await open_engine(settings.database_url)
    brain = Brain(settings, state=state, clock=clock, wake=WakeSetup.paging(MemoryChannel()))
    try:
        async with brain.running(), serve_app(build_app(brain)) as url, httpx.AsyncClient(base_url=url) as client:
            h = Http(client, brain)
            for name in [*REVIEWERS, "cap", "outsider", "claude"]:
                await h.token(name, "reviewer", agent=name)
            await h.token("claude-body", "body", agent="claude")
            await h.token("w1-body", "body", agent="w1")
            await h.token("ide-body", "body")
            await h.token("approver", "approver")
            await h.token("captain", "captain")
            await h.token("captain-2", "captain")
            for name in [*REVIEWERS, "cap", "outsider", "claude"]:  # (a human captain lets their REVIEWER_LV vote)
                override = {"agent": name, "logic_version": REVIEWER_LV, "reason": "reviewed", "for_s": 30 * 86_400}
                ok(await h.post("/v1/readiness/overrides", override, as_="captain"), 201)
            yield h
    finally:
        await state.close()


async def propose(h: Http, **changes: Any) -> dict[str, Any]:
    """A 6-file change by agent claude: it needs the panel."""
    request = decision_request("body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py"])
    request.update(changes)
    return ok(await h.post("/v1/decisions", request, as_="claude-body"), 201)


async def vote(h: Http, decision_id: str, as_: str, value: str = "approve") -> httpx.Response:
    body = {"value": value, "reason": f"{as_}: {value}", "logic_version": REVIEWER_LV}
    return await h.post(f"/v1/decisions/{decision_id}/votes", body, as_=as_)


async def tie(h: Http, decision_id: str) -> dict[str, Any]:
    """2 approve, 2 deny, 1 abstain: a deadlock. The decision after the last vote."""
    last: dict[str, Any] = {}
    for name, value in zip(REVIEWERS, ["approve", "approve", "deny", "deny", "abstain"], strict=True):
        last = ok(await vote(h, decision_id, name, value))
    return last


def kinds(decision: dict[str, Any]) -> list[str]:
    return [str(step["kind"]) for step in decision["ladder"]]


async def override(h: Http, decision_id: str, as_: str, action: str) -> httpx.Response:
    body = {"action": action, "reason": "because", "logic_version": REVIEWER_LV} if as_ == "cap" else {}
    body.update(action=action, reason="because")
    return await h.post(f"/v1/decisions/{decision_id}/override", body, as_=as_)


# --- votes: attacks withstood -------------------------------------------------------------------------------


async def test_a_second_vote_replaces_the_first_so_one_reviewer_never_counts_twice(http: Http) -> None:
    decision = await propose(http)
    ok(await vote(http, decision["id"], "rev-a"))
    ok(await vote(http, decision["id"], "rev-a"))
    after = ok(await vote(http, decision["id"], "rev-a"))
    assert after["state"] == "pending"  # three approvals by one seat are one approval
    assert [v["voter"] for v in after["votes"]] == ["rev-a"] * 3


async def test_the_proposer_a_body_token_and_an_agent_without_a_seat_cannot_vote(http: Http) -> None:
    decision = await propose(http)
    answer = refused(await vote(http, decision["id"], "claude"), 403, "forbidden")
    assert "proposer never votes" in answer["message"]
    refused(await vote(http, decision["id"], "claude-body"), 403, "forbidden")
    refused(await vote(http, decision["id"], "w1-body"), 403, "forbidden")
    answer = refused(await vote(http, decision["id"], "outsider"), 403, "forbidden")
    assert "no seat" in answer["message"]
    stored = ok(await http.get(f"/v1/decisions/{decision['id']}", as_="approver"))
    assert stored["votes"] == [] and stored["state"] == "pending"


async def test_the_voter_is_the_tokens_never_the_requests(http: Http) -> None:
    decision = await propose(http)
    body = {"value": "approve", "reason": "as rev-b", "voter": "rev-b", "agent": "rev-b"}
    refused(await http.post(f"/v1/decisions/{decision['id']}/votes", body, as_="rev-a"), 422, "invalid_request")
    answer = ok(await vote(http, decision["id"], "rev-a"))
    assert [(v["voter"], v["agent"], v["role"]) for v in answer["votes"]] == [("rev-a", "rev-a", "reviewer")]


async def test_a_vote_on_a_final_decision_is_refused(http: Http) -> None:
    decision = await propose(http)
    for name in ("rev-a", "rev-b", "rev-c"):
        last = ok(await vote(http, decision["id"], name, "deny"))
    assert last["state"] == "denied"
    refused(await vote(http, decision["id"], "rev-d", "approve"), 409, "not_pending")
    refused(await vote(http, decision["id"], "approver", "approve"), 409, "not_pending")


async def test_concurrent_votes_are_all_counted(http: Http) -> None:
    """Five seats vote at once: compare-and-set on the decision's mark retries the losers, so no vote is lost."""
    decision = await propose(http)
    answers: list[httpx.Response] = []

    async def one(name: str, value: str) -> None:
        answers.append(await vote(http, decision["id"], name, value))

    async with anyio.create_task_group() as group:
        for name, value in zip(REVIEWERS[:4], ["approve", "approve", "deny", "abstain"], strict=True):
            group.start_soon(one, name, value)
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    stored = ok(await http.get(f"/v1/decisions/{decision['id']}", as_="approver"))
    assert sorted(v["voter"] for v in stored["votes"]) == REVIEWERS[:4]
    assert stored["state"] == "pending"  # 2 approve, 1 deny, 1 abstain, 1 to vote: still reachable


async def test_a_decision_needing_a_human_is_not_approved_by_the_quorum_alone(http: Http) -> None:
    decision = await propose(http, irreversible=True)
    assert decision["human_required"] is True
    for name in ("rev-a", "rev-b", "rev-c", "rev-d"):
        after = ok(await vote(http, decision["id"], name))
    assert after["state"] == "pending"
    approved = ok(await http.post(f"/v1/decisions/{decision['id']}/approve", {"reason": "seen"}, as_="approver"))
    assert approved["state"] == "approved"


# --- captains -------------------------------------------------------------------------------------------------


async def test_the_captain_agent_vetoes_but_never_forces(http: Http) -> None:
    decision = await propose(http)
    answer = refused(await override(http, decision["id"], "cap", "force"), 403, "forbidden")
    assert "never force" in answer["message"]
    refused(await override(http, decision["id"], "rev-a", "veto"), 403, "forbidden")  # not the captain agent
    refused(await override(http, decision["id"], "approver", "veto"), 403, "forbidden")
    vetoed = ok(await override(http, decision["id"], "cap", "veto"))
    assert vetoed["state"] == "overridden"


async def test_a_human_captains_override_is_reversed_by_another_human_captain_only(http: Http) -> None:
    decision = await propose(http)
    forced = ok(await override(http, decision["id"], "captain", "force"))
    assert forced["state"] == "approved"
    answer = refused(await override(http, decision["id"], "captain", "veto"), 403, "forbidden")
    assert "only another human captain" in answer["message"]
    refused(await override(http, decision["id"], "cap", "veto"), 403, "forbidden")  # the captain agent
    vetoed = ok(await override(http, decision["id"], "captain-2", "veto"))
    assert vetoed["state"] == "overridden"
    refused(await override(http, decision["id"], "captain-2", "force"), 403, "forbidden")


async def test_the_captain_agent_cannot_veto_what_a_human_captain_approved(http: Http) -> None:
    decision = await propose(http, irreversible=True)
    last = await tie(http, decision["id"])
    assert kinds(last) == ["deadlock", "priority", "human_captain"]
    approved = ok(await http.post(f"/v1/decisions/{decision['id']}/approve", {"reason": "ok"}, as_="captain"))
    assert approved["state"] == "approved" and approved["answers"][-1]["role"] == "captain"
    answer = refused(await override(http, decision["id"], "cap", "veto"), 403, "forbidden")
    assert "only another human captain" in answer["message"]
    assert ok(await http.get(f"/v1/decisions/{decision['id']}", as_="approver"))["state"] == "approved"
    assert ok(await override(http, decision["id"], "captain-2", "veto"))["state"] == "overridden"


async def test_the_captain_agents_deadlock_break_does_not_deny_a_human_captains_approval(http: Http) -> None:
    """At the captain agent's step, a human captain's approving vote stands: the captain agent cannot deny it by
    breaking the deadlock (403), and nothing changes; its approval still may."""
    decision = await propose(http)
    ok(await vote(http, decision["id"], "captain"))
    assert kinds(await tie(http, decision["id"])) == ["deadlock", "captain_agent"]
    answer = refused(await vote(http, decision["id"], "cap", "deny"), 403, "forbidden")
    assert "only another human captain" in answer["message"]
    assert ok(await vote(http, decision["id"], "cap", "approve"))["state"] == "approved"


async def test_the_captain_agent_cannot_veto_a_human_captains_standing_approval(http: Http) -> None:
    """A human captain's approving vote on a decision still pending (the quorum not reached) is theirs too."""
    decision = await propose(http, irreversible=True)
    assert ok(await vote(http, decision["id"], "captain"))["state"] == "pending"
    refused(await override(http, decision["id"], "cap", "veto"), 403, "forbidden")
    ok(await vote(http, decision["id"], "captain", "abstain"))  # withdrawn: the captain agent may veto again
    assert ok(await override(http, decision["id"], "cap", "veto"))["state"] == "overridden"


# --- the deadlock ladder ---------------------------------------------------------------------------------------


async def test_a_tie_needing_a_human_skips_the_captain_agent_and_silence_denies(http: Http, clock: Clock) -> None:
    decision = await propose(http, irreversible=True)
    last = await tie(http, decision["id"])
    assert kinds(last) == ["deadlock", "priority", "human_captain"]
    # The captain agent has no seat and may not break a deadlock on a decision that needs a human.
    refused(await vote(http, decision["id"], "cap", "approve"), 403, "forbidden")
    # A plain approver's approval is not a human captain's: it does not break the deadlock.
    assert ok(await vote(http, decision["id"], "approver", "approve"))["state"] == "pending"
    clock.now = datetime.fromisoformat(decision["deadline"]).timestamp() + 1
    final = ok(await http.get(f"/v1/decisions/{decision['id']}", as_="approver"))
    assert final["state"] == "expired" and final["ladder"][-1]["kind"] == "denied"


async def test_a_captain_agents_deadlock_break_and_silence_past_it(http: Http, clock: Clock) -> None:
    decision = await propose(http)
    last = await tie(http, decision["id"])
    assert kinds(last) == ["deadlock", "captain_agent"]
    clock.now = datetime.fromisoformat(decision["deadline"]).timestamp() + 1  # nobody answers, the captain agent
    final = ok(await http.get(f"/v1/decisions/{decision['id']}", as_="approver"))
    assert final["state"] == "expired"
    refused(await vote(http, decision["id"], "cap", "approve"), 409, "not_pending")


# --- config -------------------------------------------------------------------------------------------------


def test_a_quorum_that_settles_both_ways_or_a_panel_of_duplicates_is_refused() -> None:
    with pytest.raises(ValidationError, match="more than half"):
        ConsensusConfig(panel=REVIEWERS, quorum=1)
    with pytest.raises(ValidationError, match="more than half"):
        ConsensusConfig(panel=REVIEWERS, quorum=2)
    with pytest.raises(ValidationError, match="more than half"):
        ConsensusConfig(panel=REVIEWERS, quorum=6)
    with pytest.raises(ValidationError, match="listed twice"):
        ConsensusConfig(panel=["rev-a", "rev-a", "rev-a", "rev-b", "rev-c"], quorum=3)


async def test_the_rule_panel_does_not_approve_a_change_whose_paths_are_unnamed(tmp_path: Path, clock: Clock) -> None:
    """Was a hole: three of the five rule seats approved a 6-file change they were never shown. Now a change naming
    fewer paths than its files is also a human's to approve: the paths seat denies, the files seat abstains, and the
    numbers seats (cost, confidence, and value when the body holds a valuable task) never carry it alone."""
    settings = BrainSettings(database_url=engine_url("sqlite", tmp_path))  # the embedded default panel
    state = await open_engine(settings.database_url)
    brain = Brain(settings, state=state, clock=clock, wake=WakeSetup.paging(MemoryChannel()))
    try:
        async with brain.running(), serve_app(build_app(brain)) as url, httpx.AsyncClient(base_url=url) as client:
            h = Http(client, brain)
            await h.token("claude-body", "body", agent="claude")
            await h.token("approver", "approver")
            request = decision_request("body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, confidence=0.9)
            decision = ok(await h.post("/v1/decisions", request, as_="claude-body"), 201)
            assert decision["needs"] == "consensus" and decision["human_required"] is True
            assert decision["state"] != "approved", decision["answers"]
            seats = {v["voter"]: v["value"] for v in decision["votes"]}
            assert seats["rules:paths"] == "deny" and seats["rules:files"] == "abstain"
            # The body holds a valuable task: cost, confidence and value approve (the quorum), and still a human
            # must approve: one path of six named is no better.
            ok(await h.post("/v1/tasks", {"title": "valuable", "value_usd": 500}, as_="approver"), 201)
            claim = {"body_id": "body-c", "mode": "shadow", "logic_version": "lv-1"}
            assert ok(await h.post("/v1/tasks/claim", claim, as_="claude-body"))["task"] is not None
            request.update(files=["src/a.py"], summary="the same change, one path named")
            held = ok(await h.post("/v1/decisions", request, as_="claude-body"), 201)
            assert [v["value"] for v in held["votes"]].count("approve") == 3
            assert (held["state"], held["human_required"]) == ("pending", True), held["answers"]
            answered = ok(await h.post(f"/v1/decisions/{held['id']}/approve", {"reason": "seen"}, as_="approver"))
            assert answered["state"] == "approved"
            # All six named, none sensitive: the same panel approves on its own.
            request.update(files=[f"src/m{n}.py" for n in range(6)], summary="the same change, its paths named")
            named = ok(await h.post("/v1/decisions", request, as_="claude-body"), 201)
            assert (named["state"], named["human_required"]) == ("approved", False), named["votes"]
    finally:
        await state.close()


# --- the per-agent pause ------------------------------------------------------------------------------------


async def test_an_agent_cannot_resume_itself_and_a_reconnecting_body_hears_its_pause(http: Http) -> None:
    ok(await http.post("/v1/bodies/register", registration("w1-b"), as_="w1-body"))
    ok(await http.post("/v1/agents/w1/pause", {"reason": "look"}, as_="captain"), 201)
    refused(await http.post("/v1/agents/w1/resume", {"reason": "me"}, as_="w1-body"), 403, "forbidden")
    await http.token("w1-rev", "reviewer", agent="w1")
    refused(await http.post("/v1/agents/w1/resume", {"reason": "me"}, as_="w1-rev"), 403, "forbidden")
    refused(await http.post("/v1/agents/w1/resume", {"reason": "me"}, as_="approver"), 403, "forbidden")
    again = ok(await http.post("/v1/bodies/register", registration("w1-b"), as_="w1-body"))
    assert again["kill"]["engaged"] is True and again["kill"]["agent"] == "w1"
    beat = ok(await http.post("/v1/bodies/w1-b/heartbeat", {}, as_="w1-body"))
    assert beat["kill"]["engaged"] is True


async def _queue_task(h: Http) -> None:
    ok(await h.post("/v1/tasks", {"title": "some work"}, as_="approver"), 201)


async def test_a_paused_agent_claims_no_task(http: Http) -> None:
    await _queue_task(http)
    ok(await http.post("/v1/agents/w1/pause", {"reason": "look"}, as_="captain"), 201)
    claim = {"body_id": "w1-b", "mode": "shadow", "logic_version": "lv-1"}
    answer = ok(await http.post("/v1/tasks/claim", claim, as_="w1-body"))
    assert answer["task"] is None


async def test_under_the_global_kill_no_agent_claims_a_task(http: Http) -> None:
    await _queue_task(http)
    ok(await http.post("/v1/kill", {"reason": "stop"}, as_="captain"))
    claim = {"body_id": "w1-b", "mode": "shadow", "logic_version": "lv-1"}
    assert ok(await http.post("/v1/tasks/claim", claim, as_="w1-body"))["task"] is None


async def test_a_paused_reviewer_agent_does_not_vote(http: Http) -> None:
    """Was a hole: a paused reviewer's vote counted. Now 409 `agent_paused`, naming the pause; after a human captain
    resumes it, it votes again."""
    ok(await http.post("/v1/agents/rev-a/pause", {"reason": "odd votes"}, as_="captain"), 201)
    decision = await propose(http)
    answer = refused(await vote(http, decision["id"], "rev-a"), 409, "agent_paused")
    assert "paused" in answer["message"] and "odd votes" in answer["message"]
    stored = ok(await http.get(f"/v1/decisions/{decision['id']}", as_="approver"))
    assert stored["votes"] == []
    ok(await http.post("/v1/agents/rev-a/resume", {"reason": "fine"}, as_="captain"))
    assert [v["voter"] for v in ok(await vote(http, decision["id"], "rev-a"))["votes"]] == ["rev-a"]


async def test_a_paused_captain_agent_does_not_veto(http: Http) -> None:
    ok(await http.post("/v1/agents/cap/pause", {"reason": "odd vetoes"}, as_="captain"), 201)
    decision = await propose(http)
    refused(await override(http, decision["id"], "cap", "veto"), 409, "agent_paused")
    assert ok(await http.get(f"/v1/decisions/{decision['id']}", as_="approver"))["state"] == "pending"


async def test_a_paused_agent_is_handed_no_task_even_naming_it(http: Http) -> None:
    """The claim names its task: a paused agent gets none either, and the task stays queued for others."""
    task = ok(await http.post("/v1/tasks", {"title": "some work"}, as_="approver"), 201)
    ok(await http.post("/v1/agents/w1/pause", {"reason": "look"}, as_="captain"), 201)
    claim = {"body_id": "w1-b", "mode": "shadow", "logic_version": "lv-1", "task_id": task["id"]}
    assert ok(await http.post("/v1/tasks/claim", claim, as_="w1-body"))["task"] is None
    assert ok(await http.get(f"/v1/tasks/{task['id']}", as_="approver"))["state"] == "queued"


# --- the anomaly watch and forged events ---------------------------------------------------------------------


class Trail:
    """One body's audit chain."""

    def __init__(self, body_id: str) -> None:
        self.body_id = body_id
        self.seq = 0
        self.mac = "genesis"

    def calls(self, agent: str, at: float, count: int) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for n in range(count):
            self.seq += 1
            mac = hashlib.sha256(f"{self.body_id}|{self.seq}|{self.mac}".encode()).hexdigest()
            event = AuditEvent(
                seq=self.seq,
                id=f"act_{self.body_id}_{self.seq}",
                ts=datetime.fromtimestamp(at + n * 0.01, UTC).isoformat(timespec="microseconds"),
                kind="tool_call",
                body_id=self.body_id,
                agent=agent,
                session="s",
                tool="write_file",
                rationale="r",
                outcome="ok",
                prev_mac=self.mac,
                mac=mac,
            )
            events.append(event.model_dump(mode="json"))
            self.mac = mac
        return events


async def _forge_a_burst(h: Http, clock: Clock, *, as_: str, body_id: str, agent: str) -> httpx.Response:
    """A steady baseline of `agent`'s tool calls then a burst, all posted by `as_`'s body; the last answer."""
    clock.now -= clock.now % 60
    ok(await h.post("/v1/bodies/register", registration(body_id), as_=as_))
    trail = Trail(body_id)
    answer: httpx.Response | None = None
    for n in range(13):
        calls = 200 if n == 12 else 3 + n % 3
        answer = await h.post(
            "/v1/audit", {"body_id": body_id, "events": trail.calls(agent, clock.now + 1, calls)}, as_=as_
        )
        clock.advance(60)
        if answer.status_code != 200:
            return answer
        await h.brain.anomaly.evaluate()
    assert answer is not None
    return answer


async def test_forged_audit_events_from_an_ide_body_do_not_pause_another_agent(http: Http, clock: Clock) -> None:
    """Was a hole (high). Now the IDE body's events naming an agent with a token are refused (422, nothing stored),
    and the watch counts a body's events for its token's agent whatever they name."""
    answer = await _forge_a_burst(http, clock, as_="ide-body", body_id="ide-1", agent="w1")
    assert refused(answer, 422, "invalid_request")["field"] == "events.0.agent"
    assert await http.brain.state.audit_events("ide-1") == []
    assert await http.brain.state.agent_pauses() == []
    beat = ok(await http.post("/v1/bodies/register", registration("w1-b"), as_="w1-body"))
    assert beat["kill"]["engaged"] is False


async def test_an_ide_bodys_burst_under_a_name_that_later_gets_a_token_pauses_no_agent(
    http: Http, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The events an IDE body posted under 'w9' (no token then) count as that body's, not w9's: once w9 has a token
    of its own, the burst still pauses nobody (the watch reads the body's token, not the events' names)."""
    clock.now -= clock.now % 60
    ok(await http.post("/v1/bodies/register", registration("ide-9"), as_="ide-body"))
    trail = Trail("ide-9")
    for n in range(13):
        calls = 200 if n == 12 else 3 + n % 3
        events = trail.calls("w9", clock.now + 1, calls)
        ok(await http.post("/v1/audit", {"body_id": "ide-9", "events": events}, as_="ide-body"))
        clock.advance(60)
        if n < 12:
            assert await http.brain.anomaly.evaluate() == []
    await http.token("w9-body", "body", agent="w9")
    with caplog.at_level("WARNING", logger="brain_server.anomaly_watch"):
        assert await http.brain.anomaly.evaluate() == []
    assert await http.brain.state.agent_pauses() == []
    assert "anomaly for body:ide-9, which no token is bound to" in caplog.text


async def test_an_agents_body_cannot_post_events_in_another_agents_name(http: Http, clock: Clock) -> None:
    await http.token("w2-body", "body", agent="w2")
    answer = await _forge_a_burst(http, clock, as_="w2-body", body_id="w2-b", agent="w1")
    refused(answer, 422, "invalid_request")
    assert await http.brain.state.agent_pauses() == []


async def test_the_watch_never_pauses_an_ide_bodys_own_name(http: Http, clock: Clock) -> None:
    """An IDE body's burst under its own IDE name (no token bound to it) pauses nothing, and its body hears no kill."""
    await _forge_a_burst(http, clock, as_="ide-body", body_id="ide-2", agent="claude-code")
    assert await http.brain.state.agent_pauses() == []
    again = ok(await http.post("/v1/bodies/register", registration("ide-2"), as_="ide-body"))
    assert again["kill"]["engaged"] is False


async def test_an_agents_body_cannot_hide_its_burst_under_a_name_no_agent_has(http: Http, clock: Clock) -> None:
    """Was a hole: the watch read the events' names. Now every tool call a body posts counts for its token's agent."""
    answer = await _forge_a_burst(http, clock, as_="w1-body", body_id="w1-b", agent="swarm:x")
    assert answer.status_code == 200, answer.text
    [pause] = await http.brain.state.agent_pauses()
    assert (pause.agent, pause.source) == ("w1", "anomaly") and "tool_calls_per_min" in pause.reason
