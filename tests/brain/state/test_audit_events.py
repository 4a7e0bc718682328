"""`AuditEventStore` on every engine: a body's chain grows only by linking, and retention keeps its newest event."""

from __future__ import annotations

from datetime import timedelta

import pytest

from brain_server.state import StateEngine

from ..helpers import audit_chain, audit_event
from .records import LATER, NOW, entry

pytestmark = pytest.mark.anyio


async def test_a_linked_batch_is_stored_per_body_and_read_back_in_seq_order(engine: StateEngine) -> None:
    chain = audit_chain("body-a", 5)
    appended = await engine.append_audit("body-a", chain[:3], at=NOW)
    assert (appended.stored_through, appended.stored, appended.problem) == (3, 3, None)
    assert (await engine.append_audit("body-a", chain[3:], at=NOW)).stored_through == 5
    await engine.append_audit("body-b", audit_chain("body-b", 2), at=NOW)
    assert await engine.audit_events("body-a") == chain
    assert await engine.audit_events("body-a", after_seq=2, limit=2) == chain[2:4]
    assert await engine.audit_events("body-b") == audit_chain("body-b", 2)
    assert await engine.audit_events("body-unknown") == []


async def test_a_resent_event_stores_nothing_and_a_gap_or_a_mismatch_stops_the_batch(engine: StateEngine) -> None:
    chain = audit_chain("body-a", 4)
    await engine.append_audit("body-a", chain[:2], at=NOW)
    again = await engine.append_audit("body-a", chain[:3], at=NOW)
    assert (again.stored, again.stored_through, again.problem) == (1, 3, None)

    gap = await engine.append_audit("body-a", [audit_event("body-a", 5, chain[3].mac)], at=NOW)
    assert gap.problem is not None and (gap.problem.kind, gap.problem.expected_seq, gap.stored) == ("gap", 4, 0)
    forged = audit_event("body-a", 4, "not-the-stored-mac")
    mismatch = await engine.append_audit("body-a", [forged], at=NOW)
    assert mismatch.problem is not None and (mismatch.problem.kind, mismatch.problem.seq) == ("mismatch", 4)
    assert await engine.audit_events("body-a") == chain[:3], "nothing past the first event that does not link"


async def test_a_chain_may_start_where_the_bodys_log_starts(engine: StateEngine) -> None:
    chain = audit_chain("body-a", 6)
    appended = await engine.append_audit("body-a", chain[3:], log_start_seq=4, at=NOW)
    assert (appended.stored_through, appended.problem) == (6, None)
    assert await engine.audit_events("body-a") == chain[3:]


async def test_pruning_deletes_events_received_before_the_cutoff_but_never_a_bodys_newest(engine: StateEngine) -> None:
    chain = audit_chain("body-a", 4)
    await engine.append_audit("body-a", chain[:3], at=NOW)
    await engine.append_audit("body-a", chain[3:], at=LATER)
    await engine.append_audit("body-b", audit_chain("body-b", 1), at=NOW)
    pruned = await engine.prune_audit(NOW + timedelta(minutes=1), entry("audit_prune"))
    assert pruned == {"body-a": 3}, "body-b's only event is its newest, and stays"
    assert await engine.audit_events("body-a") == chain[3:]
    (line,) = [e for e in await engine.log_entries() if e.action == "audit_prune"]
    assert line.detail["pruned"] == {"body-a": 3}

    assert await engine.prune_audit(NOW + timedelta(minutes=1), entry("audit_prune")) == {}
    assert [e.action for e in await engine.log_entries()].count("audit_prune") == 1, "nothing pruned, nothing logged"


async def test_after_pruning_a_resent_old_event_stores_nothing_and_the_chain_goes_on_linking(
    engine: StateEngine,
) -> None:
    chain = audit_chain("body-a", 4)
    await engine.append_audit("body-a", chain[:3], at=NOW)
    await engine.prune_audit(LATER, entry("audit_prune"))
    resent = await engine.append_audit("body-a", chain, at=LATER)
    assert (resent.stored, resent.stored_through, resent.problem) == (1, 4, None)
    assert await engine.audit_events("body-a") == chain[2:]
