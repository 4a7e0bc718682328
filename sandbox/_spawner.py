# pyright: strict
"""The launcher server: a small process that forks each run's launcher (run as `python -I -S _spawner.py FD`).

Standard library only, single-threaded, a few MB: forking it costs ~2 ms where forking the body (tens of MB,
threads) cost 5-15 ms on the loaded 2-core VM (2026-12-07). One request per run on the socket FD: the path
of a JSON request in the run's private staging directory and, as SCM_RIGHTS, the run's descriptors (stdin,
stdout, stderr, the areas socket, the write end of the run's status pipe, then the ones bwrap and the command
get at their own numbers). It forks, answers with the child's pid and a pidfd (the body kills through it: a
signal can never reach a reused pid), and when the child ends, reaps it and writes its exit status to the
status pipe. Each child dies with the server (`PR_SET_PDEATHSIG`, kept across the exec of bwrap).

What a launcher leaves behind is the server's to kill: it is their subreaper, so a process orphaned by a
launcher's death comes to it rather than to init. bwrap's own init is such a process for a moment: it gets
`--die-with-parent`'s PDEATHSIG only once its setup is done (a fork does not inherit one), so a launcher
killed during that setup (tens of ms on a loaded machine) left it, and the command it then started, running
with nobody to kill them (seen once in CI: the body SIGKILLed just after bwrap's exec, its command's four
processes alive 5 s later). The server kills every such orphan when it reaps a launcher, and when the body
closes the socket (or dies), it kills what is left of every run, waits until it is gone, removes the runs'
cgroups (a dead body cannot) and only then exits.

The child, before it execs bwrap (`launch`):
1. restores the signals Python changed, starts a session, puts its descriptors at their numbers and closes
   every other one (the server's socket above all: a command holding it could start processes outside);
2. joins the run's pids cgroup by writing "0" to its `tasks` file (cgroup v1; `cgroup.procs` on v2). A task
   moving itself skips the kernel's global threadgroup lock, whose RCU wait made the body's move of the
   launcher cost 5-20 ms (0.09 ms this way, measured 2026-12-07, kernel 6.18); nothing of the command
   exists yet, so every process of the run is born in the cgroup;
3. takes a user and a mount namespace of its own, maps itself to root there (`setgroups` denied) and makes
   every mount private, as `unshare --user --map-root-user --mount` did: nothing it mounts reaches the host;
4. mounts the run's quota'd areas and the backend's mounts (the overlay) with mount(2), as `sh` and three
   `mount` processes did;
5. opens both areas and hands them to the body over the areas socket, so the body holds them before anything
   of the command runs and reads the staged changes through them afterwards;
6. sets the run's rlimits, then execs bwrap, which reads its options from a memfd the body wrote.
A step that fails sends its reason on the areas socket and exits 127: nothing is exec'd. The exec closes
the areas socket (close-on-exec): the body reads the end of it as "bwrap runs".
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from typing import Any, NamedTuple, NoReturn

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
#: What the child sends with the areas' descriptors; anything else on the areas socket is its error.
AREAS_MESSAGE = b"swarm-areas"
MAX_FDS = 64
_MAX_PATH = 4096
_MAX_ERROR_BYTES = 4096
_MAX_REQUEST_BYTES = 64 << 20
#: How long the server, once the body is gone, goes on killing and reaping what is left of its runs.
_END_RUNS_S = 5.0

_LIBC = ctypes.CDLL(None, use_errno=True)
_unshare = _LIBC.unshare
_unshare.argtypes = [ctypes.c_int]
_unshare.restype = ctypes.c_int
_mount = _LIBC.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_mount.restype = ctypes.c_int
_prctl = _LIBC.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


class _Run(NamedTuple):
    status_fd: int
    """The write end of the run's status pipe."""
    cgroup: str | None
    """The run's cgroup directory, if it has one."""


def serve(control_fd: int) -> None:
    """Fork one launcher per request until the body closes the socket; report each one's exit status. Then
    kill what is left of the runs (`_end_runs`)."""
    control = socket.socket(fileno=control_fd)
    server = os.getpid()
    _check(_prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "become the launchers' subreaper")
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    runs: dict[int, _Run] = {}
    """launcher pid -> its run."""
    while True:
        ready = select.select([control, wake_r], [], [])[0]
        if wake_r in ready:
            _drain(wake_r)
            _reap(runs)
        if control not in ready:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(control, _MAX_PATH, MAX_FDS)
        except OSError:
            message, fds = b"", []
        if not message:
            for fd in fds:
                os.close(fd)
            _end_runs(runs, wake_r)
            return
        status_fd = fds.pop(4) if len(fds) > 4 else -1
        pid = 0
        try:
            with open(os.fsdecode(message), "rb") as stream:
                request = json.load(stream)
            # Checked before the fork: a status pipe of -1 would crash `_reap`, and every launcher with the server.
            wanted = 4 + len(request["pass_fds"])
            if status_fd < 0 or len(fds) != wanted:
                raise ValueError(f"{len(fds) + (status_fd >= 0)} descriptors for a request of {wanted + 1}")
            cgroup = None if request["cgroup_join"] is None else os.path.dirname(request["cgroup_join"])
            pid = os.fork()
            if pid == 0:
                launch(request, fds, server)
            runs[pid], status_fd = _Run(status_fd=status_fd, cgroup=cgroup), -1
            pidfd = os.pidfd_open(pid)
            try:
                socket.send_fds(control, [json.dumps({"pid": pid}).encode()], [pidfd])
            finally:
                os.close(pidfd)
        except (OSError, ValueError, KeyError, TypeError) as error:  # (a malformed request: the server goes on)
            if pid > 0:  # forked, but the body has no handle on it: it must not run (unreaped: never a reused pid)
                os.kill(pid, signal.SIGKILL)
            control.send(json.dumps({"error": f"{type(error).__name__}: {error}"}).encode())
        finally:
            for fd in [*fds, status_fd]:
                if fd >= 0:
                    os.close(fd)
        _reap(runs)


def _reap(runs: dict[int, _Run]) -> None:
    """Reap every child that ended and kill what it orphaned (children of ours that are no launcher), then write
    each ended launcher's exit status (as `subprocess` has it) to its run's pipe."""
    ended: list[tuple[_Run, int]] = []
    reaped = False
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        reaped = True
        if (run := runs.pop(pid, None)) is not None:  # (else an orphan, killed when its launcher was reaped)
            ended.append((run, status))
    if not reaped:
        return
    for pid in _children():
        if pid not in runs:
            _kill(pid)
    for run, status in ended:
        with contextlib.suppress(OSError):  # (EPIPE: the body is gone; the pipe is empty, a write never blocks)
            os.write(run.status_fd, str(os.waitstatus_to_exitcode(status)).encode())
        os.close(run.status_fd)


def _end_runs(runs: dict[int, _Run], wake_r: int) -> None:
    """The body closed the socket or died: kill every process left of its runs, launchers and orphans alike
    (bwrap's init, killed, takes its pid namespace with it), until none is left or `_END_RUNS_S` passed; then
    remove the cgroups of the runs that were still going."""
    cgroups = [run.cgroup for run in runs.values() if run.cgroup is not None]
    deadline = time.monotonic() + _END_RUNS_S
    while (children := _children()) and (left := deadline - time.monotonic()) > 0:
        for pid in children:
            _kill(pid)
        select.select([wake_r], [], [], min(left, 0.05))  # (SIGCHLD wakes it)
        _drain(wake_r)
        _reap(runs)
    for cgroup in cgroups:
        _remove_cgroup(cgroup, deadline)


def _children() -> list[int]:
    """The server's children: its launchers and the processes they orphaned."""
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children", "rb") as stream:
            return [int(pid) for pid in stream.read().split()]
    except FileNotFoundError:  # (a kernel without CONFIG_PROC_CHILDREN)
        return children_by_scan(me)


def children_by_scan(parent: int) -> list[int]:
    """The children of `parent`, read from every process's `stat` (slower, needs no kernel option)."""
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stream:
                    stat = stream.read()
            except OSError:
                continue
            # (the command name, in parentheses, may hold spaces and parentheses: the fields follow the last ")")
            if int(stat[stat.rindex(b")") + 2 :].split()[1]) == parent:
                found.append(int(entry.name))
    return found


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        os.read(fd, 4096)


def _remove_cgroup(path: str, deadline: float) -> None:
    """Remove an emptied cgroup; busy for a moment while its last tasks are released."""
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as error:
            if error.errno != errno.EBUSY or time.monotonic() > deadline:
                return
            time.sleep(0.005)


def launch(request: dict[str, Any], fds: list[int], server: int) -> NoReturn:
    """The child: the steps of the module docstring, then bwrap. Never returns.

    A standby launcher (`"standby": true`, forked ahead of its run) does steps 1 and 2 at once, then waits on
    the areas socket for its run: one byte with the run's descriptors, the first a memfd holding the run's
    request (`_launch.send_run`); the rest as for any launcher. The socket closed instead: it exits, having run
    nothing."""
    areas_socket = fds[3] if len(fds) > 3 else -1
    try:
        signal.set_wakeup_fd(-1)
        for name in ("SIGCHLD", "SIGPIPE", "SIGXFSZ", "SIGINT"):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        _check(_prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "die with the launcher server")
        if os.getppid() != server:
            raise OSError("the launcher server is gone")
        os.setsid()
        targets: list[int] = [0, 1, 2, *request["pass_fds"]]
        if len(fds) != len(targets) + 1:
            raise ValueError(f"{len(fds)} descriptors for {len(targets) + 1}")
        areas_socket = _place([*fds[:3], *fds[4:]], targets, areas_socket)
        if request.get("standby"):
            if request["cgroup_join"] is not None:
                _write(request["cgroup_join"], b"0", what="join the run's pids cgroup")
            request, run_fds = _await_run(areas_socket)
            request["cgroup_join"] = None  # (joined above, before the wait)
            if len(run_fds) != len(request["pass_fds"]):
                raise ValueError(f"{len(run_fds)} descriptors for a run of {len(request['pass_fds'])}")
            areas_socket = _place(run_fds, request["pass_fds"], areas_socket, keep=(0, 1, 2))
        os.chdir(request["cwd"])
        _set_up(request, areas_socket)
        os.execve(request["argv"][0], request["argv"], request["env"])
    except BaseException as error:  # noqa: BLE001 (the child must never return into the server's loop)
        if areas_socket >= 0:
            with contextlib.suppress(OSError):
                os.write(areas_socket, f"{error}".encode(errors="replace")[:_MAX_ERROR_BYTES])
    os._exit(127)


def _place(fds: list[int], targets: list[int], channel: int, keep: tuple[int, ...] = ()) -> int:
    """Put each of `fds` at its target number (inheritable: dup2) and close every other descriptor but `keep`
    and the channel (the server's socket above all: a command holding it could start processes outside); the
    channel's new number (close-on-exec)."""
    # Out of the way of every target number first, then each at its number.
    base = max([*targets, *fds, *keep, channel]) + 1
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base) for fd in [*fds, channel]]
    channel = high.pop()
    for fd, target in zip(high, targets, strict=True):
        os.dup2(fd, target)
    # (never an empty range: CPython 3.11 turns `closerange(n, n)` into close_range(n, UINT_MAX))
    low = 0
    for fd in sorted({*targets, *keep, channel}):
        if low < fd:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)
    return channel


def _await_run(channel_fd: int) -> tuple[dict[str, Any], list[int]]:
    """A standby's wait for its run: the request (from the memfd that comes first) and the run's descriptors."""
    channel = socket.socket(fileno=channel_fd)
    try:
        message, fds, _, _ = socket.recv_fds(channel, 1, MAX_FDS)
    finally:
        channel.detach()
    if not message or not fds:
        for fd in fds:
            os.close(fd)
        raise OSError("the body closed the standby launcher's socket: nothing to run")
    with open(fds[0], "rb", closefd=True) as stream:
        request: dict[str, Any] = json.loads(os.pread(stream.fileno(), _MAX_REQUEST_BYTES, 0))
    return request, fds[1:]


def _set_up(request: dict[str, Any], areas_socket: int) -> None:
    if request["cgroup_join"] is not None:
        _write(request["cgroup_join"], b"0", what="join the run's pids cgroup")
    _check(_unshare(_CLONE_NEWUSER | _CLONE_NEWNS), "unshare a user and mount namespace")
    _write("/proc/self/setgroups", b"deny", what="deny setgroups")
    _write("/proc/self/uid_map", f"0 {request['uid']} 1".encode(), what="map the user")
    _write("/proc/self/gid_map", f"0 {request['gid']} 1".encode(), what="map the group")
    _check(_mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "make the mounts private")
    for mount in request["mounts"]:
        for directory in mount["make_dirs"]:
            os.mkdir(directory)
        flags = _MS_NOSUID | _MS_NODEV if mount["nosuid_nodev"] else 0
        source, target, fstype = (mount[key].encode() for key in ("source", "target", "fstype"))
        _check(_mount(source, target, fstype, flags, mount["options"].encode()), f"mount {mount['target']}")
    host_dev = os.stat(".").st_dev
    areas = [os.open(area, _O_DIR) for area in request["areas"]]
    if any(os.fstat(fd).st_dev == host_dev for fd in areas):
        raise OSError(f"the run's areas {request['areas']} are not mounted")
    channel = socket.socket(fileno=areas_socket)
    try:
        socket.send_fds(channel, [AREAS_MESSAGE], areas)
    finally:
        channel.detach()
    for fd in areas:
        os.close(fd)
    for resource_id, value in request["rlimits"]:
        resource.setrlimit(resource_id, (value, value))


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _write(path: str, data: bytes, *, what: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as error:
        raise OSError(error.errno, f"{what}: {error.strerror}") from None


if __name__ == "__main__":
    serve(int(sys.argv[1]))
