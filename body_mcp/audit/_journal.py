"""The audit journal's record format: an event made durable before its reply, committed to SQLite after it.

`audit.journal` (next to the anchor) holds the events a store has made durable but may not have
committed to the database yet: normally one, the call whose reply is on its way. Each record
carries the statements to commit with its event (`Writes`: undo records, pre-images, a prune's
delete). A store writes its next record at the start of the file once the ones before it are
committed; after a crash, the next store to take the anchor's lock replays what the database
lacks (`AuditStore.recover`).

A record (written since 2026-12-07, "SWJ2"):

    prefix  "SWJ2" | seq (8 bytes, big-endian) | mac (64 hex digits) | header length (4) | event length (4)
            | data length (4)
    header  JSON {"writes": [[sql, [param, ...]], ...]}; a bytes parameter is {"bytes": [offset, length]} into
            the data
    event   the event's signed payload, its canonical JSON (UTF-8) as its `mac` signs it, without the `mac`
    data    the bytes parameters, one after another
    tag     HMAC-SHA-256, with the audit key, of event | prefix | header | data

    end     4 zero bytes where the next record would start (overwritten by it, if one is written there)

The event is encoded once (its row's body is that text with its `mac` put in, `_chain.with_mac`), and hashed
once: the tag continues the keyed hash of the event's MAC (`HmacSha256.begin`) over the rest of the record. The
tag's message starts with the event (a JSON object) and goes on with the prefix (whose lengths hold zero bytes,
which canonical JSON never does): it is no event's canonical JSON, so no tag passes for an event's MAC, nor any
MAC for a tag. The event's id, time, decision and previous MAC are read from the event itself.

A record of the previous version ("SWJ1", one found in the journal after an upgrade) is still read, and replayed
alike; none is written:

    prefix  "SWJ1" | seq (8 bytes, big-endian) | mac (64 hex digits) | header length (4) | data length (8)
    header  JSON {"prev_mac": ..., "row": [id, ts, decision_id, body], "writes": [...]}
    data    the bytes parameters
    tag     HMAC-SHA-256 of everything before it, with the audit key

A torn record (a crash in the middle of its write) or one written without the key fails its tag
and is not replayed, nor is anything after it. The end mark lets a store check cheaply that
nothing was written after the records it knows of (`AuditStore._current_head`).
"""

from __future__ import annotations

import hmac
import json
import struct
from dataclasses import dataclass
from typing import Any, cast

from .. import _json
from .._db import SqlValue, Writes
from ._chain import HmacSha256, with_mac

MAGIC = b"SWJ2"
LEGACY_MAGIC = b"SWJ1"
PREFIX = struct.Struct(">4sQ64sIII")
LEGACY_PREFIX = struct.Struct(">4sQ64sIQ")
PREFIX_LEN = PREFIX.size
assert LEGACY_PREFIX.size == PREFIX_LEN  # (the end mark and `AuditStore._head_unchanged` read a prefix of either)
TAG_LEN = 32
END = bytes(4)
_MAX_PART = 0xFFFF_FFFF

Row = tuple[str, str, str | None, str]
"""An event's columns besides `seq` and `mac`: id, ts, decision_id, body."""


@dataclass(frozen=True, slots=True)
class JournalRecord:
    seq: int
    mac: str
    prev_mac: str
    row: Row
    writes: Writes
    end: int
    """Where the record ends (its end mark starts) in the journal."""


def encode(seq: int, mac: str, event: bytes, hashed: Any, writes: Writes | None, key: HmacSha256) -> bytes:
    """One record, its tag and end mark included (hot path). `event`: the signed payload's canonical JSON, and
    `hashed` the keyed hash over it that gave its `mac` (`Chain.sign_hashed`), continued here for the tag (and
    spent). A header that UTF-8 cannot encode raises `UnicodeEncodeError`."""
    data: list[bytes] = []
    size = 0
    statements: list[list[Any]] = []
    if writes is not None:
        for sql, params in writes.statements:
            out: list[Any] = []
            for param in params:
                if type(param) is bytes:
                    out.append({"bytes": [size, len(param)]})
                    data.append(param)
                    size += len(param)
                else:
                    out.append(param)
            statements.append([sql, out])
    header = _json.compact({"writes": statements}).encode()
    if max(size, len(event), len(header)) > _MAX_PART:
        raise ValueError("an audit journal record's part is over 4 GiB")
    prefix = PREFIX.pack(MAGIC, seq, mac.encode(), len(header), len(event), size)
    hashed.update(prefix)
    hashed.update(header)
    for blob in data:
        hashed.update(blob)
    return b"".join((prefix, header, event, *data, key.end(hashed), END))


def decode(data: bytes, key: HmacSha256) -> list[JournalRecord]:
    """The records at the start of `data`, in order (either format), up to the first that is torn, forged or not
    a record."""
    records: list[JournalRecord] = []
    at = 0
    while at + PREFIX_LEN <= len(data):
        magic = data[at : at + 4]
        if magic == MAGIC:
            record = _decode(data, at, key)
        elif magic == LEGACY_MAGIC:
            record = _decode_legacy(data, at, key)
        else:
            break
        if record is None:
            break
        records.append(record)
        at = record.end
    return records


def _decode(data: bytes, at: int, key: HmacSha256) -> JournalRecord | None:
    _, seq, mac, header_len, event_len, blobs_len = PREFIX.unpack_from(data, at)
    header_at = at + PREFIX_LEN
    event_at = header_at + header_len
    blobs_at = event_at + event_len
    tag_at = blobs_at + blobs_len
    end = tag_at + TAG_LEN
    if end > len(data):
        return None
    event = data[event_at:blobs_at]
    hashed = key.begin(event)
    hashed.update(data[at:header_at])
    hashed.update(data[header_at:event_at])
    hashed.update(data[blobs_at:tag_at])
    if not hmac.compare_digest(key.end(hashed), data[tag_at:end]):
        return None
    try:
        mac_text = cast(bytes, mac).decode()
        payload = json.loads(event)
        if not isinstance(payload, dict):
            raise ValueError("not an event")
        fields = cast(dict[str, Any], payload)
        action_id, ts, decision_id, prev_mac = fields["id"], fields["ts"], fields["decision_id"], fields["prev_mac"]
        if fields["seq"] != seq:
            raise ValueError("not this record's event")
        row = (action_id, ts, decision_id, with_mac(event.decode(), mac_text))
        writes = _writes(json.loads(data[header_at:event_at])["writes"], data[blobs_at:tag_at])
        return _record(seq, mac_text, prev_mac, row, writes, end)
    except (ValueError, TypeError, KeyError, IndexError, AssertionError):  # (a tagged record is ours: not expected)
        return None


def _decode_legacy(data: bytes, at: int, key: HmacSha256) -> JournalRecord | None:
    """A record of the previous version ("SWJ1"): its header holds the event's row as JSON."""
    _, seq, mac, header_len, data_len = LEGACY_PREFIX.unpack_from(data, at)
    end = at + PREFIX_LEN + header_len + data_len + TAG_LEN
    if end > len(data):
        return None
    signed = data[at : end - TAG_LEN]
    if not hmac.compare_digest(key.digest(signed), data[end - TAG_LEN : end]):
        return None
    start = at + PREFIX_LEN + header_len
    try:
        parsed = json.loads(data[at + PREFIX_LEN : start])
        row = parsed["row"]
        if not isinstance(row, list) or len(cast(list[Any], row)) != 4:
            raise ValueError("not a journal header")
        action_id, ts, decision_id, body = cast(list[Any], row)
        writes = _writes(parsed["writes"], data[start : start + data_len])
        return _record(
            seq, cast(bytes, mac).decode(), parsed["prev_mac"], (action_id, ts, decision_id, body), writes, end
        )
    except (ValueError, TypeError, KeyError, IndexError):  # (a tagged record is ours: not expected)
        return None


def _record(
    seq: int, mac: str, prev_mac: Any, row: tuple[Any, Any, Any, Any], writes: Writes, end: int
) -> JournalRecord:
    action_id, ts, decision_id, body = row
    if not (isinstance(prev_mac, str) and isinstance(action_id, str) and isinstance(ts, str) and isinstance(body, str)):
        raise ValueError("not an event row")
    if decision_id is not None and not isinstance(decision_id, str):
        raise ValueError("not an event row")
    return JournalRecord(
        seq=seq, mac=mac, prev_mac=prev_mac, row=(action_id, ts, decision_id, body), writes=writes, end=end
    )


def _writes(statements: Any, blobs: bytes) -> Writes:
    writes = Writes()
    for sql, params in cast(list[list[Any]], statements):
        if not isinstance(sql, str):
            raise TypeError("not a statement")
        writes.add(sql, tuple(_param(p, blobs) for p in cast(list[Any], params)))
    return writes


def _param(value: Any, blobs: bytes) -> SqlValue:
    if isinstance(value, dict):
        offset, length = cast(dict[str, list[int]], value)["bytes"]
        return blobs[offset : offset + length]
    if value is None or isinstance(value, str | int | float):
        return cast(SqlValue, value)
    raise TypeError("not an SQL value")
