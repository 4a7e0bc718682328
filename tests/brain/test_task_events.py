"""`task_available` and `task_cancelled` on the event stream, over real loopback HTTP: a waiting runner wakes when a
task is created, requeued or resumed, and hears at once that the task it works on was cancelled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url

from .helpers import LiveBrain, SseEvent, decision_request, live_brain, ok, sse_events

pytestmark = pytest.mark.anyio


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    # (leases of 1 s looked at every 0.1 s: a lease run out is requeued within 0.1 s of its end, not within 1 s)
    settings = BrainSettings(
        database_url=sqlite_url(tmp_path / "brain.db"), keepalive_s=0.2, lease_s=1, sweep_interval_s=0.1
    )
    async with live_brain(settings) as brain:
        yield brain


async def _next_task_event(events: AsyncIterator[SseEvent]) -> SseEvent:
    async for event in events:
        if event.name.startswith("task_"):
            return event
    raise AssertionError("the stream ended before a task event")


async def test_a_runner_hears_tasks_created_requeued_resumed_and_cancelled(live: LiveBrain) -> None:
    await live.add_token("w1", agent="w1")  # the runner of agent w1, with its own token
    async with live.client() as api:
        ok(
            await api.post(
                "/v1/bodies/register",
                {"body_id": "body-a", "workspace": "/w", "hostname": "h", "version": "1"},
                as_="w1",
            )
        )
        stream = api.client.stream("GET", "/v1/events", params={"body_id": "body-a"}, headers=api.headers("w1"))
        async with stream as response:
            events = sse_events(response)
            with anyio.fail_after(10):
                assert (await anext(events)).name == "resume"
                task = ok(await api.post("/v1/tasks", {"title": "t"}, as_="approver"), 201)
                assert await _next_task_event(events) == SseEvent(
                    name="task_available", data={"task_id": task["id"], "reason": "created"}
                )

                claim = {"body_id": "body-a", "agent": "w1", "mode": "shadow", "logic_version": "lv-1"}
                shadow = ok(await api.post("/v1/tasks/claim", claim, as_="w1"))
                outcome = {"claim_token": shadow["claim_token"], "outcome": "failed", "summary": "in the copy"}
                ok(await api.post(f"/v1/tasks/{task['id']}/outcome", outcome, as_="w1"))
                assert await _next_task_event(events) == SseEvent(
                    name="task_available", data={"task_id": task["id"], "reason": "requeued"}
                )

                again = {**claim, "logic_version": "lv-2"}
                claimed = ok(await api.post("/v1/tasks/claim", again, as_="w1"))
                token = claimed["claim_token"]
                decision = ok(
                    await api.post("/v1/decisions", decision_request("body-a", confidence=0.5, agent="w1"), as_="w1"),
                    201,
                )
                park = {"claim_token": token, "decision_id": decision["id"], "reason": "needs a human"}
                ok(await api.post(f"/v1/tasks/{task['id']}/park", park, as_="w1"))
                ok(await api.post(f"/v1/tasks/{task['id']}/resume", {"claim_token": token}, as_="w1"))
                assert await _next_task_event(events) == SseEvent(
                    name="task_available", data={"task_id": task["id"], "reason": "resumed"}
                )

                ok(await api.post(f"/v1/tasks/{task['id']}/cancel", {"reason": "not needed"}, as_="captain"))
                assert await _next_task_event(events) == SseEvent(
                    name="task_cancelled", data={"task_id": task["id"], "reason": "not needed", "by": "captain-1"}
                )


async def test_a_lease_that_runs_out_makes_the_task_available_again(live: LiveBrain) -> None:
    async with live.client() as api:
        ok(await api.post("/v1/tasks", {"title": "t"}, as_="approver"), 201)
        claimed = ok(await api.post("/v1/tasks/claim", {"body_id": "body-a", "agent": "w1"}, as_="body"))
        stream = api.client.stream("GET", "/v1/events", params={"body_id": "body-a"}, headers=api.headers("body"))
        async with stream as response:
            events = sse_events(response)
            with anyio.fail_after(10):
                # The daemon's sweeper requeues it once its 1 s lease has passed: nobody has to poll.
                assert await _next_task_event(events) == SseEvent(
                    name="task_available", data={"task_id": claimed["task"]["id"], "reason": "requeued"}
                )
