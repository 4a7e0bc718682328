"""The dashboard's audit feed (`brain_server.dashboard.feed`): what is stored while pages are open is queued and sent
by the next flush, capped to what a page shows (the newest rows, the newest refusals and failures, a count of the
rest), encoded once for every open stream (not at all while none is open), redacted, many batches in one chunk; a
stream that does not read is cut off rather than held; a kill stored under a flood reaches the page whole."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence

import anyio
import pytest

from brain_server import Brain
from brain_server.auth import Principal
from brain_server.dashboard.feed import AUDIT_ROWS, ERROR_ROWS, AuditFeed, shown, sse_audit
from shared_protocol import AuditBatch, AuditEvent
from tests.brain.helpers import audit_chain, audit_event

pytestmark = pytest.mark.anyio


class _Counting:
    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, events: Sequence[AuditEvent]) -> bytes:
        self.batches.append(len(events))
        return sse_audit(events)


def _events(n: int, start: int = 1, *, refused: frozenset[int] = frozenset()) -> list[AuditEvent]:
    """Events of one body, seq `start` on; those whose seq is in `refused` were refused."""
    events = [audit_event("bdy_1", seq, f"m{seq - 1}") for seq in range(start, start + n)]
    return [
        e.model_copy(update={"outcome": "refused", "code": "kill_switch_engaged"}) if e.seq in refused else e
        for e in events
    ]


def _sent(chunk: bytes) -> tuple[int, list[int]]:
    """A chunk's `audit_skipped` count (0 without one) and the seqs of its audit events, in order."""
    skipped, seqs = 0, list[int]()
    for message in chunk.decode().split("\n\n"):
        if not message:
            continue
        name, data = message.split("\n")
        if name == "event: audit_skipped":
            skipped += json.loads(data.removeprefix("data: "))["skipped"]
        else:
            assert name == "event: audit", name
            seqs.append(json.loads(data.removeprefix("data: "))["seq"])
    return skipped, seqs


async def test_a_flush_is_encoded_once_for_every_open_stream_and_nothing_is_encoded_while_none_is_open() -> None:
    encode = _Counting()
    feed = AuditFeed(encode)
    feed.publish(_events(3))
    assert encode.batches == []  # (no page open: nothing encoded)
    with feed.subscribe() as first, feed.subscribe() as second:
        assert encode.batches == [3]  # (the backlog, encoded once for both pages)
        assert first.receive_nowait() is second.receive_nowait()
        feed.publish(_events(2, start=4))
        feed.publish(_events(1, start=6))
        assert encode.batches == [3]  # (queued: nothing encoded, nothing sent until the next flush)
        with pytest.raises(anyio.WouldBlock):
            first.receive_nowait()
        feed.flush()
        one, two = first.receive_nowait(), second.receive_nowait()
    assert encode.batches == [3, 3]
    assert one is two
    assert one.count(b"event: audit\n") == 3 and b'"seq":4' in one and b'"seq":6' in one
    backlog = feed.backlog()  # (what a page opening now is sent first: the six, oldest first)
    assert backlog.count(b"event: audit\n") == 6 and backlog.index(b'"seq":1') < backlog.index(b'"seq":6')


async def test_personal_data_tokens_are_redacted_in_the_batch() -> None:
    event = audit_event("bdy_1", 1, "m0").model_copy(
        update={"rationale": "mail [pii:email:s0123456789abcdef:AAAAbbbbCCCC] today"}
    )
    data = sse_audit([event])
    assert b"[pii:email]" in data and b"s0123456789abcdef" not in data and b"AAAAbbbbCCCC" not in data


async def test_the_page_is_not_sent_the_chain_fields_it_never_shows() -> None:
    event = audit_event("bdy_1", 1, "m0").model_copy(update={"attest": "a" * 64})
    data = json.loads(sse_audit([event]).split(b"data: ", 1)[1])
    assert not {"prev_mac", "mac", "attest"} & data.keys()
    assert data == event.model_dump(mode="json", exclude={"prev_mac", "mac", "attest"})


async def test_a_stream_that_does_not_read_is_cut_off_and_the_others_still_get_every_batch() -> None:
    feed = AuditFeed(buffer=2)
    with feed.subscribe() as idle, feed.subscribe() as reading:
        for seq in range(1, 5):
            feed.publish(_events(1, start=seq))
            feed.flush()
            assert b'"seq":%d' % seq in reading.receive_nowait()
        assert feed.subscribers == 1
        assert len([idle.receive_nowait(), idle.receive_nowait()]) == 2  # (what it had, then the end)
        with pytest.raises(anyio.EndOfStream):
            idle.receive_nowait()


async def test_a_storm_of_batches_goes_out_as_one_chunk_a_flush_and_a_page_opening_meanwhile_gets_each_event_once() -> (
    None
):
    encode = _Counting()
    feed = AuditFeed(encode)
    feed.publish(_events(1))
    with feed.subscribe() as first:
        assert b'"seq":1,' in first.receive_nowait()  # (the backlog)
        for seq in range(2, 52):  # (50 bodies' batches while a kill fans out: queued, nothing encoded or sent yet)
            feed.publish(_events(1, start=seq))
        assert encode.batches == [1]
        with pytest.raises(anyio.WouldBlock):
            first.receive_nowait()
        with feed.subscribe() as second:
            opened_with = second.receive_nowait()  # (its backlog: the one event from before the pages)
            feed.flush()
            chunks = [first.receive_nowait(), second.receive_nowait()]
            with pytest.raises(anyio.WouldBlock):
                first.receive_nowait()
    assert encode.batches == [1, 50]  # (the backlog's encoding, for both pages; then the flush's, for both)
    assert chunks[0] is chunks[1] and chunks[0].count(b"event: audit\n") == 50
    assert opened_with.count(b"event: audit\n") == 1 and b'"seq":1,' in opened_with
    assert b'"seq":1,' not in chunks[1]


async def test_the_running_feed_flushes_what_is_queued_without_being_asked() -> None:
    feed = AuditFeed(every_s=0.01)
    chunk = b""
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(feed.run)
            with feed.subscribe() as page:
                feed.publish(_events(2))
                chunk = await page.receive()
            group.cancel_scope.cancel()
    assert chunk.count(b"event: audit\n") == 2


async def test_a_flood_reaches_a_page_as_the_newest_rows_it_shows_and_a_count_of_the_rest() -> None:
    encode = _Counting()
    feed = AuditFeed(encode)
    with feed.subscribe() as page:
        feed.publish(_events(1000))
        feed.publish(_events(434, start=1001))
        feed.flush()
        assert _sent(page.receive_nowait()) == (1234, list(range(1235, 1435)))
        assert encode.batches == [AUDIT_ROWS]  # (what a flood costs the brain: the rows sent, not the flood)
        feed.publish(_events(3, start=1435))  # (the count is of each flush's own: a quiet flush sends all)
        feed.flush()
        assert _sent(page.receive_nowait()) == (0, [1435, 1436, 1437])
    assert _sent(feed.backlog()) == (0, list(range(1438 - AUDIT_ROWS, 1438)))


async def test_the_newest_refusals_and_failures_a_flush_would_leave_out_are_sent_with_the_rows() -> None:
    refused = frozenset(range(100, 170)) | {950}  # (70 long before the newest rows, one among them)
    feed = AuditFeed()
    with feed.subscribe() as page:
        feed.publish(_events(1000, refused=refused))
        feed.flush()
        skipped, seqs = _sent(page.receive_nowait())
    extra = list(range(170 - (ERROR_ROWS - 1), 170))  # (the Errors panel's newest: 950 is one of them)
    assert seqs == extra + list(range(801, 1001))
    assert skipped == 1000 - len(seqs)


def test_what_a_flush_sends_of_what_queued() -> None:
    few = _events(3)
    assert shown(few, rows=5, errors=2) == (few, 0)
    many = _events(10, refused=frozenset({2, 4, 9}))
    assert shown(many, rows=3, errors=0) == (many[7:], 7)
    assert shown(many, rows=3, errors=1) == (many[7:], 7)  # (seq 9 is among the newest: the panel has its one)
    assert shown(many, rows=3, errors=2) == ([many[3], *many[7:]], 6)
    assert shown(many, rows=3, errors=5) == ([many[1], many[3], *many[7:]], 5)


CAPTAIN = Principal(token_id="tok_c", role="captain", label="captain-1")


async def test_a_kill_stored_under_a_flood_reaches_an_open_page_whole(brain: Brain) -> None:
    """On every state engine: the page's two subscriptions (`DashboardStream`), bodies' batches through the brain."""
    chains = {body: audit_chain(body, 1500) for body in ("body-a", "body-b")}
    with brain.hub.subscribe(None) as events, brain.audit_feed.subscribe() as audits:
        for body, chain in chains.items():
            await brain.ingest_audit(AuditBatch(body_id=body, events=chain[:1000]))
        await brain.set_kill(CAPTAIN, engaged=True, reason="runaway")
        for body, chain in chains.items():
            await brain.ingest_audit(AuditBatch(body_id=body, events=chain[1000:]))
        kill = events.receive_nowait()  # (published at once, never queued behind the audit events)
        assert (kill.name, json.loads(kill.data)["engaged"]) == ("kill", True)
        brain.audit_feed.flush()
        chunks: list[tuple[int, list[int]]] = []  # (one, unless the brain's own flush came in between)
        with contextlib.suppress(anyio.WouldBlock):
            while True:
                chunks.append(_sent(audits.receive_nowait()))
    assert all(len(seqs) <= AUDIT_ROWS for _, seqs in chunks)
    assert sum(skipped + len(seqs) for skipped, seqs in chunks) == 3000
    last = chunks[-1][1]
    assert last == list(range(1501 - len(last), 1501)) and len(last) > 0  # (body-b's newest: the last stored)
