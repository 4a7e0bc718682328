"""The journal's record format: the event encoded once and hashed once, and a previous version's records still read.

A record ("SWJ2") carries the event's signed payload as it is (not encoded again inside a JSON header), and its tag
is one HMAC over the event, then the prefix, header and data: the keyed hash that gave the event's MAC goes on over
the rest, so the event is hashed once for both. A journal a previous version wrote ("SWJ1": the event's row inside
the header, the tag over the record) is still read and replayed, records of both formats in one journal included.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from pathlib import Path

import pytest

from body_mcp._db import Writes
from body_mcp.audit._chain import Chain
from body_mcp.audit._files import read_key
from body_mcp.audit._journal import END, LEGACY_PREFIX, PREFIX, PREFIX_LEN, JournalRecord, decode, encode

from ..conftest import make_body
from .test_audit_journal import _reply_then_die, _swarm  # pyright: ignore[reportPrivateUsage]

pytestmark = pytest.mark.anyio

KEY = b"k" * 32


def _payload(seq: int, prev_mac: str, action_id: str) -> dict[str, object]:
    return {"id": action_id, "seq": seq, "prev_mac": prev_mac, "ts": "ts", "decision_id": None, "message": "m"}


def _legacy(key: bytes, record: JournalRecord) -> bytes:
    """`record` as the previous version wrote it ("SWJ1"), its end mark included: its row inside a JSON header."""
    data: list[bytes] = []
    size = 0
    statements: list[list[object]] = []
    for sql, params in record.writes.statements:
        out: list[object] = []
        for param in params:
            if isinstance(param, bytes):
                out.append({"bytes": [size, len(param)]})
                data.append(param)
                size += len(param)
            else:
                out.append(param)
        statements.append([sql, out])
    header = json.dumps(
        {"prev_mac": record.prev_mac, "row": list(record.row), "writes": statements},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    signed = LEGACY_PREFIX.pack(b"SWJ1", record.seq, record.mac.encode(), len(header), size) + header + b"".join(data)
    return signed + hmac.new(key, signed, hashlib.sha256).digest() + END


def test_the_event_is_in_the_record_as_signed_and_the_tag_is_one_hmac_over_the_event_and_the_rest() -> None:
    chain = Chain(KEY, "body")
    payload = _payload(1, "g" * 64, "act_1")
    signed, body, mac, hashed = chain.sign_hashed(payload)
    # The event's MAC is what it always was (what `swarm audit verify` and the brain check): HMAC over its JSON.
    expected = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert signed == expected and mac == hmac.new(KEY, expected, hashlib.sha256).hexdigest()
    assert mac == chain.mac(payload) and body == chain.sign(payload)[0]

    writes = Writes()
    writes.add("INSERT INTO blobs (sha256, data) VALUES (?, ?)", ("abc", b"\x00\xffpre-image"))
    record = encode(1, mac, signed, hashed, writes, chain.tag)
    _, seq, mac_field, header_len, event_len, data_len = PREFIX.unpack_from(record)
    assert (seq, mac_field.decode(), event_len, data_len) == (1, mac, len(signed), 11)
    header = record[PREFIX_LEN : PREFIX_LEN + header_len]
    event = record[PREFIX_LEN + header_len : PREFIX_LEN + header_len + event_len]
    assert event == signed  # as signed: not escaped inside a JSON string a second time
    assert json.loads(header) == {
        "writes": [["INSERT INTO blobs (sha256, data) VALUES (?, ?)", ["abc", {"bytes": [0, 11]}]]]
    }
    tag = record[-len(END) - 32 : -len(END)]
    rest = record[:PREFIX_LEN] + header + b"\x00\xffpre-image"
    assert tag == hmac.new(KEY, signed + rest, hashlib.sha256).digest()
    assert tag.hex() != mac and record.endswith(END)


def test_records_of_the_previous_version_are_still_read_before_and_among_new_ones() -> None:
    chain = Chain(KEY, "body")
    writes = Writes()
    writes.add("INSERT INTO blobs (sha256, data) VALUES (?, ?)", ("abc", b"old content"))
    writes.add("INSERT INTO undo_records (action_id, step) VALUES (?, ?)", ("act_1", 0))
    signed, _, mac1, hashed = chain.sign_hashed(_payload(1, "g" * 64, "act_1"))
    new1 = encode(1, mac1, signed, hashed, writes, chain.tag)
    signed, _, mac2, hashed = chain.sign_hashed(_payload(2, mac1, "act_2"))
    new2 = encode(2, mac2, signed, hashed, None, chain.tag)
    first, second = decode(new1[: -len(END)] + new2, chain.tag)

    old1, old2 = _legacy(KEY, first), _legacy(KEY, second)
    for journal in (old1[: -len(END)] + old2, old1[: -len(END)] + new2, new1[: -len(END)] + old2):
        records = decode(journal, chain.tag)
        assert [(r.seq, r.mac, r.prev_mac, r.row) for r in records] == [
            (r.seq, r.mac, r.prev_mac, r.row) for r in (first, second)
        ]
        assert records[0].writes.statements == writes.statements
        assert records[1].end == len(journal) - len(END)
    forged = bytearray(old1)
    forged[PREFIX_LEN + 3] ^= 1
    assert decode(bytes(forged[: -len(END)]) + new2, chain.tag) == []  # a forged old record stops reading there too
    assert decode(old1, Chain(b"other key", "body").tag) == []


def _to_legacy(journal: Path, key: bytes) -> str:
    """Rewrite the journal's records in the previous version's format (as a body of that version would have left
    them); the id of the last one's event."""
    chain = Chain(key, "unused")  # (the journal's tag is keyed with the audit key alone)
    records = decode(journal.read_bytes(), chain.tag)
    assert records and all(r.row[3].startswith("{") for r in records)
    journal.write_bytes(b"".join(_legacy(key, r)[: -len(END)] for r in records) + END)
    again = decode(journal.read_bytes(), chain.tag)
    assert [(r.seq, r.mac, r.prev_mac, r.row, r.writes.statements) for r in again] == [
        (r.seq, r.mac, r.prev_mac, r.row, r.writes.statements) for r in records
    ]
    assert journal.read_bytes().startswith(b"SWJ1")
    return records[-1].row[0]


async def test_a_journal_left_by_the_previous_version_is_replayed_undo_records_and_all(
    workspace: Path, home: Path
) -> None:
    (workspace / "a.txt").write_text("old\n")
    before = make_body(workspace, home)
    try:
        before.record_human(action="note", rationale="an event before")
        paths = before.paths
    finally:
        before.close()
    action_id = _reply_then_die(workspace, home)  # journaled (this version's format), not committed
    key = read_key(paths.audit_key)
    assert key is not None
    assert _to_legacy(paths.journal, key.key) == action_id
    conn = sqlite3.connect(paths.db)
    try:
        assert conn.execute("SELECT COUNT(*) FROM audit_events WHERE id = ?", (action_id,)).fetchone() == (0,)
    finally:
        conn.close()

    verify = await _swarm(home, "audit", "verify", "--workspace", str(workspace))  # (opens a store: replays it)
    assert verify.returncode == 0 and "OK: 2 events" in verify.stdout, verify.stdout + verify.stderr
    undo = await _swarm(home, "undo", action_id, "--workspace", str(workspace))  # its undo records came with it
    assert undo.returncode == 0, undo.stderr
    assert (workspace / "a.txt").read_text() == "old\n"
    reopened = make_body(workspace, home)
    try:
        assert [e.tool for e in reopened.audit.tail(10)] == ["note", "write_file", "undo"]
        report = reopened.audit.verify()
        assert report.ok and report.anchor == "match", report.summary()
    finally:
        reopened.close()


def test_an_event_with_a_string_utf8_cannot_encode_is_journaled_escaped_and_read_back_as_the_store_keeps_it() -> None:
    chain = Chain(KEY, "body")
    payload: dict[str, object] = {**_payload(1, "g" * 64, "act_1"), "message": "name \udcff here", "detail": {}}
    signed, body, mac, hashed = chain.sign_hashed(payload)  # (escapes the payload's strings, in place)
    assert payload["detail"] == {"strings_escaped": True} and "\\xff" in body
    (record,) = decode(encode(1, mac, signed, hashed, None, chain.tag), chain.tag)
    assert record.row == ("act_1", "ts", None, body) and record.mac == mac == chain.mac(payload)
