"""Adversarial review of #17 (second pass), the brain's side: odd JSON at every route, one audited re-run used
as the evidence of two tasks, a verification forged with nothing but a body token. A hole is a strict xfail naming
the fix; what holds is asserted plainly."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from .helpers import BrainClient, Clock, batch, ok, rerun_event

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


@pytest.mark.xfail(
    strict=True,
    reason=(
        "HOLE (low: needs a lying runner, not a model): a body holding two claims with the same acceptance command "
        "can report both verified with the action id of ONE re-run, and the brain confirms both, though each task "
        "ran in its own workspace. Fix: bind an audit event to one verification (the brain records the action ids "
        "it has confirmed and refutes a second use), and have the re-run's arguments name the task (e.g. the "
        "runner passes the task id in the run_command's _meta, kept on the event, compared by `refutation`)."
    ),
)
async def test_review17b_one_audited_rerun_does_not_verify_two_tasks(api: BrainClient, clock: Clock) -> None:
    first, first_claim = await claimed(api, "one", body_id="body-a")
    second, second_claim = await claimed(api, "two", body_id="body-a")
    clock.advance(5)
    ok(
        await api.post(
            "/v1/audit",
            batch("body-a", [rerun_event("body-a", 1, "g", action_id="act_1", at=clock.now, argv=ARGV)]),
            as_="body",
        )
    )
    assert (await report(api, first, first_claim, "act_1"))["verified"] is True
    again = await report(api, second, second_claim, "act_1")
    assert again["verified"] is False, "one re-run counted as the evidence of two tasks"


@pytest.mark.xfail(
    strict=True,
    reason=(
        "HOLE (medium, by design today): the brain checks an audit event's link to the body's chain, never its "
        "MAC, so anyone holding a body token (an IDE body's token, which the IDE's own assistant can usually read "
        "from its MCP config) can register a fresh body, claim an `ide` task, POST one hand-made run_command event "
        "(turn null, the acceptance argv, exit 0) and get the task confirmed verified without running anything. "
        "Fix: a per-body MAC key the brain learns at registration (or a brain-issued key the body keeps out of the "
        "workspace) and `refutation` recomputing the event's MAC; until then say in the docs that `verified` proves "
        "the token holder's word plus an audit trail, not a run."
    ),
)
async def test_review17b_a_body_token_alone_cannot_forge_a_confirmed_verification(
    api: BrainClient, clock: Clock
) -> None:
    task_id, claim_token = await claimed(api, "forged", body_id="body-forger")
    clock.advance(5)
    forged = rerun_event("body-forger", 1, "anything", action_id="act_forged", at=clock.now, argv=ARGV)
    ok(await api.post("/v1/audit", batch("body-forger", [forged]), as_="body"))
    done = await report(api, task_id, claim_token, "act_forged")
    assert done["verified"] is False, "a hand-made audit event confirmed a verification"
