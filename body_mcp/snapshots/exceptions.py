"""Exceptions of the snapshots.

SwarmError (body_mcp.exceptions)
└── SnapshotError
    ├── SnapshotNotFound   an unknown or malformed snapshot ID
    ├── SnapshotDamaged    a manifest or object fails its hash: nothing is restored from it
    └── RestoreImpossible  the workspace cannot be swapped (a mount point, an unwritable parent)
"""

from __future__ import annotations

from ..exceptions import SwarmError


class SnapshotError(SwarmError):
    """Base of the snapshot errors; the message is one line saying what is wrong."""


class SnapshotNotFound(SnapshotError):
    """No such snapshot (an unknown or malformed ID, or none yet for `latest`), or no such extra in one."""


class SnapshotDamaged(SnapshotError):
    """A manifest or object fails its hash: nothing is restored from it."""


class RestoreImpossible(SnapshotError):
    """The workspace cannot be swapped (a mount point, an unwritable parent); it is left as it was."""
