"""Adversarial review of #17 (second pass), the brain's side: odd JSON at every route, one audited re-run used
as the evidence of two tasks, a verification forged with nothing but a body token. The holes it found are fixed
(the re-run names its task and confirms one verification; the body attests its events under the key it first
registered); what holds is asserted plainly."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from shared_protocol.audit import attestation

from .helpers import BrainClient, Clock, batch, ok, refused, registration, rerun_event, verify_key

pytestmark = pytest.mark.anyio

ACCEPTANCE = "pytest -q tests/test_app.py"
ARGV = ["pytest", "-q", "tests/test_app.py"]
LV = "lv-aaaaaaaaaaaaaaaa"

POSTS = [
    "/v1/kill",
    "/v1/resume",
    "/v1/bodies/register",
    "/v1/bodies/body-a/heartbeat",
    "/v1/bodies/body-a/deregister",
    "/v1/bodies/body-a/rebind",
    "/v1/audit",
    "/v1/decisions",
    "/v1/decisions/dec_x/approve",
    "/v1/decisions/dec_x/deny",
    "/v1/decisions/dec_x/override",
    "/v1/tasks",
    "/v1/tasks/claim",
    "/v1/tasks/task_x/renew",
    "/v1/tasks/task_x/park",
    "/v1/tasks/task_x/resume",
    "/v1/tasks/task_x/outcome",
    "/v1/tasks/task_x/abandon",
    "/v1/tasks/task_x/cancel",
    "/v1/usage",
    "/v1/readiness",
    "/v1/readiness/overrides",
    "/v1/escalations/x/acknowledge",
    "/v1/undo/act_x",
]
ODD: list[Any] = [
    None,
    [],
    "x",
    1e308,
    True,
    {"body_id": None},
    {"body_id": ["a"], "agent": {"x": 1}, "mode": 7},
    {"body_id": "body-a", "agent": "w1", "mode": "live", "logic_version": "lv-" + "a" * 10_000},
    {"claim_token": 1, "outcome": "succeeded", "verification": {"verified": "yes", "exit_code": 2**70}},
    {"claim_token": "c", "outcome": "succeeded", "verification": {"verified": True, "action_id": None}},
    {"records": [{"usd": -1e308}], "events": [{"seq": -1}]},
    {"events": [{"seq": 2**70, "body_id": "body-a"}], "body_id": "body-a", "log_start_seq": -5},
    {"agent": "w1", "logic_version": LV, "reason": "r", "for_s": 1e308},
    {"agent": "w1", "logic_version": LV, "reason": "r", "for_s": float("nan")},
    {"title": "\x00", "value_usd": float("inf"), "acceptance": "'", "acceptance_inputs": ["../*", "/etc/**", ""]},
    {"decision_id": "../../etc", "claim_token": "", "reason": "\ud800"},
]
GETS = [
    "/v1/tasks?state=nope&limit=-1",
    "/v1/tasks?limit=99999999999999999999&agent=%00",
    "/v1/tasks/..%2F..%2Fetc",
    "/v1/usage?since=yesterday&until=%ff",
    "/v1/kpi?days=-3",
    "/v1/kpi?days=1e400",
    "/v1/readiness?agent=%00",
    "/v1/decisions/%00",
    "/v1/events?since=-1",
]


async def test_review17b_odd_json_at_any_route_is_a_clear_4xx_never_a_500(api: BrainClient) -> None:
    """Holds: every POST route, as every role, answers odd bodies with a 4xx naming the problem."""
    for path, body, role in itertools.product(POSTS, ODD, ("body", "approver", "captain")):
        response = await api.client.post(
            path,
            content=_json(body),
            headers={**api.headers(role), "Content-Type": "application/json"},
        )
        assert 400 <= response.status_code < 500, (path, body, role, response.status_code, response.text)
        assert response.json().get("message"), (path, body, response.text)
    for path, role in itertools.product(GETS, ("body", "captain")):
        if path.startswith("/v1/events"):
            continue  # a stream; its query is checked below without reading it
        response = await api.get(path, as_=role)
        assert response.status_code < 500, (path, role, response.status_code, response.text)


def _json(body: Any) -> bytes:
    """`body` as JSON the way a hostile client may send it (NaN, lone surrogates: what `json.dumps` allows)."""
    import json

    return json.dumps(body).encode("utf-8", "surrogatepass")


async def claimed(api: BrainClient, title: str, *, body_id: str, token: str = "body") -> tuple[str, str]:
    task = ok(await api.post("/v1/tasks", {"title": title, "acceptance": ACCEPTANCE}, as_="approver"), 201)
    claim = {"body_id": body_id, "agent": "w1", "mode": "ide", "task_id": task["id"]}
    got = ok(await api.post("/v1/tasks/claim", claim, as_=token))
    return task["id"], got["claim_token"]


async def report(api: BrainClient, task_id: str, claim_token: str, action_id: str) -> dict[str, Any]:
    verification = {"command": ACCEPTANCE, "exit_code": 0, "action_id": action_id, "verified": True}
    outcome = {"claim_token": claim_token, "outcome": "succeeded", "summary": "done", "verification": verification}
    return ok(await api.post(f"/v1/tasks/{task_id}/outcome", outcome, as_="body"))


async def test_review17b_one_audited_rerun_does_not_verify_two_tasks(api: BrainClient, clock: Clock) -> None:
    """Fixed: the re-run names its task (the runner's `_meta` `swarm/task`, kept on the event), and the brain records
    which event confirmed which verification."""
    ok(await api.post("/v1/bodies/register", registration("body-a"), as_="body"))
    first, first_claim = await claimed(api, "one", body_id="body-a")
    second, second_claim = await claimed(api, "two", body_id="body-a")
    clock.advance(5)
    rerun = rerun_event("body-a", 1, "g", action_id="act_1", at=clock.now, argv=ARGV, task_id=first)
    ok(await api.post("/v1/audit", batch("body-a", [rerun]), as_="body"))
    assert (await report(api, first, first_claim, "act_1"))["verified"] is True
    again = await report(api, second, second_claim, "act_1")
    assert again["verified"] is False, "one re-run counted as the evidence of two tasks"
    assert again["verification"]["status"] == "refuted"
    assert f"was for task {first!r}" in again["verification"]["detail"]


async def test_review17b_one_rerun_confirms_one_shadow_run_of_a_task_not_two(api: BrainClient, clock: Clock) -> None:
    """Two shadow runs of one task by one body (its agent's logic version changed in between), both pending on one
    re-run that arrives late: it confirms the first, and the second is refuted (`verification_uses`)."""
    await api.add_token("w1", agent="w1")
    ok(await api.post("/v1/bodies/register", registration("body-a"), as_="w1"))
    task = ok(await api.post("/v1/tasks", {"title": "one", "acceptance": ACCEPTANCE}, as_="approver"), 201)
    for logic_version in ("lv-1111111111111111", "lv-2222222222222222"):
        claim = {"body_id": "body-a", "agent": "w1", "mode": "shadow", "task_id": task["id"]}
        got = ok(await api.post("/v1/tasks/claim", {**claim, "logic_version": logic_version}, as_="w1"))
        verification = {"command": ACCEPTANCE, "exit_code": 0, "action_id": "act_1", "verified": True}
        outcome = {"claim_token": got["claim_token"], "outcome": "succeeded", "verification": verification}
        ok(await api.post(f"/v1/tasks/{task['id']}/outcome", {**outcome, "mode": "shadow"}, as_="w1"))
    clock.advance(5)
    rerun = rerun_event("body-a", 1, "g", action_id="act_1", at=clock.now, argv=ARGV, task_id=task["id"])
    ok(await api.post("/v1/audit", batch("body-a", [rerun]), as_="w1"))
    runs = ok(await api.get(f"/v1/tasks/{task['id']}", as_="captain"))["shadow_runs"]
    assert [r["verification"]["status"] for r in runs] == ["confirmed", "refuted"]
    assert "confirmed another verification already" in runs[1]["verification"]["detail"]


async def test_review17b_a_body_token_alone_cannot_forge_a_confirmed_verification(
    api: BrainClient, clock: Clock
) -> None:
    """Fixed: a verification is confirmed only by an event the body attested under the key it first registered."""
    task_id, claim_token = await claimed(api, "forged", body_id="body-forger")
    clock.advance(5)
    forged = rerun_event(
        "body-forger", 1, "anything", action_id="act_forged", at=clock.now, argv=ARGV, task_id=task_id, attest=False
    )
    ok(await api.post("/v1/audit", batch("body-forger", [forged]), as_="body"))
    done = await report(api, task_id, claim_token, "act_forged")
    assert done["verified"] is False, "a hand-made audit event confirmed a verification"
    assert "registered no verification key" in done["verification"]["detail"]


async def test_review17b_an_ide_bodys_token_cannot_forge_its_bodys_verification(api: BrainClient, clock: Clock) -> None:
    """The IDE body registered its key with its token; whoever else holds the token (the IDE's assistant reading
    the MCP config) cannot register a fresh body with it, cannot change the body's key, and its hand-made events
    (unattested, or attested under a key of its own) do not confirm the body's task."""
    ok(await api.post("/v1/bodies/register", registration("body-ide"), as_="body"))
    fresh = registration("body-fresh", verify_key=verify_key("forger"))
    refused(await api.post("/v1/bodies/register", fresh, as_="body"), 403, "forbidden")
    mismatch = refused(
        await api.post("/v1/bodies/register", registration("body-ide", verify_key=verify_key("forger")), as_="body"),
        409,
        "body_key_mismatch",
    )
    assert "swarm brain body rebind body-ide" in mismatch["message"]
    task_id, claim_token = await claimed(api, "forged", body_id="body-ide")
    clock.advance(5)
    unattested = rerun_event(
        "body-ide", 1, "g", action_id="act_a", at=clock.now, argv=ARGV, task_id=task_id, attest=False
    )
    own_key = rerun_event("body-ide", 2, unattested.mac, action_id="act_b", at=clock.now, argv=ARGV, task_id=task_id)
    own_key = own_key.model_copy(update={"attest": attestation(verify_key("forger"), own_key)})
    ok(await api.post("/v1/audit", batch("body-ide", [unattested, own_key]), as_="body"))
    done = await report(api, task_id, claim_token, "act_a")
    assert (done["verified"], done["verification"]["status"]) == (False, "refuted")
    assert "carries no attestation" in done["verification"]["detail"]
    task_id, claim_token = await claimed(api, "forged again", body_id="body-ide")
    done = await report(api, task_id, claim_token, "act_b")
    assert (done["verified"], done["verification"]["status"]) == (False, "refuted")
    assert "not the body's" in done["verification"]["detail"]
