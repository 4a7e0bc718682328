"""Pausing one agent: a kill switch scoped to the bodies of that agent's tokens. Its event streams on a live brain
(SQLite file, loopback HTTP); its refusals and its store on every state engine."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from brain_server import Brain, BrainSettings, SqliteStateEngine, StateEngine
from brain_server.state import LogEntry, sqlite_url
from shared_protocol.brain import AgentPause

from .helpers import BrainClient, LiveBrain, SseEvent, live_brain, ok, refused, sse_events

pytestmark = pytest.mark.anyio


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    async with live_brain(BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"), keepalive_s=0.2)) as brain:
        yield brain


async def log_actions(db: Path) -> list[str]:
    state = await SqliteStateEngine.open(db)
    try:
        return [e.action for e in await state.log_entries(limit=1000)]
    finally:
        await state.close()


@asynccontextmanager
async def stream(api: BrainClient, as_: str, body_id: str) -> AsyncGenerator[AsyncIterator[SseEvent]]:
    """A body's event stream, without keepalive comments; its first event (the kill state) is left to the test."""
    async with api.client.stream("GET", f"/v1/events?body_id={body_id}", headers=api.headers(as_)) as response:
        assert response.status_code == 200

        async def events() -> AsyncIterator[SseEvent]:
            async for event in sse_events(response):
                if event.name != ":":
                    yield event

        yield events()


async def next_event(events: AsyncIterator[SseEvent]) -> SseEvent:
    with anyio.fail_after(5):
        return await anext(events)


def register(body_id: str) -> dict[str, str]:
    return {"body_id": body_id, "workspace": "/w", "hostname": "h", "version": "1"}


async def two_agents(api: BrainClient) -> None:
    await api.add_token("w1-body", agent="w1")
    await api.add_token("w2-body", agent="w2")
    for name, body in (("w1-body", "body-1"), ("w2-body", "body-2")):
        ok(await api.post("/v1/bodies/register", register(body), as_=name))


async def test_pausing_an_agent_kills_its_bodies_only_and_resume_lifts_it(live: LiveBrain) -> None:
    async with live.client() as api:
        await pause_then_resume(api)
    log = await log_actions(live.db)
    assert log.count("agent_pause") == 1 and log.count("agent_resume") == 1


async def pause_then_resume(api: BrainClient) -> None:
    await two_agents(api)
    async with stream(api, "w1-body", "body-1") as w1, stream(api, "w2-body", "body-2") as w2:
        assert (await next_event(w1)).data["engaged"] is False
        assert (await next_event(w2)).data["engaged"] is False
        pause = ok(await api.post("/v1/agents/w1/pause", {"reason": "looping"}, as_="captain"), 201)
        assert (pause["agent"], pause["source"], pause["by"]) == ("w1", "captain", "captain-1")
        heard = await next_event(w1)
        assert (heard.name, heard.data["engaged"], heard.data["agent"]) == ("kill", True, "w1")
        # w1's body is told at every answer; w2's is not paused.
        beat = ok(await api.post("/v1/bodies/body-1/heartbeat", as_="w1-body"))
        assert beat["kill"]["engaged"] and beat["kill"]["agent"] == "w1"
        assert not ok(await api.post("/v1/bodies/body-2/heartbeat", as_="w2-body"))["kill"]["engaged"]
        status = ok(await api.get("/v1/status", as_="approver"))
        assert [p["agent"] for p in status["paused_agents"]] == ["w1"]
        assert not status["kill"]["engaged"]
        # Pausing again keeps the first pause.
        again = ok(await api.post("/v1/agents/w1/pause", {"reason": "still"}, as_="captain"), 200)
        assert again["reason"] == "looping"
        resumed = ok(await api.post("/v1/agents/w1/resume", {"reason": "fixed"}, as_="captain"))
        assert resumed["engaged"] is False
        heard = await next_event(w1)
        assert (heard.name, heard.data["engaged"]) == ("resume", False)
        # The global kill still reaches both; then w2 hears the next event, proving it heard no pause before.
        ok(await api.post("/v1/kill", {"reason": "all stop"}, as_="captain"))
        assert (await next_event(w1)).data["reason"] == "all stop"
        assert (await next_event(w2)).data["reason"] == "all stop"


async def test_releasing_the_global_kill_leaves_a_paused_agent_stopped(live: LiveBrain) -> None:
    async with live.client() as api:
        await release_while_paused(api)


async def release_while_paused(api: BrainClient) -> None:
    await two_agents(api)
    ok(await api.post("/v1/kill", {"reason": "all stop"}, as_="captain"))
    ok(await api.post("/v1/agents/w1/pause", {"reason": "anomalous"}, as_="captain"), 201)
    async with stream(api, "w1-body", "body-1") as w1, stream(api, "w2-body", "body-2") as w2:
        assert (await next_event(w1)).data["reason"] == "all stop"  # the global kill comes first
        await next_event(w2)
        ok(await api.post("/v1/resume", {"reason": "all clear"}, as_="captain"))
        heard = await next_event(w1)
        assert (heard.name, heard.data["agent"]) == ("kill", "w1")
        assert (await next_event(w2)).name == "resume"
    # A stream opened now starts with the pause; a body token's status shows its own agent's pause only.
    async with stream(api, "w1-body", "body-1") as w1:
        assert (await next_event(w1)).data["agent"] == "w1"
    assert [p["agent"] for p in ok(await api.get("/v1/status", as_="w1-body"))["paused_agents"]] == ["w1"]
    assert ok(await api.get("/v1/status", as_="w2-body"))["paused_agents"] == []


@pytest.mark.parametrize(
    ("path", "body", "as_", "status", "code"),
    [
        ("/v1/agents/w1/pause", {"reason": "x"}, "approver", 403, "forbidden"),
        ("/v1/agents/w1/resume", {"reason": "x"}, "w1-body", 403, "forbidden"),
        ("/v1/agents/w1/pause", {}, "captain", 422, "invalid_request"),
        ("/v1/agents/no%20such/pause", {"reason": "x"}, "captain", 422, "invalid_request"),
        ("/v1/agents/ghost/pause", {"reason": "x"}, "captain", 404, "not_found"),
        ("/v1/agents/w1/resume", {"reason": "x"}, "captain", 404, "not_found"),
    ],
)
async def test_a_bad_pause_or_resume_is_refused_and_changes_nothing(
    api: BrainClient, brain: Brain, path: str, body: dict[str, Any], as_: str, status: int, code: str
) -> None:
    await two_agents(api)
    refused(await api.post(path, body, as_=as_), status, code)
    assert await brain.state.agent_pauses() == []
    assert not any(e.action in ("agent_pause", "agent_resume") for e in await brain.state.log_entries())


async def test_an_ide_body_bound_to_no_agent_hears_no_pause(live: LiveBrain) -> None:
    async with live.client() as api:
        await ide_body(api)


async def ide_body(api: BrainClient) -> None:
    await two_agents(api)
    ok(await api.post("/v1/bodies/register", register("ide"), as_="body"))
    async with stream(api, "body", "ide") as ide:
        await next_event(ide)
        ok(await api.post("/v1/agents/w1/pause", {"reason": "x"}, as_="captain"), 201)
        ok(await api.post("/v1/kill", {"reason": "marker"}, as_="captain"))
        assert (await next_event(ide)).data["reason"] == "marker"


async def test_both_engines_keep_one_pause_per_agent_and_log_each_change(state: StateEngine) -> None:
    brain = Brain(BrainSettings(), state=state)
    first = AgentPause(agent="w1", reason="r", by="anomaly", source="anomaly", at=brain.now(), detail={"metric": "x"})
    log = LogEntry(at=brain.now(), action="agent_pause", by="anomaly", target="w1")
    assert await state.pause_agent(first, log) is True
    assert await state.pause_agent(first.model_copy(update={"reason": "again"}), log) is False
    assert await state.agent_pauses() == [first]
    resumed = LogEntry(at=brain.now(), action="agent_resume", by="captain-1", target="w1")
    assert await state.resume_agent("w1", resumed) == first
    assert await state.resume_agent("w1", resumed) is None
    assert await state.agent_pauses() == []
    assert [e.action for e in await state.log_entries()] == ["agent_pause", "agent_resume"]
