# pyright: strict
"""Review 17 of the dashboard's capped audit stream (`brain_server.dashboard.feed`): a flood of ordinary events must
not hide a refusal from a page that opens after it."""

from __future__ import annotations

import json

from brain_server.dashboard.feed import AUDIT_ROWS, AuditFeed
from shared_protocol import AuditEvent
from tests.brain.helpers import audit_event


def _events(n: int, start: int, refused: frozenset[int]) -> list[AuditEvent]:
    events = [audit_event("bdy_1", seq, f"m{seq - 1}") for seq in range(start, start + n)]
    return [
        e.model_copy(update={"outcome": "refused", "code": "kill_switch_engaged"}) if e.seq in refused else e
        for e in events
    ]


def _seqs(chunk: bytes) -> list[int]:
    return [json.loads(m.split("\n")[1].removeprefix("data: "))["seq"] for m in chunk.decode().split("\n\n") if m]


def test_a_page_that_opens_after_a_flood_is_sent_the_refusal_before_it() -> None:
    """Was a hole (low), fixed. Reproduce: a refusal stored, then more than `AUDIT_ROWS` ordinary events (a model
    looping on reads, say), whether pages were open or not; a page that opens (or reloads, or reconnects) then is
    sent the backlog, the newest `AUDIT_ROWS` events only: the refusal is in no row and not in the Errors panel,
    and no "earlier events not shown" line says anything was left out, while a page open during the flood was sent
    it (`shown` keeps the newest refusals and failures of each flush). Fix: the feed also keeps the newest
    `ERROR_ROWS` refusals and failures, and the backlog sends them first, oldest first, as a flush does."""
    feed = AuditFeed()
    feed.publish(_events(1, 1, frozenset({1})))  # (no page open: remembered at once)
    feed.publish(_events(AUDIT_ROWS + 50, 2, frozenset()))
    with feed.subscribe():  # (a page open during a second flood: its flush sends the refusal in it)
        feed.publish(_events(AUDIT_ROWS + 10, AUDIT_ROWS + 52, frozenset({AUDIT_ROWS + 55})))
        feed.flush()
    last = 2 * AUDIT_ROWS + 61
    assert _seqs(feed.backlog()) == [1, AUDIT_ROWS + 55, *range(last - AUDIT_ROWS + 1, last + 1)]
