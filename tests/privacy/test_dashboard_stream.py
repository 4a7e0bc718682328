"""The dashboard's own API (#21): random personal data in a decision's summary and a task's cancel reason, planted over
the real HTTP API of a live brain while a dashboard page (an approver's session) holds `GET /v1/dashboard/stream`
open, reaches the page redacted — neither in clear (in any common encoding) nor as a token with its subject's id and
ciphertext — while the page's `/v1` replies read it as written, for those allowed to read them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url
from shared_protocol.privacy import TOKEN
from tests.brain.helpers import LiveBrain, decision_request, live_brain, ok

from .plant import encodings, plant

pytestmark = pytest.mark.anyio


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    async with live_brain(BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"), keepalive_s=0.2)) as brain:
        yield brain


async def test_the_dashboard_stream_carries_personal_data_redacted_and_replies_reveal_it(live: LiveBrain) -> None:
    p = plant()
    raw = bytearray()
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as page, live.client() as api:
        ok(await page.post("/session", json={"token": live.tokens["approver"]}, headers={"Origin": live.url}), 201)

        async def listen() -> None:
            async with page.stream("GET", "/v1/dashboard/stream") as response:
                assert response.status_code == 200
                async for data in response.aiter_bytes():
                    raw.extend(data)

        async with anyio.create_task_group() as group:
            group.start_soon(listen)
            with anyio.fail_after(10):
                while b"event: resume" not in raw:
                    await anyio.sleep(0.01)
            summary = f"write to {p.email} about card {p.card}"
            decision = ok(await api.post("/v1/decisions", decision_request("body-a", summary=summary), as_="body"), 201)
            task = ok(
                await api.post("/v1/tasks", {"title": "t", "description": "", "value_usd": 1}, as_="captain"), 201
            )
            ok(await api.post(f"/v1/tasks/{task['id']}/cancel", {"reason": f"{p.phone} withdrew"}, as_="captain"))
            with anyio.fail_after(10):
                while b"event: task_cancelled" not in raw:
                    await anyio.sleep(0.01)
            group.cancel_scope.cancel()
        shown = ok(await page.get(f"/v1/decisions/{decision['id']}"))
    assert shown["summary"] == summary  # a reply is revealed for who may read it
    stream = bytes(raw)
    assert b"event: decision" in stream and b"[pii:email]" in stream and b"[pii:phone]" in stream
    assert not [m.group() for m in TOKEN.finditer(stream.decode()) if m.group(2)]  # no subject id, no ciphertext
    assert not [form for value in p.values() for form in encodings(value) if form in stream]
