"""Workspace snapshots: create, list, restore, drill, prune, and the hourly schedule.

A snapshot is the workspace tree (content-addressed and deduplicated: an unchanged file costs
nothing, and a file whose stat matches the previous snapshot is not even read), a consistent
copy of the workspace's `state.db` (SQLite online backup, while bodies write to it) and the
config file, kept under `$SWARM_HOME/workspaces/<key>/snapshots/`. A restore replaces the
workspace atomically and can itself be undone.

    snapshotter = Snapshotter(SnapshotSettings.for_workspace(paths), record=audit)
    info = snapshotter.create(reason="manual")
    snapshotter.restore(info.id).undo_snapshot_id

What is where:

    _snapshotter  Snapshotter and SnapshotSettings: every operation, under the store's lock
    _walk         reading a workspace into a snapshot (by descriptor, with a stat cache); the state.db copy
    _store        the snapshot directory: content-addressed objects, manifests, the lock
    _manifest     the manifest format, self-checking
    _results      what operations return, and SnapshotEvent: what each asks to be audited
    _build        building a restored tree beside the workspace, hard-linking unchanged files
    _swap         swapping it in atomically, its journal, and recovering a killed restore
    _schedule     retention (which snapshots to keep) and the hourly loop
    exceptions    SnapshotError and its subclasses
"""

from ._results import DrillReport, PruneResult, RestoreResult, SnapshotAction, SnapshotEvent, SnapshotInfo
from ._schedule import retained, run_hourly, seconds_until_due
from ._snapshotter import SnapshotSettings, Snapshotter
from ._walk import Progress, snapshot_database
from .exceptions import RestoreImpossible, SnapshotDamaged, SnapshotError, SnapshotNotFound

__all__ = [
    "DrillReport",
    "Progress",
    "PruneResult",
    "RestoreImpossible",
    "RestoreResult",
    "SnapshotAction",
    "SnapshotDamaged",
    "SnapshotError",
    "SnapshotEvent",
    "SnapshotInfo",
    "SnapshotNotFound",
    "SnapshotSettings",
    "Snapshotter",
    "retained",
    "run_hourly",
    "seconds_until_due",
    "snapshot_database",
]
