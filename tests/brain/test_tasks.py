"""Tasks: queued by humans, claimed once under a lease, finished with the current claim token only."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import anyio
import pytest

from brain_server import Brain

from .helpers import BrainClient, Clock, ok, refused

pytestmark = pytest.mark.anyio


async def queue(api: BrainClient, title: str, value_usd: float = 0.0) -> dict[str, Any]:
    return ok(
        await api.post("/v1/tasks", {"title": title, "description": "d", "value_usd": value_usd}, as_="approver"), 201
    )


async def claim(api: BrainClient, agent: str = "claude", body_id: str = "body-a") -> dict[str, Any]:
    return ok(await api.post("/v1/tasks/claim", {"body_id": body_id, "agent": agent}, as_="body"))


async def test_a_claimed_task_carries_a_token_and_a_lease(api: BrainClient, brain: Brain) -> None:
    created = await queue(api, "fix the flaky test")
    assert (created["state"], created["created_by"], created["attempts"]) == ("queued", "approver-1", 0)
    claimed = await claim(api)
    task = claimed["task"]
    assert isinstance(task, dict)
    assert (task["id"], task["state"], task["attempts"]) == (created["id"], "claimed", 1)
    assert task["claimed_by"] == {"body_id": "body-a", "agent": "claude"}
    assert claimed["lease_s"] == brain.settings.lease_s == 300
    assert str(claimed["claim_token"]).startswith("clm_")
    assert (await claim(api))["task"] is None


async def test_the_most_valuable_task_is_claimed_first_then_the_oldest(api: BrainClient) -> None:
    for title, value in (("cheap", 1.0), ("rich", 500.0), ("also cheap", 1.0)):
        await queue(api, title, value)
    titles: list[str] = []
    for _ in range(3):
        titles.append((await claim(api))["task"]["title"])
    assert titles == ["rich", "cheap", "also cheap"]


async def test_an_outcome_finishes_the_task(api: BrainClient) -> None:
    await queue(api, "t")
    claimed = await claim(api)
    task_id = claimed["task"]["id"]
    finished = ok(
        await api.post(
            f"/v1/tasks/{task_id}/outcome",
            {"claim_token": claimed["claim_token"], "outcome": "succeeded", "summary": "done, tests green"},
            as_="body",
        )
    )
    assert (finished["state"], finished["outcome_summary"]) == ("succeeded", "done, tests green")
    assert finished["lease_expires"] is None and finished["finished_at"] is not None
    again = {"claim_token": claimed["claim_token"], "outcome": "failed", "summary": "late"}
    refused(await api.post(f"/v1/tasks/{task_id}/outcome", again, as_="body"), 409, "stale_claim")


async def test_an_outcome_with_a_wrong_token_is_refused_and_changes_nothing(api: BrainClient, brain: Brain) -> None:
    await queue(api, "t")
    task_id = (await claim(api))["task"]["id"]
    body = {"claim_token": "clm_forged", "outcome": "succeeded", "summary": "s"}
    refused(await api.post(f"/v1/tasks/{task_id}/outcome", body, as_="body"), 409, "stale_claim")
    task = await brain.state.task(str(task_id))
    assert task is not None and task.state == "claimed"
    refused(await api.post("/v1/tasks/task_nope/outcome", body, as_="body"), 404, "not_found")
    bad = {"claim_token": "clm_x", "outcome": "sort of", "summary": "s"}
    assert (
        refused(await api.post(f"/v1/tasks/{task_id}/outcome", bad, as_="body"), 422, "invalid_request")["field"]
        == "outcome"
    )


async def test_an_expired_lease_requeues_the_task_and_the_old_claimant_is_stale(
    api: BrainClient, brain: Brain, clock: Clock
) -> None:
    await queue(api, "t")
    first = await claim(api, agent="agent-1")
    clock.advance(299)
    assert (await brain.sweep()).requeued == []
    clock.advance(1)
    assert (await brain.sweep()).requeued == [first["task"]["id"]]
    assert ok(await api.get("/v1/status", as_="captain"))["queued_tasks"] == 1
    second = await claim(api, agent="agent-2")
    assert second["task"]["attempts"] == 2
    late = {"claim_token": first["claim_token"], "outcome": "succeeded", "summary": "I finished it"}
    refused(await api.post(f"/v1/tasks/{first['task']['id']}/outcome", late, as_="body"), 409, "stale_claim")
    current = {"claim_token": second["claim_token"], "outcome": "succeeded", "summary": "done"}
    assert ok(await api.post(f"/v1/tasks/{second['task']['id']}/outcome", current, as_="body"))["state"] == "succeeded"
    requeues = [e for e in await brain.state.log_entries() if e.action == "task_requeue"]
    assert [(e.by, e.detail.get("agent")) for e in requeues] == [("lease", "agent-1")]


async def test_a_claim_requeues_expired_leases_without_waiting_for_the_sweep(api: BrainClient, clock: Clock) -> None:
    await queue(api, "t")
    await claim(api, agent="agent-1")
    clock.advance(301)
    assert (await claim(api, agent="agent-2"))["task"] is not None


async def test_no_task_is_handed_out_while_the_kill_switch_is_engaged(api: BrainClient) -> None:
    await queue(api, "t")
    ok(await api.post("/v1/kill", {"reason": "stop"}, as_="captain"))
    assert await claim(api) == {"task": None, "claim_token": None, "lease_s": None}
    ok(await api.post("/v1/resume", {"reason": "go"}, as_="captain"))
    assert (await claim(api))["task"] is not None


async def test_concurrent_claimers_never_get_the_same_task(api: BrainClient) -> None:
    for n in range(40):
        await queue(api, f"task {n}")
    won: dict[str, list[str]] = {}

    async def claimer(agent: str) -> None:
        mine = won.setdefault(agent, [])
        while (task := (await claim(api, agent=agent))["task"]) is not None:
            mine.append(task["id"])

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            for n in range(8):
                group.start_soon(claimer, f"agent-{n}")
    every = [task_id for ids in won.values() for task_id in ids]
    assert len(every) == 40 and len(set(every)) == 40


async def test_renewing_a_lease_keeps_the_task_past_its_first_lease(
    api: BrainClient, brain: Brain, clock: Clock
) -> None:
    await queue(api, "long work")
    claimed = await claim(api)
    task_id, token = claimed["task"]["id"], claimed["claim_token"]
    for _ in range(3):  # 900 s of work on a 300 s lease, renewed every 200 s... and then some
        clock.advance(200)
        renewed = ok(await api.post(f"/v1/tasks/{task_id}/renew", {"claim_token": token}, as_="body"))
        assert renewed["lease_s"] == 300 and renewed["task"]["state"] == "claimed"
        expires = datetime.fromisoformat(str(renewed["task"]["lease_expires"]).replace("Z", "+00:00"))
        assert expires == brain.now() + timedelta(seconds=300)
    clock.advance(299)
    await brain.sweep()
    assert (await claim(api))["task"] is None, "still held: not requeued"
    done = {"claim_token": token, "outcome": "succeeded", "summary": "finished after 15 minutes"}
    assert ok(await api.post(f"/v1/tasks/{task_id}/outcome", done, as_="body"))["state"] == "succeeded"


async def test_a_lease_that_ran_out_cannot_be_renewed_back(api: BrainClient, brain: Brain, clock: Clock) -> None:
    await queue(api, "t")
    claimed = await claim(api)
    task_id, token = claimed["task"]["id"], claimed["claim_token"]
    clock.advance(300)  # the sweep has not run yet: the renewal requeues it first, and is then stale
    refused(await api.post(f"/v1/tasks/{task_id}/renew", {"claim_token": token}, as_="body"), 409, "stale_claim")
    task = await brain.state.task(str(task_id))
    assert task is not None and task.state == "queued"


async def test_a_renewal_with_a_wrong_token_or_for_a_missing_task_changes_nothing(
    api: BrainClient, brain: Brain
) -> None:
    await queue(api, "t")
    claimed = await claim(api)
    task_id = claimed["task"]["id"]
    before = await brain.state.task(str(task_id))
    refused(await api.post(f"/v1/tasks/{task_id}/renew", {"claim_token": "clm_forged"}, as_="body"), 409, "stale_claim")
    refused(await api.post("/v1/tasks/task_nope/renew", {"claim_token": "clm_x"}, as_="body"), 404, "not_found")
    missing = refused(await api.post(f"/v1/tasks/{task_id}/renew", {}, as_="body"), 422, "invalid_request")
    assert missing["field"] == "claim_token"
    refused(await api.post(f"/v1/tasks/{task_id}/renew", {"claim_token": "x"}, as_="approver"), 403, "forbidden")
    assert await brain.state.task(str(task_id)) == before


async def _create_with_key(api: BrainClient, key: str, body: dict[str, Any], as_: str = "approver") -> Any:
    return await api.client.post("/v1/tasks", json=body, headers={**api.headers(as_), "Idempotency-Key": key})


async def test_a_retried_creation_with_its_idempotency_key_returns_the_first_task(
    api: BrainClient, brain: Brain
) -> None:
    body = {"title": "migrate the billing db", "description": "d", "value_usd": 10.0}
    first = ok(await _create_with_key(api, "create-billing-1", body), 201)
    again = ok(await _create_with_key(api, "create-billing-1", body), 200)
    assert again == first
    assert (await brain.state.count_tasks()).get("queued") == 1
    assert [e.action for e in await brain.state.log_entries()].count("task_create") == 1
    # Another key, no key, or the same key from another token: new tasks.
    assert ok(await _create_with_key(api, "create-billing-2", body), 201)["id"] != first["id"]
    assert ok(await api.post("/v1/tasks", body, as_="approver"), 201)["id"] != first["id"]
    assert ok(await _create_with_key(api, "create-billing-1", body, as_="captain"), 201)["id"] != first["id"]


async def test_an_idempotency_key_reused_for_another_request_is_409_and_changes_nothing(
    api: BrainClient, brain: Brain
) -> None:
    ok(await _create_with_key(api, "k1", {"title": "a"}), 201)
    before = await brain.state.count_tasks()
    refused(await _create_with_key(api, "k1", {"title": "b"}), 409, "idempotency_key_reused")
    for bad in ("", "x" * 256, "has space"):
        response = await _create_with_key(api, bad, {"title": "c"})
        assert refused(response, 422, "invalid_request")["field"] == "Idempotency-Key"
    assert await brain.state.count_tasks() == before


async def test_concurrent_retries_with_one_idempotency_key_create_one_task(api: BrainClient, brain: Brain) -> None:
    statuses: list[int] = []

    async def create() -> None:
        statuses.append((await _create_with_key(api, "burst", {"title": "once"})).status_code)

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(create)
    assert sorted(statuses) == [200] * 7 + [201]
    assert (await brain.state.count_tasks()).get("queued") == 1


async def test_a_task_keeps_its_setup_and_a_setup_of_several_lines_is_refused(api: BrainClient) -> None:
    setup = "uv sync --frozen"
    created = ok(await api.post("/v1/tasks", {"title": "t", "setup": setup}, as_="approver"), 201)
    assert created["setup"] == setup
    assert ok(await api.get(f"/v1/tasks/{created['id']}", as_="approver"))["setup"] == setup
    assert ok(await api.post("/v1/tasks", {"title": "u"}, as_="approver"), 201)["setup"] == ""
    bad = await api.post("/v1/tasks", {"title": "v", "setup": "uv sync\ncurl evil"}, as_="approver")
    assert refused(bad, 422, "invalid_request")["field"] == "setup"
    assert len(ok(await api.get("/v1/tasks", as_="approver"))["tasks"]) == 2


async def test_a_page_of_the_task_list_is_its_newest_after_an_offset_with_how_many_the_list_holds(
    api: BrainClient,
) -> None:
    ids = [(await queue(api, f"task {n}"))["id"] for n in range(5)]
    claimed = (await claim(api))["task"]
    assert isinstance(claimed, dict)

    def page(query: str) -> tuple[list[str], int | None]:
        return [t["id"] for t in listed[query]["tasks"]], listed[query]["total"]

    queries = ["limit=2", "limit=2&offset=2", "limit=2&offset=4", "limit=2&offset=5", "state=queued&limit=3", ""]
    listed = {q: ok(await api.get(f"/v1/tasks?{q}", as_="approver")) for q in queries}
    assert page("limit=2") == (ids[3:], 5), "the newest two, oldest first"
    assert page("limit=2&offset=2") == (ids[1:3], 5)
    assert page("limit=2&offset=4") == (ids[:1], 5)
    assert page("limit=2&offset=5") == ([], 5)
    assert page("state=queued&limit=3") == ([i for i in ids if i != claimed["id"]][-3:], 4)
    assert [t["id"] for t in listed[""]["tasks"]] == ids and "total" not in listed[""], "without limit: as before"
    for query, field in [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"), ("offset=1", "offset")]:
        answer = refused(await api.get(f"/v1/tasks?{query}", as_="approver"), 422, "invalid_request")
        assert answer["field"] == field, query
    # A body's page holds the tasks it claimed only.
    own = ok(await api.get("/v1/tasks?limit=10", as_="body"))
    assert ([t["id"] for t in own["tasks"]], own["total"]) == ([claimed["id"]], 1)
