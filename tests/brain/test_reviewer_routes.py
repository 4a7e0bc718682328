"""What a reviewer agent's token may do besides voting (#19): hear the event stream (every decision's events, no
body), and post its review's LLM spend, charged to the proposing task; refused, with nothing kept, otherwise."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import anyio
import pytest

from brain_server.state import sqlite_url

from .helpers import BrainClient, decision_request, live_brain, ok, refused, sse_events
from .panel import REVIEWERS, panel_fixtures, panel_settings
from .test_usage import record

pytestmark = pytest.mark.anyio

settings, panel = panel_fixtures("outsider")


async def proposed_in_a_task(api: BrainClient) -> tuple[str, dict[str, Any]]:
    """Agent claude's body claims a task and proposes a 6-file change in it: (task id, the decision)."""
    task_id = ok(await api.post("/v1/tasks", {"title": "six files", "value_usd": 40}, as_="approver"), 201)["id"]
    claim = {"body_id": "body-c", "agent": "claude", "task_id": task_id, "mode": "shadow", "logic_version": "lv-1"}
    ok(await api.post("/v1/tasks/claim", claim, as_="claude-body"))
    request = decision_request("body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py"])
    return task_id, ok(await api.post("/v1/decisions", request, as_="claude-body"), 201)


async def test_a_decision_names_the_task_its_body_held_and_a_reviewers_spend_is_charged_to_it(
    panel: BrainClient,
) -> None:
    task_id, decision = await proposed_in_a_task(panel)
    assert decision["task_id"] == task_id
    ack = ok(await panel.post("/v1/usage", {"records": [record(1, agent="rev-a", task_id=task_id)]}, as_="rev-a"))
    assert ack == {"stored": 1, "duplicates": 0}
    totals = ok(await panel.get(f"/v1/usage?task_id={task_id}", as_="approver"))
    assert totals["by_agent"]["rev-a"]["calls"] == 1 and totals["by_task"][task_id]["usd"] == 0.25
    # the proposing body sees the review's spend on its task among its own
    assert ok(await panel.get("/v1/usage", as_="claude-body"))["by_agent"]["rev-a"]["calls"] == 1
    # a review of a decision made outside any task is kept as the reviewer's own
    ok(await panel.post("/v1/usage", {"records": [record(2, agent="rev-a")]}, as_="rev-a"))
    assert ok(await panel.get("/v1/usage?agent=rev-a", as_="approver"))["total"]["calls"] == 2


@pytest.mark.parametrize(
    ("who", "body", "field"),
    [
        ("outsider", {"records": [record(1, agent="outsider", task_id="TASK")]}, "records.0.task_id"),
        ("rev-a", {"records": [record(1, agent="rev-a", task_id="task_nope")]}, "records.0.task_id"),
        ("rev-a", {"records": [record(1, agent="rev-b", task_id="TASK")]}, "records.0.agent"),
        ("rev-a", {"body_id": "body-c", "records": [record(1, agent="rev-a", task_id="TASK")]}, "body_id"),
        (
            "rev-a",
            {"records": [record(1, agent="rev-a", task_id="TASK"), record(2, agent="rev-a", task_id="task_nope")]},
            "records.1.task_id",
        ),
    ],
)
async def test_a_reviewers_usage_for_a_task_it_does_not_review_is_refused_and_nothing_is_kept(
    panel: BrainClient, who: str, body: dict[str, Any], field: str
) -> None:
    task_id, _ = await proposed_in_a_task(panel)
    body = copy.deepcopy(body)  # (the parameters are shared by every state engine's run)
    for rec in body["records"]:
        rec["task_id"] = task_id if rec["task_id"] == "TASK" else rec["task_id"]
    answer = refused(await panel.post("/v1/usage", body, as_=who), 422, "invalid_request")
    assert answer["field"] == field
    assert ok(await panel.get("/v1/usage", as_="approver"))["total"]["calls"] == 0


async def test_a_reviewer_hears_every_bodys_decisions_on_the_event_stream_and_names_no_body(tmp_path: Path) -> None:
    settings = panel_settings(sqlite_url(tmp_path / "live.db"), keepalive_s=0.2)
    async with live_brain(settings) as live, live.client() as api:
        await api.add_token("rev-a", "reviewer", agent="rev-a")
        await api.add_token("claude-body", "body", agent="claude")
        answer = refused(await api.get("/v1/events?body_id=body-c", as_="rev-a"), 422, "invalid_request")
        assert answer["field"] == "body_id"
        async with api.client.stream("GET", "/v1/events", headers=api.headers("rev-a")) as response:
            assert response.status_code == 200
            events = (e async for e in sse_events(response) if e.name != ":")
            with anyio.fail_after(10):
                assert (await anext(events)).name == "resume"
                _, decision = await proposed_in_a_task(api)
                async for event in events:
                    if event.name == "decision":
                        assert event.data["id"] == decision["id"] and event.data["panel"] == REVIEWERS
                        break
