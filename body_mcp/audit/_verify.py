"""Verifying the trail: recompute the whole chain, then compare its head with the anchor.

`AuditStore.verify` reads every event and hands them here. The chain must start at seq 1 from the
genesis, or, after a prune, from the MAC its checkpoint names (`_retention`); each event must follow the
one before it, link to its MAC, and carry its own MAC. The anchor must name the head, or an event
behind it (`_anchor`). `swarm audit verify` prints the report's `summary()`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from shared_protocol import AuditEvent

from ._chain import Chain


@dataclass(kw_only=True, frozen=True)
class VerifyReport:
    """What verify found: whether the trail is intact, how many events it checked, and the first bad one."""

    ok: bool
    events: int
    first_bad_seq: int | None = None
    problem: str | None = None
    anchor: Literal["match", "one_behind", "behind", "missing", "mismatch", "empty"] = "match"

    def summary(self) -> str:
        """One line for a human."""
        if self.ok:
            notes = {
                "one_behind": " (anchor one event behind: a crash between commit and anchor write, not tampering)",
                "behind": " (anchor behind the verified chain: its writes failed, not tampering)",
            }
            return f"audit chain OK: {self.events} events verified" + notes.get(self.anchor, "")
        where = f" at event seq {self.first_bad_seq}" if self.first_bad_seq is not None else ""
        return f"audit chain BROKEN{where}: {self.problem}"


def verify_trail(rows: list[Any], *, chain: Chain, read_anchor: Callable[[], tuple[int, str] | None]) -> VerifyReport:
    """Check the rows `(seq, id, body, mac)` of the whole trail, in seq order, then the anchor `read_anchor` gives."""
    events: list[AuditEvent] = []
    for seq, action_id, body, mac in rows:
        try:
            event = AuditEvent.model_validate_json(body)
        except ValidationError:
            return VerifyReport(ok=False, events=len(events), first_bad_seq=int(seq), problem="event body unreadable")
        if event.seq != seq or event.id != action_id or event.mac != mac:
            return VerifyReport(
                ok=False, events=len(events), first_bad_seq=int(seq), problem="indexed columns disagree with event"
            )
        events.append(event)
    checkpoints = {
        int(e.detail.get("through_seq", 0)): str(e.detail.get("mac_at", "")) for e in events if e.kind == "checkpoint"
    }
    expected_prev = chain.genesis()
    expected_seq = 1
    if events and events[0].seq != 1:
        expected_seq = events[0].seq
        expected_prev = checkpoints.get(events[0].seq - 1, "")
        if not expected_prev:
            return VerifyReport(
                ok=False,
                events=0,
                first_bad_seq=events[0].seq,
                problem="events missing from the start of the chain",
            )
    for index, event in enumerate(events):
        if event.seq != expected_seq:
            return VerifyReport(
                ok=False,
                events=index,
                first_bad_seq=event.seq,
                problem=f"sequence gap: expected {expected_seq}, found {event.seq} (events deleted or reordered)",
            )
        if event.prev_mac != expected_prev:
            return VerifyReport(
                ok=False,
                events=index,
                first_bad_seq=event.seq,
                problem="chain link broken (event inserted or deleted)",
            )
        if not hmac.compare_digest(chain.mac(event.signed_payload()), event.mac):
            return VerifyReport(ok=False, events=index, first_bad_seq=event.seq, problem="MAC mismatch (event edited)")
        expected_prev = event.mac
        expected_seq += 1
    return _check_anchor(events, read_anchor())


def _check_anchor(events: list[AuditEvent], anchor: tuple[int, str] | None) -> VerifyReport:
    count = len(events)
    if anchor is None:
        if not events:
            return VerifyReport(ok=True, events=0, anchor="empty")
        if len(events) == 1 and events[0].seq == 1:  # the first event ever, its anchor not written yet
            return VerifyReport(ok=True, events=1, anchor="one_behind")
        return VerifyReport(ok=False, events=count, problem="anchor file missing or empty", anchor="missing")
    seq, mac = anchor
    head = events[-1] if events else None
    if head is not None and seq == head.seq and hmac.compare_digest(mac, head.mac):
        return VerifyReport(ok=True, events=count)
    # Behind a chain whose every MAC verified (and which has no gap): the events past the anchor were written
    # with the key (a crash before the anchor write, or anchor writes that failed), not forged.
    if (
        head is not None
        and events[0].seq <= seq < head.seq
        and hmac.compare_digest(mac, events[seq - events[0].seq].mac)
    ):
        return VerifyReport(ok=True, events=count, anchor="one_behind" if seq == head.seq - 1 else "behind")
    last = head.seq if head is not None else 0
    problem = (
        f"anchor says the chain ends at event {seq} but the database ends at {last} (events truncated)"
        if seq > last
        else f"anchor (event {seq}) does not match the database head (event {last})"
    )
    return VerifyReport(
        ok=False, events=count, first_bad_seq=min(seq, last) or None, problem=problem, anchor="mismatch"
    )
