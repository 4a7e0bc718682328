"""The dashboard's session over real loopback HTTP (uvicorn, a SQLite file): CSRF and Origin refusals, and the live
stream a page holds open (the kill switch, decisions, audit events; it ends when the session's token is revoked)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from brain_server import BrainSettings, SqliteStateEngine, revoke_token
from brain_server.state import sqlite_url
from tests.brain.helpers import LiveBrain, audit_chain, batch, decision_request, live_brain, ok, refused, sse_events

pytestmark = pytest.mark.anyio


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    async with live_brain(BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"), keepalive_s=0.2)) as brain:
        yield brain


async def test_csrf_and_origin_over_the_wire(live: LiveBrain) -> None:
    async with httpx.AsyncClient(base_url=live.url) as page:
        session = ok(
            await page.post("/session", json={"token": live.tokens["captain"]}, headers={"Origin": live.url}), 201
        )
        csrf = {session["csrf_header"]: session["csrf"]}
        for headers in ({"Origin": live.url}, {**csrf}, {**csrf, "Origin": "http://127.0.0.1:1"}):
            refused(await page.post("/v1/kill", json={"reason": "r"}, headers=headers), 403, "forbidden")
        assert ok(await page.get("/v1/status"))["kill"]["engaged"] is False
        assert ok(await page.post("/v1/kill", json={"reason": "r"}, headers={**csrf, "Origin": live.url}))["engaged"]


async def test_the_stream_carries_kills_decisions_and_audit_events_and_ends_on_revocation(live: LiveBrain) -> None:
    seen: list[tuple[str, Any]] = []
    ended = anyio.Event()
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as page, live.client() as api:
        ok(await page.post("/session", json={"token": live.tokens["approver"]}, headers={"Origin": live.url}), 201)

        async def listen() -> None:
            async with page.stream("GET", "/v1/dashboard/stream") as response:
                assert response.status_code == 200
                async for event in sse_events(response):
                    if event.name != ":":
                        seen.append((event.name, event.data))
            ended.set()

        async with anyio.create_task_group() as group:
            group.start_soon(listen)
            with anyio.fail_after(10):
                while not seen:
                    await anyio.sleep(0.01)
            assert seen[0][0] == "resume"
            ok(await api.post("/v1/audit", batch("body-a", audit_chain("body-a", 2)), as_="body"))
            ok(await api.post("/v1/decisions", decision_request("body-a", confidence=0.2), as_="body"), 201)
            ok(await api.post("/v1/kill", {"reason": "drill"}, as_="captain"))
            with anyio.fail_after(10):
                while len(seen) < 5:
                    await anyio.sleep(0.01)
            # (audit events go out together at most `feed.FLUSH_S` after they are stored: maybe after the kill)
            names = [name for name, _ in seen]
            assert [name for name in names[1:] if name != "audit"] == ["decision", "kill"], names
            assert [data["seq"] for name, data in seen if name == "audit"] == [1, 2]
            state = await SqliteStateEngine.open(live.db)
            try:
                approver = next(t for t in await state.tokens() if t.label == "approver-1")
                await revoke_token(state, approver.id, reason="gone", at=datetime.now(UTC))
            finally:
                await state.close()
            with anyio.fail_after(10):
                await ended.wait()
        # A page opened after the brain stored them gets the newest audit events first; a bearer token works too.
        async with api.client.stream("GET", "/v1/dashboard/stream", headers=api.headers("captain")) as response:
            names: list[str] = []
            async for event in sse_events(response):
                names.append(event.name)
                if len(names) == 3:
                    break
        assert names == ["kill", "audit", "audit"]
        refused(await api.get("/v1/dashboard/stream", as_="body"), 403, "forbidden")
