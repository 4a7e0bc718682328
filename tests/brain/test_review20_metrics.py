"""Adversarial review of issue #20 (telemetry, `/metrics`, `/healthz`): a real brain on 127.0.0.1 over HTTP (uvicorn),
on a SQLite file, with a clock the test controls.

A strict xfail is a hole found (its reason says how bad, how to reproduce it and the fix); a plain test is an attack
the brain withstands.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from brain_server import Brain, BrainSettings, build_app, issue_token, revoke_token
from brain_server.state import open_engine, sqlite_path, sqlite_url
from shared_protocol import AuditEvent
from tests.fakes.serve import serve_app

from .helpers import START, BrainClient, Clock, audit_chain, audit_event, batch, ok, refused
from .test_telemetry import LIVE, add_task, agent_w1, claim, finish, rerun

pytestmark = pytest.mark.anyio

T0 = datetime.fromtimestamp(START, UTC)
REGISTER = {"body_id": "body-a", "workspace": "/w", "hostname": "h", "version": "1"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def served_brain(settings: BrainSettings, clock: Clock) -> AsyncIterator[tuple[Brain, BrainClient]]:
    state = await open_engine(settings.database_url)
    brain = Brain(settings, state=state, clock=clock)
    try:
        async with brain.running():
            tokens = {
                role: await issue_token(brain.state, role=role, label=f"{role}-1", at=brain.now())
                for role in ("body", "approver", "captain")
            }
            async with serve_app(build_app(brain)) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
                yield (
                    brain,
                    BrainClient(
                        client,
                        tokens,
                        issue=lambda role, label, agent: issue_token(
                            brain.state, role=role, label=label, at=brain.now(), agent=agent
                        ),
                    ),
                )
    finally:
        await state.close()


@pytest.fixture
async def live(tmp_path: Path, clock: Clock) -> AsyncIterator[tuple[Brain, BrainClient]]:
    settings = BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"), usd_per_hour=10.0)
    async for served in served_brain(settings, clock):
        yield served


@pytest.fixture
async def public(tmp_path: Path, clock: Clock) -> AsyncIterator[tuple[Brain, BrainClient]]:
    settings = BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"), metrics_public=True)
    async for served in served_brain(settings, clock):
        yield served


def families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def scrape(api: BrainClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    response = await api.get("/metrics", as_="approver")
    assert response.status_code == 200, (response.status_code, response.text[:300])
    return families(response.text)


async def w1_body(api: BrainClient) -> None:
    """Agent w1's token (`as_="w1"`), holding body-a."""
    await api.add_token("w1", agent="w1")
    ok(await api.post("/v1/bodies/register", REGISTER, as_="w1"))


async def post_raw(api: BrainClient, path: str, raw: str | bytes, *, as_: str) -> httpx.Response:
    headers = {**api.headers(as_), "content-type": "application/json"}
    return await api.client.post(path, content=raw, headers=headers)


def usage_json(record_id: str, **fields: str) -> str:
    """A usage record of agent w1 as raw JSON, with `fields` spliced in verbatim (numbers JSON cannot round-trip)."""
    base = {"id": record_id, "at": T0.isoformat(), "agent": "w1", "provider": "openai", "model": "gpt"}
    text = json.dumps(base)[:-1] + "".join(f', "{k}": {v}' for k, v in fields.items()) + "}"
    return '{"body_id": "body-a", "records": [' + text + "]}"


# -- numbers a body controls -------------------------------------------------------------------------------------


async def test_an_infinite_cost_is_refused_and_metrics_keep_answering(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    await w1_body(api)
    response = await post_raw(api, "/v1/usage", usage_json("u_inf", usd="1e999"), as_="w1")
    try:
        assert refused(response, 422, "invalid_request")["field"] == "records.0.usd"
    finally:
        assert (await api.get("/metrics", as_="approver")).status_code == 200
        spend = ok(await api.get("/v1/kpi", as_="approver"))["spend_usd"]
        assert isinstance(spend, float) and math.isfinite(spend)


async def test_an_absurd_token_count_is_refused_and_metrics_keep_answering(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    await w1_body(api)
    response = await post_raw(api, "/v1/usage", usage_json("u_big", input_tokens="9" * 400), as_="w1")
    try:
        assert refused(response, 422, "invalid_request")["field"] == "records.0.input_tokens"
    finally:
        assert (await api.get("/metrics", as_="approver")).status_code == 200


async def test_nan_and_negative_costs_are_refused_and_nothing_is_stored(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    await w1_body(api)
    for n, bad in enumerate(("NaN", "-Infinity", "-0.01")):
        response = await post_raw(api, "/v1/usage", usage_json(f"u_bad_{n}", usd=bad), as_="w1")
        assert refused(response, 422, "invalid_request")["field"] == "records.0.usd", bad
    response = await post_raw(api, "/v1/usage", usage_json("u_neg", output_tokens="-1"), as_="w1")
    assert refused(response, 422, "invalid_request")["field"] == "records.0.output_tokens"
    assert ok(await api.get("/v1/usage", as_="approver"))["total"]["calls"] == 0
    assert "swarm_llm_calls_total" not in {k for k, v in (await scrape(api)).items() if v}


async def test_a_usage_record_from_the_future_does_not_haunt_the_last_hour(
    live: tuple[Brain, BrainClient], clock: Clock
) -> None:
    _, api = live
    await w1_body(api)
    record = {"id": "u_future", "at": "2100-01-01T00:00:00+00:00", "agent": "w1", "provider": "p", "model": "m"}
    await api.post("/v1/usage", {"body_id": "body-a", "records": [{**record, "usd": 5.0}]}, as_="w1")
    clock.advance(30 * 86400)
    assert (await scrape(api))["swarm_spend_usd_last_hour"][()] == 0


# -- what a body puts in its audit events -------------------------------------------------------------------------


async def test_an_agent_cannot_post_tool_calls_as_another_agent(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    await w1_body(api)
    forged = [
        e.model_copy(update={"agent": "w2", "outcome": "refused", "code": "rate_limited"})
        for e in audit_chain("body-a", 3)
    ]
    response = await api.post("/v1/audit", batch("body-a", forged), as_="w1")
    calls = (await scrape(api)).get("swarm_tool_calls_total", {})
    assert not [labels for labels in calls if ("agent", "w2") in labels], calls
    assert response.status_code == 422
    assert response.json()["field"] == "events.0.agent"
    # (the body's own events, under a name no agent can have, still go up with the agent's token)
    own = [e.model_copy(update={"agent": "swarm:snapshots"}) for e in audit_chain("body-a", 1)]
    ok(await api.post("/v1/audit", batch("body-a", own), as_="w1"))


async def test_made_up_tool_names_do_not_explode_the_series(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    events: list[AuditEvent] = []
    prev = "genesis-body-z"
    for seq in range(1, 1001):
        event = audit_event("body-z", seq, prev).model_copy(update={"tool": f"tool_{seq}_" + "x" * 200})
        events.append(event)
        prev = event.mac
    ok(await api.post("/v1/audit", batch("body-z", events), as_="body"))
    m = await scrape(api)
    assert len(m["swarm_tool_calls_total"]) <= 50
    assert all(len(dict(labels)["tool"]) <= 64 for labels in m["swarm_tool_calls_total"])


async def test_a_nan_duration_does_not_poison_the_latency_histogram(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    body = batch("body-z", audit_chain("body-z", 2))
    body["events"][0]["duration_ms"] = float("nan")  # (json.dumps writes NaN, which the brain's parser reads)
    body["events"][1]["duration_ms"] = 40.0
    response = await post_raw(api, "/v1/audit", json.dumps(body), as_="body")
    # (refused at ingest, the whole batch: a body's clock never measures NaN; the good event is sent again alone)
    assert refused(response, 422, "invalid_request")["field"] == "events.0.duration_ms"
    body["events"] = body["events"][:1]
    body["events"][0]["duration_ms"] = 40.0
    ok(await api.post("/v1/audit", batch("body-z", [AuditEvent.model_validate(body["events"][0])]), as_="body"))
    total = (await scrape(api))["swarm_tool_call_duration_seconds_sum"][(("outcome", "ok"), ("tool", "write_file"))]
    assert math.isfinite(total)


async def test_a_negative_duration_counts_as_zero_and_the_buckets_stay_cumulative(
    live: tuple[Brain, BrainClient],
) -> None:
    _, api = live
    body = batch("body-z", audit_chain("body-z", 3))
    for event, ms in zip(body["events"], (-5000.0, 7.0, 400.0), strict=True):
        event["duration_ms"] = ms
    ok(await api.post("/v1/audit", body, as_="body"))
    m = await scrape(api)
    key = (("outcome", "ok"), ("tool", "write_file"))
    assert m["swarm_tool_call_duration_seconds_sum"][key] == pytest.approx(0.407)
    assert m["swarm_tool_call_duration_seconds_count"][key] == 3
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for labels, v in m["swarm_tool_call_duration_seconds_bucket"].items()
        if dict(labels)["tool"] == "write_file"
    )
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] == 3
    assert (
        dict(buckets)[0.005] == 1 and dict(buckets)[0.01] == 2 and dict(buckets)[0.25] == 2 and dict(buckets)[0.5] == 3
    )


async def test_quotes_newlines_and_braces_in_labels_cannot_forge_a_series(live: tuple[Brain, BrainClient]) -> None:
    """A body names its agent and tool with exposition syntax: the parser reads back the exact strings, and no
    series the body did not make appears (no `swarm_kill_switch_engaged 0` smuggled in)."""
    _, api = live
    evil_agent = 'x"} 1\nswarm_kill_switch_engaged 0\n#'
    evil_tool = 't\\"\n{le="+Inf"}'
    events = [e.model_copy(update={"agent": evil_agent, "tool": evil_tool}) for e in audit_chain("body-z", 1)]
    ok(await api.post("/v1/audit", batch("body-z", events), as_="body"))
    ok(await api.post("/v1/kill", {"reason": "drill"}, as_="captain"))
    m = await scrape(api)
    assert m["swarm_kill_switch_engaged"] == {(): 1.0}
    (labels,) = m["swarm_tool_calls_total"]
    assert dict(labels)["agent"] == evil_agent and dict(labels)["tool"] == evil_tool


async def test_bytes_that_are_not_utf8_or_a_lone_surrogate_are_refused_and_nothing_counted(
    live: tuple[Brain, BrainClient],
) -> None:
    _, api = live
    await w1_body(api)
    raw = usage_json("u_latin1").replace('"gpt"', '"gpt\xe9"').encode("latin-1")
    refused(await post_raw(api, "/v1/usage", raw, as_="w1"), 422, "invalid_json")
    refused(
        await post_raw(api, "/v1/usage", usage_json("u_sur").replace('"gpt"', '"\\ud800"'), as_="w1"),
        422,
        "invalid_json",
    )
    text = json.dumps(batch("body-z", audit_chain("body-z", 1))).replace('"write_file"', '"\\udfff"')
    refused(await post_raw(api, "/v1/audit", text, as_="body"), 422, "invalid_json")
    m = await scrape(api)
    assert "swarm_tool_calls_total" not in m or not m["swarm_tool_calls_total"]
    assert ok(await api.get("/v1/usage", as_="approver"))["total"]["calls"] == 0


# -- metrics that lie ---------------------------------------------------------------------------------------------


async def test_the_task_duration_histogram_never_goes_down(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    await agent_w1(api)
    task_id = await add_task(api, "T", 10)
    token = await claim(api, task_id)
    first = rerun(1, task_id)
    ok(await api.post("/v1/audit", batch("body-a", [first]), as_="w1"))
    body = {
        "claim_token": token,
        "outcome": "succeeded",
        "action_id": "act_out",
        "verification": {"command": "pytest -q", "exit_code": 0, "action_id": first.id, "verified": True},
        **LIVE,
    }
    ok(await api.post(f"/v1/tasks/{task_id}/outcome", body, as_="w1"))
    key = (("state", "succeeded"),)
    before = (await scrape(api))["swarm_task_duration_seconds_count"][key]
    assert before == 1
    ok(await api.post("/v1/undo/act_out", {"reason": "wrong", "force": True}, as_="captain"))
    after = (await scrape(api)).get("swarm_task_duration_seconds_count", {}).get(key, 0.0)
    assert after >= before


async def test_the_grafana_success_rate_counts_verified_successes_only(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    await agent_w1(api)
    t1, t2 = await add_task(api, "T1", 1), await add_task(api, "T2", 1)
    k1, k2 = await claim(api, t1), await claim(api, t2)
    await finish(api, t1, k1, "succeeded", verified_by=rerun(1, t1))
    await finish(api, t2, k2, "succeeded", verified_by=None)
    kpi = ok(await api.get("/v1/kpi", as_="approver"))["task_success_rate"]
    assert kpi == 0.5
    dashboard = json.loads((Path(__file__).parents[2] / "deploy" / "grafana-swarm.json").read_text())
    (panel,) = [p for p in dashboard["panels"] if p["title"].startswith("Task success rate")]
    expr = panel["targets"][0]["expr"]
    m = await scrape(api)
    # the panel's numerator, as Prometheus would compute it from this scrape
    assert 'state="succeeded"' in expr and "verified" in expr, expr
    assert any("verified" in dict(labels) for labels in m["swarm_tasks"])


# -- who can read what --------------------------------------------------------------------------------------------


async def test_revoked_and_body_tokens_cannot_read_metrics_or_kpis(live: tuple[Brain, BrainClient]) -> None:
    brain, api = live
    await api.add_token("w1", agent="w1")
    await api.add_token("approver-2", role="approver")
    for path in ("/metrics", "/v1/kpi"):
        assert (await api.get(path, as_="approver-2")).status_code == 200
        refused(await api.get(path, as_="w1"), 403, "forbidden")  # (an agent's token is a body token)
        refused(await api.get(path, as_="body"), 403, "forbidden")
        refused(await api.get(path, as_="not-a-token"), 401, "unauthorized")
    (record,) = [t for t in await brain.state.tokens() if t.label == "approver-2"]
    await revoke_token(brain.state, record.id, reason="left the team", at=brain.now())
    for path in ("/metrics", "/v1/kpi"):
        refused(await api.get(path, as_="approver-2"), 401, "unauthorized")


async def test_public_metrics_open_metrics_only(public: tuple[Brain, BrainClient]) -> None:
    """`[metrics] public = true` opens GET /metrics and nothing else: every other read still wants its token, and
    /metrics answers no other method."""
    _, api = public
    assert "swarm_kill_switch_engaged" in families((await api.get("/metrics", as_=None)).text)
    for path in ("/v1/kpi", "/v1/status", "/v1/usage", "/v1/tasks", "/v1/readiness", "/v1/decisions/dec_x"):
        refused(await api.get(path, as_=None), 401, "unauthorized")
    assert (await api.post("/metrics", {}, as_=None)).status_code == 405
    # (a body token on a public /metrics reads what anyone reads, and nothing more)
    assert (await api.get("/metrics", as_="body")).status_code == 200
    refused(await api.get("/v1/kpi", as_="body"), 403, "forbidden")


async def test_a_scraper_token_reads_metrics_and_cannot_approve(live: tuple[Brain, BrainClient]) -> None:
    brain, api = live
    scraper = await issue_token(brain.state, role="metrics", label="prometheus", at=brain.now())
    assert (await api.get("/metrics", as_=scraper)).status_code == 200
    refused(await api.post("/v1/tasks", {"title": "t", "value_usd": 1}, as_=scraper), 403, "forbidden")
    for path in ("/v1/kpi", "/v1/status", "/v1/usage", "/v1/tasks"):
        refused(await api.get(path, as_=scraper), 403, "forbidden")
    refused(await api.post("/v1/kill", {"reason": "x"}, as_=scraper), 403, "forbidden")
    refused(await api.post("/v1/decisions/dec_x/approve", {"reason": "x"}, as_=scraper), 403, "forbidden")


# -- /healthz -----------------------------------------------------------------------------------------------------


async def test_healthz_says_the_same_few_bytes_whatever_the_brain_holds(live: tuple[Brain, BrainClient]) -> None:
    """Liveness and nothing else: no token needed, the same body and headers with the kill switch engaged, bodies
    registered and decisions pending; no version, no counts, nothing a token would be needed for."""
    _, api = live
    quiet = await api.get("/healthz", as_=None)
    assert (quiet.status_code, quiet.content) == (200, b'{"ok":true}')
    await w1_body(api)
    ok(await api.post("/v1/kill", {"reason": "drill"}, as_="captain"))
    busy = await api.get("/healthz", as_=None)
    assert (busy.status_code, busy.content) == (200, b'{"ok":true}')
    assert {k.lower() for k in busy.headers} <= {"content-type", "content-length", "date", "server"}
    assert busy.headers.get("server", "uvicorn") == "uvicorn"
    assert (await api.get("/healthz?verbose=1", as_="captain")).content == b'{"ok":true}'
    assert (await api.post("/healthz", {}, as_=None)).status_code == 405


# -- bad query parameters -----------------------------------------------------------------------------------------


async def test_a_superscript_window_is_refused_naming_since_s(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    assert (
        refused(await api.get("/v1/kpi?since_s=%C2%B2", as_="approver"), 422, "invalid_request")["field"] == "since_s"
    )


# -- what a scrape costs the kill switch --------------------------------------------------------------------------


def _seed_usage(db: Path, count: int) -> None:
    """`count` usage records of agent w1 over the last days, written straight into the brain's SQLite table (as
    the brain would have after a busy week; through the API this takes minutes)."""
    rows: list[tuple[str, str, str]] = []
    for n in range(count):
        at = (T0 - timedelta(seconds=5 * n)).isoformat().replace("+00:00", "Z")
        record: dict[str, Any] = {
            "id": f"use_{n}",
            "at": at,
            "agent": "w1",
            "logic_version": "lv-1",
            "task_id": None,
            "provider": "openai",
            "model": f"gpt-{n % 4}",
            "input_tokens": 1000,
            "output_tokens": 100,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "usd": 0.001,
            "outcome": "answered",
        }
        rows.append((str(record["id"]), "body-a", json.dumps(record, sort_keys=True, separators=(",", ":"))))
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.executemany("INSERT INTO usage_records (id, body_id, record) VALUES (?, ?, ?)", rows)
    finally:
        conn.close()


async def test_a_scrape_and_the_kpis_never_scan_every_usage_record(
    live: tuple[Brain, BrainClient], tmp_path: Path
) -> None:
    """What a scrape or a KPI report costs does not grow with every usage record ever kept (which held up the kill
    switch for a second with 100k records): each query of theirs on `usage_records` is answered from an index (or the
    running totals the insert trigger keeps), as SQLite's query plan says; timing is left to bench/. Deterministic:
    every SQL statement the brain's reader runs during GET /metrics and GET /v1/kpi is recorded and explained."""
    brain, api = live
    db = sqlite_path(brain.settings.database_url)
    assert db is not None
    _seed_usage(db, 2000)
    # (both connections that read: the reader, and the scanner that the KPIs' inputs are read on)
    readers = [brain.state._reader, brain.state._scanner]  # pyright: ignore[reportAttributeAccessIssue, reportPrivateUsage, reportUnknownMemberType, reportUnknownVariableType]
    ran: list[str] = []  # (each statement as SQLite ran it, its parameters in place)
    for reader in readers:  # pyright: ignore[reportUnknownVariableType]
        await reader.set_trace_callback(ran.append)  # pyright: ignore[reportUnknownMemberType]
    try:
        m = await scrape(api)
        report = ok(await api.get("/v1/kpi", as_="approver"))
    finally:
        for reader in readers:  # pyright: ignore[reportUnknownVariableType]
            await reader.set_trace_callback(None)  # pyright: ignore[reportUnknownMemberType]
    # (the seeded numbers still come out: 2000 calls of $0.001 and 1000 input tokens, spread over 4 models)
    assert sum(v for labels, v in m["swarm_llm_calls_total"].items() if ("agent", "w1") in labels) == 2000
    assert sum(m["swarm_llm_cost_usd_total"].values()) == pytest.approx(2.0)
    assert report["llm_calls"] == 2000  # (every seeded record is within the last 7 days)
    reads = [sql for sql in ran if "usage_records" in sql]
    assert any("json_each" in sql for sql in reads), ran  # (the KPIs' usage read is among them)
    conn = sqlite3.connect(db)
    try:
        for sql in reads:
            plan = " | ".join(str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert "SCAN usage_records" not in plan, (sql, plan)
    finally:
        conn.close()


# -- what the issue asked for and /metrics does not carry ---------------------------------------------------------


def labelled(labels: dict[str, str], **more: str) -> tuple[tuple[str, str], ...]:
    """The key `families` files a sample under."""
    return tuple(sorted({**labels, **more}.items()))


def _decision_request(confidence: float) -> dict[str, Any]:
    return {
        "summary": "s",
        "rationale": "r",
        "confidence": confidence,
        "impact": {"files": 1, "api_calls": 0, "usd": 0},
        "options": ["a", "b"],
        "agent": "w1",
        "body_id": "body-a",
    }


async def test_llm_call_and_decision_latencies_are_exposed(live: tuple[Brain, BrainClient], clock: Clock) -> None:
    """Per LLM call (the runner's `duration_ms`) and per decision (created to its first answer), as histograms that
    prometheus_client's own parser reads; every number below is worked out by hand."""
    _, api = live
    await w1_body(api)

    def record(record_id: str, duration_ms: float | None) -> dict[str, Any]:
        found: dict[str, Any] = {"id": record_id, "at": T0.isoformat(), "agent": "w1", "provider": "p", "model": "m"}
        if duration_ms is not None:
            found["duration_ms"] = duration_ms
        return found

    ok(await api.post("/v1/usage", {"body_id": "body-a", "records": [record("u_t", 850.0)]}, as_="w1"))
    # The runner resends the first record with two new ones (its post timed out after the brain stored it): the
    # resent one is not observed twice, the untimed one is not observed at all.
    batch = [record("u_t", 850.0), record("u_2", 3000.0), record("u_3", None)]
    assert ok(await api.post("/v1/usage", {"body_id": "body-a", "records": batch}, as_="w1")) == {
        "stored": 2,
        "duplicates": 1,
    }
    answered = ok(await api.post("/v1/decisions", _decision_request(0.5), as_="w1"), 201)["id"]
    clock.advance(120)
    ok(await api.post(f"/v1/decisions/{answered}/approve", {"reason": "ok"}, as_="approver"))
    denied = ok(await api.post("/v1/decisions", _decision_request(0.5), as_="w1"), 201)["id"]
    clock.advance(30)
    ok(await api.post(f"/v1/decisions/{denied}/deny", {"reason": "no"}, as_="approver"))
    ok(await api.post("/v1/decisions", _decision_request(0.5), as_="w1"), 201)  # (pending: not observed)
    m = await scrape(api)
    llm = {"agent": "w1", "model": "m", "outcome": "answered"}
    assert m["swarm_llm_call_duration_seconds_count"][labelled(llm)] == 2  # 850 ms and 3000 ms
    assert m["swarm_llm_call_duration_seconds_sum"][labelled(llm)] == pytest.approx(3.85)
    buckets = m["swarm_llm_call_duration_seconds_bucket"]
    assert buckets[labelled(llm, le="0.5")] == 0
    assert buckets[labelled(llm, le="1.0")] == 1  # 0.85 s
    assert buckets[labelled(llm, le="2.5")] == 1
    assert buckets[labelled(llm, le="5.0")] == 2  # and 3.0 s
    decided = m["swarm_decision_answer_seconds_count"]
    assert decided[(("state", "approved"),)] == 1 and decided[(("state", "denied"),)] == 1
    assert (("state", "pending"),) not in decided
    sums = m["swarm_decision_answer_seconds_sum"]
    assert sums[(("state", "approved"),)] == pytest.approx(120.0)
    assert sums[(("state", "denied"),)] == pytest.approx(30.0)
    decision_buckets = m["swarm_decision_answer_seconds_bucket"]
    assert decision_buckets[(("le", "60.0"), ("state", "approved"))] == 0
    assert decision_buckets[(("le", "300.0"), ("state", "approved"))] == 1
    assert decision_buckets[(("le", "60.0"), ("state", "denied"))] == 1


async def test_an_llm_duration_a_body_cannot_mean_is_refused_naming_it(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    await w1_body(api)
    for raw in ("-1", "1e999", "86400001"):
        response = await post_raw(api, "/v1/usage", usage_json("u_bad", duration_ms=raw), as_="w1")
        assert refused(response, 422, "invalid_request")["field"] == "records.0.duration_ms", raw
    assert "swarm_llm_call_duration_seconds_count" not in await scrape(api)


async def test_made_up_models_do_not_explode_the_llm_latency_series(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    await w1_body(api)
    records = [
        {"id": f"u_{n}", "at": T0.isoformat(), "agent": "w1", "provider": "p", "model": f"m{n}", "duration_ms": 10.0}
        for n in range(200)
    ]
    ok(await api.post("/v1/usage", {"body_id": "body-a", "records": records}, as_="w1"))
    counts = (await scrape(api))["swarm_llm_call_duration_seconds_count"]
    assert sum(counts.values()) == 200
    assert len(counts) == 21  # 20 model names admitted, the other 180 calls under `other`
    assert counts[(("agent", "w1"), ("model", "other"), ("outcome", "answered"))] == 180


def test_every_grafana_panel_follows_the_job_variable() -> None:
    dashboard = json.loads((Path(__file__).parents[2] / "deploy" / "grafana-swarm.json").read_text())
    unfiltered = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel["targets"]
        if "swarm_" in target["expr"] and "$job" not in target["expr"]
    ]
    assert unfiltered == []


async def test_made_up_model_names_do_not_explode_the_llm_series(live: tuple[Brain, BrainClient]) -> None:
    _, api = live
    await w1_body(api)
    records = [
        {"id": f"u_{n}", "at": T0.isoformat(), "agent": "w1", "provider": "p", "model": f"m{n}-" + "z" * 300}
        for n in range(1000)
    ]
    response = await api.post("/v1/usage", {"body_id": "body-a", "records": records}, as_="w1")
    m = await scrape(api)
    assert len(m.get("swarm_llm_calls_total", {})) <= 50, (response.status_code, len(m["swarm_llm_calls_total"]))
