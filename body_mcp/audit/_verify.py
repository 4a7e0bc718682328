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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from shared_protocol import AuditEvent

from ._anchor import NOT_AUTHENTIC, Head
from ._chain import Chain

BROKEN = "audit.broken"
"""The `tool` of the system event a body appends when it finds its chain broken."""

MIGRATED = "privacy.migrate"
"""The `tool` of the event `swarm privacy migrate` appends after the events it rewrote (`Chain.rewrite_tag`)."""

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


@dataclass(slots=True)
class _Row:
    """What the chain checks read of one event."""

    seq: int
    prev_mac: str
    mac: str
    kind: str
    """Read from a signed text only for the `BROKEN` tool (the one case the checks ask): else ""."""
    tool: str | None


def _authentic(chain: Chain, body: str, mac: str) -> tuple[int, str, _Row] | None:
    """(seq, id, fields) of a stored event read from its text, when that text less its `mac` is what the key
    signed: `with_mac` put the `mac` right before the last `,"message":`, so the text without it is the canonical
    JSON the MAC covers, byte for byte, as a verify that parses the event and encodes it again computes. None
    otherwise (another layout, an edit, another key, a value this does not read): the caller then does exactly
    that.

    Read from a text the key signed, a field cannot be faked by a value the text holds: a `,"` is never inside a
    JSON string, and the last such key is the top-level one (after `message` only `turn` is an object, its keys
    `step`, `text`, `tool_call_id`; after `id` and `kind`, only `impact`, with fixed keys, and strings).
    (The hot loop of `swarm audit verify`: string searches from the end, no parsing.)"""
    at = body.rfind(',"message":')
    needle = ',"mac":"' + mac + '"'
    begin = at - len(needle)
    if at < 0 or begin < 0 or not body.startswith(needle, begin):
        return None
    try:
        signed = (body[:begin] + body[at:]).encode()
    except UnicodeEncodeError:
        return None
    if not hmac.compare_digest(chain.mac_of(signed), mac):
        return None
    i = body.rfind(',"id":"', 0, begin) + 7
    j = body.find('"', i)
    p = body.rfind(',"prev_mac":"', at) + 13
    q = body.find('"', p)
    s = body.rfind(',"seq":', at) + 7
    e = body.find(",", s)
    t = body.rfind(',"tool":', at) + 8
    if i < 7 or p < 13 or s < 7 or t < 8 or j < 0 or q < 0 or e < 0:
        return None
    action_id, prev_mac, seq_text = body[i:j], body[p:q], body[s:e]
    if body.startswith("null", t):
        tool = None
    elif body.startswith('"', t):
        tool = body[t + 1 : body.find('"', t + 1)]
    else:
        return None
    if not seq_text.isdigit() or "\\" in action_id or "\\" in prev_mac or (tool is not None and "\\" in tool):
        return None  # (an escape: the text is not the value)
    kind = ""
    if tool == BROKEN:  # (the one kind the checks ask about, of the one tool it matters for)
        k = body.rfind(',"kind":"', 0, begin) + 9
        kind = body[k : body.find('"', k)] if k >= 9 else ""
    seq = int(seq_text)
    return seq, action_id, _Row(seq=seq, prev_mac=prev_mac, mac=mac, kind=kind, tool=tool)


def _parsed(body: str) -> AuditEvent | None:
    try:
        return AuditEvent.model_validate_json(body)
    except ValidationError:
        return None


def verify_trail(
    rows: Iterable[Any],
    *,
    chain: Chain,
    anchor: Head | None,
    start: Head | None = None,
    lookup: Callable[[int], str | None] = lambda seq: None,
    checkpoint: Callable[[int], str | None] = lambda through_seq: None,
) -> VerifyReport:
    """Check the rows `(seq, id, body, mac)` in seq order (all of them, or those after `start`, a head verified
    before), then the anchor (read before the rows: a writer anchors only what it has committed).

    One row at a time, keeping none (`swarm audit verify` reads the whole log in constant memory): the first
    problem in seq order is reported. `lookup(seq)`: the MAC of the event at `seq`, for an anchor before the
    rows. `checkpoint(through_seq)`: for a chain whose first event is not seq 1 (pruned), the `mac_at` of the
    last checkpoint event that names `through_seq` (where the chain resumes), if any."""
    count = 0
    first_seq: int | None = None
    head: Head | None = start
    expected_seq, expected_prev = (start[0] + 1, start[1]) if start is not None else (1, chain.genesis())
    at_anchor: str | None = None
    """The MAC of the event the anchor names, when it was among the rows."""
    found_broken: tuple[int, str] | None = None
    unrecorded: int | None = None
    """The first event rewritten by a privacy migration that no `MIGRATED` event after it records yet."""
    for seq, action_id, body, mac in rows:
        fast = _authentic(chain, body, mac)
        event: AuditEvent | None = None
        if fast is not None:
            body_seq, body_id, row = fast
        else:
            event = _parsed(body)
            if event is None:
                return VerifyReport(ok=False, events=count, first_bad_seq=int(seq), problem="event body unreadable")
            body_seq, body_id = event.seq, event.id
            row = _Row(seq=event.seq, prev_mac=event.prev_mac, mac=event.mac, kind=event.kind, tool=event.tool)
        if body_seq != seq or body_id != action_id or row.mac != mac:
            return VerifyReport(
                ok=False, events=count, first_bad_seq=int(seq), problem="indexed columns disagree with event"
            )
        if first_seq is None:
            first_seq = row.seq
            if start is None and row.seq != 1:
                expected_seq, expected_prev = row.seq, checkpoint(row.seq - 1) or ""
                if not expected_prev:
                    return broken("events missing from the start of the chain", first_bad_seq=row.seq)
        if row.seq != expected_seq:
            return VerifyReport(
                ok=False,
                events=count,
                first_bad_seq=row.seq,
                problem=f"sequence gap: expected {expected_seq}, found {row.seq} (events deleted or reordered)",
            )
        if row.prev_mac != expected_prev:
            return VerifyReport(
                ok=False, events=count, first_bad_seq=row.seq, problem="chain link broken (event inserted or deleted)"
            )
        if event is not None and not hmac.compare_digest(chain.mac(payload := event.signed_payload()), event.mac):
            # Its text changed since it was signed: only `swarm privacy migrate`, which tags what it wrote, may.
            if not chain.rewritten_ok(payload):
                return VerifyReport(
                    ok=False, events=count, first_bad_seq=row.seq, problem="MAC mismatch (event edited)"
                )
            if unrecorded is None:
                unrecorded = row.seq
        if row.tool == MIGRATED:
            unrecorded = None
        if found_broken is None and row.kind == "system" and row.tool == BROKEN:
            parsed = event or _parsed(body)
            why = parsed.detail.get("problem") if parsed is not None else None
            found_broken = (row.seq, str(why or "see that event"))
        if anchor is not None and anchor != NOT_AUTHENTIC and row.seq == anchor[0]:
            at_anchor = row.mac
        head = (row.seq, row.mac)
        expected_prev = row.mac
        expected_seq += 1
        count += 1
    if unrecorded is not None:
        return VerifyReport(
            ok=False,
            events=count,
            first_bad_seq=unrecorded,
            problem=f"event {unrecorded} was rewritten, and no `{MIGRATED}` event after it records a migration",
        )
    report = _check_anchor(count, first_seq, head, at_anchor, anchor, start, lookup)
    if report.ok and head is not None:
        report = dataclasses.replace(report, head=head)
    if report.ok and found_broken is not None:
        return VerifyReport(
            ok=False,
            events=count,
            first_bad_seq=found_broken[0],
            problem=f"this chain was found broken before ({found_broken[1]}); `swarm audit reset` starts a new one",
            anchor=report.anchor,
        )
    return report


def _check_anchor(
    count: int,
    first_seq: int | None,
    head: Head | None,
    at_anchor: str | None,
    anchor: Head | None,
    start: Head | None,
    lookup: Callable[[int], str | None],
) -> VerifyReport:
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
        if start is None and count == 1 and first_seq == 1:  # the first event ever, its anchor not written yet
            return VerifyReport(ok=True, events=1, anchor="one_behind")
        return VerifyReport(ok=False, events=count, problem="anchor file missing or empty", anchor="missing")
    seq, mac = anchor
    if head is not None and seq == head[0] and hmac.compare_digest(mac, head[1]):
        return VerifyReport(ok=True, events=count)
    # Behind a chain whose every MAC verified (and which has no gap): the events past the anchor were written
    # with the key (a crash before the anchor write, or anchor writes that failed), not forged.
    if head is not None and seq < head[0]:
        # (At or before the verified start, the database says what it is.)
        behind = (at_anchor or "") if first_seq is not None and first_seq <= seq else lookup(seq) or ""
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
