"""Adversarial review of #17, the brain's side: what a body token (an agent's runner, compromised or confused) may
claim, report and bill. Each hole found is a strict xfail naming the fix; what holds is asserted plainly."""

from __future__ import annotations

from typing import Any

import pytest

from brain_server import Brain

from .helpers import BrainClient, Clock, decision_request, ok, refused

pytestmark = pytest.mark.anyio

LV_A = "lv-aaaaaaaaaaaaaaaa"
LV_B = "lv-bbbbbbbbbbbbbbbb"


async def queue(api: BrainClient, title: str = "ship it", **fields: Any) -> dict[str, Any]:
    return ok(await api.post("/v1/tasks", {"title": title, **fields}, as_="approver"), 201)


async def agent_token(api: BrainClient, agent: str) -> str:
    """Agent `agent`'s own body token (`swarm brain token create --role body --agent NAME`), sent with `as_=agent`."""
    await api.add_token(agent, agent=agent)
    return agent


async def test_review17_an_agents_token_cannot_skip_the_live_gate_by_claiming_ide(api: BrainClient) -> None:
    """Fixed: a body token is bound to its agent when created, and an agent's token never claims 'ide' work (403
    forbidden); only an IDE body's token (bound to no agent) does."""
    task = await queue(api)
    w1 = await agent_token(api, "w1")
    # The agent's runner is refused live work (no readiness report, no override) ...
    refused(
        await api.post(
            "/v1/tasks/claim", {"body_id": "agent-w1", "agent": "w1", "mode": "live", "logic_version": LV_A}, as_=w1
        ),
        403,
        "not_ready",
    )
    # ... so it claims the same task as an IDE body would, with the same token.
    sneaky = await api.post(
        "/v1/tasks/claim", {"body_id": "agent-w1", "agent": "w1", "mode": "ide", "logic_version": LV_A}, as_=w1
    )
    if sneaky.status_code == 200 and sneaky.json()["task"] is not None:
        done = {"claim_token": sneaky.json()["claim_token"], "outcome": "succeeded", "summary": "done, live"}
        finished = ok(await api.post(f"/v1/tasks/{task['id']}/outcome", done, as_=w1))
        assert finished["state"] != "succeeded", "live work finished by an agent that never passed the gate"
    assert sneaky.status_code == 403
    assert "shadow or live" in refused(sneaky, 403, "forbidden")["message"]


async def test_review17_an_override_for_one_agent_does_not_let_another_agents_token_claim_live(
    api: BrainClient,
) -> None:
    """Fixed: agent w1's token is bound to w1 when created, and a claim naming another agent is refused (403)."""
    await queue(api, "first")
    await queue(api, "second")
    override = {"agent": "w2", "logic_version": LV_B, "reason": "w2 reviewed by hand", "for_s": 600}
    ok(await api.post("/v1/readiness/overrides", override, as_="captain"), 201)
    w1 = await agent_token(api, "w1")
    # w1's token (bound to body agent-w1 on first use) learns w2's logic version from the readiness listing.
    shadow = {"body_id": "agent-w1", "agent": "w1", "mode": "shadow", "logic_version": LV_A}
    ok(await api.post("/v1/tasks/claim", shadow, as_=w1))
    listed = ok(await api.get("/v1/readiness", as_=w1))
    (shown,) = listed["overrides"]
    impostor = {"body_id": "agent-w1", "agent": "w2", "mode": "live", "logic_version": shown["logic_version"]}
    response = await api.post("/v1/tasks/claim", impostor, as_=w1)
    granted = response.status_code == 200 and response.json()["task"] is not None
    assert not granted, f"w1's token got live work as w2: {response.text}"
    assert response.status_code == 403, response.text
    message = refused(response, 403, "forbidden")["message"]
    assert "'w1'" in message and "'w2'" in message and "--agent w2" in message


async def test_review17_an_expired_override_and_one_for_another_logic_version_do_not_open_the_gate(
    api: BrainClient, clock: Clock
) -> None:
    """Holds: the override is bound to its logic version and ends at its expiry."""
    await queue(api)
    override = {"agent": "w1", "logic_version": LV_A, "reason": "reviewed", "for_s": 60}
    ok(await api.post("/v1/readiness/overrides", override, as_="captain"), 201)
    w1 = await agent_token(api, "w1")
    live = {"body_id": "agent-w1", "agent": "w1", "mode": "live"}
    refused(await api.post("/v1/tasks/claim", {**live, "logic_version": LV_B}, as_=w1), 403, "not_ready")
    clock.advance(60)
    refused(await api.post("/v1/tasks/claim", {**live, "logic_version": LV_A}, as_=w1), 403, "not_ready")


def usage(n: int, *, agent: str, task_id: str | None) -> dict[str, Any]:
    return {
        "id": f"use_forged_{n}",
        "at": "2030-01-01T00:00:00Z",
        "agent": agent,
        "logic_version": LV_A,
        "task_id": task_id,
        "provider": "openai",
        "model": "gpt",
        "input_tokens": 1,
        "output_tokens": 1,
        "usd": 500.0,
        "outcome": "answered",
    }


async def test_review17_a_body_cannot_bill_usage_to_a_task_it_never_held_or_as_another_agent_of_it(
    api: BrainClient,
) -> None:
    """Fixed: a record for a task needs this body's claim of it (422 otherwise, nothing kept), and a record's agent
    is the token's (422 on `records.N.agent`)."""
    mine = await queue(api, "w1's task")
    other = await queue(api, "nobody's task")
    w1 = await agent_token(api, "w1")
    claim = {"body_id": "agent-w1", "agent": "w1", "mode": "shadow", "logic_version": LV_A, "task_id": mine["id"]}
    ok(await api.post("/v1/tasks/claim", claim, as_=w1))
    for n, (forged, field, why) in enumerate(
        [
            (usage(1, agent="w1", task_id=other["id"]), "records.1.task_id", "never claimed"),
            (usage(2, agent="w2", task_id=mine["id"]), "records.1.agent", "bills its own spend only"),
        ],
    ):
        batch = {"body_id": "agent-w1", "records": [usage(10 + n, agent="w1", task_id=mine["id"]), forged]}
        error = refused(await api.post("/v1/usage", batch, as_=w1), 422, "invalid_request")
        assert error["field"] == field and why in error["message"]
    refused(
        await api.post("/v1/usage", {"records": [usage(3, agent="w1", task_id="task_nope")]}, as_=w1),
        422,
        "invalid_request",
    )
    assert ok(await api.get("/v1/usage", as_="captain"))["total"]["calls"] == 0, "nothing of a refused batch kept"
    ok(await api.post("/v1/usage", {"records": [usage(4, agent="w1", task_id=mine["id"])]}, as_=w1))
    assert ok(await api.get("/v1/usage", as_="captain"))["by_task"][mine["id"]]["calls"] == 1


async def test_review17_a_body_cannot_bill_usage_outside_a_task_to_another_agent(api: BrainClient) -> None:
    """Fixed: a usage record's agent must be the one the token is bound to (422 on `records.N.agent`), and a body
    token bound to no agent (an IDE body's) bills no agent at all."""
    w1 = await agent_token(api, "w1")
    shadow = {"body_id": "agent-w1", "agent": "w1", "mode": "shadow", "logic_version": LV_A}
    ok(await api.post("/v1/tasks/claim", shadow, as_=w1))
    forged = {"body_id": "agent-w1", "records": [usage(1, agent="w2", task_id=None)]}
    error = refused(await api.post("/v1/usage", forged, as_=w1), 422, "invalid_request")
    assert error["field"] == "records.0.agent" and "'w1'" in error["message"]
    ide = {"records": [usage(2, agent="w2", task_id=None)]}
    error = refused(await api.post("/v1/usage", ide, as_="body"), 422, "invalid_request")
    assert error["field"] == "records.0.agent" and "--agent w2" in error["message"]
    totals = ok(await api.get("/v1/usage", as_="captain"))
    assert "w2" not in totals["by_agent"], "spend billed to an agent by another agent's token"


async def test_review17_a_verified_outcome_needs_the_bodys_audited_rerun(api: BrainClient) -> None:
    """Fixed: a claimed verification stays pending (verified false) until the claiming body's audit event of the
    re-run arrives, and is refuted if that event is not one (tests/brain/test_verification.py)."""
    task = await queue(api, acceptance="pytest -q")
    claimed = ok(await api.post("/v1/tasks/claim", {"body_id": "agent-w1", "agent": "w1", "mode": "ide"}, as_="body"))
    forged = {"command": "pytest -q", "exit_code": 0, "action_id": "act_never_ran", "verified": True}
    outcome = {"claim_token": claimed["claim_token"], "outcome": "succeeded", "verification": forged}
    response = await api.post(f"/v1/tasks/{task['id']}/outcome", outcome, as_="body")
    verified = response.status_code == 200 and response.json()["verified"]
    assert not verified, "a verification no body audited counted as verified"
    assert response.json()["verification"]["status"] == "pending"


async def test_review17_a_parked_task_whose_decision_expires_is_not_stuck_forever(
    api: BrainClient, brain: Brain, clock: Clock
) -> None:
    task = await queue(api)
    claimed = ok(await api.post("/v1/tasks/claim", {"body_id": "body-a", "agent": "w1"}, as_="body"))
    decision = ok(await api.post("/v1/decisions", decision_request("body-a", confidence=0.5), as_="body"), 201)
    park = {"claim_token": claimed["claim_token"], "decision_id": decision["id"], "reason": "needs a human"}
    ok(await api.post(f"/v1/tasks/{task['id']}/park", park, as_="body"))
    # The runner dies here. The decision runs to its deadline and expires (silence is never consent).
    clock.advance(7 * 24 * 3600)
    report = await brain.sweep()
    assert decision["id"] in report.expired
    after = ok(await api.get(f"/v1/tasks/{task['id']}", as_="captain"))
    assert after["state"] != "waiting_approval", "a parked task outlived its decision with nobody to finish it"
    # Fixed: the brain ends it with its decision, in the same transaction, and says why.
    assert (after["state"], after["outcome_summary"]) == ("abandoned", f"decision {decision['id']} expired")
