"""The audit trail (being split into private modules; see `_store`)."""

from ._store import (
    Appended,
    AuditStore,
    EventDraft,
    VerifyReport,
    canonical_json,
    keep_retention,
    new_action_id,
    redact_arguments,
    with_mac,
)

__all__ = [
    "Appended",
    "AuditStore",
    "EventDraft",
    "VerifyReport",
    "canonical_json",
    "keep_retention",
    "new_action_id",
    "redact_arguments",
    "with_mac",
]
