# pyright: strict
"""The real backend: the workspace seen through an overlay whose upper layer is the staged change set.

Measured on these machines (bubblewrap 0.8 has no `--overlay`, hence an explicit namespace):
- A user and mount namespace of the launcher's own (`_launch.py`: the body's fork, before it execs bwrap),
  then `mount -t overlay ... -o userxattr` works as root and as a regular user; bwrap then runs inside that
  namespace with its own nested user namespace. Mount propagation is private there, so the overlay never
  appears on the host and dies with the run.
- Without `userxattr`, `rm -rf dir` fails with EIO inside the overlay. `userxattr` implies
  `redirect_dir=nofollow` and `metacopy=off` (asking for `redirect_dir=off` is refused as conflicting).
- The overlay options are paths relative to the staging directory (the launcher's working directory), with
  `lower` a symlink to the workspace: a workspace path containing `,` or `:` would otherwise break option
  parsing.
- The merged directory is bound at the workspace's own absolute path, so tools see familiar paths.
- The upper and work directories live on the run's write area, a quota'd tmpfs (`_areas.py`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from ._bwrap import HiddenTarget
from ._bwrap_backend import BwrapBackend, Prepared
from ._interface import SandboxSpec
from ._launch import ChildMount
from ._overlay_upper import read_upper

# Upper and work directories on the run's write area (one filesystem, as overlayfs requires). The options are
# relative paths from the staging directory, where the launcher runs. Not nosuid/nodev: mount(8) did not ask.
_MOUNT_OVERLAY = ChildMount(
    source="overlay",
    target="merged",
    fstype="overlay",
    options="lowerdir=lower,upperdir=write/upper,workdir=write/work,userxattr",
    nosuid_nodev=False,
    make_dirs=("write/upper", "write/work"),
)
_PROBE_XATTR = "user.swarm.probe"


class BwrapOverlaySandbox(BwrapBackend):
    """bubblewrap over an overlayfs view of the workspace; the real workspace is only ever read."""

    backend_name = "bwrap-overlay"
    required_tools: ClassVar[tuple[str, ...]] = ("bwrap",)
    launches_ahead: ClassVar[bool] = True

    def _prepare(self, staging: Path, spec: SandboxSpec, hidden: Sequence[HiddenTarget]) -> Prepared:
        (staging / "merged").mkdir(mode=0o700)
        (staging / "lower").symlink_to(spec.workspace, target_is_directory=True)
        workspace = spec.workspace
        return Prepared(
            workspace_source=staging / "merged",
            collect=lambda area: read_upper(area / "upper", workspace),
            mounts=(_MOUNT_OVERLAY,),
        )

    def _unusable(self, write_area: Path) -> str | None:
        # Without user xattrs on the upper layer, a directory deleted and recreated would not be opaque:
        # its old children would show through, and the change list would be wrong.
        upper = write_area / "upper"
        try:
            os.setxattr(upper, _PROBE_XATTR, b"y", follow_symlinks=False)
            os.removexattr(upper, _PROBE_XATTR, follow_symlinks=False)
        except OSError as error:
            return f"tmpfs has no user xattrs here ({error.strerror}); overlayfs needs them (Linux 6.6 or later)"
        return None
