# pyright: strict
"""The fallback backend: a full copy of the workspace, for machines that refuse overlay mounts.

Same isolation as the overlay backend (bwrap binds the copy at the workspace's path); it costs a copy of
the workspace per run and a diff afterwards. Hidden paths are never copied: only empty placeholders are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._bwrap import HiddenTarget
from ._bwrap_backend import BwrapBackend, Prepared
from ._copy_tree import copy_workspace, diff_copy
from ._interface import SandboxSpec


class CopyStagingSandbox(BwrapBackend):
    """bubblewrap over a private copy of the workspace, diffed against the original afterwards."""

    backend_name = "copy"

    def _prepare(self, staging: Path, spec: SandboxSpec, hidden: Sequence[HiddenTarget]) -> Prepared:
        workspace = spec.workspace
        hidden_rel = {
            target.path.relative_to(workspace).as_posix() for target in hidden if workspace in target.path.parents
        }
        copy = copy_workspace(workspace, staging / "copy", hidden=hidden_rel)
        return Prepared(workspace_source=copy.root, collect=lambda: diff_copy(workspace, copy))
