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
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._bwrap import HiddenTarget
from ._bwrap_backend import BwrapBackend, Prepared
from ._interface import SandboxSpec
from ._overlay_upper import read_upper

_MOUNT_OVERLAY = (
    'cd "$0" && "$1" -t overlay overlay -o lowerdir=lower,upperdir=upper,workdir=work,userxattr merged && shift && '
)


class BwrapOverlaySandbox(BwrapBackend):
    """bubblewrap over an overlayfs view of the workspace; the real workspace is only ever read."""

    backend_name = "bwrap-overlay"
    required_tools = ("sh", "bwrap", "unshare", "mount")

    def _prepare(self, staging: Path, spec: SandboxSpec, hidden: Sequence[HiddenTarget]) -> Prepared:
        for name in ("upper", "work", "merged"):
            (staging / name).mkdir(mode=0o700)
        (staging / "lower").symlink_to(spec.workspace, target_is_directory=True)
        upper, workspace = staging / "upper", spec.workspace
        return Prepared(
            workspace_source=staging / "merged",
            collect=lambda: read_upper(upper, workspace),
            wrapper=(self._tool("unshare"), "--user", "--map-root-user", "--mount", "--"),
            setup=_MOUNT_OVERLAY,
            setup_args=(str(staging), self._tool("mount")),
        )
