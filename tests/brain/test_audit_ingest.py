"""`POST /v1/audit`: idempotent by (body, seq); a gap or a broken link is refused, keeping the good prefix."""

from __future__ import annotations

import pytest

from brain_server import Brain

from .helpers import BrainClient, audit_chain, audit_event, batch, ok, refused

pytestmark = pytest.mark.anyio


async def stored_seqs(brain: Brain, body_id: str) -> list[int]:
    return [e.seq for e in await brain.state.audit_events(body_id)]


async def test_events_are_stored_in_order_and_acknowledged(api: BrainClient, brain: Brain) -> None:
    events = audit_chain("body-a", 5)
    assert ok(await api.post("/v1/audit", batch("body-a", events[:3]), as_="body")) == {"stored_through": 3}
    assert ok(await api.post("/v1/audit", batch("body-a", events[3:]), as_="body")) == {"stored_through": 5}
    assert await brain.state.audit_events("body-a") == events


async def test_resending_stored_events_stores_nothing_twice(api: BrainClient, brain: Brain) -> None:
    events = audit_chain("body-a", 6)
    ok(await api.post("/v1/audit", batch("body-a", events[:4]), as_="body"))
    assert ok(await api.post("/v1/audit", batch("body-a", events[:4]), as_="body")) == {"stored_through": 4}
    assert ok(await api.post("/v1/audit", batch("body-a", events[2:]), as_="body")) == {"stored_through": 6}
    assert ok(await api.post("/v1/audit", batch("body-a", []), as_="body")) == {"stored_through": 6}
    assert await stored_seqs(brain, "body-a") == [1, 2, 3, 4, 5, 6]


async def test_a_gap_is_refused_with_the_seq_to_resend_from(api: BrainClient, brain: Brain) -> None:
    events = audit_chain("body-a", 6)
    ok(await api.post("/v1/audit", batch("body-a", events[:2]), as_="body"))
    data = refused(await api.post("/v1/audit", batch("body-a", events[3:]), as_="body"), 409, "chain_gap")
    assert (data["expected_seq"], data["stored_through"]) == (3, 2)
    assert await stored_seqs(brain, "body-a") == [1, 2]


async def test_a_body_whose_older_events_were_pruned_before_it_was_linked_ships_from_its_first(
    api: BrainClient, brain: Brain
) -> None:
    kept = audit_chain("body-b", 5)[2:]  # seqs 1-2 pruned on the body before it ever shipped
    first = {**batch("body-b", kept[:2]), "log_start_seq": 3}
    assert ok(await api.post("/v1/audit", first, as_="body")) == {"stored_through": 4}
    assert ok(await api.post("/v1/audit", {**batch("body-b", kept), "log_start_seq": 3}, as_="body")) == {
        "stored_through": 5
    }
    assert await stored_seqs(brain, "body-b") == [3, 4, 5]
    forged = audit_event("body-b", 6, prev_mac="0" * 64)
    refused(await api.post("/v1/audit", batch("body-b", [forged]), as_="body"), 409, "chain_mismatch")


async def test_an_empty_chain_takes_no_first_batch_but_from_where_the_body_says_its_log_starts(
    api: BrainClient, brain: Brain
) -> None:
    events = audit_chain("body-c", 10)
    # A brain that lost this body's chain (or never had it) is sent 6-10 by a body that shipped 1-5 elsewhere.
    gap = refused(await api.post("/v1/audit", batch("body-c", events[5:]), as_="body"), 409, "chain_gap")
    assert (gap["expected_seq"], gap["stored_through"]) == (1, 0)
    claimed = {**batch("body-c", events[5:]), "log_start_seq": 4}
    refused(await api.post("/v1/audit", claimed, as_="body"), 409, "chain_gap")
    assert await stored_seqs(brain, "body-c") == []


async def test_a_gap_inside_a_batch_keeps_the_events_before_it_and_none_after(api: BrainClient, brain: Brain) -> None:
    events = audit_chain("body-a", 6)
    data = refused(
        await api.post("/v1/audit", batch("body-a", [*events[:3], events[4], events[5]]), as_="body"), 409, "chain_gap"
    )
    assert (data["expected_seq"], data["stored_through"]) == (4, 3)
    assert await stored_seqs(brain, "body-a") == [1, 2, 3]


async def test_an_event_that_does_not_link_to_the_stored_one_is_refused(api: BrainClient, brain: Brain) -> None:
    events = audit_chain("body-a", 4)
    ok(await api.post("/v1/audit", batch("body-a", events[:2]), as_="body"))
    forged = audit_event("body-a", 3, prev_mac="0" * 64)
    data = refused(await api.post("/v1/audit", batch("body-a", [forged, events[3]]), as_="body"), 409, "chain_mismatch")
    assert (data["expected_seq"], data["stored_through"]) == (3, 2)
    assert await stored_seqs(brain, "body-a") == [1, 2]
    assert ok(await api.post("/v1/audit", batch("body-a", events[2:]), as_="body")) == {"stored_through": 4}


async def test_a_resent_event_with_a_different_mac_is_a_mismatch(api: BrainClient, brain: Brain) -> None:
    events = audit_chain("body-a", 3)
    ok(await api.post("/v1/audit", batch("body-a", events), as_="body"))
    rewritten = audit_event("body-a", 2, prev_mac=events[0].mac, salt="edited")
    data = refused(await api.post("/v1/audit", batch("body-a", [rewritten]), as_="body"), 409, "chain_mismatch")
    assert data["expected_seq"] == 4
    assert await brain.state.audit_events("body-a") == events


async def test_chains_are_kept_per_body(api: BrainClient, brain: Brain) -> None:
    a, b = audit_chain("body-a", 3), audit_chain("body-b", 2)
    await api.add_token("body-b")
    ok(await api.post("/v1/audit", batch("body-a", a), as_="body"))
    assert ok(await api.post("/v1/audit", batch("body-b", b), as_="body-b")) == {"stored_through": 2}
    assert await stored_seqs(brain, "body-a") == [1, 2, 3]
    assert await stored_seqs(brain, "body-b") == [1, 2]


async def test_an_event_of_another_body_is_a_schema_error_and_nothing_is_stored(api: BrainClient, brain: Brain) -> None:
    events = [*audit_chain("body-a", 2), audit_chain("body-b", 3)[2]]
    data = refused(await api.post("/v1/audit", batch("body-a", events), as_="body"), 422, "invalid_request")
    assert data["field"] == "events.2.body_id"
    assert await stored_seqs(brain, "body-a") == []


async def test_a_malformed_event_names_the_field_and_nothing_is_stored(api: BrainClient, brain: Brain) -> None:
    body = batch("body-a", audit_chain("body-a", 2))
    del body["events"][1]["prev_mac"]
    data = refused(await api.post("/v1/audit", body, as_="body"), 422, "invalid_request")
    assert data["field"] == "events.1.prev_mac"
    assert await stored_seqs(brain, "body-a") == []
    response = await api.client.post("/v1/audit", content=b'{"body_id": ', headers=api.headers("body"))
    refused(response, 422, "invalid_json")
