"""`swarm privacy migrate`: the personal data of events written before `[privacy]` encrypted, the chain intact.

An event's `mac` covers its text as first written, and every later event links to that `mac`; the brain's copy of
the chain links the same way. So the migration changes an event's text and nothing else: its `seq`, `id`, time,
`prev_mac` and `mac` stay, and its `detail` gains a tag (`Chain.rewrite_tag`, under a key derived from the audit
key) over the text as rewritten. Verify accepts an event whose MAC no longer matches only with that tag, and only
when a `privacy.migrate` event after it records the migration (`_verify`); its `mac` still commits to what was first
written, without revealing it. The brain's copies link as before, so shipping goes on where it was.

Events are rewritten in batches, each in the transaction of the `privacy.migrate` event that records it (the
event's `Writes`: journaled with it, replayed whole after a crash, or not at all), which names the events' range,
how many, the chain's head when it was read, and a digest of every (seq, mac, tag) it wrote. The database's update
trigger lets an event's text change only inside such a transaction (`audit_rewrite_gate`, opened and closed by its
statements), never its links. A second run finds nothing to do: each event is protected, or tagged, already.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from shared_protocol import AuditEvent
from shared_protocol.privacy import Protector

from .._db import StateDB, Writes
from ._chain import REWRITTEN, Chain, canonical_json, with_mac
from ._event import PROTECTED_FIELDS, Appended

if TYPE_CHECKING:
    from collections.abc import Sequence

MIGRATE_BATCH = 2000
"""Events read per batch: each batch's rewrites commit with one `privacy.migrate` event."""

_OPEN_GATE = "UPDATE audit_rewrite_gate SET open = 1 WHERE id = 1"
_CLOSE_GATE = "UPDATE audit_rewrite_gate SET open = 0 WHERE id = 1"
_REWRITE = "UPDATE audit_events SET body = ? WHERE seq = ? AND mac = ?"


@dataclass(kw_only=True)
class Migration:
    """What a migration did."""

    events: int = 0
    """Events read."""
    rewritten: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    recorded: list[Appended] = field(default_factory=list[Appended])
    """The `privacy.migrate` events that record the rewrites (none: nothing to do)."""
    outputs: int = 0
    """Kept command outputs rewritten (`Admin.privacy_migrate`)."""
    decisions: int = 0
    """Approval requests stored on this body rewritten (`Admin.privacy_migrate`)."""
    snapshots: list[str] = field(default_factory=list[str])
    """Snapshots whose copy of `state.db` held personal data in clear, and was dropped (`Admin.privacy_migrate`)."""


def protect_payload(protector: Protector, payload: dict[str, Any]) -> dict[str, Any] | None:
    """`payload` (an event's signed payload) with the personal data in what people and models wrote encrypted per
    subject, as `protect_fields` does for a new event; None when that changes nothing."""
    if payload.get("kind") == "checkpoint" or REWRITTEN in payload.get("detail", {}):
        return None
    changed = dict(payload)
    for key in PROTECTED_FIELDS:
        if changed.get(key) is not None:
            changed[key] = protector.protect_value(changed[key])
    return None if changed == payload else changed


def rewrite_event(chain: Chain, body: str, mac: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> str:
    """The stored text of event `body` as `change` rewrites its signed payload, tagged; "" when there is nothing to
    rewrite (unchanged, unreadable, or not signed with this chain's key: verify reports such an event, this leaves
    it as it is)."""
    try:
        event = AuditEvent.model_validate_json(body)
    except ValidationError:
        return ""
    payload = event.signed_payload()
    try:
        if not hmac.compare_digest(chain.mac(payload), mac):
            return ""
    except UnicodeEncodeError:
        return ""
    new = change(payload)
    if new is None:
        return ""
    new["detail"] = {**new.get("detail", {}), REWRITTEN: chain.rewrite_tag(new)}
    text = canonical_json(new)
    try:
        text.encode()
    except UnicodeEncodeError:
        return ""
    return with_mac(text, mac)


def migrate_trail(
    db: StateDB,
    chain: Chain,
    *,
    change: Callable[[dict[str, Any]], dict[str, Any] | None],
    record: Callable[[dict[str, Any], Writes], Appended],
    progress: Callable[[int, int], None] = lambda done, total: None,
    batch: int = MIGRATE_BATCH,
) -> Migration:
    """Rewrite every event `change` changes, batch by batch, each batch recorded (`record(detail, writes)`: appends
    the `privacy.migrate` event whose transaction runs `writes`). `progress(done, total)` after each batch."""
    result = Migration()
    with db.read() as conn:
        total = int(conn.execute("SELECT count(*) FROM audit_events").fetchone()[0])
        row = conn.execute("SELECT MAX(seq) FROM audit_events").fetchone()
    last = int(row[0]) if row is not None and row[0] is not None else 0
    after = 0
    while after < last:
        with db.read() as conn:
            rows: Sequence[tuple[int, str, str]] = conn.execute(
                "SELECT seq, body, mac FROM audit_events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (after, last, batch),
            ).fetchall()
            head = conn.execute("SELECT seq, mac FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
        if not rows:
            break
        writes = Writes()
        writes.add(_OPEN_GATE)
        digest = hashlib.sha256()
        seqs: list[int] = []
        for seq, body, mac in rows:
            rewritten = rewrite_event(chain, body, mac, change)
            if rewritten:
                writes.add(_REWRITE, (rewritten, seq, mac))
                tag = AuditEvent.model_validate_json(rewritten).detail[REWRITTEN]
                digest.update(f"{seq}:{mac}:{tag}\n".encode())
                seqs.append(int(seq))
        writes.add(_CLOSE_GATE)
        if seqs:
            detail = {
                "rewritten": len(seqs),
                "first_seq": seqs[0],
                "last_seq": seqs[-1],
                "head_before": [int(head[0]), str(head[1])],
                "rewrites_sha256": digest.hexdigest(),
            }
            result.recorded.append(record(detail, writes))
            result.rewritten += len(seqs)
            result.first_seq = seqs[0] if result.first_seq is None else result.first_seq
            result.last_seq = seqs[-1]
        result.events += len(rows)
        after = int(rows[-1][0])
        progress(result.events, total)
    return result
