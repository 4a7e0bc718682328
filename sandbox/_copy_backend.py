# pyright: strict
"""The fallback backend: a full copy of the workspace, for machines that refuse overlay mounts.

Same isolation as the overlay backend (bwrap binds the copy at the workspace's path); it costs a copy of
the workspace per run and a diff afterwards. Hidden paths are never copied: only empty placeholders are.
The copy lives on the run's write area, a tmpfs (`_areas.py`): memory for as long as the run is held, and
the write quota counts on top of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._bwrap import HiddenTarget
from ._bwrap_backend import BwrapBackend, Prepared
from ._copy_tree import StagedCopy, copy_workspace, diff_copy
from ._interface import SandboxSpec, StagedChange


class CopyStagingSandbox(BwrapBackend):
    """bubblewrap over a private copy of the workspace, diffed against the original afterwards."""

    backend_name = "copy"

    def _prepare(self, staging: Path, spec: SandboxSpec, hidden: Sequence[HiddenTarget]) -> Prepared:
        workspace = spec.workspace
        hidden_rel = {
            target.path.relative_to(workspace).as_posix() for target in hidden if workspace in target.path.parents
        }
        copies: list[StagedCopy] = []

        def fill(area: Path) -> None:
            copies.append(copy_workspace(workspace, area / "copy", hidden=hidden_rel))

        def collect(area: Path) -> list[StagedChange]:
            (copy,) = copies
            return diff_copy(workspace, copy)

        return Prepared(workspace_source=staging / "write" / "copy", collect=collect, fill=fill)
