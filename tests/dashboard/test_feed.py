"""The dashboard's audit feed (`brain_server.dashboard.feed`): a stored batch is encoded once for every open stream,
not at all while none is open, redacted, and a stream that does not read is cut off rather than held."""

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
            assert b'"seq":%d' % seq in reading.receive_nowait()
        assert feed.subscribers == 1
        assert len([idle.receive_nowait(), idle.receive_nowait()]) == 2  # (what it had, then the end)
        with pytest.raises(anyio.EndOfStream):
            idle.receive_nowait()
