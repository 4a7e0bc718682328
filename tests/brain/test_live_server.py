"""The daemon over real loopback HTTP (uvicorn, the sweeper, a SQLite file): claims, auth, audit, event streams,
and tokens revoked or bound while it serves."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from brain_server import BrainSettings, ConfigError, SqliteStateEngine, revoke_token, run
from brain_server.state import sqlite_url
from tests.cli.inprocess import swarm_on

from .helpers import (
    LiveBrain,
    SseEvent,
    audit_chain,
    audit_event,
    batch,
    live_brain,
    ok,
    refused,
    sse_events,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    async with live_brain(BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"), keepalive_s=0.2)) as brain:
        yield brain


async def test_eight_claimers_on_separate_connections_get_distinct_tasks(live: LiveBrain) -> None:
    async with live.client() as api:
        for n in range(80):
            ok(await api.post("/v1/tasks", {"title": f"task {n}", "value_usd": n % 7}, as_="approver"), 201)
    won: dict[str, list[str]] = {}
    for n in range(8):
        await live.add_token(f"body-agent-{n}")

    async def claimer(agent: str) -> None:
        async with live.client() as api:
            mine = won.setdefault(agent, [])
            while True:
                claimed = ok(
                    await api.post("/v1/tasks/claim", {"body_id": f"body-{agent}", "agent": agent}, as_=f"body-{agent}")
                )
                if claimed["task"] is None:
                    return
                mine.append(claimed["task"]["id"])

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            for n in range(8):
                group.start_soon(claimer, f"agent-{n}")
    every = [task_id for ids in won.values() for task_id in ids]
    assert len(every) == 80 and len(set(every)) == 80
    assert sum(1 for ids in won.values() if ids) > 1, "the claims were not actually concurrent"
    async with live.client() as api:
        status = ok(await api.get("/v1/status", as_="captain"))
    assert (status["queued_tasks"], status["claimed_tasks"]) == (0, 80)


async def test_auth_failures_over_the_wire_are_refused_and_change_nothing(live: LiveBrain) -> None:
    async with live.client() as api:
        pending = ok(await api.post("/v1/decisions", _decision(0.5), as_="body"), 201)["id"]

        async def state() -> tuple[Any, Any]:
            return (
                ok(await api.get("/v1/status", as_="captain"))["kill"],
                ok(await api.get(f"/v1/decisions/{pending}", as_="captain")),
            )

        before = await state()
        for path in ("/v1/kill", "/v1/resume", f"/v1/decisions/{pending}/override", f"/v1/decisions/{pending}/approve"):
            refused(await api.post(path, {"reason": "r"}, as_=None), 401, "unauthorized")
            refused(await api.post(path, {"reason": "r"}, as_="swb_not-a-real-token"), 401, "unauthorized")
            refused(await api.post(path, {"reason": "r"}, as_="body"), 403, "forbidden")
            if not path.endswith("/approve"):
                refused(await api.post(path, {"reason": "r"}, as_="approver"), 403, "forbidden")
            assert await state() == before


async def test_audit_ingestion_over_the_wire_is_idempotent_and_refuses_gaps_and_mismatches(live: LiveBrain) -> None:
    events = audit_chain("body-a", 10)
    async with live.client() as api:
        assert ok(await api.post("/v1/audit", batch("body-a", events[:6]), as_="body")) == {"stored_through": 6}
        assert ok(await api.post("/v1/audit", batch("body-a", events[:6]), as_="body")) == {"stored_through": 6}
        gap = refused(await api.post("/v1/audit", batch("body-a", events[7:]), as_="body"), 409, "chain_gap")
        assert gap["expected_seq"] == 7
        forged = audit_event("body-a", 7, prev_mac="f" * 64)
        mismatch = refused(await api.post("/v1/audit", batch("body-a", [forged]), as_="body"), 409, "chain_mismatch")
        assert mismatch["expected_seq"] == 7
        assert ok(await api.post("/v1/audit", batch("body-a", events[4:]), as_="body")) == {"stored_through": 10}


async def test_every_event_stream_gets_a_kill_within_a_short_bound(live: LiveBrain) -> None:
    connected = [anyio.Event() for _ in range(8)]
    killed = [anyio.Event() for _ in range(8)]
    received: dict[int, float] = {}
    sent = 0.0
    status: dict[str, Any] = {}
    for n in range(8):
        await live.add_token(f"body-{n}")

    async def body(n: int) -> None:
        async with live.client() as api:
            stream = api.client.stream(
                "GET", "/v1/events", params={"body_id": f"body-{n}"}, headers=api.headers(f"body-{n}")
            )
            async with stream as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                async for event in sse_events(response):
                    if event.name == "resume":
                        connected[n].set()
                    elif event.name == "kill":
                        received[n] = time.perf_counter()
                        killed[n].set()
                        return

    async with anyio.create_task_group() as group:
        for n in range(8):
            group.start_soon(body, n)
        with anyio.fail_after(10):
            for event in connected:
                await event.wait()
        async with live.client() as api:
            status = ok(await api.get("/v1/status", as_="captain"))
            sent = time.perf_counter()
            ok(await api.post("/v1/kill", {"reason": "latency test"}, as_="captain"))
        with anyio.fail_after(2):
            for event in killed:
                await event.wait()
    assert len(received) == 8
    assert max(received.values()) - sent < 0.5
    assert status["kill"]["engaged"] is False


async def test_a_stream_starts_with_the_current_kill_state_then_keepalives_and_decisions(live: LiveBrain) -> None:
    async with live.client() as api:
        ok(await api.post("/v1/bodies/register", _register("body-a"), as_="body"))
        ok(await api.post("/v1/kill", {"reason": "before you connected"}, as_="captain"))
        stream = api.client.stream("GET", "/v1/events", params={"body_id": "body-a"}, headers=api.headers("body"))
        async with stream as response:
            events = sse_events(response)
            with anyio.fail_after(5):
                first = await anext(events)
                assert (first.name, first.data["engaged"], first.data["reason"]) == (
                    "kill",
                    True,
                    "before you connected",
                )
                assert (await anext(events)).name == ":"
                status = ok(await api.get("/v1/status", as_="approver"))
                assert status["bodies"][0]["connected"] is True
                created = ok(await api.post("/v1/decisions", _decision(0.5), as_="body"), 201)
                assert await _next_named(events, "decision") == SseEvent(name="decision", data=created)
                ok(await api.post("/v1/resume", {"reason": "all clear"}, as_="captain"))
                resumed = await _next_named(events, "resume")
                assert (resumed.data["engaged"], resumed.data["by"]) == (False, "captain-1")


async def test_the_event_stream_needs_a_body_token(live: LiveBrain) -> None:
    async with live.client() as api:
        refused(await api.get("/v1/events", as_=None), 401, "unauthorized")
        refused(await api.get("/v1/events", as_="captain"), 403, "forbidden")


async def test_an_unbound_body_token_must_name_its_body_to_listen(live: LiveBrain) -> None:
    """Else it would hear every body's decisions; refused before it is bound to anything."""
    async with live.client() as api:
        refused(await api.get("/v1/events", as_="body"), 422, "invalid_request")
        state = await SqliteStateEngine.open(live.db)
        try:
            assert all(t.body_id is None for t in await state.tokens())
        finally:
            await state.close()


async def test_shutting_down_ends_open_event_streams_instead_of_waiting_for_them(live: LiveBrain) -> None:
    async with live.client() as api:
        stream = api.client.stream("GET", "/v1/events", params={"body_id": "body-a"}, headers=api.headers("body"))
        async with stream as response:
            events = sse_events(response)
            with anyio.fail_after(5):
                assert (await anext(events)).name == "resume"
                live.stop.set()
                assert [event async for event in events if event.name != ":"] == []


async def _next_named(events: AsyncIterator[SseEvent], name: str) -> SseEvent:
    async for event in events:
        if event.name == name:
            return event
    raise AssertionError(f"stream ended before a {name} event")


def _decision(confidence: float) -> dict[str, Any]:
    return {
        "summary": "s",
        "rationale": "r",
        "confidence": confidence,
        "impact": {"files": 1},
        "agent": "claude",
        "body_id": "body-a",
    }


def _register(body_id: str) -> dict[str, str]:
    return {"body_id": body_id, "workspace": "/w", "hostname": "h", "version": "1"}


async def swarm_cli(*args: str, home: Path) -> tuple[int, str, str]:
    """The real `swarm` CLI in its own process, as an operator runs it beside a serving brain."""
    env = {k: v for k, v in os.environ.items() if k not in ("SWARM_CONFIG", "SWARM_TOKEN", "SWARM_BRAIN_URL")}
    env["SWARM_HOME"] = str(home)
    done = await anyio.run_process([sys.executable, "-m", "swarm_cli", *args], env=env, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_a_token_revoked_with_the_cli_while_the_brain_serves_is_refused_from_the_next_request(
    live: LiveBrain, tmp_path: Path
) -> None:
    db = str(live.db)
    async with live.client() as api:
        ok(await api.post("/v1/bodies/register", _register("body-a"), as_="body"))
        # (the listings in this process, `tests/cli/inprocess.py`; the revocation, the subject, a process of its own)
        code, listed, _ = await swarm_on(None, "brain", "token", "list", "--db", db, home=tmp_path)
        assert code == 0
        (line,) = [line for line in listed.splitlines() if line.endswith("label=body-1")]
        assert "role=body" in line and "body=body-a" in line and "revoked=no" in line
        token_id = line.split()[0]

        code, _, _ = await swarm_cli(
            "brain", "token", "revoke", token_id, "--reason", "stolen", "--db", db, home=tmp_path
        )
        assert code == 0
        refused(await api.post("/v1/bodies/body-a/heartbeat", as_="body"), 401, "unauthorized")
        refused(await api.get("/v1/status", as_="body"), 401, "unauthorized")
        ok(await api.get("/v1/status", as_="captain"))

        _, listed, _ = await swarm_on(None, "brain", "token", "list", "--db", db, home=tmp_path)
        assert "revoked=no" not in next(line for line in listed.splitlines() if line.startswith(token_id))


async def test_an_open_event_stream_ends_once_its_token_is_revoked(live: LiveBrain) -> None:
    async with live.client() as api:
        stream = api.client.stream("GET", "/v1/events", params={"body_id": "body-a"}, headers=api.headers("body"))
        async with stream as response:
            events = sse_events(response)
            with anyio.fail_after(5):
                assert (await anext(events)).name == "resume"
                state = await SqliteStateEngine.open(live.db)
                try:
                    (body,) = [t for t in await state.tokens() if t.label == "body-1"]
                    await revoke_token(state, body.id, reason="stolen", at=datetime.now(UTC))
                finally:
                    await state.close()
                assert [event async for event in events if event.name not in (":", "kill", "resume")] == []
        refused(await api.get("/v1/events", as_="body"), 401, "unauthorized")


async def test_concurrent_first_uses_of_a_body_token_bind_exactly_one_body(live: LiveBrain) -> None:
    token = await live.add_token("fresh")
    answers: dict[str, int] = {}

    async def register(n: int) -> None:
        async with live.client() as api:
            response = await api.post("/v1/bodies/register", _register(f"body-{n}"), as_=token)
            answers[f"body-{n}"] = response.status_code

    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            for n in range(8):
                group.start_soon(register, n)
    (winner,) = [body for body, status in answers.items() if status == 200]
    assert sorted(answers.values()) == [200] + [403] * 7
    async with live.client() as api:
        status = ok(await api.get("/v1/status", as_="captain"))
    assert [b["body_id"] for b in status["bodies"]] == [winner], "the losers registered nothing"
    state = await SqliteStateEngine.open(live.db)
    try:
        (fresh,) = [t for t in await state.tokens() if t.label == "fresh"]
    finally:
        await state.close()
    assert fresh.body_id == winner


async def test_a_bound_token_streaming_without_a_body_id_hears_only_its_own_bodys_decisions(live: LiveBrain) -> None:
    await live.add_token("body-b")
    async with live.client() as api:
        ok(await api.post("/v1/bodies/register", _register("body-a"), as_="body"))
        async with api.client.stream("GET", "/v1/events", headers=api.headers("body")) as response:
            events = sse_events(response)
            with anyio.fail_after(5):
                assert (await anext(events)).name == "resume"
                ok(await api.post("/v1/decisions", {**_decision(0.5), "body_id": "body-b"}, as_="body-b"), 201)
                mine = ok(await api.post("/v1/decisions", _decision(0.5), as_="body"), 201)
                assert await _next_named(events, "decision") == SseEvent(name="decision", data=mine)


async def test_the_daemon_serves_from_the_engine_its_database_url_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ready, stop = anyio.Event(), anyio.Event()
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    settings = BrainSettings(host="127.0.0.1", port=0, database_url="memory://", backup_interval_s=0.01)
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: run(settings, on_ready=on_ready, stop=stop, handle_signals=False))
        with anyio.fail_after(10):
            await ready.wait()
        async with httpx.AsyncClient(base_url=urls[0], timeout=10) as client:
            refused((await client.get("/v1/status")), 401, "unauthorized")
        stop.set()
    assert list(tmp_path.iterdir()) == [], "memory:// writes no file, and has no backups to make"


async def test_the_daemon_needs_a_database_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        await run(BrainSettings(host="127.0.0.1", port=0), handle_signals=False)
