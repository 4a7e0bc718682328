"""Telemetry, KPIs and Prometheus metrics over the API, on every kind of state engine.

One seeded history (tasks, usage, decisions, presence minutes) is worked through the real API with a clock the test
controls; each KPI is checked against the number computed by hand in the comments.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from brain_server import Brain, BrainSettings, build_app, issue_token
from brain_server.state import SqliteStateEngine, open_engine
from shared_protocol import AuditEvent

from .helpers import (
    START,
    BrainClient,
    Clock,
    audit_chain,
    batch,
    decision_request,
    engine_url,
    ok,
    refused,
    registration,
    rerun_event,
)

pytestmark = pytest.mark.anyio

T0 = datetime.fromtimestamp(START, UTC)


@pytest.fixture
def settings(tmp_path: Path) -> BrainSettings:
    return BrainSettings(database_url=engine_url("sqlite", tmp_path), usd_per_hour=10.0)


def usage(n: int, *, task_id: str | None, usd: float, tokens: tuple[int, int], at: datetime = T0) -> dict[str, Any]:
    return {
        "id": f"use_{n}",
        "at": at.isoformat(),
        "agent": "w1",
        "logic_version": "lv-1",
        "task_id": task_id,
        "provider": "openai",
        "model": "gpt",
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
        "usd": usd,
    }


@dataclass(kw_only=True)
class Seeded:
    tasks: dict[str, str]
    decisions: dict[str, str]


LV = "lv-1"
LIVE = {"mode": "live", "logic_version": LV}


async def add_task(api: BrainClient, title: str, value: float) -> str:
    task = {"title": title, "value_usd": value, "acceptance": "pytest -q"}
    return ok(await api.post("/v1/tasks", task, as_="approver"), 201)["id"]


async def agent_w1(api: BrainClient) -> None:
    """Agent w1's own token (`as_="w1"`, it holds body-a) and a captain's override letting it work live."""
    await api.add_token("w1", agent="w1")
    override = {"agent": "w1", "logic_version": LV, "reason": "telemetry test", "for_s": 30 * 86400}
    ok(await api.post("/v1/readiness/overrides", override, as_="captain"), 201)
    ok(await api.post("/v1/bodies/register", registration("body-a"), as_="w1"))


async def claim(api: BrainClient, task_id: str) -> str:
    claim = {"body_id": "body-a", "agent": "w1", "task_id": task_id, **LIVE}
    return ok(await api.post("/v1/tasks/claim", claim, as_="w1"))["claim_token"]


def rerun(seq: int, task_id: str, prev: str = "genesis") -> AuditEvent:
    """body-a's audited re-run of `pytest -q` (the tasks' acceptance command) for `task_id`: what makes a
    verification count."""
    return rerun_event("body-a", seq, prev, action_id=f"act_v_{seq}", at=START, argv=["pytest", "-q"], task_id=task_id)


async def finish(api: BrainClient, task_id: str, token: str, outcome: str, *, verified_by: AuditEvent | None) -> None:
    """The outcome; `verified_by`: the body's re-run, shipped first (the brain checks a verification against it)."""
    body: dict[str, Any] = {"claim_token": token, "outcome": outcome, **LIVE}
    if verified_by is not None:
        ok(await api.post("/v1/audit", batch("body-a", [verified_by]), as_="w1"))
        body["verification"] = {"command": "pytest -q", "exit_code": 0, "action_id": verified_by.id, "verified": True}
    ok(await api.post(f"/v1/tasks/{task_id}/outcome", body, as_="w1"))


async def ask(api: BrainClient, confidence: float, summary: str) -> str:
    request = decision_request("body-a", confidence=confidence, summary=summary, agent="w1")
    return ok(await api.post("/v1/decisions", request, as_="w1"), 201)["id"]


async def park_and_resume(api: BrainClient, task_id: str, token: str, decision_id: str) -> None:
    park = {"claim_token": token, "decision_id": decision_id, "reason": "needs a human"}
    ok(await api.post(f"/v1/tasks/{task_id}/park", park, as_="w1"))
    ok(await api.post(f"/v1/tasks/{task_id}/resume", {"claim_token": token}, as_="w1"))


async def seed(api: BrainClient) -> Seeded:
    """At T0: five tasks (T1 verified success, T2 self-reported success, T3 failed, T4 cancelled, T5 queued), four
    decisions (D1 approved, T1 parked on it; D2 approved, T3 parked on it; D3 approved by the rules, linked to no
    task; D4 denied), five usage records (one ten days old)."""
    await agent_w1(api)
    t1, t2, t3 = await add_task(api, "T1", 100), await add_task(api, "T2", 50), await add_task(api, "T3", 30)
    t4, t5 = await add_task(api, "T4", 10), await add_task(api, "T5", 5)
    d1, d2 = await ask(api, 0.5, "D1"), await ask(api, 0.5, "D2")
    d3, d4 = await ask(api, 0.9, "D3"), await ask(api, 0.5, "D4")
    for decision_id, verb in ((d1, "approve"), (d2, "approve"), (d4, "deny")):
        ok(await api.post(f"/v1/decisions/{decision_id}/{verb}", {"reason": "looked"}, as_="approver"))

    k1, k2, k3 = await claim(api, t1), await claim(api, t2), await claim(api, t3)
    await park_and_resume(api, t1, k1, d1)
    await park_and_resume(api, t3, k3, d2)
    records = [
        usage(1, task_id=t1, usd=0.40, tokens=(1000, 200)),
        usage(2, task_id=t1, usd=0.10, tokens=(500, 100)),
        usage(3, task_id=t3, usd=0.50, tokens=(2000, 300)),
        usage(4, task_id=None, usd=1.00, tokens=(100, 50)),
        usage(5, task_id=None, usd=5.00, tokens=(9, 9), at=T0 - timedelta(days=10)),
    ]
    ok(await api.post("/v1/usage", {"body_id": "body-a", "records": records}, as_="w1"))
    await finish(api, t1, k1, "succeeded", verified_by=rerun(1, t1))
    await finish(api, t2, k2, "succeeded", verified_by=None)
    await finish(api, t3, k3, "failed", verified_by=None)
    ok(await api.post(f"/v1/tasks/{t4}/cancel", {"reason": "not needed"}, as_="approver"))
    return Seeded(tasks={"T1": t1, "T2": t2, "T3": t3, "T5": t5}, decisions={"D1": d1, "D2": d2, "D3": d3})


async def test_every_kpi_matches_the_hand_computed_value(api: BrainClient, brain: Brain, clock: Clock) -> None:
    await seed(api)
    # Presence: sweeps in minutes 0, 1 and 3 (none in 2): the brain is up 3 of the 4 minutes. body-a registered at
    # T0 and never heartbeated again: within the failsafe time (10 s) at the minute-0 sweep only, so up 1 of 4.
    await brain.sweep()
    clock.advance(60)
    await brain.sweep()
    clock.advance(120)
    await brain.sweep()

    report = ok(await api.get("/v1/kpi", as_="approver"))
    assert report["brain_uptime"] == {
        "subject": "brain",
        "agents": [],
        "up_minutes": 3,
        "observed_minutes": 4,
        "ratio": 0.75,
    }
    assert report["body_uptime"] == [
        {"subject": "body-a", "agents": ["w1"], "up_minutes": 1, "observed_minutes": 4, "ratio": 0.25}
    ]
    assert report["agent_uptime"] == 0.25
    # finished: T1, T2, T3 (T4 cancelled, T5 queued); verified successes: T1
    assert (report["tasks_finished"], report["tasks_verified_succeeded"]) == (3, 1)
    assert report["task_success_rate"] == pytest.approx(1 / 3)
    # approved and linked to a finished task: D1 (T1, verified: accurate) and D2 (T3 failed); D3 is linked to none
    assert (report["decisions"], report["decisions_approved_judged"], report["decisions_approved_accurate"]) == (
        4,
        2,
        1,
    )
    assert report["decision_accuracy"] == 0.5
    # spend in the window: 0.40 + 0.10 + 0.50 + 1.00 (the $5 record is ten days old); value: T1's $100
    assert report["spend_usd"] == pytest.approx(2.0)
    assert report["llm_calls"] == 4
    assert report["value_delivered_usd"] == 100
    assert report["roi"] == pytest.approx(50.0)
    # billed to finished tasks: T1 0.50 (1200 + 600 tokens) and T3 0.50 (2300 tokens), over 3 tasks
    assert report["task_spend_usd"] == pytest.approx(1.0)
    assert report["cost_per_task_usd"] == pytest.approx(1 / 3)
    assert report["task_tokens"] == 4100
    assert report["tokens_per_task"] == pytest.approx(4100 / 3)
    assert report["cost_per_decision_usd"] == pytest.approx(2.0 / 4)

    # A window of 11 days takes the old record in: spend 7.00, ROI 100 / 7
    wide = ok(await api.get(f"/v1/kpi?since_s={11 * 86400}", as_="captain"))
    assert (wide["spend_usd"], wide["roi"]) == (pytest.approx(7.0), pytest.approx(100 / 7))


async def test_an_undone_decision_is_not_accurate(api: BrainClient, brain: Brain) -> None:
    """An approved decision whose task update was reversed (`swarm undo DECISION`) counts as judged, not accurate."""
    await agent_w1(api)
    task_id = await add_task(api, "T", 10)
    decision_id = await ask(api, 0.5, "D")
    ok(await api.post(f"/v1/decisions/{decision_id}/approve", {"reason": "ok"}, as_="approver"))
    token = await claim(api, task_id)
    first = rerun(1, task_id)
    ok(await api.post("/v1/audit", batch("body-a", [first]), as_="w1"))
    body = {
        "claim_token": token,
        "outcome": "succeeded",
        "verification": {"command": "pytest -q", "exit_code": 0, "action_id": first.id, "verified": True},
        "action_id": "act_1",
        "decision_id": decision_id,
        **LIVE,
    }
    ok(await api.post(f"/v1/tasks/{task_id}/outcome", body, as_="w1"))
    before = ok(await api.get("/v1/kpi", as_="approver"))
    assert (before["decisions_approved_judged"], before["decisions_approved_accurate"]) == (1, 1)
    # (no force: the verification was settled in the outcome's own transaction, so nothing changed since)
    ok(await api.post(f"/v1/undo/{decision_id}", {"reason": "wrong"}, as_="captain"))
    # (the reversal put the task back to claimed: finish it again, successfully, under no decision)
    await finish(api, task_id, token, "succeeded", verified_by=rerun(2, task_id, first.mac))
    after = ok(await api.get("/v1/kpi", as_="approver"))
    assert (after["decisions_approved_judged"], after["decisions_approved_accurate"]) == (1, 0)
    assert after["decision_accuracy"] == 0.0


async def test_kpis_with_nothing_to_count_are_none_not_zero(api: BrainClient) -> None:
    report = ok(await api.get("/v1/kpi", as_="approver"))
    for key in ("task_success_rate", "decision_accuracy", "roi", "cost_per_task_usd", "tokens_per_task"):
        assert report[key] is None, key
    assert report["brain_uptime"]["ratio"] is None and report["body_uptime"] == []


async def test_kpi_and_metrics_need_an_approver_or_captain_token(api: BrainClient) -> None:
    for path in ("/v1/kpi", "/metrics"):
        refused(await api.get(path, as_=None), 401, "unauthorized")
        refused(await api.get(path, as_="body"), 403, "forbidden")
        assert (await api.get(path, as_="approver")).status_code == 200
        assert (await api.get(path, as_="captain")).status_code == 200


@pytest.mark.parametrize("since", ["0", "-5", "7d", "1.5", str(400 * 86400)])
async def test_a_bad_window_is_refused_naming_since_s(api: BrainClient, since: str) -> None:
    assert refused(await api.get(f"/v1/kpi?since_s={since}", as_="approver"), 422, "invalid_request")["field"] == (
        "since_s"
    )


def families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample by name and sorted labels, parsed with prometheus_client's own parser."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_metrics_parse_and_count_tool_calls_llm_usage_tasks_decisions_and_the_kill_switch(
    api: BrainClient, brain: Brain, clock: Clock
) -> None:
    seeded = await seed(api)
    events = audit_chain("body-b", 3)  # an IDE body's (body-a is agent w1's)
    events[1] = events[1].model_copy(update={"outcome": "refused", "code": "rate_limited", "duration_ms": 2.0})
    events[2] = events[2].model_copy(update={"duration_ms": 300.0})
    ok(await api.post("/v1/audit", batch("body-b", events), as_="body"))
    ok(await api.post("/v1/audit", batch("body-b", events), as_="body"))  # resent: stored once, counted once
    pending = await ask(api, 0.5, "D5")
    clock.advance(30)

    response = await api.get("/metrics", as_="approver")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    m = families(response.text)
    calls = m["swarm_tool_calls_total"]
    ok_labels = (("agent", "claude"), ("code", ""), ("logic_version", ""), ("outcome", "ok"), ("tool", "write_file"))
    refused_labels = (
        ("agent", "claude"),
        ("code", "rate_limited"),
        ("logic_version", ""),
        ("outcome", "refused"),
        ("tool", "write_file"),
    )
    rerun_labels = (("agent", "w1"), ("code", ""), ("logic_version", ""), ("outcome", "ok"), ("tool", "run_command"))
    assert calls == {ok_labels: 2, refused_labels: 1, rerun_labels: 1}, "T1's verified re-run is a tool call too"
    # durations 0 ms and 300 ms (ok), 2 ms (refused): bucket le=0.25 holds the first only
    ok_hist = (("le", "0.25"), ("outcome", "ok"), ("tool", "write_file"))
    assert m["swarm_tool_call_duration_seconds_bucket"][ok_hist] == 1
    assert m["swarm_tool_call_duration_seconds_sum"][(("outcome", "ok"), ("tool", "write_file"))] == pytest.approx(0.3)

    w1 = (("agent", "w1"), ("model", "gpt"))
    assert m["swarm_llm_calls_total"] == {(*w1[:1], ("model", "gpt"), ("outcome", "answered")): 5}
    assert m["swarm_llm_cost_usd_total"][w1] == pytest.approx(7.0)
    assert m["swarm_llm_tokens_total"][(("agent", "w1"), ("kind", "input"), ("model", "gpt"))] == 3609
    assert m["swarm_llm_tokens_total"][(("agent", "w1"), ("kind", "output"), ("model", "gpt"))] == 659

    tasks: dict[str, float] = {}
    for labels, v in m["swarm_tasks"].items():  # (by state, whether verified or not)
        if v:
            tasks[dict(labels)["state"]] = tasks.get(dict(labels)["state"], 0) + v
    assert tasks == {
        "succeeded": 2,
        "failed": 1,
        "cancelled": 1,
        "queued": 1,
    }
    assert m["swarm_task_duration_seconds_count"][(("state", "succeeded"),)] == 2
    decisions = {labels[0][1]: v for labels, v in m["swarm_decisions"].items() if v}
    assert decisions == {"approved": 3, "denied": 1, "pending": 1}
    answered = {labels[0][1]: v for labels, v in m["swarm_decision_answer_seconds_count"].items()}
    assert answered == {"approved": 3, "denied": 1}  # (the pending one is not answered yet)
    assert m["swarm_decisions_pending"][()] == 1
    assert m["swarm_kill_switch_engaged"][()] == 0
    # spend in the last hour: the four records made at T0 (the fifth is ten days old); limit $10/hour
    assert m["swarm_spend_usd_last_hour"][()] == pytest.approx(2.0)
    assert m["swarm_spend_limit_usd_per_hour"][()] == 10
    assert m["swarm_budget_used_ratio"][()] == pytest.approx(0.2)

    ok(await api.post("/v1/kill", {"reason": "drill"}, as_="captain"))
    ok(await api.post(f"/v1/decisions/{pending}/deny", {"reason": "no"}, as_="approver"))
    m = families((await api.get("/metrics", as_="captain")).text)
    assert m["swarm_kill_switch_engaged"][()] == 1
    assert m["swarm_decisions_pending"][()] == 0
    assert seeded.tasks["T5"]  # (the queued task is the one counted above)


@pytest.fixture
async def public_api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = BrainSettings(database_url=engine_url("memory", tmp_path), metrics_public=True)
    state = await open_engine(settings.database_url)
    brain = Brain(settings, state=state)
    async with brain.running():
        await issue_token(brain.state, role="body", label="b", at=brain.now())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(brain)), base_url="http://b") as c:
            yield c
    await state.close()


async def test_metrics_configured_public_need_no_token_and_the_kpis_still_do(public_api: httpx.AsyncClient) -> None:
    response = await public_api.get("/metrics")
    assert response.status_code == 200
    assert "swarm_kill_switch_engaged" in families(response.text)
    assert "swarm_spend_limit_usd_per_hour" not in families(response.text)  # (no [limits] known to this brain)
    assert (await public_api.get("/v1/kpi")).status_code == 401


async def test_healthz_answers_without_a_token_and_says_nothing_else(api: BrainClient) -> None:
    response = await api.get("/healthz", as_=None)
    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert (await api.get("/healthz", as_="body")).json() == {"ok": True}


async def test_healthz_is_503_when_the_database_is_gone(tmp_path: Path) -> None:
    db = tmp_path / "brain.db"
    state = await SqliteStateEngine.open(db)
    brain = Brain(BrainSettings(database_url=engine_url("sqlite", tmp_path)), state=state)
    try:
        async with brain.running():
            app = build_app(brain)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as client:
                assert (await client.get("/healthz")).status_code == 200
                db.unlink()
                response = await client.get("/healthz")
                assert (response.status_code, response.json()) == (503, {"ok": False})
    finally:
        await state.close()


async def test_presence_older_than_the_retention_is_pruned_and_logged(
    api: BrainClient, brain: Brain, clock: Clock
) -> None:
    assert brain.settings.telemetry_retention_days == 30
    await brain.sweep()
    clock.advance(60)
    await brain.sweep()
    clock.advance(31 * 86400)
    await brain.sweep()
    assert [p.minutes for p in await brain.state.presence(since=T0)] == [3]
    assert await brain.telemetry.prune() == 2
    assert [(p.subject, p.minutes) for p in await brain.state.presence(since=T0)] == [("brain", 1)]
    assert [e.action for e in await brain.state.log_entries()][-1] == "telemetry_prune"
    assert await brain.telemetry.prune() == 0, "nothing older is left: nothing pruned, nothing logged"
    assert [e.action for e in await brain.state.log_entries()].count("telemetry_prune") == 1


async def test_the_grafana_dashboard_names_only_metrics_the_brain_exposes(api: BrainClient) -> None:
    await seed(api)
    ok(await api.post("/v1/audit", batch("body-b", audit_chain("body-b", 1)), as_="body"))
    timed = {**usage(90, task_id=None, usd=0.0, tokens=(1, 1)), "duration_ms": 1200.0}
    ok(await api.post("/v1/usage", {"records": [timed]}, as_="w1"))
    exposed = set(families((await api.get("/metrics", as_="approver")).text))
    dashboard = json.loads((Path(__file__).parents[2] / "deploy" / "grafana-swarm.json").read_text())
    named = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bswarm_[a-z_]+", target["expr"])
    }
    assert len(named) >= 10
    assert named <= exposed, named - exposed
