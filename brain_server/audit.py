"""Linking shipped audit events to the chain the brain already holds for a body.

The brain has no body's HMAC key, so it cannot recompute a `mac` (an event's `attest`, under the verification key
the body registered, is checked only where an event is taken as evidence: `verification`); it checks linkage:
each new event's seq is the next one, and its `prev_mac` is the stored `mac` of the event
before it. The first event the brain holds for a body links to something only the body can
check (seq 1 to its genesis; or, when the body pruned its older events before they were ever
shipped, the oldest seq it still holds, which the batch names as `log_start_seq`), so it is taken
as it is. Any other start is a gap: a brain that lost a body's chain gets it again from the start.
A resent event that is already stored is accepted if its `mac` is the stored one, and
stores nothing; one the brain has since pruned (`floor`: its retention deleted every seq up to
there, always keeping a body's newest) cannot be compared any more, and also stores nothing.
At the first event that does not link, the batch stops: the events before it are stored, none
after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from shared_protocol import AuditEvent


@dataclass(kw_only=True, frozen=True)
class ChainProblem:
    kind: Literal["gap", "mismatch"]
    seq: int
    """The seq of the offending event."""
    expected_seq: int
    """The seq the brain needs next from this body."""


@dataclass(kw_only=True, frozen=True)
class LinkPlan:
    """What to store from a batch, and why it stopped early (if it did)."""

    new: list[AuditEvent] = field(default_factory=list[AuditEvent])
    problem: ChainProblem | None = None

    def through(self, head_seq: int) -> int:
        """The body's head once `new` is stored on a chain whose head was `head_seq`."""
        return self.new[-1].seq if self.new else head_seq


@dataclass(kw_only=True, frozen=True)
class AuditAppend:
    """The result of appending a batch: the body's new head, and the problem that stopped it (if any)."""

    stored_through: int
    problem: ChainProblem | None = None
    stored: int = 0
    """How many events of the batch were new (the last `stored` up to `stored_through`)."""


def seqs_to_look_up(head_seq: int, events: Sequence[AuditEvent]) -> set[int]:
    """The stored seqs whose `mac` `link_batch` needs: resent events, and the head that new events link to."""
    wanted = {event.seq for event in events if event.seq <= head_seq}
    if head_seq > 0:
        wanted.add(head_seq)
    return wanted


def link_batch(
    head_seq: int,
    stored_macs: Mapping[int, str],
    events: Sequence[AuditEvent],
    *,
    log_start_seq: int = 1,
    floor: int = 0,
) -> LinkPlan:
    """Decide which events of a batch extend the chain whose last stored event is `head_seq`.

    `stored_macs` holds (at least) the macs of `seqs_to_look_up(head_seq, events)`; `floor` is the last seq
    the brain's retention pruned (0: none), always below `head_seq`.
    """
    new: list[AuditEvent] = []
    accepted: dict[int, str] = {}
    next_seq = head_seq + 1 if head_seq > 0 else log_start_seq  # an empty chain starts where the body's log does
    prev_mac = stored_macs.get(head_seq)
    for event in events:
        if event.seq <= floor:
            continue  # stored once, pruned since: nothing left to compare it with, nothing to store again
        if event.seq < next_seq:
            known = accepted.get(event.seq) or stored_macs.get(event.seq)
            if known != event.mac:
                return LinkPlan(new=new, problem=ChainProblem(kind="mismatch", seq=event.seq, expected_seq=next_seq))
            continue
        if event.seq > next_seq:
            return LinkPlan(new=new, problem=ChainProblem(kind="gap", seq=event.seq, expected_seq=next_seq))
        if (head_seq > 0 or new) and event.prev_mac != prev_mac:
            return LinkPlan(new=new, problem=ChainProblem(kind="mismatch", seq=event.seq, expected_seq=next_seq))
        new.append(event)
        accepted[event.seq] = event.mac
        prev_mac = event.mac
        next_seq += 1
    return LinkPlan(new=new)
