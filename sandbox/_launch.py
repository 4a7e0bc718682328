# pyright: strict
"""The overlay backend's launcher: the body's own fork, set up in `preexec_fn`, exec'ing bwrap directly.

It does in one process, with system calls, what the chain `unshare` → `sh` → `mount` ×3 → `bwrap` did with
five programs (the copy backend keeps that chain: its fill and remount need a gate inside the namespace).
Between fork and exec, the child:
1. joins the run's pids cgroup by writing "0" to its `tasks` file (cgroup v1; `cgroup.procs` on v2). A task
   moving itself skips the kernel's global threadgroup lock, whose RCU wait made the body's move of the
   launcher cost 5-20 ms (measured 2026-12-07, kernel 6.18, cgroup v1: 0.09 ms this way); nothing of the
   command exists yet, so every process of the run is born in the cgroup;
2. takes a user and a mount namespace of its own, maps itself to root there (`setgroups` denied) and makes
   every mount private, as `unshare --user --map-root-user --mount` did: nothing it mounts reaches the host;
3. mounts the run's quota'd areas (`_areas.py`) and the backend's own mounts (the overlay) with mount(2);
4. opens both areas and hands them to the body over a socket (SCM_RIGHTS), so the body holds them before
   anything of the command runs, and afterwards reads the staged changes through them;
5. sets the run's rlimits.
subprocess then closes every other descriptor and execs bwrap, which reads its options from the staging
area's file. A step that fails raises: subprocess reports it in the body and nothing is exec'd; the reason
goes over the socket (the child cannot print it: nobody reads its stderr yet). So no gate is left: all the
old one waited for (cgroup, rlimits, the areas in the body's hands) is done before the exec.

The child is a copy of a multi-threaded process: it only makes system calls through objects built before
the fork (the libc functions, the paths, the limits), imports nothing and takes no lock.
"""

from __future__ import annotations

import ctypes
import os
import resource
import socket
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .exceptions import SandboxSetupFailed

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
#: What the child sends with the areas' descriptors; anything else on the socket is its error.
_AREAS_MESSAGE = b"swarm-areas"
_MAX_ERROR_BYTES = 4096

_LIBC = ctypes.CDLL(None, use_errno=True)
_unshare = _LIBC.unshare
_unshare.argtypes = [ctypes.c_int]
_unshare.restype = ctypes.c_int
_mount = _LIBC.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_mount.restype = ctypes.c_int


@dataclass(kw_only=True, frozen=True)
class ChildMount:
    """One mount(2) the child makes, in order; paths relative to the staging directory (its cwd)."""

    source: str
    target: str
    fstype: str
    options: str
    nosuid_nodev: bool = True
    make_dirs: tuple[str, ...] = ()
    """Created (mode 0777 less the umask, as mkdir(1)) before this mount, e.g. on an area mounted earlier."""


@dataclass(kw_only=True, frozen=True)
class ForkLaunch:
    """The `preexec_fn` of the launcher: the steps of the module docstring, in the forked child."""

    mounts: Sequence[ChildMount]
    areas: tuple[str, str]
    """The write and `/tmp` areas' mount points (among `mounts`), handed to the body in that order."""
    cgroup_join: Path | None
    """The run's cgroup file a task writes "0" to, to join it; None without a pids cgroup."""
    rlimits: Sequence[tuple[int, int]]
    uid: int
    gid: int
    areas_socket: int
    """The child's end of the socket the areas go to (close-on-exec: bwrap never sees it)."""

    def __call__(self) -> None:
        try:
            self._set_up()
        except (OSError, ValueError, OverflowError) as error:
            # Best effort: the body reads the reason when subprocess tells it the child failed.
            try:
                os.write(self.areas_socket, f"{error}".encode(errors="replace")[:_MAX_ERROR_BYTES])
            finally:
                raise

    def _set_up(self) -> None:
        if self.cgroup_join is not None:
            _write(self.cgroup_join, b"0", what="join the run's pids cgroup")
        _check(_unshare(_CLONE_NEWUSER | _CLONE_NEWNS), "unshare a user and mount namespace")
        _write(Path("/proc/self/setgroups"), b"deny", what="deny setgroups")
        _write(Path("/proc/self/uid_map"), f"0 {self.uid} 1".encode(), what="map the user")
        _write(Path("/proc/self/gid_map"), f"0 {self.gid} 1".encode(), what="map the group")
        _check(_mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "make the mounts private")
        for mount in self.mounts:
            for directory in mount.make_dirs:
                os.mkdir(directory)
            flags = _MS_NOSUID | _MS_NODEV if mount.nosuid_nodev else 0
            source, target, fstype = mount.source.encode(), mount.target.encode(), mount.fstype.encode()
            _check(_mount(source, target, fstype, flags, mount.options.encode()), f"mount {mount.target}")
        host_dev = os.stat(".").st_dev
        fds = [os.open(area, _O_DIR) for area in self.areas]
        if any(os.fstat(fd).st_dev == host_dev for fd in fds):
            raise OSError(f"the run's areas {self.areas} are not mounted")
        channel = socket.socket(fileno=self.areas_socket)
        try:
            socket.send_fds(channel, [_AREAS_MESSAGE], fds)
        finally:
            channel.detach()  # (the exec closes it)
        for fd in fds:
            os.close(fd)
        for resource_id, value in self.rlimits:
            resource.setrlimit(resource_id, (value, value))


def receive_areas(channel: socket.socket) -> tuple[int, int]:
    """The areas the child sent before its exec (already queued once the spawn has returned)."""
    try:
        message, fds, _, _ = socket.recv_fds(channel, len(_AREAS_MESSAGE), 2, socket.MSG_DONTWAIT)
    except BlockingIOError:
        message, fds = b"", []
    if message != _AREAS_MESSAGE or len(fds) != 2:
        for fd in fds:
            os.close(fd)
        raise SandboxSetupFailed("the sandbox launcher did not hand over its areas")
    for fd in fds:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            for other in fds:
                os.close(other)
            raise SandboxSetupFailed("the sandbox launcher handed over something that is not a directory")
    return fds[0], fds[1]


def child_error(channel: socket.socket) -> str:
    """What the child said when it failed before its exec ("" when it said nothing)."""
    try:
        return channel.recv(_MAX_ERROR_BYTES, socket.MSG_DONTWAIT).decode(errors="replace")
    except OSError:
        return ""


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _write(path: Path, data: bytes, *, what: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as error:
        raise OSError(error.errno, f"{what}: {error.strerror}") from None
