"""LLM usage over the API: bodies post records (idempotent by id), humans read every body's totals, a body its own."""

from __future__ import annotations

from typing import Any

import pytest

from brain_server import Brain

from .helpers import BrainClient, ok, refused

pytestmark = pytest.mark.anyio


def record(
    n: int, *, agent: str = "w1", task_id: str | None = None, model: str = "gpt", **changes: Any
) -> dict[str, Any]:
    return {
        "id": f"use_{agent}_{n}",
        "at": "2030-01-01T00:00:00Z",
        "agent": agent,
        "logic_version": "lv-1",
        "task_id": task_id,
        "provider": "openai",
        "model": model,
        "input_tokens": 1000,
        "output_tokens": 100,
        "cache_read_tokens": 10,
        "cache_write_tokens": 1,
        "usd": 0.25,
        "outcome": "answered",
        **changes,
    }


async def test_usage_is_idempotent_by_record_id_and_totalled_by_agent_task_and_model(api: BrainClient) -> None:
    await api.add_token("w1", agent="w1")  # agent w1's runner posts its usage with its own token
    await api.add_token("body-b", agent="w2")
    task_1, task_2 = [ok(await api.post("/v1/tasks", {"title": t}, as_="approver"), 201)["id"] for t in "ab"]
    for task_id in (task_1, task_2):
        ok(
            await api.post(
                "/v1/tasks/claim",
                {"body_id": "body-a", "agent": "w1", "task_id": task_id, "mode": "shadow", "logic_version": "lv-1"},
                as_="w1",
            )
        )
    mine = [record(1, task_id=task_1), record(2), record(3, task_id=task_2, model="claude")]
    assert ok(await api.post("/v1/usage", {"body_id": "body-a", "records": mine}, as_="w1")) == {
        "stored": 3,
        "duplicates": 0,
    }
    assert ok(await api.post("/v1/usage", {"records": mine[:2]}, as_="w1")) == {"stored": 0, "duplicates": 2}
    theirs = [record(1, agent="w2")]
    ok(await api.post("/v1/usage", {"body_id": "body-b", "records": theirs}, as_="body-b"))

    every = ok(await api.get("/v1/usage", as_="approver"))
    assert every["total"] == {
        "calls": 4,
        "usd": 1.0,
        "input_tokens": 4000,
        "output_tokens": 400,
        "cache_read_tokens": 40,
        "cache_write_tokens": 4,
    }
    assert {agent: t["calls"] for agent, t in every["by_agent"].items()} == {"w1": 3, "w2": 1}
    assert {task: t["calls"] for task, t in every["by_task"].items()} == {task_1: 1, task_2: 1}
    assert {model: t["usd"] for model, t in every["by_model"].items()} == {"gpt": 0.75, "claude": 0.25}
    own = ok(await api.get("/v1/usage", as_="w1"))
    assert own["total"]["calls"] == 3 and set(own["by_agent"]) == {"w1"}, "a body sees its own usage only"
    assert ok(await api.get("/v1/usage?agent=w2", as_="captain"))["total"]["calls"] == 1
    assert ok(await api.get(f"/v1/usage?task_id={task_2}", as_="captain"))["total"]["calls"] == 1
    # Without by_task (the dashboard's poll): the same totals from the running sums, by_task empty.
    assert ok(await api.get("/v1/usage?by_task=false", as_="approver")) == {**every, "by_task": {}}
    assert ok(await api.get("/v1/usage?by_task=false&agent=w2", as_="approver"))["by_agent"].keys() == {"w2"}
    assert ok(await api.get("/v1/usage?by_task=false", as_="w1")) == {**own, "by_task": {}}
    bad = refused(await api.get("/v1/usage?by_task=no", as_="approver"), 422, "invalid_request")
    assert bad["field"] == "by_task"


async def test_a_reused_record_id_or_another_bodys_name_is_refused_and_nothing_of_the_batch_is_kept(
    api: BrainClient, brain: Brain
) -> None:
    await api.add_token("w1", agent="w1")
    await api.add_token("body-b", agent="w1")
    await api.add_token("unbound", agent="w1")
    ok(await api.post("/v1/usage", {"body_id": "body-a", "records": [record(1)]}, as_="w1"))
    ok(
        await api.post(
            "/v1/bodies/register",
            {"body_id": "body-b", "workspace": "/w", "hostname": "h", "version": "1"},
            as_="body-b",
        )
    )
    changed = {"body_id": "body-a", "records": [record(2), record(1, usd=9.0)]}
    refused(await api.post("/v1/usage", changed, as_="w1"), 409, "idempotency_key_reused")
    refused(await api.post("/v1/usage", {"body_id": "body-b", "records": [record(5)]}, as_="w1"), 403, "forbidden")
    refused(await api.post("/v1/usage", {"records": [record(6)]}, as_="unbound"), 403, "forbidden")
    refused(await api.post("/v1/usage", {"records": [record(7)]}, as_="approver"), 403, "forbidden")
    bad = refused(await api.post("/v1/usage", {"records": [record(8, usd=-1)]}, as_="w1"), 422, "invalid_request")
    assert bad["field"] == "records.0.usd"
    bad = refused(
        await api.post("/v1/usage", {"records": [record(9, outcome="maybe")]}, as_="w1"), 422, "invalid_request"
    )
    assert bad["field"] == "records.0.outcome"
    too_many = {"records": [record(n) for n in range(1001)]}
    refused(await api.post("/v1/usage", too_many, as_="w1"), 422, "invalid_request")
    assert [r.id for r in await brain.state.usage()] == ["use_w1_1"]
