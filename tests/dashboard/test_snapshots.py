"""The pages' polls share one snapshot of each read for up to 2 s (`dashboard.snapshots`): a later page's read within
that time is answered from it, an event published makes the next read fresh, a bearer token always reads exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from brain_server import Brain, build_app
from brain_server.dashboard.snapshots import SNAPSHOT_S
from shared_protocol.brain import UsageRecord
from tests.brain.helpers import Clock, ok
from tests.dashboard.test_sessions import ORIGIN, changes, login, token

pytestmark = pytest.mark.anyio


@pytest.fixture
async def web(brain: Brain) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(brain)), base_url=ORIGIN) as client:
        yield client


def llm_call(n: int) -> UsageRecord:
    return UsageRecord(
        id=f"use_{n}",
        at=datetime(2030, 1, 1, tzinfo=UTC),
        agent="w1",
        logic_version="lv-1",
        provider="openai",
        model="gpt",
        input_tokens=100,
        output_tokens=10,
        usd=0.5,
    )


async def test_a_pages_read_is_answered_from_a_snapshot_under_two_seconds_old_and_a_bearer_token_reads_exactly(
    brain: Brain, clock: Clock, web: httpx.AsyncClient
) -> None:
    approver = await token(brain, "approver")
    await login(web, approver)
    assert ok(await web.get("/v1/usage"))["total"]["calls"] == 0
    # (a runner's LLM call publishes no event: the pages see it at their next snapshot)
    await brain.state.record_usage("body-a", [llm_call(1)])
    clock.advance(SNAPSHOT_S - 0.1)
    assert ok(await web.get("/v1/usage"))["total"]["calls"] == 0
    exact = ok(await web.get("/v1/usage", headers={"Authorization": f"Bearer {approver}"}))
    assert exact["total"]["calls"] == 1, "a bearer token's read (the CLI's) is never from a snapshot"
    clock.advance(0.1)
    assert ok(await web.get("/v1/usage"))["total"]["calls"] == 1
    # Another query is another read: its own snapshot.
    assert ok(await web.get("/v1/usage?agent=w2"))["total"]["calls"] == 0


async def test_an_event_published_makes_the_pages_next_read_fresh(brain: Brain, web: httpx.AsyncClient) -> None:
    session = await login(web, await token(brain, "captain"))
    assert ok(await web.get("/v1/tasks"))["tasks"] == []
    assert ok(await web.get("/v1/status"))["kill"]["engaged"] is False
    created = ok(await web.post("/v1/tasks", json={"title": "a task"}, headers=changes(session)), 201)
    assert [t["id"] for t in ok(await web.get("/v1/tasks"))["tasks"]] == [created["id"]]
    ok(await web.post("/v1/kill", json={"reason": "drill"}, headers=changes(session)))
    assert ok(await web.get("/v1/status"))["kill"]["engaged"] is True
