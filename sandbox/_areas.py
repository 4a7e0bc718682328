# pyright: strict
"""The run's write and `/tmp` areas: two size- and inode-limited tmpfs, so one command cannot fill a disk.

Measured on these machines (kernel 6.18, 2026-12-06), which shapes it:
- The launcher's user namespace may mount tmpfs (`size=`, `nr_inodes=`), and overlayfs with `userxattr`
  works with its upper and work directories on one: tmpfs has user xattrs since Linux 6.6. Where it has
  not, the overlay backend's probe says so and "auto" falls back to the copy backend.
- A write past either limit fails inside the sandbox with ENOSPC; nothing reaches the host's disk.
- Those mounts die with the launcher's mount namespace, but not while a descriptor holds them: the overlay
  backend's launcher opens both and hands them to the body before it execs bwrap (`_spawner.py`); the copy
  backend's body opens both through `/proc/PID/root` while the launcher waits at its gate (as root, and as a
  regular user whose namespace it is). The body reads the staged changes through `/proc/self/fd/N`. Closing the
  descriptor frees the memory. A kernel-enforced limit beats a watcher that polls and kills: 1.5 GB is
  written between two polls.
- A full tmpfs reports no free block (or inode) in `statvfs`: that is how a run is found over quota.
  A command that fills an area and then frees some of it was still held to the limit, and is not reported.
The copy backend's area holds the copy of the workspace too; its quota is counted on top of the copy
(the tmpfs is remounted to that size once the copy is in, before the gate opens).
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ._interface import Quota, ResourceLimits
from ._process import READY_LINE
from .exceptions import SandboxSetupFailed

#: The launcher's gate: say it is ready, then nothing until the body's line ("go", or "go SIZE INODES" for
#: the copy backend's remount); stdin is /dev/null again after it (the command never reads the gate).
LAUNCH_GATE = "echo swarm-ready; read -r _ size inodes || exit 125; exec </dev/null\n"
# Inodes the area's own directories take (root, overlay upper, work, work/work, ...), on top of the quota.
_AREA_INODES = 8
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW


def area_options(limits: ResourceLimits, *, sized_after_fill: bool) -> tuple[str, str]:
    """The tmpfs options (besides `nosuid,nodev`) of the write and `/tmp` areas."""
    write = "mode=0700"
    if not sized_after_fill:
        write += f",size={limits.max_write_bytes},nr_inodes={limits.max_write_inodes + _AREA_INODES}"
    return write, f"mode=1777,size={limits.max_tmp_bytes},nr_inodes={limits.max_tmp_inodes + 1}"


def launch_script(limits: ResourceLimits, *, sized_after_fill: bool) -> str:
    """The copy backend's launcher shell: `$0` the staging directory, `$1` mount(8), then bwrap's argv.

    It mounts the areas at `write` and `tmp`, says it is ready and waits at the gate. With `sized_after_fill`,
    the write area starts at tmpfs's default size (half the memory) and is remounted to the size and inode
    count given on the gate line.
    """
    write, tmp = (f"nosuid,nodev,{options}" for options in area_options(limits, sized_after_fill=sized_after_fill))
    # Type, source and flags spelled out: mount(8) would otherwise merge the options it reads back, and the
    # `uid=` it finds there cannot be mapped in the namespace of a regular user (EINVAL).
    remount = '"$M" -t tmpfs -o remount,nosuid,nodev,size="$size",nr_inodes="$inodes" swarm-write write\n'
    remount = remount if sized_after_fill else ""
    return (
        'set -e; cd "$0"; M="$1"; shift\n'
        f'"$M" -t tmpfs -o {write} swarm-write write\n'
        f'"$M" -t tmpfs -o {tmp} swarm-tmp tmp\n'
        f"{LAUNCH_GATE}{remount}"
        'exec "$@"'
    )


@dataclass(kw_only=True)
class RunAreas:
    """One run's areas as the body holds them: open descriptors that keep the tmpfs alive."""

    write_fd: int | None = None
    tmp_fd: int | None = None
    started: bool = False
    """The gate was opened: the command may have written."""

    @property
    def write_path(self) -> Path:
        """The write area as the body sees it (valid while `write_fd` is open)."""
        assert self.write_fd is not None
        return Path(f"/proc/self/fd/{self.write_fd}")

    def open(self, pid: int, staging: Path) -> None:
        """Open both areas in the namespace of the launcher `pid`, which waits at its gate."""
        root = Path(f"/proc/{pid}/root") / staging.relative_to("/")
        host_dev = os.stat(staging).st_dev
        self.write_fd = _open_mounted(root / "write", host_dev)
        self.tmp_fd = _open_mounted(root / "tmp", host_dev)

    def adopt(self, write_fd: int, tmp_fd: int, staging: Path) -> None:
        """Hold the areas the launcher opened in its namespace and handed over (`_launch.py`)."""
        self.write_fd, self.tmp_fd = write_fd, tmp_fd
        host_dev = os.stat(staging).st_dev
        if os.fstat(write_fd).st_dev == host_dev or os.fstat(tmp_fd).st_dev == host_dev:
            raise SandboxSetupFailed("the run's quota areas are not mounted")

    def gate_after_fill(self, limits: ResourceLimits) -> bytes:
        """The gate line that sizes the write area to what it holds now plus the quota."""
        assert self.write_fd is not None
        st = os.fstatvfs(self.write_fd)
        used_bytes = (st.f_blocks - st.f_bfree) * st.f_frsize
        used_inodes = st.f_files - st.f_ffree
        size, inodes = used_bytes + limits.max_write_bytes, used_inodes + limits.max_write_inodes + _AREA_INODES
        return f"go {size} {inodes}\n".encode()

    def usage(self) -> tuple[tuple[Quota, ...], int]:
        """The quotas used up, and the bytes the write area holds."""
        if self.write_fd is None or self.tmp_fd is None:
            return (), 0
        write, tmp = os.fstatvfs(self.write_fd), os.fstatvfs(self.tmp_fd)
        full = [
            (write.f_bavail == 0, Quota.WRITE_BYTES),
            (write.f_favail == 0, Quota.WRITE_INODES),
            (tmp.f_bavail == 0, Quota.TMP_BYTES),
            (tmp.f_favail == 0, Quota.TMP_INODES),
        ]
        return tuple(quota for is_full, quota in full if is_full), (write.f_blocks - write.f_bfree) * write.f_frsize

    def take_write_fd(self) -> int | None:
        """Hand the write area over (to the staged run, which closes it); the `/tmp` area is closed now."""
        fd, self.write_fd = self.write_fd, None
        self.close()
        return fd

    def close(self) -> None:
        for fd in (self.write_fd, self.tmp_fd):
            if fd is not None:
                os.close(fd)
        self.write_fd = self.tmp_fd = None


def _open_mounted(path: Path, host_dev: int) -> int:
    fd = os.open(path, _O_DIR)
    if os.fstat(fd).st_dev == host_dev:
        os.close(fd)
        raise SandboxSetupFailed(f"the run's quota area {path.name!r} is not mounted")
    return fd


def wait_ready_sync(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """`_process`'s ready wait, for the synchronous probe: False when the launcher ended first."""
    assert process.stdout is not None
    fd, line, deadline = process.stdout.fileno(), b"", time.monotonic() + timeout_s
    while len(line) < len(READY_LINE) and not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        chunk = os.read(fd, len(READY_LINE) - len(line))
        if not chunk:
            return False
        line += chunk
    if line != READY_LINE:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        raise SandboxSetupFailed("the sandbox launcher did not get ready", detail=line.decode(errors="replace"))
    return True
