"""The body's side of `[privacy]`: its subject key store, and erasing or exporting one subject.

Every audit event is protected where it is journaled (`audit.AuditStore`, `protect_fields`), and every kept
command output where it is stored (`outputs.OutputStore`), so nothing this body persists or ships to its brain
holds detected personal data in clear. The keys are in `privacy.db` in the body's state directory: not in
`state.db`, so never in a snapshot (which copies `state.db`), nor set aside by `swarm audit reset`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from shared_protocol.brain import Decision
from shared_protocol.config import PrivacyConfig
from shared_protocol.privacy import (
    KEY_STORE_FILE,
    HeldItem,
    Protector,
    SqliteSubjectKeys,
    Subject,
    redact_tokens,
)

from ._db import StateDB
from .snapshots import SnapshotDamaged
from .snapshots._manifest import Manifest
from .snapshots._store import ObjectStore, referenced
from .snapshots._walk import write_extra
from .state import StatePaths

MIGRATED_COPIES = "privacy.migrate_copies"
"""The `tool` of the event `swarm privacy migrate` appends after protecting kept outputs and dropping snapshots'
clear copies of `state.db` (not `privacy.migrate`: it rewrites no event)."""


def open_protector(paths: StatePaths, config: PrivacyConfig) -> Protector:
    """The body's protector over its own key store (created on first use)."""
    return Protector(config, SqliteSubjectKeys(paths.dir / KEY_STORE_FILE))


def held_about(
    db: StateDB,
    protector: Protector,
    subject: Subject,
    outputs: Iterable[tuple[str, str, str]],
    elsewhere: Iterable[tuple[str, str]] = (),
) -> list[HeldItem] | None:
    """What this body's trail, approval requests and kept outputs (`outputs`: `OutputStore.kept_texts`, inline or in
    files), and other records protected with its keys (`elsewhere`: (where, text), an agent's runner's files), hold
    about `subject`, decrypted; None when no key is held (never seen, or erased)."""
    sid = protector.keys.find(subject.kind, subject.value)
    if sid is None:
        return None
    needle = f"%:{sid}:%"
    items: list[HeldItem] = []
    with db.read() as conn:
        rows = conn.execute("SELECT id, body FROM audit_events WHERE body LIKE ? ORDER BY seq", (needle,)).fetchall()
        decisions = conn.execute("SELECT id, body FROM decisions WHERE body LIKE ? ORDER BY id", (needle,)).fetchall()
    for where, found in (("audit", rows), ("decision", decisions)):
        for record_id, body in found:
            for field, text in _strings(json.loads(body)):
                items += [
                    HeldItem(where=f"{where} {record_id} {field}", kind=h.kind, value=h.value)
                    for h in protector.held(text, sid)
                ]
    for action_id, stream, text in outputs:
        items += [
            HeldItem(where=f"output {action_id} {stream}", kind=h.kind, value=h.value)
            for h in protector.held(text, sid)
        ]
    for where, text in elsewhere:
        items += [HeldItem(where=where, kind=h.kind, value=h.value) for h in protector.held(text, sid)]
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


def _has_clear(protector: Protector, value: object) -> bool:
    """Personal data in clear somewhere in `value` (a JSON value), by detection alone (no key is made)."""
    return any(protector.redact(text) != redact_tokens(text) for _field, text in _strings(value))


def _copy_is_clear(live: StateDB, copy: Path, protector: Protector) -> bool:
    """A snapshot's copy of `state.db` holds personal data that the live one holds encrypted (or that the live one
    no longer holds at all, and is in clear): an event whose live text was rewritten by a migration, a kept output
    whose live hash changed since (outputs are written once), or such a record the live state pruned since."""
    conn = sqlite3.connect(f"file:{copy}?mode=ro&immutable=1", uri=True)
    try:
        after = 0
        while True:
            rows = conn.execute(
                "SELECT seq, mac, body FROM audit_events WHERE seq > ? ORDER BY seq LIMIT 1000", (after,)
            ).fetchall()
            if not rows:
                break
            after = int(rows[-1][0])
            with live.read() as lconn:
                now = dict(
                    lconn.execute(
                        "SELECT seq, body FROM audit_events WHERE seq >= ? AND seq <= ? AND mac IN "
                        "(SELECT value FROM json_each(?))",
                        (int(rows[0][0]), after, json.dumps([str(r[1]) for r in rows])),
                    ).fetchall()
                )
            for seq, _mac, body in rows:
                text = now.get(seq)
                if text is not None and text != body:
                    return True  # (rewritten since: the only change an event may undergo)
                if text is None and _has_clear(protector, json.loads(body)):
                    return True
        try:
            outputs = conn.execute("SELECT action_id, stream, sha256, data FROM command_outputs").fetchall()
        except sqlite3.OperationalError:
            outputs = []  # (a copy older than kept outputs)
        for action_id, stream, sha, data in outputs:
            with live.read() as lconn:
                row = lconn.execute(
                    "SELECT sha256 FROM command_outputs WHERE action_id = ? AND stream = ?", (action_id, stream)
                ).fetchone()
            if row is not None and row[0] != sha:
                return True
            if row is None and data is not None and _has_clear(protector, bytes(data).decode("utf-8", "replace")):
                return True
        return False
    except sqlite3.DatabaseError:
        return True  # (unreadable: whatever it holds cannot be checked, so it cannot be vouched for)
    finally:
        conn.close()


def snapshot_stores(paths: StatePaths) -> list[ObjectStore]:
    """Every snapshot store of this state: a workspace's, or each of an agent's workspaces'."""
    roots = [paths.dir / "snapshots", *sorted((paths.dir / "workspaces").glob("*/snapshots"))]
    return [ObjectStore(root) for root in roots if (root / "manifests").is_dir()]


def drop_clear_state_copies(paths: StatePaths, live: StateDB, protector: Protector) -> list[str]:
    """`swarm privacy migrate`, after the live state is migrated: each snapshot whose copy of `state.db` still
    holds personal data in clear (taken before the migration) loses that copy, and the objects only it used are
    deleted. The snapshot's workspace tree and config copy stay, so a restore (and the undo of a restore, which
    never rolls `state.db` back) works as before; only `--state-db-to` has nothing to write for it. Returns the
    IDs of the snapshots changed."""
    dropped: list[str] = []
    for store in snapshot_stores(paths):
        verdicts: dict[tuple[tuple[str, int], ...], bool] = {}
        with store.locked():
            for left in store.tmp.glob("*privacy-check-*"):  # (a run killed while checking: a clear copy)
                left.unlink(missing_ok=True)
            manifests: list[Manifest] = []
            for snapshot_id in store.ids():
                with contextlib.suppress(SnapshotDamaged):
                    manifests.append(store.read_manifest(snapshot_id))
            gone: set[str] = set()
            for manifest in manifests:
                extra = manifest.extra("state.db")
                if extra is None:
                    continue
                if extra.chunks not in verdicts:
                    store.ensure()
                    copy = store.tmp / f"privacy-check-{os.getpid()}.db"
                    copy.unlink(missing_ok=True)
                    try:
                        write_extra(store, extra, copy)
                        verdicts[extra.chunks] = _copy_is_clear(live, copy, protector)
                    except SnapshotDamaged:
                        verdicts[extra.chunks] = True  # (a damaged copy cannot be vouched for either)
                    finally:
                        copy.unlink(missing_ok=True)
                if verdicts[extra.chunks]:
                    store.write_manifest(
                        dataclasses.replace(manifest, extras=tuple(x for x in manifest.extras if x.name != "state.db"))
                    )
                    gone.update(sha for sha, _ in extra.chunks)
                    dropped.append(manifest.id)
            if gone:
                still = referenced(store.read_manifest(i) for i in store.ids() if _readable(store, i))
                for sha in gone - still:
                    store.path(sha).unlink(missing_ok=True)
    return dropped


def _readable(store: ObjectStore, snapshot_id: str) -> bool:
    try:
        store.read_manifest(snapshot_id)
    except SnapshotDamaged:
        return False
    return True


def migrate_local_decisions(db: StateDB, protector: Protector) -> int:
    """`swarm privacy migrate`: the approval requests this body stored before `[privacy]` (its `decisions`; with a
    brain, the brain keeps its own copy), their summary, rationale, options, action and answers' reasons encrypted
    as `request_approval` encrypts a new one (the files named are paths, kept as they are); the number rewritten."""
    p = protector.protect
    changed: list[tuple[str, str]] = []
    with db.read() as conn:
        rows = conn.execute("SELECT id, body FROM decisions").fetchall()
    for decision_id, body in rows:
        decision = Decision.model_validate_json(body)
        new = decision.model_copy(
            update={
                "summary": p(decision.summary),
                "rationale": p(decision.rationale),
                "options": [p(option) for option in decision.options],
                "action": None if decision.action is None else p(decision.action),
                "answers": [answer.model_copy(update={"reason": p(answer.reason)}) for answer in decision.answers],
            }
        )
        if new != decision:
            changed.append((new.model_dump_json(), str(decision_id)))
    if changed:
        with db.write() as conn:
            conn.executemany("UPDATE decisions SET body = ? WHERE id = ?", changed)
    return len(changed)
