"""Adversarial review of issue #20: `swarm kpi` run as the operator runs it (a process) against a real brain on
127.0.0.1 that an agent fed a bad number."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url
from tests.brain.helpers import LiveBrain, live_brain, ok
from tests.cli.test_task_cmds import swarm

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    async with live_brain(BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"))) as brain:
        yield brain


async def agent_body(live: LiveBrain, agent: str, body_id: str) -> None:
    await live.add_token(agent, agent=agent)
    register = {"body_id": body_id, "workspace": "/w", "hostname": "h", "version": "1"}
    async with live.client() as api:
        ok(await api.post("/v1/bodies/register", register, as_=agent))


async def test_kpi_still_reports_after_an_agent_posts_an_infinite_cost(live: LiveBrain, tmp_path: Path) -> None:
    await agent_body(live, "w1", "body-a")
    now = datetime.now(UTC).isoformat()
    record = '{"id": "u_inf", "at": "' + now + '", "agent": "w1", "provider": "p", "model": "m"'
    raw = '{"body_id": "body-a", "records": [' + record + ', "usd": 1e999}]}'
    async with httpx.AsyncClient(base_url=live.url) as client:
        headers = {"Authorization": f"Bearer {live.tokens['w1']}", "content-type": "application/json"}
        await client.post("/v1/usage", content=raw, headers=headers)
    code, out, err = await swarm(live, "kpi", "--json", home=tmp_path)
    assert code == 0, err
    assert json.loads(out)["spend_usd"] is not None
