"""What snapshot operations return, and `SnapshotEvent`: what each one asks to be audited."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


@dataclass(kw_only=True, frozen=True)
class SnapshotInfo:
    id: str
    created_at: datetime
    reason: str
    files: int
    bytes: int
    skipped: int = 0
    extras: tuple[str, ...] = ()
    files_read: int = 0
    objects_written: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    damaged: str | None = None
    """Why the manifest could not be read (then the counts are 0)."""


@dataclass(kw_only=True, frozen=True)
class RestoreResult:
    snapshot_id: str
    undo_snapshot_id: str
    """The snapshot of the state just before the restore: restore it to undo this one."""
    files: int
    seconds: float
    dropped: tuple[str, ...] = ()
    """Excluded or special paths that had no parent directory in the restored tree, so were deleted."""


@dataclass(kw_only=True, frozen=True)
class DrillReport:
    snapshot_id: str
    files: int
    bytes: int
    verify_s: float
    restore_s: float
    check_s: float
    extras: tuple[str, ...] = ()


@dataclass(kw_only=True, frozen=True)
class PruneResult:
    deleted: tuple[str, ...]
    kept: int
    objects_freed: int = 0
    bytes_freed: int = 0
    swept: bool = True
    """False when a damaged manifest made it unsafe to delete unreferenced objects."""


SnapshotAction = Literal["snapshot_create", "snapshot_restore", "snapshot_recover", "snapshot_prune", "snapshot_drill"]


@dataclass(kw_only=True, frozen=True)
class SnapshotEvent:
    """What to audit: the Body turns it into an audit event (`tool=action`, `detail`)."""

    action: SnapshotAction
    outcome: Literal["ok", "failed"]
    rationale: str
    detail: dict[str, Any] = field(default_factory=dict[str, Any])
