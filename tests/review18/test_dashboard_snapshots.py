"""Review 18: the pages' 2 s snapshots (`dashboard.snapshots`), the paged task list and `GET /v1/usage?by_task=false`.

Fixed here (plain tests): a kill read by a page between its publication and its commit stayed in that page read's
snapshot after the commit; a wall clock stepped back kept a snapshot answering until it caught up; the snapshot cache
kept every distinct query asked within 2 s; a huge `offset` (SQLite: OverflowError) and a limit, offset or since_s of
over 4,300 digits (`int`: ValueError) made a 500; a parameter sent twice was taken silently (the last one).
What held: a logged-out session or a revoked token's session is refused before any snapshot; each query is its own
snapshot; the running usage totals equal the records' sums; an error is not kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import anyio
import httpx
import pytest

from brain_server import Brain, build_app, issue_token, revoke_token
from brain_server.dashboard.snapshots import MAX_KEPT_BYTES, SNAPSHOT_S
from brain_server.exceptions import InvalidRequest
from brain_server.shared_reads import MAX_KEPT, SharedReads
from shared_protocol.brain import UsageBatch, UsageRecord
from tests.brain.helpers import Clock, ok
from tests.dashboard.test_sessions import ORIGIN, changes, login, token

pytestmark = pytest.mark.anyio


@pytest.fixture
async def web(brain: Brain) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(brain)), base_url=ORIGIN) as client:
        yield client


def llm_call(n: int, *, agent: str = "w1", task_id: str | None = None, usd: float = 0.1) -> UsageRecord:
    return UsageRecord(
        id=f"use_{n}",
        at=datetime(2030, 1, 1, tzinfo=UTC),
        agent=agent,
        logic_version="lv-1",
        provider="openai",
        model=f"m{n % 3}",
        input_tokens=100 + n,
        output_tokens=10,
        usd=usd,
        task_id=task_id,
    )


async def test_a_kill_read_by_a_page_before_its_commit_is_engaged_on_every_page_read_after_it(
    brain: Brain, web: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (fixed: `Brain.status` answered the database's kill state, which a kill published but not yet committed is not;
    # a page's read in between kept "not engaged" in its snapshot under the key after the kill's event, so every
    # page read for 2 s after the commit said the kill was off)
    captain = await token(brain, "captain")
    await login(web, captain)
    assert ok(await web.get("/v1/status"))["kill"]["engaged"] is False
    commit = anyio.Event()
    set_kill_state = brain.state.set_kill_state

    async def held(*args: object, **kwargs: object) -> None:
        await commit.wait()  # (the writers queued ahead of the kill: its commit waits behind them)
        await set_kill_state(*args, **kwargs)  # pyright: ignore[reportArgumentType]

    monkeypatch.setattr(brain.state, "set_kill_state", held)
    published = brain.hub.published
    during: bool | None = None
    async with anyio.create_task_group() as group:

        async def kill() -> None:
            bearer = {"Authorization": f"Bearer {captain}"}
            ok(await web.post("/v1/kill", json={"reason": "drill"}, headers=bearer))

        group.start_soon(kill)
        with anyio.fail_after(5):
            while brain.hub.published == published:
                await anyio.sleep(0.001)
        # A page whose poll falls between the kill's event and its commit (its snapshot: what the next pages read).
        during = ok(await web.get("/v1/status"))["kill"]["engaged"]
        commit.set()
    assert (await brain.state.kill_state()).engaged
    assert ok(await web.get("/v1/status"))["kill"]["engaged"] is True, "the page shows the kill after its commit"
    assert during is True, "a kill being committed is engaged, as the bodies' heartbeats are answered"


async def test_an_agent_paused_or_resumed_while_the_kill_is_engaged_is_shown_to_the_next_page_read(
    brain: Brain, web: httpx.AsyncClient
) -> None:
    # (fixed: a pause or resume under an engaged kill publishes no event, its bodies being stopped already, so the
    # pages' status snapshot from before it kept answering for up to 2 s)
    await issue_token(brain.state, role="body", label="w1-body", agent="w1", at=brain.now())
    session = await login(web, await token(brain, "captain"))
    ok(await web.post("/v1/kill", json={"reason": "drill"}, headers=changes(session)))
    assert ok(await web.get("/v1/status"))["paused_agents"] == []
    ok(await web.post("/v1/agents/w1/pause", json={"reason": "odd"}, headers=changes(session)), 201)
    assert [p["agent"] for p in ok(await web.get("/v1/status"))["paused_agents"]] == ["w1"]
    ok(await web.post("/v1/agents/w1/resume", json={"reason": "fine"}, headers=changes(session)))
    assert ok(await web.get("/v1/status"))["paused_agents"] == []


async def test_a_wall_clock_stepped_back_does_not_keep_a_snapshot_answering(
    brain: Brain, clock: Clock, web: httpx.AsyncClient
) -> None:
    # (fixed: the age was `now - taken`, negative after a step back, so below 2 s until the clock caught up: an
    # hour's step back kept a page's usage, tasks claimed, bodies' heartbeats an hour old)
    await login(web, await token(brain, "approver"))
    assert ok(await web.get("/v1/usage"))["total"]["calls"] == 0
    await brain.state.record_usage("body-a", [llm_call(1)])
    clock.now -= 3600
    assert ok(await web.get("/v1/usage"))["total"]["calls"] == 1
    clock.advance(SNAPSHOT_S + 1)
    assert ok(await web.get("/v1/usage"))["total"]["calls"] == 1


async def test_the_snapshots_kept_are_bounded_however_many_distinct_queries_are_asked() -> None:
    # (fixed: the key is the query string as sent, so `?x=1`, `?x=2`, ... within 2 s were all kept, each a whole
    # reply: an unpaged task list is megabytes)
    reads = SharedReads[str, bytes](max_age_s=SNAPSHOT_S, clock=lambda: 100.0)
    for n in range(MAX_KEPT * 4):
        assert await reads.read(f"/v1/tasks?x={n}", partial(_reply, n)) == b"%d" % n
        assert reads.kept <= MAX_KEPT
    # The newest are still kept: a page's next poll of them is answered without a computation.
    assert await reads.read(f"/v1/tasks?x={MAX_KEPT * 4 - 1}", lambda: _reply(-1)) == b"%d" % (MAX_KEPT * 4 - 1)


async def test_the_snapshots_kept_are_bounded_in_bytes_and_a_huge_reply_is_not_kept() -> None:
    # (fixed: 256 replies of an unpaged task list, megabytes each, were still gigabytes: `MAX_KEPT_BYTES`)
    reads = SharedReads[str, bytes](max_age_s=SNAPSHOT_S, clock=lambda: 100.0, weigh=len, max_weight=100)
    for n in range(20):
        await reads.read(f"q{n}", lambda: _sized(30))
        assert reads.weight <= 100 and reads.weight == 30 * reads.kept
    computed: list[int] = []

    async def huge() -> bytes:
        computed.append(1)
        return b"x" * 200

    for _ in range(2):
        assert await reads.read("huge", huge) == b"x" * 200
    assert len(computed) == 2 and reads.weight <= 100
    assert MAX_KEPT_BYTES <= 64 * 1024 * 1024


async def _sized(n: int) -> bytes:
    return b"y" * n


async def _reply(n: int) -> bytes:
    return b"%d" % n


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=-1", "limit"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("limit=", "limit"),
        ("limit=%EF%BC%95", "limit"),  # (a fullwidth 5)
        ("limit=" + "1" * 5000, "limit"),
        ("limit=5&limit=10", "limit"),
        ("limit=5&offset=-1", "offset"),
        ("limit=5&offset=x", "offset"),
        ("limit=5&offset=99999999999999999999", "offset"),
        ("limit=5&offset=9223372036854775808", "offset"),
        ("limit=5&offset=" + "1" * 5000, "offset"),
        ("limit=5&offset=1&offset=2", "offset"),
        ("offset=5", "offset"),
    ],
)
async def test_bad_limit_or_offset_is_a_422_naming_it_on_both_engines(
    brain: Brain, web: httpx.AsyncClient, query: str, field: str
) -> None:
    # (fixed: a huge offset was a 500 on SQLite, over 4,300 digits a 500 on both; twice was taken as the last)
    await login(web, await token(brain, "approver"))
    for headers in ({}, {"Authorization": f"Bearer {await token(brain, 'approver')}"}):
        reply = await web.get(f"/v1/tasks?{query}", headers=headers)
        assert reply.status_code == 422, (query, reply.text)
        assert reply.json()["field"] == field and field in reply.json()["message"]


@pytest.mark.parametrize(
    "query", ["by_task=yes", "by_task=1", "by_task=", "by_task=False", "by_task=true&by_task=false"]
)
async def test_bad_by_task_is_a_422_naming_it(brain: Brain, web: httpx.AsyncClient, query: str) -> None:
    await login(web, await token(brain, "approver"))
    reply = await web.get(f"/v1/usage?{query}")
    assert reply.status_code == 422, (query, reply.text)
    assert reply.json()["field"] == "by_task"


async def test_a_huge_since_s_is_a_422_not_a_500(brain: Brain, web: httpx.AsyncClient) -> None:
    # (fixed in passing: the same `int` of over 4,300 digits in `GET /v1/kpi`)
    await login(web, await token(brain, "approver"))
    reply = await web.get("/v1/kpi?since_s=" + "9" * 5000)
    assert reply.status_code == 422 and reply.json()["field"] == "since_s"


async def test_pages_of_the_task_list_are_the_newest_after_the_offset_and_each_query_its_own_snapshot(
    brain: Brain, web: httpx.AsyncClient
) -> None:
    session = await login(web, await token(brain, "captain"))
    ids = [
        ok(await web.post("/v1/tasks", json={"title": f"t{n}"}, headers=changes(session)), 201)["id"] for n in range(5)
    ]
    first = ok(await web.get("/v1/tasks?limit=2"))
    assert [t["id"] for t in first["tasks"]] == ids[3:] and first["total"] == 5
    assert [t["id"] for t in ok(await web.get("/v1/tasks?limit=2&offset=2"))["tasks"]] == ids[1:3]
    assert [t["id"] for t in ok(await web.get("/v1/tasks?limit=2&offset=4"))["tasks"]] == ids[:1]
    past = ok(await web.get("/v1/tasks?limit=2&offset=9"))
    assert past["tasks"] == [] and past["total"] == 5
    assert ok(await web.get("/v1/tasks?state=claimed&limit=2"))["total"] == 0
    assert ok(await web.get("/v1/tasks?limit=3"))["total"] == 5
    assert "total" not in ok(await web.get("/v1/tasks"))
    assert ok(await web.get("/v1/tasks?state=queued&limit=2"))["total"] == 5
    assert ok(await web.get("/v1/decisions?state=pending")) == []


async def test_a_logged_out_or_revoked_session_is_refused_though_its_read_is_kept(
    brain: Brain, web: httpx.AsyncClient
) -> None:
    # (the session is checked before the snapshot is looked at: its cookie replayed after logout, or a session of a
    # revoked token, is refused while the same read is kept for the others of the role)
    session = await login(web, await token(brain, "approver"))
    cookie = {"Cookie": f"swarm_session={web.cookies['swarm_session']}"}
    ok(await web.get("/v1/status"))
    assert (await web.delete("/session", headers=changes(session))).status_code == 204
    assert "swarm_session" not in web.cookies
    assert (await web.get("/v1/status", headers=cookie)).status_code == 401
    second = await token(brain, "approver", "second")
    await login(web, second)
    ok(await web.get("/v1/status"))
    record = next(t for t in await brain.state.tokens() if t.label == "second")
    await revoke_token(brain.state, record.id, reason="left", at=brain.now())
    assert (await web.get("/v1/status")).status_code == 401


async def test_the_running_usage_totals_equal_the_records_sums_on_both_engines(
    brain: Brain, web: httpx.AsyncClient
) -> None:
    # (counts and tokens exactly; dollars to the last bits only, as `running_totals` says: sums in another order)
    records = [
        llm_call(n, agent=f"w{n % 2}", task_id=f"t{n % 4}" if n % 5 else None, usd=0.1 + n / 7) for n in range(40)
    ]
    await brain.state.record_usage("body-a", records[:30])
    await brain.state.record_usage("body-a", records[20:])  # (10 resent: counted once)
    with pytest.raises(InvalidRequest, match="past the brain's clock"):  # (a future-dated record: none of its batch)
        future = llm_call(99).model_copy(update={"at": brain.now() + timedelta(days=1)})
        await brain.record_usage("body-a", UsageBatch(records=[llm_call(98), future]))
    bearer = {"Authorization": f"Bearer {await token(brain, 'approver')}"}
    for agent in ("", "&agent=w1", "&agent=nobody"):
        exact = ok(await web.get(f"/v1/usage?by_task=true{agent}", headers=bearer))
        running = ok(await web.get(f"/v1/usage?by_task=false{agent}", headers=bearer))
        assert running["by_task"] == {}
        for part in ("by_agent", "by_model"):
            assert running[part].keys() == exact[part].keys()
        for got, want in _pairs(running, exact):
            assert {k: v for k, v in got.items() if k != "usd"} == {k: v for k, v in want.items() if k != "usd"}
            assert got["usd"] == pytest.approx(want["usd"], rel=1e-12)
    await login(web, await token(brain, "approver"))
    assert ok(await web.get("/v1/usage?by_task=false"))["total"]["calls"] == 40


def _pairs(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    pairs = [(a["total"], b["total"])]
    for part in ("by_agent", "by_model"):
        pairs += [(a[part][k], b[part][k]) for k in b[part]]
    return pairs


async def test_an_error_computing_a_snapshot_is_not_kept_for_the_next_page(
    brain: Brain, web: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await login(web, await token(brain, "approver"))
    count = brain.state.count_pending_decisions
    failures = [RuntimeError("the disk hiccuped")]

    async def once(*args: object) -> int:
        if failures:
            raise failures.pop()
        return await count(*args)  # pyright: ignore[reportArgumentType]

    monkeypatch.setattr(brain.state, "count_pending_decisions", once)
    with pytest.raises(RuntimeError):
        await web.get("/v1/status")
    assert ok(await web.get("/v1/status"))["kill"]["engaged"] is False
