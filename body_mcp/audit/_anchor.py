"""The anchor: the chain's head `(seq, mac)` in `audit.anchor`, outside the database.

After each commit the store writes the head there (`_store`), so truncating the tail of the chain
disagrees with it. A database ahead of its anchor (valid MACs past it) is a crash between the two writes,
or anchor writes that failed, not tampering (`_verify`); an anchor that names an event the database
lacks is never written over: it is the evidence verify reports (`agrees`). The file also carries the
`flock` that gives appends from several processes one order.

The file holds one line: `{seq:020d} {mac}`.
"""

from __future__ import annotations

import hmac
import sqlite3

LEN = 20 + 1 + 64 + 1


def encode(seq: int, mac: str) -> bytes:
    return f"{seq:020d} {mac}\n".encode()


def decode(data: bytes) -> tuple[int, str] | None:
    """The head the file names; None when it is empty, `(-1, "")` when it holds no head."""
    if not data:
        return None
    try:
        seq_text, mac = data.decode().split()
        return int(seq_text), mac
    except ValueError:
        return (-1, "")


def agrees(anchored: tuple[int, str] | None, conn: sqlite3.Connection, head: tuple[int, str]) -> bool:
    """Whether the anchor names an event the database holds, as verify requires; if not, events it covered
    were deleted (or the anchor changed)."""
    if anchored is None:
        return head[0] <= 1  # (none yet: the first event's anchor may not be written)
    if anchored[0] >= head[0]:
        return anchored[0] == head[0] and hmac.compare_digest(anchored[1], head[1])
    row = conn.execute("SELECT mac FROM audit_events WHERE seq = ?", (anchored[0],)).fetchone()
    return row is not None and hmac.compare_digest(str(row[0]), anchored[1])
