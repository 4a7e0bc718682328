"""The runner's usage queue against a real brain on 127.0.0.1: a record the brain refuses for good (here, a task
the body never claimed; in life, a clock far ahead) is dropped with one line, and never holds back the others."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from agent_runner.runner import UsageQueue
from agent_runner.wallet import UsageRecord
from body_mcp.brain_client import BrainClient
from brain_server import BrainSettings
from brain_server.state import sqlite_url
from tests.brain.helpers import live_brain, registration

pytestmark = pytest.mark.anyio


def record(n: int, *, task_id: str | None = None) -> UsageRecord:
    return UsageRecord(
        id=f"use_queue_{n}",
        at=datetime.now(UTC),
        agent="w1",
        logic_version="lv-0123456789abcdef",
        task_id=task_id,
        provider="openai",
        model="gpt-test",
        input_tokens=100,
        output_tokens=10,
        cache_read_tokens=0,
        cache_write_tokens=0,
        usd=Decimal("0.01"),
        outcome="answered",
    )


async def test_a_record_the_brain_refuses_is_dropped_and_the_others_are_posted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"), durability="crash")
    async with live_brain(settings) as brain, brain.client() as api:
        token = await brain.add_token("agent-w1", agent="w1")
        assert (await api.post("/v1/bodies/register", registration("body-w1"), as_="agent-w1")).status_code == 200
        client = BrainClient(brain.url, token)
        try:
            queue = UsageQueue(client, "body-w1")
            for n, task_id in enumerate([None, "task_never_claimed", None, None]):
                await queue.put(record(n, task_id=task_id))
            await queue.flush()
            assert (queue.posted, queue.dropped) == (3, 1)
            await queue.put(record(9))
            await queue.flush()
            assert (queue.posted, queue.dropped) == (4, 1), "a later record is not held back"
        finally:
            await client.aclose()
        usage = (await api.get("/v1/usage", as_="captain")).json()
    err = capsys.readouterr().err
    assert "use_queue_1" in err and "never claimed" in err and err.count("\n") == 1, err
    assert usage["total"]["calls"] == 4, usage
