"""`EscalationStore`, `AnswerTokenStore` and `InteractionStore` on every engine: written by compare-and-set, used
once, seen once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from brain_server.state import StateEngine

from .records import LATER, NOW, answer_token, entry, escalation

pytestmark = pytest.mark.anyio


async def test_an_escalation_starts_once_with_its_log_line(engine: StateEngine) -> None:
    started = escalation("alr_1")
    assert await engine.insert_escalation(started, entry("escalate")) is True
    assert await engine.insert_escalation(escalation("alr_1", next_at=None), entry("escalate")) is False
    assert await engine.escalation("alr_1") == started
    assert await engine.escalation("alr_unknown") is None
    assert [e.action for e in await engine.log_entries()] == ["escalate"]


async def test_an_escalation_is_replaced_only_by_its_next_version(engine: StateEngine) -> None:
    await engine.insert_escalation(escalation("alr_1"), entry("escalate"))
    first = escalation("alr_1").model_copy(update={"version": 1, "pages_sent": 1})
    assert await engine.replace_escalation(first) is True
    stale = escalation("alr_1").model_copy(update={"version": 1, "state": "resolved"})
    assert await engine.replace_escalation(stale, log=entry("acknowledge")) is False
    acked = first.model_copy(update={"version": 2, "state": "acknowledged"})
    assert await engine.replace_escalation(acked, log=entry("acknowledge")) is True
    assert await engine.escalation("alr_1") == acked
    assert await engine.replace_escalation(escalation("alr_2").model_copy(update={"version": 1})) is False
    assert [e.action for e in await engine.log_entries()] == ["escalate", "acknowledge"], "a log line only when given"


async def test_active_escalations_are_due_at_their_next_page_oldest_first(engine: StateEngine) -> None:
    later = NOW + timedelta(minutes=5)
    await engine.insert_escalation(escalation("alr_1", next_at=later), entry("escalate"))
    await engine.insert_escalation(escalation("alr_2", next_at=NOW), entry("escalate"))
    await engine.insert_escalation(escalation("alr_3", next_at=LATER), entry("escalate"))
    await engine.insert_escalation(escalation("alr_4", next_at=None), entry("escalate"))
    await engine.insert_escalation(escalation("alr_5", state="acknowledged", next_at=NOW), entry("escalate"))
    assert [e.id for e in await engine.due_escalations(later)] == ["alr_2", "alr_1"]
    assert await engine.due_escalations(NOW - timedelta(seconds=1)) == []


async def test_the_open_escalation_of_a_key_is_the_newest_active_or_acknowledged_since(engine: StateEngine) -> None:
    for n, state, minutes in ((1, "active", 0), (2, "acknowledged", 10), (3, "resolved", 20), (4, "active", 5)):
        created = NOW + timedelta(minutes=minutes)
        record = escalation(f"alr_{n}", state=state, dedup_key="breaker:body-a", created_at=created)
        await engine.insert_escalation(record, entry("escalate"))
    await engine.insert_escalation(escalation("alr_9", dedup_key="other", created_at=LATER), entry("escalate"))
    found = await engine.open_escalation("breaker:body-a", since=NOW)
    assert found is not None and found.id == "alr_2", "the resolved one is newer, but closed"
    assert await engine.open_escalation("breaker:body-a", since=NOW + timedelta(minutes=11)) is None
    assert await engine.open_escalation("unknown", since=NOW) is None


async def test_an_answer_token_is_used_once_and_never_after_it_expires(engine: StateEngine) -> None:
    await engine.add_answer_tokens([answer_token(1), answer_token(2, expires_at=NOW + timedelta(minutes=1))], now=NOW)
    assert await engine.answer_token("ans_1") == answer_token(1)
    assert await engine.answer_token("ans_unknown") is None
    used = await engine.use_answer_token("ans_1", NOW)
    assert used is not None and used.used_at == NOW
    assert await engine.answer_token("ans_1") == used
    assert await engine.use_answer_token("ans_1", NOW) is None, "once"
    assert await engine.use_answer_token("ans_2", NOW + timedelta(minutes=1)) is None, "expired"
    assert await engine.use_answer_token("ans_unknown", NOW) is None


async def test_adding_answer_tokens_drops_those_nobody_can_use_any_more(engine: StateEngine) -> None:
    await engine.add_answer_tokens([answer_token(1, expires_at=NOW + timedelta(minutes=1))], now=NOW)
    await engine.add_answer_tokens([answer_token(2)], now=NOW + timedelta(minutes=1))
    assert await engine.answer_token("ans_1") is None
    assert await engine.answer_token("ans_2") == answer_token(2)


async def test_an_interaction_is_seen_once_until_it_is_forgotten(engine: StateEngine) -> None:
    assert await engine.remember_interaction("int_1", NOW, forget_before=NOW - timedelta(minutes=5)) is True
    assert await engine.remember_interaction("int_1", NOW, forget_before=NOW - timedelta(minutes=5)) is False
    assert await engine.remember_interaction("int_2", NOW, forget_before=NOW - timedelta(minutes=5)) is True
    later = NOW + timedelta(minutes=10)
    assert await engine.remember_interaction("int_1", later, forget_before=later - timedelta(minutes=5)) is True
