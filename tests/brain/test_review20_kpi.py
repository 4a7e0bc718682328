"""Adversarial review of issue #20 (KPIs and telemetry retention): a real brain on 127.0.0.1 over HTTP, on a SQLite
file, with a clock the test controls; every expected number is worked out by hand in the comments.

A strict xfail is a hole found (its reason says how bad, how to reproduce it and the fix); a plain test is an attack
or a formula the brain gets right.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from brain_server import Brain, BrainSettings
from brain_server.state import sqlite_url

from .helpers import BrainClient, Clock, ok, refused
from .test_review20_metrics import T0, served_brain
from .test_telemetry import LV, add_task, agent_w1, ask, claim, finish, park_and_resume, rerun, usage

pytestmark = pytest.mark.anyio

DAY = 86_400


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def live(tmp_path: Path, clock: Clock) -> AsyncIterator[tuple[Brain, BrainClient]]:
    async for served in served_brain(BrainSettings(database_url=sqlite_url(tmp_path / "brain.db")), clock):
        yield served


@pytest.fixture
async def slow_sweeps(tmp_path: Path, clock: Clock) -> AsyncIterator[tuple[Brain, BrainClient]]:
    settings = BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"), sweep_interval_s=120.0)
    async for served in served_brain(settings, clock):
        yield served


def register(body_id: str) -> dict[str, str]:
    return {"body_id": body_id, "workspace": "/w", "hostname": "h", "version": "1"}


async def test_a_body_dead_for_the_whole_window_counts_as_down(live: tuple[Brain, BrainClient], clock: Clock) -> None:
    brain, api = live
    await api.add_token("a", agent="wa")
    await api.add_token("b", agent="wb")
    ok(await api.post("/v1/bodies/register", register("body-a"), as_="a"))
    await brain.sweep()  # body-a up in its first minute, then gone for good (no heartbeat, no deregister)
    clock.advance(8 * DAY)
    ok(await api.post("/v1/bodies/register", register("body-b"), as_="b"))
    await brain.sweep()  # body-b up in its one minute of life: 1 of 1
    report = ok(await api.get("/v1/kpi", as_="approver"))  # the last 7 days: body-a was down in all of them
    uptime = {u["subject"]: u for u in report["body_uptime"]}
    assert uptime["body-b"]["ratio"] == 1.0
    assert uptime["body-a"]["up_minutes"] == 0 and uptime["body-a"]["ratio"] == 0.0
    assert report["agent_uptime"] == 0.5  # (1.0 + 0.0) / 2


async def test_brain_uptime_does_not_depend_on_the_sweep_interval(
    slow_sweeps: tuple[Brain, BrainClient], clock: Clock
) -> None:
    brain, api = slow_sweeps
    for _ in range(4):
        await brain.sweep()
        clock.advance(brain.settings.sweep_interval_s)
    await brain.sweep()  # sweeps at minutes 0, 2, 4, 6, 8: the brain served every minute of it
    uptime = ok(await api.get("/v1/kpi", as_="approver"))["brain_uptime"]
    assert uptime["observed_minutes"] == 9
    assert uptime["ratio"] == 1.0


async def test_an_agent_cannot_link_its_task_to_an_already_approved_decision(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    await agent_w1(api)
    decision_id = await ask(api, 0.9, "approved by the rules on the spot")
    assert ok(await api.get(f"/v1/decisions/{decision_id}", as_="approver"))["state"] == "approved"
    before = ok(await api.get("/v1/kpi", as_="approver"))
    assert before["decisions_approved_judged"] == 0
    task_id = await add_task(api, "an easy one", 1)
    token = await claim(api, task_id)
    park = {"claim_token": token, "decision_id": decision_id, "reason": "linking"}
    response = await api.post(f"/v1/tasks/{task_id}/park", park, as_="w1")
    if response.status_code == 200:
        ok(await api.post(f"/v1/tasks/{task_id}/resume", {"claim_token": token}, as_="w1"))
        await finish(api, task_id, token, "succeeded", verified_by=rerun(1, task_id))
    after = ok(await api.get("/v1/kpi", as_="approver"))
    assert after["decisions_approved_judged"] == 0, after
    assert response.status_code in (409, 422)


async def test_usage_cannot_be_billed_to_a_task_another_agent_holds(live: tuple[Brain, BrainClient]) -> None:
    """Poisoning cost per task: agent w2 bills $50 to w1's task. Refused, nothing of the batch kept, and the KPI
    still says what w1 spent."""
    _, api = live
    await agent_w1(api)
    await api.add_token("w2", agent="w2")
    ok(await api.post("/v1/bodies/register", register("body-b"), as_="w2"))
    task_id = await add_task(api, "T", 10)
    token = await claim(api, task_id)
    ok(
        await api.post(
            "/v1/usage",
            {"body_id": "body-a", "records": [usage(1, task_id=task_id, usd=0.2, tokens=(10, 5))]},
            as_="w1",
        )
    )
    theirs: dict[str, Any] = {**usage(2, task_id=task_id, usd=50.0, tokens=(1, 1)), "agent": "w2"}
    mine = {**usage(3, task_id=None, usd=0.1, tokens=(1, 1)), "agent": "w2"}
    response = await api.post("/v1/usage", {"body_id": "body-b", "records": [mine, theirs]}, as_="w2")
    assert refused(response, 422, "invalid_request")["field"] == "records.1.task_id"
    # and w2 cannot post as w1, nor for w1's body
    response = await api.post(
        "/v1/usage", {"body_id": "body-a", "records": [usage(4, task_id=None, usd=9, tokens=(1, 1))]}, as_="w2"
    )
    assert response.status_code in (403, 409, 422)
    await finish(api, task_id, token, "succeeded", verified_by=rerun(1, task_id))
    report = ok(await api.get("/v1/kpi", as_="approver"))
    # billed to the one finished task: w1's $0.20 and 15 tokens; spent in the window: $0.20 (w2's $0.10 was refused
    # with its batch)
    assert (report["task_spend_usd"], report["task_tokens"], report["spend_usd"]) == (
        pytest.approx(0.2),
        15,
        pytest.approx(0.2),
    )
    assert report["cost_per_task_usd"] == pytest.approx(0.2)


async def test_roi_is_none_without_spend_and_zero_without_value(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    await agent_w1(api)
    task_id = await add_task(api, "worth $80", 80)
    token = await claim(api, task_id)
    await finish(api, task_id, token, "succeeded", verified_by=rerun(1, task_id))
    report = ok(await api.get("/v1/kpi", as_="approver"))
    # $80 delivered, $0 spent: no ROI (not infinity), and no cost per decision with no decision
    assert (report["value_delivered_usd"], report["spend_usd"], report["roi"]) == (80, 0, None)
    assert report["cost_per_decision_usd"] is None and report["cost_per_task_usd"] == 0
    # a self-reported success is worth nothing to ROI: $0 delivered over $2 spent is 0.0, not None
    other = await add_task(api, "worth $500, self-reported", 500)
    other_token = await claim(api, other)
    ok(
        await api.post(
            "/v1/usage", {"body_id": "body-a", "records": [usage(1, task_id=other, usd=2.0, tokens=(1, 1))]}, as_="w1"
        )
    )
    await finish(api, other, other_token, "succeeded", verified_by=None)
    report = ok(await api.get("/v1/kpi", as_="approver"))
    # value: the $80 task only; spend $2: ROI 40; success rate 1 verified of 2 finished
    assert (report["value_delivered_usd"], report["roi"], report["task_success_rate"]) == (80, 40.0, 0.5)
    # billed to finished tasks: $2 over 2 tasks, 2 tokens over 2 tasks
    assert (report["cost_per_task_usd"], report["tokens_per_task"]) == (1.0, 1.0)


async def test_a_decision_linked_to_a_success_and_a_failure_is_judged_not_accurate(
    live: tuple[Brain, BrainClient],
) -> None:
    """Accuracy needs *every* linked task verified succeeded: D (approved) with T1 verified succeeded and T2 failed
    is judged 1, accurate 0; E (approved) with T3 verified succeeded is accurate: 1 of 2 = 0.5."""
    _, api = live
    await agent_w1(api)
    d, e = await ask(api, 0.5, "D"), await ask(api, 0.5, "E")
    for decision_id in (d, e):
        ok(await api.post(f"/v1/decisions/{decision_id}/approve", {"reason": "ok"}, as_="approver"))
    tasks = [await add_task(api, f"T{n}", 1) for n in (1, 2, 3)]
    seq = 0
    prev = "genesis"
    for task_id, decision_id, outcome in zip(tasks, (d, d, e), ("succeeded", "failed", "succeeded"), strict=True):
        token = await claim(api, task_id)
        park = {"claim_token": token, "decision_id": decision_id, "reason": "needs a human"}
        ok(await api.post(f"/v1/tasks/{task_id}/park", park, as_="w1"))
        ok(await api.post(f"/v1/tasks/{task_id}/resume", {"claim_token": token}, as_="w1"))
        verified_by = None
        if outcome == "succeeded":
            seq += 1
            verified_by = rerun(seq, task_id, prev)
            prev = verified_by.mac
        await finish(api, task_id, token, outcome, verified_by=verified_by)
    report = ok(await api.get("/v1/kpi", as_="approver"))
    assert (report["decisions_approved_judged"], report["decisions_approved_accurate"]) == (2, 1)
    assert report["decision_accuracy"] == 0.5


async def test_retention_prunes_presence_only_and_keeps_what_the_kpis_read(
    live: tuple[Brain, BrainClient], clock: Clock
) -> None:
    """After 40 days and a prune: presence older than 30 days is gone, presence within them is kept, and usage,
    tasks and decisions (which the KPIs read, and which have no retention of their own) are all still there."""
    brain, api = live
    await agent_w1(api)
    decision_id = await ask(api, 0.5, "D")
    ok(await api.post(f"/v1/decisions/{decision_id}/approve", {"reason": "ok"}, as_="approver"))
    task_id = await add_task(api, "T", 25)
    token = await claim(api, task_id)
    await park_and_resume(api, task_id, token, decision_id)
    ok(
        await api.post(
            "/v1/usage", {"body_id": "body-a", "records": [usage(1, task_id=task_id, usd=0.5, tokens=(7, 3))]}, as_="w1"
        )
    )
    await finish(api, task_id, token, "succeeded", verified_by=rerun(1, task_id))
    await brain.sweep()  # minute 0 (T0): brain and body-a
    clock.advance(20 * DAY)
    await brain.sweep()  # day 20: the brain (body-a silent since T0)
    clock.advance(20 * DAY)
    await brain.sweep()  # day 40: the brain
    assert await brain.telemetry.prune() == 2  # T0's two minutes (brain, body-a); day 20 is within 30 days
    report = ok(await api.get(f"/v1/kpi?since_s={366 * DAY}", as_="approver"))
    assert report["brain_uptime"]["up_minutes"] == 2
    assert (report["tasks_finished"], report["tasks_verified_succeeded"], report["value_delivered_usd"]) == (1, 1, 25)
    assert (report["spend_usd"], report["task_tokens"], report["llm_calls"]) == (pytest.approx(0.5), 10, 1)
    assert (report["decisions"], report["decisions_approved_accurate"]) == (1, 1)
    assert await brain.telemetry.prune() == 0
    assert T0 and LV  # (the seeded clock and logic version of test_telemetry, which these helpers use)


async def test_an_infinite_task_value_is_refused(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    headers = {**api.headers("approver"), "content-type": "application/json"}
    response = await api.client.post("/v1/tasks", content='{"title": "t", "value_usd": 1e999}', headers=headers)
    assert refused(response, 422, "invalid_request")["field"] == "value_usd"


async def test_future_dated_spend_is_not_hidden_from_the_kpis(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    await agent_w1(api)
    task_id = await add_task(api, "worth $100", 100)
    token = await claim(api, task_id)
    future = {**usage(1, task_id=None, usd=5.0, tokens=(1, 1)), "at": "2100-01-01T00:00:00+00:00"}
    response = await api.post("/v1/usage", {"body_id": "body-a", "records": [future]}, as_="w1")
    await finish(api, task_id, token, "succeeded", verified_by=rerun(1, task_id))
    report = ok(await api.get("/v1/kpi", as_="approver"))
    assert response.status_code == 422 or (report["spend_usd"], report["roi"]) == (5.0, 20.0), report
    assert response.status_code == 422
