"""Verifying the trail: recompute the chain, then compare its head with the anchor.

`AuditStore.verify` reads every event and hands them here; `AuditStore.check` (a body's start) only the
events after the last verified point, with that point as `start`. The chain must start at seq 1 from the
genesis, or, after a prune, from the MAC its checkpoint names (`_retention`); each event must follow the
one before it, link to its MAC, and carry its own MAC. The anchor must be authentic and name the head, or
an event behind it (`_anchor`). A chain that holds a `BROKEN` event was found broken before, and stays so
until `swarm audit reset` starts a new one. `swarm audit verify` prints the report's `summary()`.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from shared_protocol import AuditEvent

from ._anchor import NOT_AUTHENTIC, Head
from ._chain import Chain

BROKEN = "audit.broken"
"""The `tool` of the system event a body appends when it finds its chain broken."""

AnchorState = Literal["match", "one_behind", "behind", "missing", "mismatch", "empty", "forged"]


@dataclass(kw_only=True, frozen=True)
class VerifyReport:
    """What verify found: whether the trail is intact, how many events it checked, and the first bad one."""

    ok: bool
    events: int
    first_bad_seq: int | None = None
    problem: str | None = None
    anchor: AnchorState = "match"
    head: tuple[int, str] | None = None
    """The last event verified (seq, mac), when it verified."""
    damage: tuple[str, ...] = ()
    """What is wrong besides the chain (the database's pages, undo data), one line each (`Admin.verify`)."""

    def summary(self) -> str:
        """One line for a human."""
        if self.ok:
            notes = {
                "one_behind": " (anchor one event behind: a crash between commit and anchor write, not tampering)",
                "behind": " (anchor behind the verified chain: its writes failed, not tampering)",
            }
            return f"audit chain OK: {self.events} events verified" + notes.get(self.anchor, "")
        if self.problem is None and self.damage:
            return f"audit chain OK: {self.events} events verified; other state DAMAGED ({len(self.damage)} problems)"
        where = f" at event seq {self.first_bad_seq}" if self.first_bad_seq is not None else ""
        return f"audit chain BROKEN{where}: {self.problem}"


def broken(problem: str, *, first_bad_seq: int | None = None, anchor: AnchorState = "match") -> VerifyReport:
    return VerifyReport(ok=False, events=0, first_bad_seq=first_bad_seq, problem=problem, anchor=anchor)


def verify_trail(
    rows: list[Any],
    *,
    chain: Chain,
    anchor: Head | None,
    start: Head | None = None,
    lookup: Callable[[int], str | None] = lambda seq: None,
) -> VerifyReport:
    """Check the rows `(seq, id, body, mac)` in seq order (all of them, or those after `start`, a head verified
    before), then the anchor (read before the rows: a writer anchors only what it has committed)."""
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
    if start is not None:
        expected_seq, expected_prev = start[0] + 1, start[1]
    else:
        expected_prev = chain.genesis()
        expected_seq = 1
        if events and events[0].seq != 1:
            checkpoints = {
                int(e.detail.get("through_seq", 0)): str(e.detail.get("mac_at", ""))
                for e in events
                if e.kind == "checkpoint"
            }
            expected_seq = events[0].seq
            expected_prev = checkpoints.get(events[0].seq - 1, "")
            if not expected_prev:
                return broken("events missing from the start of the chain", first_bad_seq=events[0].seq)
    found_broken: AuditEvent | None = None
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
        if found_broken is None and event.kind == "system" and event.tool == BROKEN:
            found_broken = event
        expected_prev = event.mac
        expected_seq += 1
    report = _check_anchor(events, anchor, start, lookup)
    if report.ok and (events or start is not None):
        report = dataclasses.replace(report, head=(events[-1].seq, events[-1].mac) if events else start)
    if report.ok and found_broken is not None:
        why = found_broken.detail.get("problem") or "see that event"
        return VerifyReport(
            ok=False,
            events=len(events),
            first_bad_seq=found_broken.seq,
            problem=f"this chain was found broken before ({why}); `swarm audit reset` starts a new one",
            anchor=report.anchor,
        )
    return report


def _check_anchor(
    events: list[AuditEvent], anchor: Head | None, start: Head | None, lookup: Callable[[int], str | None]
) -> VerifyReport:
    count = len(events)
    head: Head | None = (events[-1].seq, events[-1].mac) if events else start
    if anchor == NOT_AUTHENTIC:
        return VerifyReport(
            ok=False,
            events=count,
            problem="the anchor is damaged or forged (its tag does not verify under the audit key)",
            anchor="forged",
        )
    if anchor is None:
        if head is None:
            return VerifyReport(ok=True, events=0, anchor="empty")
        if start is None and count == 1 and events[0].seq == 1:  # the first event ever, its anchor not written yet
            return VerifyReport(ok=True, events=1, anchor="one_behind")
        return VerifyReport(ok=False, events=count, problem="anchor file missing or empty", anchor="missing")
    seq, mac = anchor
    if head is not None and seq == head[0] and hmac.compare_digest(mac, head[1]):
        return VerifyReport(ok=True, events=count)
    # Behind a chain whose every MAC verified (and which has no gap): the events past the anchor were written
    # with the key (a crash before the anchor write, or anchor writes that failed), not forged.
    if head is not None and seq < head[0]:
        # (At or before the verified start, the database says what it is.)
        behind = events[seq - events[0].seq].mac if events and events[0].seq <= seq else lookup(seq) or ""
        if behind and hmac.compare_digest(mac, behind):
            return VerifyReport(ok=True, events=count, anchor="one_behind" if seq == head[0] - 1 else "behind")
    last = head[0] if head is not None else 0
    problem = (
        f"anchor says the chain ends at event {seq} but the database ends at {last} (events truncated)"
        if seq > last
        else f"anchor (event {seq}) does not match the database head (event {last})"
    )
    return VerifyReport(
        ok=False, events=count, first_bad_seq=min(seq, last) or None, problem=problem, anchor="mismatch"
    )
