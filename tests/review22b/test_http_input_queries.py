"""Review 22b: query parameters of a live brain's GET routes (uvicorn on 127.0.0.1, a SQLite file) sent twice."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url

from ..brain.helpers import live_brain

pytestmark = pytest.mark.anyio

TWICE = [
    ("/v1/tasks?state=queued&state=claimed", "state"),
    ("/v1/tasks?agent=w1&agent=w2", "agent"),
    ("/v1/decisions?state=pending&state=approved", "state"),
    ("/v1/usage?agent=w1&agent=w2", "agent"),
    ("/v1/usage?task_id=task_a&task_id=task_b", "task_id"),
    ("/v1/kpi?since_s=60&since_s=86400", "since_s"),
]


async def test_a_filter_sent_twice_is_refused_naming_it_as_limit_and_offset_are(tmp_path: Path) -> None:
    """Was a hole (low), fixed. Reproduce: `GET /v1/kpi?since_s=60&since_s=86400` answered the KPIs of the last day,
    `GET /v1/tasks?agent=w1&agent=w2` the tasks of w2 (and so `state` of /v1/decisions, `agent` and `task_id` of
    /v1/usage, `body_id` of /v1/events): the last value counted, silently, where `limit`, `offset` and `by_task` sent
    twice are refused (422, "which one counts would be a guess"). Fix: every query parameter is read with
    `_single`."""
    settings = BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"))
    async with live_brain(settings) as brain, httpx.AsyncClient(base_url=brain.url, timeout=10) as http:
        captain = {"Authorization": f"Bearer {brain.tokens['captain']}"}
        for url, field in TWICE:
            response = await http.get(url, headers=captain)
            assert (response.status_code, response.json().get("field")) == (422, field), (url, response.text)
        body = {"Authorization": f"Bearer {brain.tokens['body']}"}
        with anyio.fail_after(10):
            async with http.stream("GET", "/v1/events?body_id=body-a&body_id=body-b", headers=body) as stream:
                assert stream.status_code == 422
                assert (await stream.aread()).count(b'"field":"body_id"') == 1
        # (nothing was bound by the refusal: the body token still may name either body)
        with anyio.fail_after(10):
            async with http.stream("GET", "/v1/events?body_id=body-b", headers=body) as stream:
                assert stream.status_code == 200
