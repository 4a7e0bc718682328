"""The body's side of `[privacy]`: its subject key store, and erasing or exporting one subject.

Every audit event is protected where it is journaled (`audit.AuditStore`, `protect_draft`), and every kept
command output where it is stored (`outputs.OutputStore`), so nothing this body persists or ships to its brain
holds detected personal data in clear. The keys are in `privacy.db` in the body's state directory: not in
`state.db`, so never in a snapshot (which copies `state.db`), nor set aside by `swarm audit reset`.
"""

from __future__ import annotations

import json
from typing import Any, cast

from shared_protocol.config import PrivacyConfig
from shared_protocol.privacy import KEY_STORE_FILE, HeldItem, Protector, SqliteSubjectKeys, Subject

from ._db import StateDB
from .state import StatePaths


def open_protector(paths: StatePaths, config: PrivacyConfig) -> Protector:
    """The body's protector over its own key store (created on first use)."""
    return Protector(config, SqliteSubjectKeys(paths.dir / KEY_STORE_FILE))


def held_about(db: StateDB, protector: Protector, subject: Subject) -> list[HeldItem] | None:
    """What this body's trail and kept outputs hold about `subject`, decrypted; None when no key is held (never
    seen, or erased)."""
    sid = protector.keys.find(subject.kind, subject.value)
    if sid is None:
        return None
    needle = f"%:{sid}:%"
    items: list[HeldItem] = []
    with db.read() as conn:
        rows = conn.execute("SELECT id, body FROM audit_events WHERE body LIKE ? ORDER BY seq", (needle,)).fetchall()
        outputs = conn.execute(
            "SELECT action_id, stream, data FROM command_outputs WHERE instr(data, ?) > 0", (f":{sid}:".encode(),)
        ).fetchall()
    for event_id, body in rows:
        for field, text in _strings(json.loads(body)):
            items += [
                HeldItem(where=f"audit {event_id} {field}", kind=h.kind, value=h.value)
                for h in protector.held(text, sid)
            ]
    for action_id, stream, data in outputs:
        if data is None:
            continue
        text = bytes(data).decode("utf-8", "replace")
        items += [
            HeldItem(where=f"output {action_id} {stream}", kind=h.kind, value=h.value)
            for h in protector.held(text, sid)
        ]
    return items


def _strings(value: object, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path or "value", value)]
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, item in cast(dict[str, Any], value).items():
            found += _strings(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(cast(list[Any], value)):
            found += _strings(item, f"{path}[{index}]")
    return found
