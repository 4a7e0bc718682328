"""The audit trail: append-only, a keyed hash chain, its head anchored outside the database.

Every tool call, refusal, human action and snapshot operation is one event in the workspace's
`state.db`. Each event's MAC covers the one before it, so editing, inserting, deleting or
reordering an event breaks the chain, and truncating its tail disagrees with the anchor.

    store = AuditStore(db, files=AuditFiles.in_dir(state_dir), body_id=body_id)
    store.check()                                                      # a body's start: since the last check
    store.append(EventDraft(id=new_action_id(), kind="human", ...))   # -> Appended(id, seq, mac)
    store.verify().summary()                                           # the whole chain

What is where:

    _event      EventDraft, Appended, new_action_id, redact_arguments: an event as a caller builds it
    _chain      what an event's MAC signs (canonical_json), the key's HMAC, the chain's genesis
    _journal    the journal's record format: an event durable before its reply, committed after it
    _anchor     the anchor file's format, and when it agrees with the database
    _store      AuditStore: journal, then database, then anchor, under one flock; recovery; reading
    _writer     AuditWriter: a serving body's appends, syncs and commits in one worker thread, in order
    _verify     VerifyReport: the whole chain recomputed and its head compared with the anchor
    _migrate    `swarm privacy migrate`: old events' personal data encrypted, their MACs and links kept
    _retention  pruning through a checkpoint, and keep_retention for a serving body
"""

from ._chain import Attester, canonical_json, escape_string, unescape_string
from ._event import Appended, EventDraft, new_action_id, redact_arguments
from ._files import AuditFiles, held_exclusively, set_aside
from ._migrate import MIGRATE_BATCH, Migration
from ._retention import keep_retention
from ._store import AuditStore
from ._verify import MIGRATED, VerifyReport
from ._writer import AuditWriter

__all__ = [
    "MIGRATED",
    "MIGRATE_BATCH",
    "Appended",
    "Attester",
    "AuditFiles",
    "AuditStore",
    "AuditWriter",
    "EventDraft",
    "Migration",
    "VerifyReport",
    "canonical_json",
    "escape_string",
    "held_exclusively",
    "keep_retention",
    "new_action_id",
    "redact_arguments",
    "set_aside",
    "unescape_string",
]
