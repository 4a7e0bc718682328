"""`BrainLog`, `KillStore` and `BodyStore` on every engine: the log keeps order, the kill switch starts released,
a body keeps its first registration."""

from __future__ import annotations

from datetime import timedelta

import pytest

from brain_server.state import LogEntry, StateEngine
from shared_protocol.brain import KillState

from .records import NOW, body, entry

pytestmark = pytest.mark.anyio


async def test_the_log_gives_its_newest_entries_oldest_first(engine: StateEngine) -> None:
    assert await engine.log_entries() == []
    for n in range(5):
        await engine.append_log(entry("page", reason=f"page {n}", at=NOW + timedelta(seconds=n)))
    assert [e.reason for e in await engine.log_entries()] == [f"page {n}" for n in range(5)]
    assert [e.reason for e in await engine.log_entries(limit=2)] == ["page 3", "page 4"]
    (first, *_) = await engine.log_entries()
    assert first == entry("page", reason="page 0", at=NOW), "stored whole: time, action, who, why"


async def test_a_log_entry_keeps_its_token_role_target_and_detail(engine: StateEngine) -> None:
    full = LogEntry(
        at=NOW,
        action="approve",
        by="alice",
        token_id="tok_1",
        role="approver",
        reason="ok",
        target="dec_1",
        detail={"n": 1, "nested": {"k": ["v"]}},
    )
    await engine.append_log(full)
    assert await engine.log_entries() == [full]


async def test_the_kill_switch_starts_released_and_keeps_what_was_set_with_its_log_line(engine: StateEngine) -> None:
    assert await engine.kill_state() == KillState(engaged=False)
    engaged = KillState(engaged=True, reason="runaway", by="alice", at=NOW)
    await engine.set_kill_state(engaged, entry("kill"))
    assert await engine.kill_state() == engaged
    await engine.set_kill_state(KillState(engaged=False, reason="fixed", by="alice", at=NOW), entry("resume"))
    assert (await engine.kill_state()).engaged is False
    assert [e.action for e in await engine.log_entries()] == ["kill", "resume"]


async def test_a_body_registers_again_keeping_its_first_registration_time(engine: StateEngine) -> None:
    await engine.upsert_body(body("body-b"))
    await engine.upsert_body(body("body-a"))
    later = NOW + timedelta(minutes=5)
    await engine.upsert_body(body("body-a", at=later, workspace="/elsewhere"))
    (a, b) = await engine.bodies()
    assert (a.body_id, b.body_id) == ("body-a", "body-b"), "by id"
    assert (a.workspace, a.registered_at, a.last_heartbeat) == ("/elsewhere", NOW, later)


async def test_a_heartbeat_touches_only_a_registered_body(engine: StateEngine) -> None:
    await engine.upsert_body(body("body-a"))
    later = NOW + timedelta(seconds=2)
    assert await engine.touch_body("body-a", later) is True
    assert await engine.touch_body("body-unknown", later) is False
    assert [(b.body_id, b.registered_at, b.last_heartbeat) for b in await engine.bodies()] == [("body-a", NOW, later)]


async def test_an_engine_whose_storage_works_reports_nothing_broken(engine: StateEngine) -> None:
    await engine.upsert_body(body("body-a"))
    await engine.set_kill_state(KillState(engaged=True, reason="drill", by="alice", at=NOW), entry("kill"))
    assert await engine.bodies() and engine.broken is None


async def test_a_body_that_deregisters_is_gone_until_it_registers_again(engine: StateEngine) -> None:
    await engine.upsert_body(body("body-a"))
    later = NOW + timedelta(seconds=30)
    assert await engine.deregister_body("body-a", at=later, log=entry("body_deregister")) is True
    assert await engine.deregister_body("body-unknown", at=later, log=entry("body_deregister")) is False
    assert [e.action for e in await engine.log_entries()] == ["body_deregister"]
    (gone,) = await engine.bodies()
    assert gone.left_at == later
    assert not await engine.touch_body("body-a", later + timedelta(seconds=1)), "told to register again"
    (still,) = await engine.bodies()
    assert (still.left_at, still.last_heartbeat) == (later, NOW), "a late heartbeat does not bring it back"
    await engine.upsert_body(body("body-a", at=later + timedelta(seconds=2)))
    (back,) = await engine.bodies()
    assert (back.left_at, back.registered_at) == (None, NOW)
