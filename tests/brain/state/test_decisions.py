"""`DecisionStore` on every engine: a decision changes only from the state its writer saw; a retried question is
the same decision."""

from __future__ import annotations

from datetime import timedelta

import pytest

from brain_server.state import StateEngine

from .records import LATER, NOW, decision, entry

pytestmark = pytest.mark.anyio


async def test_a_decision_is_stored_whole_with_its_log_line(engine: StateEngine) -> None:
    asked = decision(1)
    assert await engine.insert_decision(asked, entry("decision_create")) == asked
    assert await engine.decision("dec_1") == asked
    assert await engine.decision("dec_unknown") is None
    assert [e.action for e in await engine.log_entries()] == ["decision_create"]


async def test_a_decision_is_replaced_only_from_the_state_its_writer_saw(engine: StateEngine) -> None:
    await engine.insert_decision(decision(1), entry("decision_create"))
    approved = decision(1, state="approved")
    assert await engine.replace_decision(approved, expected="pending", log=entry("approve")) is not None
    denied = decision(1, state="denied")
    assert await engine.replace_decision(denied, expected="pending", log=entry("deny")) is None
    assert await engine.decision("dec_1") == approved
    assert await engine.replace_decision(decision(2), expected="pending", log=entry("deny")) is None
    assert [e.action for e in await engine.log_entries()] == ["decision_create", "approve"]


async def test_pending_decisions_are_due_at_their_deadline_and_counted_until_then(engine: StateEngine) -> None:
    await engine.insert_decision(decision(1, deadline=timedelta(minutes=30)), entry("decision_create"))
    await engine.insert_decision(decision(2, deadline=timedelta(minutes=10)), entry("decision_create"))
    await engine.insert_decision(decision(3, deadline=timedelta(hours=2)), entry("decision_create"))
    await engine.insert_decision(decision(4, state="approved", deadline=timedelta(0)), entry("decision_create"))
    assert await engine.due_decisions(NOW) == []
    assert await engine.count_pending_decisions(NOW) == 3
    due = await engine.due_decisions(NOW + timedelta(minutes=30))
    assert sorted(d.id for d in due) == ["dec_1", "dec_2"], "at its deadline; never an answered one"
    assert await engine.count_pending_decisions(NOW + timedelta(minutes=30)) == 1


async def test_a_retried_question_returns_the_pending_decision_and_writes_nothing(engine: StateEngine) -> None:
    first = decision(1)
    await engine.insert_decision(first, entry("decision_create"))
    retry = decision(2, created_at=NOW + timedelta(minutes=1))
    assert await engine.insert_decision(retry, entry("decision_create"), reuse_pending=True) == first
    assert await engine.decision("dec_2") is None
    other = decision(3, created_at=NOW + timedelta(minutes=1), summary="something else")
    assert await engine.insert_decision(other, entry("decision_create"), reuse_pending=True) == other
    elsewhere = decision(4, created_at=NOW + timedelta(minutes=1), body_id="body-b")
    assert await engine.insert_decision(elsewhere, entry("decision_create"), reuse_pending=True) == elsewhere
    too_late = decision(5, created_at=LATER)
    assert await engine.insert_decision(too_late, entry("decision_create"), reuse_pending=True) == too_late, "due"
    assert await engine.insert_decision(decision(6), entry("decision_create")) == decision(6), "without reuse"
    assert [e.action for e in await engine.log_entries()].count("decision_create") == 5
