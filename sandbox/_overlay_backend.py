# pyright: strict
"""The real backend: the workspace seen through an overlay whose upper layer is the staged change set.

Measured on these machines (bubblewrap 0.8 has no `--overlay`, hence an explicit namespace):
- `unshare --user --map-root-user --mount` then `mount -t overlay ... -o userxattr` works as root and as a
  regular user; bwrap then runs inside that namespace with its own nested user namespace. `unshare`
  makes mount propagation private, so the overlay never appears on the host and dies with the run.
- Without `userxattr`, `rm -rf dir` fails with EIO inside the overlay. `userxattr` implies
  `redirect_dir=nofollow` and `metacopy=off` (asking for `redirect_dir=off` is refused as conflicting).
- The overlay options are paths relative to the staging directory, with `lower` a symlink to the
  workspace: a workspace path containing `,` or `:` would otherwise break option parsing.
- The merged directory is bound at the workspace's own absolute path, so tools see familiar paths.
- The upper and work directories live on the run's write area, a quota'd tmpfs (`_areas.py`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ._bwrap import HiddenTarget
from ._bwrap_backend import BwrapBackend, Prepared
from ._interface import SandboxSpec
from ._overlay_upper import read_upper

# Upper and work directories on the run's write area (one filesystem, as overlayfs requires). The options are
# relative paths from the staging directory, where the launcher runs.
_MOUNT_OVERLAY = (
    "mkdir write/upper write/work\n"
    '"$M" -t overlay overlay -o lowerdir=lower,upperdir=write/upper,workdir=write/work,userxattr merged\n'
)
_PROBE_XATTR = "user.swarm.probe"


class BwrapOverlaySandbox(BwrapBackend):
    """bubblewrap over an overlayfs view of the workspace; the real workspace is only ever read."""

    backend_name = "bwrap-overlay"

    def _prepare(self, staging: Path, spec: SandboxSpec, hidden: Sequence[HiddenTarget]) -> Prepared:
        (staging / "merged").mkdir(mode=0o700)
        (staging / "lower").symlink_to(spec.workspace, target_is_directory=True)
        workspace = spec.workspace
        return Prepared(
            workspace_source=staging / "merged",
            collect=lambda area: read_upper(area / "upper", workspace),
            setup=_MOUNT_OVERLAY,
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
