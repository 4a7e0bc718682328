"""Verify reads the trail one event at a time: constant memory, and the signed text read as it was signed.

An event whose stored text, less its `mac`, is what the key signed is read from that text; any other is
parsed and encoded again, as verify always did. Neither way lets a value inside an event pass for a field.
"""

from __future__ import annotations

import json
import sqlite3
import tracemalloc
from collections.abc import Iterator
from typing import Any

from body_mcp import Body
from body_mcp.audit._chain import Chain
from body_mcp.audit._verify import verify_trail
from shared_protocol import AuditEvent

_LOOKALIKE = {
    "id": "act_fake",
    "seq": 999,
    "prev_mac": "0" * 64,
    "kind": "system",
    "tool": "audit.broken",
    "mac": "1" * 64,
    "message": "x",
}
"""Argument and detail values named like the event's own fields."""


def _edit(body: Body, sql: str, *params: object) -> None:
    with sqlite3.connect(body.paths.db) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        conn.execute(sql, params)


def _record_lookalike(body: Body) -> int:
    appended = body.admin.record(
        action="note",
        rationale='x","seq":1,"prev_mac":"' + "0" * 64 + '","tool":"audit.broken',
        detail={"nested": _LOOKALIKE, **_LOOKALIKE},
        arguments={"a": _LOOKALIKE, **_LOOKALIKE},
    )
    return appended.seq


def test_values_named_like_an_events_fields_verify_and_do_not_stand_in_for_its_columns(body: Body) -> None:
    body.record_human(action="note", rationale="before")
    seq = _record_lookalike(body)
    body.record_human(action="note", rationale="after")
    report = body.audit.verify()
    assert report.ok and report.events == 3, report.summary()

    _edit(body, "UPDATE audit_events SET id = 'act_fake' WHERE seq = ?", seq)
    report = body.audit.verify()
    assert not report.ok
    assert report.first_bad_seq == seq and report.problem == "indexed columns disagree with event"


def test_an_event_stored_in_another_layout_verifies_by_its_canonical_form_and_an_edit_in_it_does_not(
    body: Body,
) -> None:
    for n in range(3):
        body.record_human(action="note", rationale=f"note {n}")
    with sqlite3.connect(body.paths.db) as conn:
        (stored,) = conn.execute("SELECT body FROM audit_events WHERE seq = 2").fetchone()
    relaid = json.dumps(json.loads(stored), indent=1)  # the same event, other bytes
    _edit(body, "UPDATE audit_events SET body = ? WHERE seq = 2", relaid)
    assert body.audit.verify().ok

    _edit(body, "UPDATE audit_events SET body = ? WHERE seq = 2", relaid.replace("note 1", "note X"))
    report = body.audit.verify()
    assert not report.ok and report.first_bad_seq == 2 and report.problem == "MAC mismatch (event edited)"


def test_an_edit_that_keeps_the_signed_layout_is_a_mac_mismatch(body: Body) -> None:
    for n in range(3):
        body.record_human(action="note", rationale=f"note {n}")
    _edit(body, "UPDATE audit_events SET body = replace(body, 'note 1', 'note X') WHERE seq = 2")
    report = body.audit.verify()
    assert not report.ok and report.first_bad_seq == 2 and report.problem == "MAC mismatch (event edited)"


def _signed_rows(chain: Chain, count: int) -> Iterator[tuple[int, str, str, str]]:
    """`count` chained events, made one at a time as a cursor yields them."""
    prev = chain.genesis()
    for seq in range(1, count + 1):
        event = AuditEvent(
            seq=seq,
            id=f"act_{seq:012x}",
            ts="2026-12-06T00:00:00.000000+00:00",
            kind="tool_call",
            body_id="body_test",
            agent="agent",
            session="ses",
            tool="write_file",
            arguments={"path": f"src/f{seq}.py", "content": {"sha256": "ab" * 32, "size": seq}},
            rationale=f"write number {seq}",
            outcome="ok",
            files=[f"src/f{seq}.py"],
            prev_mac=prev,
            mac="",
        )
        payload: dict[str, Any] = event.signed_payload()
        body, mac = chain.sign(payload)
        yield seq, event.id, body, mac
        prev = mac


def _peak_bytes(chain: Chain, count: int) -> int:
    tracemalloc.start()
    try:
        report = verify_trail(_signed_rows(chain, count), chain=chain, anchor=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.problem == "anchor file missing or empty" and report.events == count  # (no anchor here)
    return peak


def test_verifying_ten_times_the_events_takes_no_more_memory() -> None:
    chain = Chain(b"k" * 32, "body_test")
    small, large = _peak_bytes(chain, 500), _peak_bytes(chain, 5_000)
    assert large < small + 64 * 1024, (small, large)
