"""Heads kept outside the database, tagged with the key: the anchor, and the verified-through checkpoint.

The anchor is the chain's head `(seq, mac)` in `audit.anchor`. After each commit the store writes it
(`_store`), so truncating the tail of the chain disagrees with it. A database ahead of its anchor (valid MACs
past it) is a crash between the two writes, or anchor writes that failed, not tampering (`_verify`); an
anchor that names an event the database lacks is never written over: it is the evidence verify reports
(`agrees`). The file also carries the `flock` that gives appends from several processes one order.

The checkpoint (`audit.verified`) names the last event a check verified, so that the next start verifies
only the events after it; one that the database no longer agrees with is evidence too (`AuditStore.check`).

Each file holds one line, `{seq:020d} {mac} {tag}`: `tag` is a MAC of the line's head (keyed BLAKE2b, under a
key derived from the audit key for this kind of line and this body, `Chain`), so neither can be written from
what the database holds. A line without a tag (an anchor from
before tags) is read only while the key file says it is from then too (`_files`).
"""

from __future__ import annotations

import hmac
import sqlite3
from collections.abc import Callable

Head = tuple[int, str]
"""(seq, mac) of an event."""

Tag = Callable[[bytes], str]
"""The tag (hex) of a head as the line writes it (`{seq:020d} {mac}`), under the key."""

NOT_AUTHENTIC: Head = (-1, "")
"""What a line that is damaged, or whose tag is wrong, names: no event."""

LEN = 20 + 1 + 64 + 1 + 64 + 1


def encode(seq: int, mac: str, tag: Tag) -> bytes:
    head = f"{seq:020d} {mac}"  # (hot path: formatted once, for the tag and the line)
    return f"{head} {tag(head.encode())}\n".encode()


def decode(data: bytes, tag: Tag, *, untagged_ok: bool = False) -> Head | None:
    """The head the line names; None when it is empty, `NOT_AUTHENTIC` when it is damaged or forged."""
    if not data:
        return None
    try:
        fields = data.decode("ascii").split()
        seq, mac = int(fields[0]), fields[1]
    except (ValueError, IndexError):
        return NOT_AUTHENTIC
    if len(fields) == 3 and hmac.compare_digest(fields[2], tag(f"{seq:020d} {mac}".encode())):
        return seq, mac
    if len(fields) == 2 and untagged_ok:
        return seq, mac
    return NOT_AUTHENTIC


def agrees(anchored: Head | None, conn: sqlite3.Connection, head: Head) -> bool:
    """Whether the anchor names an event the database holds, as verify requires; if not, events it covered
    were deleted (or the anchor changed)."""
    if anchored is None:
        return head[0] <= 1  # (none yet: the first event's anchor may not be written)
    if anchored[0] >= head[0]:
        return anchored[0] == head[0] and hmac.compare_digest(anchored[1], head[1])
    row = conn.execute("SELECT mac FROM audit_events WHERE seq = ?", (anchored[0],)).fetchone()
    return row is not None and hmac.compare_digest(str(row[0]), anchored[1])
