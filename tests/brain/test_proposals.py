"""`GET /v1/tasks/{id}/proposals` on every state engine: a task's competing decisions ranked by approval voting
(the acceptable ones) and a Borda count over ballots derived from the panel's votes, with hand-computed scores."""

from __future__ import annotations

from typing import Any

import pytest

from shared_protocol.brain import TIE_BREAK

from .helpers import REVIEWER_LV, BrainClient, decision_request, ok, refused
from .panel import panel_fixtures

pytestmark = pytest.mark.anyio

settings, panel = panel_fixtures()


async def held_task(api: BrainClient) -> dict[str, Any]:
    """A task agent claude's body holds: the decisions it proposes next are for it."""
    task = ok(await api.post("/v1/tasks", {"title": "fix refunds", "value_usd": 40}, as_="approver"), 201)
    claim = {"body_id": "body-c", "agent": "claude", "mode": "shadow", "logic_version": "lv-1"}
    assert ok(await api.post("/v1/tasks/claim", claim, as_="claude-body"))["task"]["id"] == task["id"]
    return task


async def propose(api: BrainClient, summary: str) -> dict[str, Any]:
    request = decision_request("body-c", summary=summary, impact={"files": 6, "api_calls": 0, "usd": 0})
    return ok(await api.post("/v1/decisions", request, as_="claude-body"), 201)


async def votes(api: BrainClient, decision_id: str, said: dict[str, str]) -> None:
    for seat, value in said.items():
        body = {"value": value, "reason": f"{seat} says {value}", "logic_version": REVIEWER_LV}
        ok(await api.post(f"/v1/decisions/{decision_id}/votes", body, as_=seat))


async def test_three_proposals_five_voters_ranked_by_approvals_then_borda(panel: BrainClient) -> None:
    task = await held_task(panel)
    a, b, c = [await propose(panel, f"plan {name}") for name in "ABC"]
    assert {a["task_id"], b["task_id"], c["task_id"]} == {task["id"]}
    # A: approved at rev-d's vote (3 approvals); B: approved at rev-e's; C: 2 approvals, still pending
    await votes(panel, a["id"], {"rev-a": "approve", "rev-b": "approve", "rev-c": "deny", "rev-d": "approve"})
    await votes(
        panel,
        b["id"],
        {"rev-a": "approve", "rev-b": "deny", "rev-c": "approve", "rev-d": "abstain", "rev-e": "approve"},
    )
    await votes(panel, c["id"], {"rev-a": "deny", "rev-b": "approve", "rev-c": "approve", "rev-d": "deny"})
    # Ballots (approved > abstained or silent > denied; m = 3, places worth 2, 1, 0; ties share the average):
    #   rev-a {A,B} > {C}: A 1.5, B 1.5, C 0     rev-b {A,C} > {B}: A 1.5, C 1.5, B 0
    #   rev-c {B,C} > {A}: B 1.5, C 1.5, A 0     rev-d A > B > C:   A 2, B 1, C 0
    #   rev-e B > {A,C} (silent on A and C): B 2, A 0.5, C 0.5
    # A 5.5, B 6, C 3.5 (sum 15 = 5 ballots x 3); approvals A 3, B 3, C 2 (< quorum 3: not acceptable)
    ranked = ok(await panel.get(f"/v1/tasks/{task['id']}/proposals", as_="approver"))
    assert (ranked["task_id"], ranked["quorum"], ranked["voters"], ranked["winner"]) == (task["id"], 3, 5, b["id"])
    assert ranked["tie_break"] == TIE_BREAK
    assert [
        (p["rank"], p["decision_id"], p["approvals"], p["borda"], p["acceptable"], p["state"])
        for p in ranked["proposals"]
    ] == [
        (1, b["id"], 3, 6.0, True, "approved"),
        (2, a["id"], 3, 5.5, True, "approved"),
        (3, c["id"], 2, 3.5, False, "pending"),
    ]
    assert [p["summary"] for p in ranked["proposals"]] == ["plan B", "plan A", "plan C"]
    # a reviewer and a captain read it too
    assert ok(await panel.get(f"/v1/tasks/{task['id']}/proposals", as_="rev-a")) == ranked
    assert ok(await panel.get(f"/v1/tasks/{task['id']}/proposals", as_="captain")) == ranked


async def test_a_tie_in_borda_and_approvals_goes_to_the_earlier_proposal(panel: BrainClient) -> None:
    task = await held_task(panel)
    first, second = [await propose(panel, f"plan {n}") for n in (1, 2)]
    await votes(panel, second["id"], {"rev-a": "approve"})
    await votes(panel, first["id"], {"rev-b": "approve"})
    # rev-a: second 1, first 0; rev-b: first 1, second 0 -> 1 each, 1 approval each: the earlier proposal first
    ranked = ok(await panel.get(f"/v1/tasks/{task['id']}/proposals", as_="approver"))
    assert [(p["decision_id"], p["borda"], p["approvals"], p["acceptable"]) for p in ranked["proposals"]] == [
        (first["id"], 1.0, 1, False),
        (second["id"], 1.0, 1, False),
    ]
    assert ranked["winner"] is None  # one approval each, the quorum is 3


async def test_a_task_without_decisions_has_none_and_bad_requests_are_refused(panel: BrainClient) -> None:
    task = ok(await panel.post("/v1/tasks", {"title": "quiet"}, as_="approver"), 201)
    empty = ok(await panel.get(f"/v1/tasks/{task['id']}/proposals", as_="approver"))
    assert (empty["proposals"], empty["winner"], empty["voters"]) == ([], None, 0)
    missing = refused(await panel.get("/v1/tasks/task_nope/proposals", as_="approver"), 404, "not_found")
    assert "task_nope" in missing["message"]
    # a body token reads its own decisions only: the ranking of a task's competing proposals is not for it
    refused(await panel.get(f"/v1/tasks/{task['id']}/proposals", as_="body"), 403, "forbidden")
    refused(await panel.get(f"/v1/tasks/{task['id']}/proposals", as_="claude-body"), 403, "forbidden")
