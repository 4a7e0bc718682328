"""The audit journal's record format: an event made durable before its reply, committed to SQLite after it.

`audit.journal` (next to the anchor) holds the events a store has made durable but may not have
committed to the database yet: normally one, the call whose reply is on its way. Each record
carries the statements to commit with its event (`Writes`: undo records, pre-images, a prune's
delete). A store writes its next record at the start of the file once the ones before it are
committed; after a crash, the next store to take the anchor's lock replays what the database
lacks (`AuditStore.recover`).

A record:

    prefix  "SWJ1" | seq (8 bytes, big-endian) | mac (64 hex digits) | header length (4) | data length (8)
    header  JSON {"prev_mac": ..., "row": [id, ts, decision_id, body], "writes": [[sql, [param, ...]], ...]};
            a bytes parameter is {"bytes": [offset, length]} into the data
    data    the bytes parameters, one after another
    tag     HMAC-SHA-256 of everything before it, with the audit key

    end     4 zero bytes where the next record would start (overwritten by it, if one is written there)

A torn record (a crash in the middle of its write) or one written without the key fails its tag
and is not replayed, nor is anything after it. The end mark lets a store check cheaply that
nothing was written after the records it knows of (`AuditStore._current_head`).
"""

from __future__ import annotations

import hmac
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from .. import _json
from .._db import SqlValue, Writes

MAGIC = b"SWJ1"
PREFIX = struct.Struct(">4sQ64sIQ")
PREFIX_LEN = PREFIX.size
TAG_LEN = 32
END = bytes(4)

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


def encode(seq: int, mac: str, prev_mac: str, row: Row, writes: Writes | None, tag: Callable[[bytes], bytes]) -> bytes:
    """One record, its tag and end mark included (hot path: one JSON encoding, one HMAC)."""
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
    header = _json.compact({"prev_mac": prev_mac, "row": row, "writes": statements}).encode()
    signed = b"".join((PREFIX.pack(MAGIC, seq, mac.encode(), len(header), size), header, *data))
    return b"".join((signed, tag(signed), END))


def decode(data: bytes, tag: Callable[[bytes], bytes]) -> list[JournalRecord]:
    """The records at the start of `data`, in order, up to the first that is torn, forged or not a record."""
    records: list[JournalRecord] = []
    at = 0
    while at + PREFIX_LEN <= len(data):
        magic, seq, mac, header_len, data_len = PREFIX.unpack_from(data, at)
        end = at + PREFIX_LEN + header_len + data_len + TAG_LEN
        if magic != MAGIC or end > len(data):
            break
        signed = data[at : end - TAG_LEN]
        if not hmac.compare_digest(tag(signed), data[end - TAG_LEN : end]):
            break
        start = at + PREFIX_LEN + header_len
        try:
            record = _parse(seq, mac.decode(), data[at + PREFIX_LEN : start], data[start : start + data_len], end)
        except (ValueError, TypeError, KeyError, IndexError):  # (a tagged record is ours: not expected)
            break
        records.append(record)
        at = end
    return records


def _parse(seq: int, mac: str, header: bytes, blobs: bytes, end: int) -> JournalRecord:
    parsed = json.loads(header)
    prev_mac = parsed["prev_mac"]
    row = parsed["row"]
    if not isinstance(prev_mac, str) or not isinstance(row, list) or len(cast(list[Any], row)) != 4:
        raise ValueError("not a journal header")
    action_id, ts, decision_id, body = cast(list[Any], row)
    if not (isinstance(action_id, str) and isinstance(ts, str) and isinstance(body, str)):
        raise ValueError("not an event row")
    if decision_id is not None and not isinstance(decision_id, str):
        raise ValueError("not an event row")
    writes = Writes()
    for sql, params in cast(list[list[Any]], parsed["writes"]):
        if not isinstance(sql, str):
            raise TypeError("not a statement")
        writes.add(sql, tuple(_param(p, blobs) for p in cast(list[Any], params)))
    return JournalRecord(
        seq=seq, mac=mac, prev_mac=prev_mac, row=(action_id, ts, decision_id, body), writes=writes, end=end
    )


def _param(value: Any, blobs: bytes) -> SqlValue:
    if isinstance(value, dict):
        offset, length = cast(dict[str, list[int]], value)["bytes"]
        return blobs[offset : offset + length]
    if value is None or isinstance(value, str | int | float):
        return cast(SqlValue, value)
    raise TypeError("not an SQL value")
