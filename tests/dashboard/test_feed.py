"""The dashboard's audit feed (`brain_server.dashboard.feed`): what is stored while pages are open is queued and sent
by the next flush, encoded once for every open stream (not at all while none is open), redacted, many batches in one
chunk; a stream that does not read is cut off rather than held."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from brain_server.dashboard.feed import AuditFeed, sse_audit
from shared_protocol import AuditEvent
from tests.brain.helpers import audit_event

pytestmark = pytest.mark.anyio


class _Counting:
    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, events: Sequence[AuditEvent]) -> bytes:
        self.batches.append(len(events))
        return sse_audit(events)


def _events(n: int, start: int = 1) -> list[AuditEvent]:
    return [audit_event("bdy_1", seq, f"m{seq - 1}") for seq in range(start, start + n)]


async def test_a_batch_is_encoded_once_for_every_open_stream_and_never_while_none_is_open() -> None:
    encode = _Counting()
    feed = AuditFeed(encode)
    feed.publish(_events(3))
    assert encode.batches == []  # (no page open: nothing encoded)
    with feed.subscribe() as first, feed.subscribe() as second:
        feed.publish(_events(2, start=4))
        assert encode.batches == [2]
        with pytest.raises(anyio.WouldBlock):
            first.receive_nowait()  # (queued: the next flush sends it)
        feed.flush()
        one, two = first.receive_nowait(), second.receive_nowait()
    assert one is two
    assert one.count(b"event: audit\n") == 2 and b'"seq":4' in one and b'"seq":5' in one
    backlog = feed.backlog()  # (what a page opening now is sent first: the five, oldest first)
    assert backlog.count(b"event: audit\n") == 5 and backlog.index(b'"seq":1') < backlog.index(b'"seq":5')


async def test_personal_data_tokens_are_redacted_in_the_batch() -> None:
    event = audit_event("bdy_1", 1, "m0").model_copy(
        update={"rationale": "mail [pii:email:s0123456789abcdef:AAAAbbbbCCCC] today"}
    )
    data = sse_audit([event])
    assert b"[pii:email]" in data and b"s0123456789abcdef" not in data and b"AAAAbbbbCCCC" not in data


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
        for seq in range(2, 52):  # (50 bodies' batches while a kill fans out: each encoded once, nothing sent yet)
            feed.publish(_events(1, start=seq))
        assert encode.batches == [1] * 50
        with pytest.raises(anyio.WouldBlock):
            first.receive_nowait()
        with feed.subscribe() as second:
            opened_with = feed.backlog()  # (what it is sent first: the one event from before the pages)
            feed.flush()
            chunks = [first.receive_nowait(), second.receive_nowait()]
            with pytest.raises(anyio.WouldBlock):
                first.receive_nowait()
    assert len(encode.batches) == 51  # (the backlog's encoding, then nothing more for the second page)
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
