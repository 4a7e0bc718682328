# pyright: strict
"""Resource limits: rlimits, and a pids cgroup per run for the process count.

Both are on the launcher before it execs bwrap, so nothing of the command exists outside them. The overlay
backend's launcher (`_spawner.py`) joins the cgroup itself, first thing, by writing "0" to its `tasks` file
(cgroup v1): a task moving itself skips the global threadgroup lock whose RCU grace period made moving
another process cost 5-20 ms (`join_file`); it sets its rlimits last. The copy backend's launcher is put in
them by the body before its gate opens (it reads one line from stdin before running anything of the
command, and exits if the line never comes): the cgroup move starts right after the spawn, overlapping the
launcher's mounts (whose short-lived `mount` children may stay outside it), the rlimits are set at the gate
(a `prlimit` process and a shell to join the cgroup cost about 6 ms of a run, measured 2026-11-25).

Measured here: as root, RLIMIT_NPROC does not bind (not even inside a user namespace), so the process count
is held by the pids controller: cgroup v1 at /sys/fs/cgroup/pids on these machines, v2 on most servers.
Creating a child cgroup, writing `pids.max`, and writing the waiting launcher's pid into `cgroup.procs`
puts every descendant in it (threads count as tasks). Without a usable pids cgroup (not root, or no
delegation) RLIMIT_NPROC is the fallback, which does bind for an unprivileged user (it counts all of the
user's processes, so the limit is raised by how many they already have).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import resource
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ._interface import ResourceLimits

_CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Every run cgroup's name starts with it, then says which process made it (`create_pids_cgroup`).
_PREFIX = "swarm-sandbox-"
# The outer bwrap and bwrap's init in the pid namespace (and, with a proxy, the forwarder) are not the
# command's: the cgroup allows them on top of the command's own budget.
SANDBOX_OVERHEAD_PROCESSES = 2
# Between two rounds of `PidsCgroup.kill_all`: long enough not to spin, short next to a dying task's exit.
_KILL_ROUND_S = 0.002


def rlimits(limits: ResourceLimits, *, with_nproc: bool) -> list[tuple[int, int]]:
    """(resource, value) for every rlimit of a run, soft and hard alike, clamped to what this process may grant."""

    def value(resource_id: int, wanted: int) -> tuple[int, int]:
        _, hard = resource.getrlimit(resource_id)
        granted = wanted if hard == resource.RLIM_INFINITY or os.geteuid() == 0 else min(wanted, hard)
        return resource_id, granted

    pairs = [
        value(resource.RLIMIT_CPU, limits.cpu_seconds),
        value(resource.RLIMIT_AS, limits.memory_bytes),
        value(resource.RLIMIT_FSIZE, limits.max_file_bytes),
        value(resource.RLIMIT_NOFILE, limits.max_open_files),
    ]
    if with_nproc:
        # RLIMIT_NPROC counts every process of the user, not just this run's.
        wanted = _count_own_processes() + limits.max_processes + SANDBOX_OVERHEAD_PROCESSES + 1
        pairs.append(value(resource.RLIMIT_NPROC, wanted))
    return pairs


def apply_rlimits(pid: int, pairs: list[tuple[int, int]]) -> None:
    """Set each limit, soft and hard, on the (waiting) process `pid`."""
    for resource_id, granted in pairs:
        resource.prlimit(pid, resource_id, (granted, granted))


def _count_own_processes() -> int:
    uid = os.getuid()
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                count += entry.stat().st_uid == uid
    return count


@dataclass(kw_only=True)
class PidsCgroup:
    """One run's pids cgroup. Kill it to kill every process of the run; remove it when they are gone."""

    path: Path
    _has_kill_file: bool | None = None

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    @property
    def join_file(self) -> Path:
        """What a task writes "0" to, to join this cgroup itself: `tasks` on v1, where moving oneself skips the
        global lock (and its RCU wait) that moving another process takes; `cgroup.procs` on v2."""
        tasks = self.path / "tasks"
        return tasks if tasks.exists() else self.procs_file

    def add(self, pid: int) -> None:
        """Move the process `pid` into this cgroup (its children from then on are in it too). Blocks for a few
        milliseconds on cgroup v1 (the kernel waits for an RCU grace period): run it in a worker thread."""
        self.procs_file.write_text(str(pid))

    def pids(self) -> list[int]:
        try:
            text = self.procs_file.read_text()
        except FileNotFoundError:
            return []
        return [int(line) for line in text.split()]

    def kill_once(self) -> None:
        """SIGKILL every member once, without waiting (safe on an event loop: a few syscalls).

        `cgroup.kill` (v2) takes the whole tree at once; v1 has none, so each listed pid gets its SIGKILL, and
        a child forked meanwhile is left to `kill_all`'s next round (run when the cgroup is removed)."""
        if self._has_kill_file is None:
            self._has_kill_file = (self.path / "cgroup.kill").exists()
        if self._has_kill_file:
            with contextlib.suppress(OSError):
                (self.path / "cgroup.kill").write_text("1")
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def kill_all(self, *, deadline_s: float = 1.0) -> None:
        """SIGKILL every member until none is left or `deadline_s` passed, a short sleep between rounds (a
        forking tree needs rounds; a dying task stays listed for a moment). Blocks: run it in a worker thread."""
        stop = time.monotonic() + deadline_s
        while True:
            self.kill_once()
            if not self.pids() or time.monotonic() >= stop:
                return
            time.sleep(_KILL_ROUND_S)

    def remove(self, *, deadline_s: float = 2.0) -> None:
        """Kill what is left and remove the cgroup; a dying task can hold it busy for a moment."""
        stop = time.monotonic() + deadline_s
        while True:
            self.kill_all(deadline_s=0.2)
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as error:
                if error.errno != errno.EBUSY or time.monotonic() > stop:
                    raise
                time.sleep(0.005)


def pids_cgroup_parent() -> Path | None:
    """The directory under which this process may create pids cgroups, or None when there is none."""
    if os.geteuid() != 0:
        return None  # Without delegation an unprivileged user cannot create cgroups.
    try:
        membership = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    v1_mount = _CGROUP_ROOT / "pids"
    for line in membership:
        hierarchy, controllers, relative = line.split(":", 2)
        if hierarchy != "0" and "pids" in controllers.split(",") and (v1_mount / "cgroup.procs").exists():
            return _writable_dir(v1_mount / relative.lstrip("/"))
    for line in membership:
        hierarchy, _, relative = line.split(":", 2)
        if hierarchy == "0" and (_CGROUP_ROOT / "cgroup.controllers").exists():
            # v2: children get the pids controller only if the parent delegates it. Our own cgroup rarely
            # does (it holds processes), the root cgroup usually does, and root may move processes there.
            for parent in (_CGROUP_ROOT / relative.lstrip("/"), _CGROUP_ROOT):
                if _delegates_pids(parent) and (usable := _writable_dir(parent)) is not None:
                    return usable
    return None


def _delegates_pids(parent: Path) -> bool:
    try:
        return "pids" in (parent / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False


def _writable_dir(path: Path) -> Path | None:
    return path if path.is_dir() and os.access(path, os.W_OK) else None


def create_pids_cgroup(parent: Path, max_processes: int, *, overhead: int) -> PidsCgroup:
    """Create a fresh cgroup under `parent` allowing the command `max_processes` tasks (threads count),
    plus `overhead` for the sandbox's own processes. Its name says which process made it, for
    `remove_orphaned_cgroups`."""
    tag = _owner_tag()
    path = parent / f"{_PREFIX}{tag + '-' if tag else ''}{uuid.uuid4().hex}"
    path.mkdir()
    cgroup = PidsCgroup(path=path)
    try:
        (path / "pids.max").write_text(str(max_processes + overhead))
    except OSError:
        cgroup.remove()
        raise
    return cgroup


def remove_orphaned_cgroups(parent: Path) -> list[Path]:
    """Kill what is in the run cgroups under `parent` whose maker (a body, in our pid namespace) is gone, and
    remove them; the ones removed.

    A body removes its runs' cgroups itself, and when it dies its launcher server kills what is left and removes
    them (`_spawner.py`). If both were killed, a run's processes can outlive them (bwrap's init during its
    setup, or the copy backend's chain, the body's own child): the next body's first run takes them. A cgroup
    named otherwise (an older body's, another pid namespace's) is left alone: whether its maker lives is unknown.
    """
    try:
        namespace = _pid_namespace()
    except OSError:
        return []
    removed: list[Path] = []
    for path in parent.glob(f"{_PREFIX}{namespace}.*"):
        tag = path.name[len(_PREFIX) :].split("-", 1)[0].split(".")
        if len(tag) != 3 or not all(part.isdigit() for part in tag) or _start_time(int(tag[1])) == int(tag[2]):
            continue  # (not a name we make, or its maker lives)
        with contextlib.suppress(OSError):  # (another body removing it at the same time, or a task that will not die)
            PidsCgroup(path=path).remove()
            removed.append(path)
    return removed


def owner_tag() -> str | None:
    """`NS.PID.START` for this process (see `made_by_a_gone_process`); None where /proc cannot tell."""
    return _owner_tag()


def made_by_a_gone_process(name: str, prefix: str) -> bool:
    """Whether `name` (`prefix`, an `owner_tag`, then `-` and the rest) was made by a process of our pid namespace
    that is gone. False for any other name: an older body's, another pid namespace's (whether its maker lives is
    unknown)."""
    if not name.startswith(prefix):
        return False
    try:
        namespace = _pid_namespace()
    except OSError:
        return False
    tag = name[len(prefix) :].split("-", 1)[0].split(".")
    if len(tag) != 3 or not all(part.isdigit() for part in tag) or int(tag[0]) != namespace:
        return False
    return _start_time(int(tag[1])) != int(tag[2])


def _owner_tag() -> str | None:
    """`NS.PID.START` for this process: its pid namespace's inode, its pid, its start time (a reused pid has
    another); None where /proc cannot tell."""
    return _owner_tag_of(os.getpid())


@functools.cache
def _owner_tag_of(pid: int) -> str | None:  # (read once per process: 0.2 ms a run on the loaded VM otherwise)
    try:
        namespace = _pid_namespace()
    except OSError:
        return None
    start = _start_time(pid)
    return None if start is None else f"{namespace}.{pid}.{start}"


def _pid_namespace() -> int:
    return os.stat("/proc/self/ns/pid").st_ino


def _start_time(pid: int) -> int | None:
    """When the process `pid` started, in clock ticks since boot; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # (the command name, in parentheses, may hold spaces: field 22 counts on from after the last ")")
    return int(stat[stat.rindex(b")") + 2 :].split()[19])
