"""Tasks for autonomous agents over the API: acceptance and repo, listing and reading, shadow and live claims (the
live gate), park and resume, outcomes with verification, evidence and spend, and cancel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest

from brain_server import Brain, BrainSettings
from shared_protocol.config import RolloutConfig

from .helpers import BrainClient, Clock, batch, decision_request, engine_url, ok, refused, registration, rerun_event

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

    from brain_server.events import BrainEvent

pytestmark = pytest.mark.anyio

LV = "lv-0123456789abcdef"
READY = {"ready": True, "items": [{"name": "kill drill", "ok": True, "detail": "0.1 s", "fix": ""}]}
VERIFIED = {"command": "pytest -q", "exit_code": 0, "action_id": "act_9", "verified": True}


@pytest.fixture
def settings(tmp_path: Path) -> BrainSettings:
    """No shadow period before an agent's first live version: this file tests the readiness gate and overrides (the
    shadow period the brain also asks of a first live version is test_rollout's)."""
    return BrainSettings(
        database_url=engine_url("sqlite", tmp_path), rollout=RolloutConfig(shadow_days=0, min_shadow_tasks=0)
    )


async def ship_rerun(api: BrainClient, clock: Clock, task_id: str, action_id: str = "act_9") -> None:
    """body-a (registered with its verification key) ships its audit event of its re-run of `pytest -q` for
    `task_id`, which makes a claimed verification count."""
    ok(await api.post("/v1/bodies/register", registration("body-a"), as_=holder(api)))
    event = rerun_event(
        "body-a", 1, "genesis", action_id=action_id, at=clock.now, argv=["pytest", "-q"], task_id=task_id
    )
    ok(await api.post("/v1/audit", batch("body-a", [event]), as_=holder(api)))


def holder(api: BrainClient) -> str:
    """The token that holds body-a: agent w1's own once it exists (it claimed shadow or live work with body-a), else
    the IDE body's."""
    return "w1" if "w1" in api.tokens else "body"


async def queue(api: BrainClient, title: str = "fix the flaky test", **fields: Any) -> dict[str, Any]:
    return ok(await api.post("/v1/tasks", {"title": title, **fields}, as_="approver"), 201)


async def agent_token(api: BrainClient, agent: str = "w1") -> str:
    """The name (for `as_=`) of agent `agent`'s own body token, made on first use: only it claims shadow or live
    work as that agent."""
    if agent not in api.tokens:
        await api.add_token(agent, agent=agent)
    return agent


async def claiming(
    api: BrainClient, *, as_: str | None = None, body_id: str = "body-a", **fields: Any
) -> httpx.Response:
    """A claim as agent w1: shadow and live claims with w1's own token, IDE claims with an IDE body's."""
    if as_ is None:
        as_ = await agent_token(api) if fields.get("mode") in ("shadow", "live") else "body"
    return await api.post("/v1/tasks/claim", {"body_id": body_id, "agent": "w1", **fields}, as_=as_)


async def claim(api: BrainClient, **fields: Any) -> dict[str, Any]:
    return ok(await claiming(api, **fields))


async def test_a_task_keeps_its_acceptance_and_repo_and_a_relative_repo_is_refused(
    api: BrainClient, brain: Brain
) -> None:
    task = await queue(api, acceptance="pytest -q", repo="/srv/app")
    assert (task["acceptance"], task["repo"], task["verified"], task["shadow_runs"]) == (
        "pytest -q",
        "/srv/app",
        False,
        [],
    )
    assert [e["kind"] for e in task["history"]] == ["created"]
    bad = refused(
        await api.post("/v1/tasks", {"title": "t", "repo": "srv/app"}, as_="approver"), 422, "invalid_request"
    )
    assert bad["field"] == "repo"
    assert len(await brain.state.tasks()) == 1


async def test_tasks_are_listed_by_state_and_agent_and_read_one_by_one(api: BrainClient) -> None:
    first = await queue(api, "one")
    second = await queue(api, "two")
    claimed = await claim(api)
    listed = ok(await api.get("/v1/tasks", as_="approver"))["tasks"]
    assert [t["id"] for t in listed] == [first["id"], second["id"]]
    assert [t["id"] for t in ok(await api.get("/v1/tasks?state=queued", as_="captain"))["tasks"]] == [second["id"]]
    assert [t["id"] for t in ok(await api.get("/v1/tasks?agent=w1", as_="approver"))["tasks"]] == [first["id"]]
    assert ok(await api.get("/v1/tasks?state=claimed&agent=nobody", as_="approver"))["tasks"] == []
    bad = refused(await api.get("/v1/tasks?state=done", as_="approver"), 422, "invalid_request")
    assert bad["field"] == "state"
    mine = ok(await api.get("/v1/tasks", as_="body"))["tasks"]
    assert [t["id"] for t in mine] == [first["id"]], "a body lists the tasks it claimed only"
    assert ok(await api.get("/v1/tasks?state=queued", as_="body"))["tasks"] == []
    one = ok(await api.get(f"/v1/tasks/{first['id']}", as_="approver"))
    assert one == claimed["task"]
    assert ok(await api.get(f"/v1/tasks/{first['id']}", as_="body")) == one, "a body reads the task it claimed"
    refused(await api.get(f"/v1/tasks/{second['id']}", as_="body"), 404, "not_found")
    refused(await api.get("/v1/tasks/task_nope", as_="captain"), 404, "not_found")
    refused(await api.get("/v1/tasks", as_=None), 401, "unauthorized")


async def test_a_live_claim_is_refused_until_readiness_passes_and_stops_once_the_report_is_old(
    api: BrainClient, brain: Brain, clock: Clock
) -> None:
    await queue(api)
    refusal = refused(await claiming(api, mode="live", logic_version=LV), 403, "not_ready")
    assert "swarm readiness" in refusal["message"] and "swarm readiness override --agent w1" in refusal["message"]
    failing = {"ready": False, "items": [{"name": "kill drill", "ok": False}, {"name": "snapshot", "ok": True}]}
    status = ok(await api.post("/v1/readiness", failing, as_="captain"), 201)
    assert status["live_ready"] is False and status["report"]["by"] == "captain-1"
    assert "kill drill" in refused(await claiming(api, mode="live", logic_version=LV), 403, "not_ready")["message"]
    ok(await api.post("/v1/readiness", READY, as_="captain"), 201)
    won = await claim(api, mode="live", logic_version=LV)
    assert (won["task"]["claim_mode"], won["task"]["logic_version"]) == ("live", LV)
    clock.advance(brain.settings.readiness_max_age_s)
    await queue(api, "another")
    assert "old" in refused(await claiming(api, mode="live", logic_version=LV), 403, "not_ready")["message"]
    assert ok(await api.get("/v1/readiness", as_="body"))["live_ready"] is False
    assert (await claim(api, mode="shadow", logic_version=LV))["task"] is not None, "shadow work is never gated"


async def test_a_captains_override_lets_one_agent_and_logic_version_work_live_until_it_expires(
    api: BrainClient, brain: Brain, clock: Clock
) -> None:
    for _ in range(3):
        await queue(api)
    override = {"agent": "w1", "logic_version": LV, "reason": "drill box is down, reviewed by hand", "for_s": 600}
    refused(await api.post("/v1/readiness/overrides", override, as_="approver"), 403, "forbidden")
    refused(await api.post("/v1/readiness/overrides", override, as_="body"), 403, "forbidden")
    made = ok(await api.post("/v1/readiness/overrides", override, as_="captain"), 201)
    assert (made["agent"], made["logic_version"], made["by"]) == ("w1", LV, "captain-1")
    (line,) = [e for e in await brain.state.log_entries() if e.action == "readiness_override"]
    assert (line.by, line.role, line.target, line.reason) == ("captain-1", "captain", "w1", override["reason"])
    assert (await claim(api, mode="live", logic_version=LV))["task"] is not None
    refused(await claiming(api, mode="live", logic_version="lv-other"), 403, "not_ready")
    listed = ok(await api.get("/v1/readiness", as_="approver"))
    assert [o["id"] for o in listed["overrides"]] == [made["id"]] and listed["report"] is None
    clock.advance(600)
    refused(await claiming(api, mode="live", logic_version=LV), 403, "not_ready")
    assert ok(await api.get("/v1/readiness", as_="approver"))["overrides"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ready": True, "items": [{"name": "kill drill", "ok": False}]}, "body"),
        ({"ready": False, "items": [{"name": "kill drill", "ok": True}]}, "body"),
        ({"ready": True, "items": []}, "items"),
        ({"ready": True}, "items"),
    ],
)
async def test_a_readiness_report_that_contradicts_itself_is_refused(
    api: BrainClient, brain: Brain, body: dict[str, Any], field: str
) -> None:
    error = refused(await api.post("/v1/readiness", body, as_="captain"), 422, "invalid_request")
    assert (error.get("field") or "body") == field
    assert await brain.state.readiness_report() is None
    refused(await api.post("/v1/readiness", READY, as_="approver"), 403, "forbidden")


@pytest.mark.parametrize(
    "override",
    [
        {"agent": "w1", "logic_version": LV, "reason": " "},
        {"agent": "w1", "logic_version": LV, "reason": "r", "for_s": 0},
        {"agent": "w1", "logic_version": LV, "reason": "r", "for_s": 31 * 86_400},
        {"agent": "w1", "reason": "r"},
    ],
)
async def test_a_bad_override_is_refused_naming_the_field(
    api: BrainClient, brain: Brain, override: dict[str, Any]
) -> None:
    error = refused(await api.post("/v1/readiness/overrides", override, as_="captain"), 422, "invalid_request")
    assert error["field"] in ("reason", "for_s", "logic_version")
    assert await brain.state.readiness_overrides(at=brain.now()) == []


async def test_an_agents_claim_needs_its_logic_version_and_a_claim_for_one_task_takes_only_it(
    api: BrainClient,
) -> None:
    for mode in ("shadow", "live"):
        error = refused(await claiming(api, mode=mode), 422, "invalid_request")
        assert error["field"] == "logic_version"
    rich = await queue(api, "rich", value_usd=100)
    cheap = await queue(api, "cheap", value_usd=1)
    shadow = {"mode": "shadow", "logic_version": LV}
    assert (await claim(api, task_id=cheap["id"], **shadow))["task"]["id"] == cheap["id"]
    assert (await claim(api, task_id=cheap["id"], **shadow))["task"] is None, "not queued any more"
    refused(await claiming(api, task_id="task_nope", **shadow), 404, "not_found")
    assert (await claim(api, **shadow))["task"]["id"] == rich["id"]


async def test_a_shadow_outcome_is_kept_as_a_shadow_run_and_the_task_goes_back_to_the_queue(
    api: BrainClient, clock: Clock
) -> None:
    task = await queue(api, acceptance="pytest -q")
    shadow = await claim(api, mode="shadow", logic_version=LV)
    await ship_rerun(api, clock, task["id"])
    assert shadow["task"]["claim_mode"] == "shadow"
    outcome = {
        "claim_token": shadow["claim_token"],
        "outcome": "succeeded",
        "summary": "green in the copy",
        "verification": VERIFIED,
        "spend": {"usd": 0.3, "input_tokens": 900, "output_tokens": 90, "steps": 4, "model": "gpt"},
        "mode": "shadow",
        "logic_version": LV,
    }
    back = ok(await api.post(f"/v1/tasks/{task['id']}/outcome", outcome, as_="w1"))
    assert (back["state"], back["verified"], back["claimed_by"], back["spend"]) == ("queued", False, None, None)
    (run,) = back["shadow_runs"]
    assert (run["agent"], run["logic_version"], run["outcome"], run["verification"]["status"]) == (
        "w1",
        LV,
        "succeeded",
        "confirmed",
    )
    assert {key: run["verification"][key] for key in VERIFIED} == VERIFIED
    assert [e["kind"] for e in back["history"]] == ["created", "claimed", "shadow_run", "verification"]
    assert (await claim(api, mode="shadow", logic_version=LV))["task"] is None, "shadowed by this version already"
    assert (await claim(api, mode="shadow", logic_version="lv-next"))["task"]["id"] == task["id"]


async def test_a_verified_success_keeps_its_evidence_and_spend_and_an_unverified_one_is_self_reported(
    api: BrainClient, clock: Clock
) -> None:
    first = await queue(api, "first", acceptance="pytest -q", value_usd=2)
    second = await queue(api, "second", acceptance="pytest -q", value_usd=1)
    claimed = await claim(api)
    await ship_rerun(api, clock, first["id"])
    outcome = {
        "claim_token": claimed["claim_token"],
        "outcome": "succeeded",
        "summary": "fixed",
        "verification": VERIFIED,
        "evidence": {"branch": "swarm/first", "commit": "abc123", "tests": "pytest -q"},
        "spend": {"usd": 1.5, "steps": 9, "model": "gpt"},
    }
    done = ok(await api.post(f"/v1/tasks/{first['id']}/outcome", outcome, as_="body"))
    assert (done["state"], done["verified"], done["evidence"]["commit"], done["spend"]["usd"]) == (
        "succeeded",
        True,
        "abc123",
        1.5,
    )
    claimed = await claim(api)
    assert claimed["task"]["id"] == second["id"]
    forged = {**VERIFIED, "exit_code": 1}
    bad = {"claim_token": claimed["claim_token"], "outcome": "succeeded", "verification": forged}
    refused(await api.post(f"/v1/tasks/{second['id']}/outcome", bad, as_="body"), 422, "invalid_request")
    other_command = {**VERIFIED, "command": "true"}
    bad = {"claim_token": claimed["claim_token"], "outcome": "succeeded", "verification": other_command}
    error = refused(await api.post(f"/v1/tasks/{second['id']}/outcome", bad, as_="body"), 422, "invalid_request")
    assert error["field"] == "verification.command"
    bad = {"claim_token": claimed["claim_token"], "outcome": "succeeded", "mode": "live"}
    assert (
        refused(await api.post(f"/v1/tasks/{second['id']}/outcome", bad, as_="body"), 422, "invalid_request")["field"]
        == "mode"
    )
    plain = {"claim_token": claimed["claim_token"], "outcome": "succeeded", "summary": "trust me"}
    self_reported = ok(await api.post(f"/v1/tasks/{second['id']}/outcome", plain, as_="body"))
    assert (self_reported["state"], self_reported["verified"], self_reported["verification"]) == (
        "succeeded",
        False,
        None,
    )


async def test_a_parked_task_waits_without_a_lease_and_resumes_or_finishes_with_its_claim_token(
    api: BrainClient, brain: Brain, clock: Clock
) -> None:
    task = await queue(api)
    claimed = await claim(api)
    token, task_id = claimed["claim_token"], task["id"]
    decision = ok(await api.post("/v1/decisions", decision_request("body-a", confidence=0.5), as_="body"), 201)
    park = {"claim_token": token, "decision_id": decision["id"], "reason": "needs a human"}
    parked = ok(await api.post(f"/v1/tasks/{task_id}/park", park, as_="body"))
    assert (parked["state"], parked["lease_expires"], parked["parked_decision_id"]) == (
        "waiting_approval",
        None,
        decision["id"],
    )
    clock.advance(brain.settings.lease_s * 10)
    assert (await brain.sweep()).requeued == [], "no lease to run out"
    status = ok(await api.get("/v1/status", as_="captain"))
    assert (status["queued_tasks"], status["claimed_tasks"], status["waiting_tasks"]) == (0, 0, 1)
    refused(await api.post(f"/v1/tasks/{task_id}/renew", {"claim_token": token}, as_="body"), 409, "invalid_transition")
    refused(await api.post(f"/v1/tasks/{task_id}/park", park, as_="body"), 409, "invalid_transition")
    resumed = ok(await api.post(f"/v1/tasks/{task_id}/resume", {"claim_token": token}, as_="body"))
    assert (resumed["task"]["state"], resumed["lease_s"]) == ("claimed", brain.settings.lease_s)
    refused(
        await api.post(f"/v1/tasks/{task_id}/resume", {"claim_token": token}, as_="body"), 409, "invalid_transition"
    )
    ok(await api.post(f"/v1/tasks/{task_id}/park", park, as_="body"))
    done = {"claim_token": token, "outcome": "abandoned", "summary": "denied"}
    finished = ok(await api.post(f"/v1/tasks/{task_id}/outcome", done, as_="body"))
    assert finished["state"] == "abandoned"
    kinds = [e["kind"] for e in finished["history"]]
    assert kinds == ["created", "claimed", "parked", "resumed", "parked", "outcome"]
    assert [e.action for e in await brain.state.log_entries()].count("task_park") == 2


async def test_a_bad_park_or_resume_is_refused_and_changes_nothing(api: BrainClient, brain: Brain) -> None:
    task = await queue(api)
    claimed = await claim(api)
    token, task_id = claimed["claim_token"], task["id"]
    await api.add_token("body-b")
    theirs = ok(await api.post("/v1/decisions", decision_request("body-b"), as_="body-b"), 201)
    # (pending: a task is parked on a decision it waits for, never one the rules answered on the spot)
    mine = ok(await api.post("/v1/decisions", decision_request("body-a", confidence=0.5), as_="body"), 201)
    before = await brain.state.task(task_id)
    for decision_id in ("dec_nope", theirs["id"]):
        park = {"claim_token": token, "decision_id": decision_id, "reason": "r"}
        assert (
            refused(await api.post(f"/v1/tasks/{task_id}/park", park, as_="body"), 422, "invalid_request")["field"]
            == "decision_id"
        )
    park = {"claim_token": "clm_forged", "decision_id": mine["id"], "reason": "r"}
    refused(await api.post(f"/v1/tasks/{task_id}/park", park, as_="body"), 409, "stale_claim")
    refused(await api.post("/v1/tasks/task_nope/park", {**park, "claim_token": token}, as_="body"), 404, "not_found")
    refused(await api.post(f"/v1/tasks/{task_id}/park", {**park, "claim_token": token}, as_="body-b"), 403, "forbidden")
    refused(
        await api.post(f"/v1/tasks/{task_id}/park", {**park, "claim_token": token}, as_="approver"), 403, "forbidden"
    )
    refused(
        await api.post(f"/v1/tasks/{task_id}/resume", {"claim_token": token}, as_="body"), 409, "invalid_transition"
    )
    missing = refused(
        await api.post(f"/v1/tasks/{task_id}/park", {"claim_token": token}, as_="body"), 422, "invalid_request"
    )
    assert missing["field"] == "decision_id"
    assert await brain.state.task(task_id) == before


async def test_a_cancelled_task_tells_its_holder_to_stop_and_cannot_be_cancelled_again(
    api: BrainClient, brain: Brain
) -> None:
    task = await queue(api)
    claimed = await claim(api)
    token, task_id = claimed["claim_token"], task["id"]
    refused(await api.post(f"/v1/tasks/{task_id}/cancel", {"reason": "dup"}, as_="body"), 403, "forbidden")
    refused(await api.post(f"/v1/tasks/{task_id}/cancel", {"reason": ""}, as_="approver"), 422, "invalid_request")
    cancelled = ok(await api.post(f"/v1/tasks/{task_id}/cancel", {"reason": "duplicate of #12"}, as_="approver"))
    assert (cancelled["state"], cancelled["history"][-1]["detail"]) == (
        "cancelled",
        {"reason": "duplicate of #12", "from": "claimed"},
    )
    stop = refused(
        await api.post(f"/v1/tasks/{task_id}/renew", {"claim_token": token}, as_="body"), 409, "task_cancelled"
    )
    assert "duplicate of #12" in stop["message"]
    done = {"claim_token": token, "outcome": "succeeded", "summary": "late"}
    refused(await api.post(f"/v1/tasks/{task_id}/outcome", done, as_="body"), 409, "task_cancelled")
    refused(
        await api.post(f"/v1/tasks/{task_id}/cancel", {"reason": "again"}, as_="captain"), 409, "invalid_transition"
    )
    refused(await api.post("/v1/tasks/task_nope/cancel", {"reason": "r"}, as_="captain"), 404, "not_found")
    (line,) = [e for e in await brain.state.log_entries() if e.action == "task_cancel"]
    assert (line.by, line.target, line.reason) == ("approver-1", task_id, "duplicate of #12")
    assert (await brain.state.task(task_id)) == (await brain.state.tasks(state="cancelled"))[0]


async def parked_on_a_decision(api: BrainClient, *, mode: str = "ide") -> tuple[str, str, str]:
    """A task claimed by body-a and parked on a pending decision: (task id, claim token, decision id)."""
    task = await queue(api)
    claimed = await claim(api, mode=mode, logic_version=LV)
    who = holder(api)
    asked = decision_request("body-a", confidence=0.5, agent="w1")
    decision = ok(await api.post("/v1/decisions", asked, as_=who), 201)
    assert decision["state"] == "pending"
    park = {"claim_token": claimed["claim_token"], "decision_id": decision["id"], "reason": "needs a human"}
    ok(await api.post(f"/v1/tasks/{task['id']}/park", park, as_=who))
    return task["id"], claimed["claim_token"], decision["id"]


def task_events(events: MemoryObjectReceiveStream[BrainEvent]) -> list[tuple[str, dict[str, Any]]]:
    """The task events published so far (the stream is not waited on: they are published with the commit)."""
    seen: list[tuple[str, dict[str, Any]]] = []
    while True:
        try:
            event = events.receive_nowait()
        except anyio.WouldBlock:
            return seen
        if event.name.startswith("task_"):
            seen.append((event.name, json.loads(event.data)))


@pytest.mark.parametrize(
    ("answer", "as_", "verdict"),
    [("deny", "approver", "denied"), ("override", "captain", "overridden"), ("expire", None, "expired")],
)
async def test_a_parked_task_ends_abandoned_with_its_decision_when_that_is_denied_overridden_or_expires(
    api: BrainClient, brain: Brain, clock: Clock, answer: str, as_: str | None, verdict: str
) -> None:
    task_id, token, decision_id = await parked_on_a_decision(api)
    with brain.hub.subscribe("body-a") as events:
        if as_ is None:
            clock.advance(7 * 24 * 3600)
            assert (await brain.sweep()).expired == [decision_id]
        else:
            ok(await api.post(f"/v1/decisions/{decision_id}/{answer}", {"reason": "no"}, as_=as_))
        published = task_events(events)
    after = ok(await api.get(f"/v1/tasks/{task_id}", as_="captain"))
    reason = f"decision {decision_id} {verdict}"
    assert (after["state"], after["outcome_summary"], after["parked_decision_id"], after["verified"]) == (
        "abandoned",
        reason,
        None,
        False,
    )
    by = {"approver": "approver-1", "captain": "captain-1", None: "deadline"}[as_]
    last = after["history"][-1]
    assert [e["kind"] for e in after["history"]] == ["created", "claimed", "parked", "outcome"]
    assert (last["by"], last["agent"], last["detail"]["outcome"], last["detail"]["summary"]) == (
        by,
        "w1",
        "abandoned",
        reason,
    )
    assert published == [
        ("task_ended", {"task_id": task_id, "state": "abandoned", "reason": reason, "by": by, "body_id": "body-a"})
    ]
    (line,) = [e for e in await brain.state.log_entries() if e.action == "task_outcome"]
    assert (line.by, line.target, line.reason, line.detail["decision_state"]) == (by, task_id, reason, verdict)
    # The runner's claim is gone: resuming or finishing with it is refused, and nothing changes.
    refused(await api.post(f"/v1/tasks/{task_id}/resume", {"claim_token": token}, as_="body"), 409, "stale_claim")
    done = {"claim_token": token, "outcome": "succeeded", "summary": "late"}
    refused(await api.post(f"/v1/tasks/{task_id}/outcome", done, as_="body"), 409, "stale_claim")
    assert ok(await api.get(f"/v1/tasks/{task_id}", as_="captain")) == after


async def test_an_approved_decision_leaves_its_parked_task_to_its_runner_until_a_captain_vetoes_it(
    api: BrainClient, brain: Brain
) -> None:
    task_id, _, decision_id = await parked_on_a_decision(api)
    with brain.hub.subscribe("body-a") as events:
        ok(await api.post(f"/v1/decisions/{decision_id}/approve", {"reason": "fine"}, as_="approver"))
        assert task_events(events) == [], "nothing ends: the runner resumes it"
    assert ok(await api.get(f"/v1/tasks/{task_id}", as_="captain"))["state"] == "waiting_approval"
    # A captain's veto before the runner resumed ends it after all; once resumed, the task is the runner's again.
    ok(await api.post(f"/v1/decisions/{decision_id}/override", {"reason": "not now"}, as_="captain"))
    vetoed = ok(await api.get(f"/v1/tasks/{task_id}", as_="captain"))
    assert (vetoed["state"], vetoed["outcome_summary"]) == ("abandoned", f"decision {decision_id} overridden")
    other, other_token, other_decision = await parked_on_a_decision(api)
    ok(await api.post(f"/v1/decisions/{other_decision}/approve", {"reason": "fine"}, as_="approver"))
    ok(await api.post(f"/v1/tasks/{other}/resume", {"claim_token": other_token}, as_="body"))
    ok(await api.post(f"/v1/decisions/{other_decision}/override", {"reason": "too late"}, as_="captain"))
    assert ok(await api.get(f"/v1/tasks/{other}", as_="captain"))["state"] == "claimed"


async def test_a_shadow_task_parked_on_a_denied_decision_is_a_shadow_run_and_back_in_the_queue(
    api: BrainClient, brain: Brain
) -> None:
    task_id, _, decision_id = await parked_on_a_decision(api, mode="shadow")
    with brain.hub.subscribe("body-a") as events:
        ok(await api.post(f"/v1/decisions/{decision_id}/deny", {"reason": "no"}, as_="approver"))
        published = task_events(events)
    after = ok(await api.get(f"/v1/tasks/{task_id}", as_="captain"))
    assert (after["state"], after["claimed_by"]) == ("queued", None)
    (run,) = after["shadow_runs"]
    assert (run["agent"], run["outcome"], run["summary"]) == ("w1", "abandoned", f"decision {decision_id} denied")
    assert [name for name, _ in published] == ["task_ended", "task_available"]
    assert published[0][1]["state"] == "queued" and published[0][1]["body_id"] == "body-a"


async def test_the_body_holding_a_parked_task_gives_it_up_without_its_claim_token(
    api: BrainClient, brain: Brain
) -> None:
    task_id, _, _ = await parked_on_a_decision(api)
    await api.add_token("body-b")
    ok(await api.post("/v1/tasks/claim", {"body_id": "body-b", "agent": "w2"}, as_="body-b"))  # binds body-b
    why = {"reason": "the runner lost its saved state of the parked task"}
    refused(await api.post(f"/v1/tasks/{task_id}/abandon", why, as_="body-b"), 403, "forbidden")
    refused(await api.post(f"/v1/tasks/{task_id}/abandon", why, as_="approver"), 403, "forbidden")
    refused(await api.post(f"/v1/tasks/{task_id}/abandon", {"reason": ""}, as_="body"), 422, "invalid_request")
    refused(await api.post("/v1/tasks/task_nope/abandon", why, as_="body"), 404, "not_found")
    assert ok(await api.get(f"/v1/tasks/{task_id}", as_="captain"))["state"] == "waiting_approval"
    with brain.hub.subscribe("body-a") as events:
        given_up = ok(await api.post(f"/v1/tasks/{task_id}/abandon", why, as_="body"))
        published = task_events(events)
    assert (given_up["state"], given_up["outcome_summary"]) == ("abandoned", why["reason"])
    assert [e["kind"] for e in given_up["history"]][-1] == "outcome"
    assert published == [
        (
            "task_ended",
            {"task_id": task_id, "state": "abandoned", "reason": why["reason"], "by": "body-1", "body_id": "body-a"},
        )
    ]
    refused(await api.post(f"/v1/tasks/{task_id}/abandon", why, as_="body"), 409, "invalid_transition")
    claimed = await queue(api, "claimed, not parked")
    ok(await api.post("/v1/tasks/claim", {"body_id": "body-a", "agent": "w1", "task_id": claimed["id"]}, as_="body"))
    refused(await api.post(f"/v1/tasks/{claimed['id']}/abandon", why, as_="body"), 409, "invalid_transition")


async def test_a_task_keeps_its_acceptance_inputs_and_a_bad_glob_is_refused_naming_it(
    api: BrainClient, brain: Brain
) -> None:
    named = await queue(api, acceptance="python3 check.py", acceptance_inputs=["check.py", "data/**"])
    assert named["acceptance_inputs"] == ["check.py", "data/**"]
    assert (await queue(api, acceptance="pytest -q"))["acceptance_inputs"] is None, "unset: the runner's default"
    assert (await queue(api, acceptance="pytest -q", acceptance_inputs=[]))["acceptance_inputs"] == []
    for bad in (["/etc/passwd"], ["a/../../b"], [""], ["x" * 501]):
        error = refused(
            await api.post("/v1/tasks", {"title": "t", "acceptance_inputs": bad}, as_="approver"),
            422,
            "invalid_request",
        )
        assert error["field"].startswith("acceptance_inputs"), error
    stored = await brain.state.task(named["id"])
    assert stored is not None and stored.acceptance_inputs == ["check.py", "data/**"]
    assert len(await brain.state.tasks()) == 3
