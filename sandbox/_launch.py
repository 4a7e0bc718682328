# pyright: strict
"""The overlay backend's launcher, body side: a request to the launcher server (`_spawner.py`), whose child sets
itself up and confines itself with system calls, then execs bwrap.

It replaces the chain `unshare` → `sh` → `mount` ×3 → `bwrap` (five programs: 15-35 ms to its ready line on
the loaded VM) and the body's move of the launcher into the run's cgroup (5-20 ms). Forking the body itself
(`preexec_fn`) was measured first and dropped: a fork of the body costs as much as the chain saved.
The copy backend keeps the chain: its fill and remount need a gate inside the run's namespace.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import sys
import threading
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from signal import SIGKILL, SIGTERM, pidfd_send_signal
from typing import Any

import anyio
import anyio.abc

from . import _spawner
from .exceptions import SandboxSetupFailed

_SPAWNER_PATH = Path(_spawner.__file__)
_MAX_REPLY_BYTES = 4096
#: The server answers a request within milliseconds (one fork); one that does not is hung, and is replaced.
REPLY_TIMEOUT_S = 10.0


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
class LaunchRequest:
    """One run's launcher: what the child does before it execs `argv` (`_spawner.py`)."""

    argv: Sequence[str]
    env: dict[str, str]
    cwd: str
    """The staging directory: the mounts' paths are relative to it."""
    mounts: Sequence[ChildMount]
    areas: tuple[str, str]
    """The write and `/tmp` areas' mount points (among `mounts`), handed to the body in that order."""
    cgroup_join: str | None
    """The run's cgroup file a task writes "0" to, to join it; None without a pids cgroup."""
    rlimits: Sequence[tuple[int, int]]
    uid: int
    gid: int
    pass_fds: Sequence[int]
    """Descriptors of the body's that bwrap gets at the same numbers (its options memfd, its status, the spec's)."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()


class Spawner:
    """One launcher server (`_spawner.py`), started on first use and again if it died; closed with its owner."""

    def __init__(self, owner: object) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        weakref.finalize(owner, self.close)

    def spawn(self, request_path: Path, fds: Sequence[int]) -> tuple[int, int]:
        """Have the server fork a launcher for the request written at `request_path`, handing it `fds`; its pid
        and a pidfd on it. Blocks for a fork (milliseconds): call it from a worker thread.

        A request that cannot be sent (a descriptor not open, too many) fails this run only; a server that
        fails or does not answer within `REPLY_TIMEOUT_S` is stopped (its launchers die with it) and replaced
        at the next run: a run never waits on a hung server."""
        _check_fds(fds, _spawner.MAX_FDS)
        with self._lock:
            channel = self._running()
            try:
                socket.send_fds(channel, [os.fsencode(request_path)], list(fds))
            except OSError as error:
                if error.errno not in (errno.EBADF, errno.EINVAL):  # (those: nothing was sent, the server is fine)
                    self._stop(kill=True)
                raise SandboxSetupFailed("the sandbox launcher server failed", detail=str(error)) from error
            try:
                channel.settimeout(REPLY_TIMEOUT_S)
                reply, pidfds, _, _ = socket.recv_fds(channel, _MAX_REPLY_BYTES, 1)
            except OSError as error:  # (TimeoutError too)
                self._stop(kill=True)
                raise SandboxSetupFailed("the sandbox launcher server failed", detail=str(error)) from error
            try:
                answer: dict[str, Any] = json.loads(reply) if reply else {"error": "it exited"}
            except ValueError:
                answer = {"error": f"unreadable answer {reply[:100]!r}"}
            if "pid" not in answer or len(pidfds) != 1:
                for fd in pidfds:
                    os.close(fd)
                if not reply:
                    self._stop()
                raise SandboxSetupFailed("the sandbox launcher server could not fork", detail=str(answer.get("error")))
            return int(answer["pid"]), pidfds[0]

    def close(self) -> None:
        with self._lock:
            self._stop()

    @property
    def server_pid(self) -> int | None:
        """The running server's pid (None before the first launch)."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    def _running(self) -> socket.socket:
        if self._process is not None and self._process.poll() is None and self._channel is not None:
            return self._channel
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # -I -S: ignore the environment and site-packages (the stdlib is all it needs). A session of its own,
            # as the launchers had: a terminal's interrupt does not reach it; it ends when the body closes it.
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(_SPAWNER_PATH), str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=[theirs.fileno()],
                env={"LC_ALL": "C"},
                start_new_session=True,
            )
        except OSError as error:
            ours.close()
            raise SandboxSetupFailed("could not start the sandbox launcher server", detail=str(error)) from error
        finally:
            theirs.close()
        self._channel = ours
        return ours

    def _stop(self, *, kill: bool = False) -> None:
        """Close the socket: the server kills what is left of its runs (launchers, and what they orphaned) and
        exits. A server that does not exit (hung, stopped), or one that failed (`kill`), is killed: it must not go
        on holding launchers (they die with it; the runs' cgroups hold the rest)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._process is not None:
            if kill:
                self._process.kill()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


class _FdStream(anyio.abc.ByteReceiveStream):
    """The read end of a pipe, read on the event loop."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd: int | None = fd

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            if self._fd is None:
                raise anyio.ClosedResourceError
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SpawnedProcess(anyio.abc.Process):
    """A launcher the server forked: signalled through a pidfd (never a reused pid), its exit status read from
    the run's status pipe, which the server writes when it has reaped it (closed unwritten if it died)."""

    def __init__(self, started: Started) -> None:
        self._pid, self._pidfd = started.pid, started.pidfd
        self._stdout, self._stderr = _FdStream(started.stdout), _FdStream(started.stderr)
        self._status = _FdStream(started.status)
        self._returncode: int | None = None
        self.exited = False

    async def wait(self) -> int:
        if not self.exited:
            said = b""
            with contextlib.suppress(anyio.EndOfStream):
                while True:
                    said += await self._status.receive()
            if not said:
                # The server died first: its launchers die with it, by SIGKILL (the pidfd says when).
                await anyio.wait_readable(self._pidfd)
            self.exited = True
            self._returncode = int(said) if said else -SIGKILL
        assert self._returncode is not None
        return self._returncode

    def send_signal(self, signal: int) -> None:
        if not self.exited:
            with contextlib.suppress(ProcessLookupError):
                pidfd_send_signal(self._pidfd, signal)

    def terminate(self) -> None:
        self.send_signal(SIGTERM)

    def kill(self) -> None:
        self.send_signal(SIGKILL)

    async def aclose(self) -> None:
        await self._stdout.aclose()
        await self._stderr.aclose()
        await self._status.aclose()
        os.close(self._pidfd)

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    @property
    def stdin(self) -> anyio.abc.ByteSendStream | None:
        return None

    @property
    def stdout(self) -> anyio.abc.ByteReceiveStream | None:
        return self._stdout

    @property
    def stderr(self) -> anyio.abc.ByteReceiveStream | None:
        return self._stderr


@dataclass(kw_only=True)
class Started:
    """The descriptors of a launcher the server forked, before they are handed to a process object."""

    pid: int
    pidfd: int
    stdout: int
    stderr: int
    status: int
    """The read end of the run's status pipe."""
    channel: socket.socket
    """The body's end of the areas socket."""


def start_blocking(
    spawner: Spawner, request: LaunchRequest, request_path: Path, fds: Sequence[int] | None = None
) -> Started:
    """Have the server fork the launcher (blocks for a fork: call it from a worker thread). `fds`: the body's
    descriptors the launcher gets at `request.pass_fds`' numbers, in order (default: those very numbers)."""
    return _start(spawner, request.to_json(), request_path, request.pass_fds if fds is None else fds)


def start_standby_blocking(spawner: Spawner, request_path: Path, cgroup_join: str | None) -> Started:
    """Have the server fork a standby launcher: it joins the run's cgroup (`cgroup_join`) at once, then waits
    for its run (`send_run`). Blocks for a fork: call it from a worker thread, ahead of the run."""
    body = json.dumps({"standby": True, "cgroup_join": cgroup_join, "pass_fds": []}).encode()
    return _start(spawner, body, request_path, ())


def send_run(started: Started, request: LaunchRequest) -> None:
    """Give a standby launcher its run: the request in a memfd, and its descriptors (`request.pass_fds`, at the
    same numbers). A few system calls: fit for the event loop. A descriptor not open fails the run, before
    anything is sent."""
    fds = list(request.pass_fds)
    _check_fds(fds, _spawner.MAX_FDS - 1)  # (the request's memfd is one of them)
    memfd = os.memfd_create("swarm-launch", os.MFD_CLOEXEC)
    try:
        write_all(memfd, request.to_json())
        socket.send_fds(started.channel, [b"R"], [memfd, *fds])
    except OSError as error:
        raise SandboxSetupFailed("the standby launcher could not be given its run", detail=str(error)) from error
    finally:
        os.close(memfd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _start(spawner: Spawner, body: bytes, request_path: Path, pass_fds: Sequence[int]) -> Started:
    request_path.write_bytes(body)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    opened: list[int] = []
    try:
        out_r, out_w = os.pipe()
        opened += [out_r, out_w]
        err_r, err_w = os.pipe()
        opened += [err_r, err_w]
        status_r, status_w = os.pipe()
        opened += [status_r, status_w]
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        opened.append(devnull)
        fds = [devnull, out_w, err_w, theirs.fileno(), status_w, *pass_fds]
        pid, pidfd = spawner.spawn(request_path, fds)
    except BaseException:
        for fd in opened:
            os.close(fd)
        ours.close()
        raise
    finally:
        theirs.close()
    for fd in (out_w, err_w, status_w, devnull):
        os.close(fd)
    return Started(pid=pid, pidfd=pidfd, stdout=out_r, stderr=err_r, status=status_r, channel=ours)


def close_started(started: Started) -> None:
    """Kill a launcher that will not be run (through its pidfd) and close its descriptors."""
    with contextlib.suppress(ProcessLookupError):
        pidfd_send_signal(started.pidfd, SIGKILL)
    started.channel.close()
    for fd in (started.pidfd, started.stdout, started.stderr, started.status):
        os.close(fd)


async def receive_areas(channel: socket.socket, timeout_s: float) -> tuple[int, int]:
    """The areas the child hands over, once it has exec'd bwrap (the end of the socket says so); its reason
    when it failed instead (`SandboxSetupFailed`)."""
    channel.setblocking(False)
    got = _Handover()
    with anyio.move_on_after(timeout_s):
        while not got.done:
            await anyio.wait_readable(channel)
            with contextlib.suppress(BlockingIOError):
                got.read(channel)
    return got.areas()


def receive_areas_blocking(channel: socket.socket, timeout_s: float) -> tuple[int, int]:
    """`receive_areas` for the synchronous probe."""
    channel.settimeout(timeout_s)
    got = _Handover()
    with contextlib.suppress(TimeoutError):
        while not got.done:
            got.read(channel)
    return got.areas()


@dataclass(kw_only=True)
class _Handover:
    message: bytes = b""
    fds: list[int] = field(default_factory=list[int])
    said: bytes = b""
    done: bool = False

    def read(self, channel: socket.socket) -> None:
        try:
            self._read(channel)
        except ConnectionResetError:  # (a standby killed before it read its run: the end, as a close)
            self.done = True

    def _read(self, channel: socket.socket) -> None:
        if not self.message and not self.said:
            self.message, self.fds, _, _ = socket.recv_fds(channel, len(_spawner.AREAS_MESSAGE), 2)
            if self.message != _spawner.AREAS_MESSAGE:
                self.said, self.message = self.message, b""
                self.done = not self.said
            return
        chunk = channel.recv(4096)
        self.said += chunk
        self.done = not chunk

    def areas(self) -> tuple[int, int]:
        if not self.done or self.said or self.message != _spawner.AREAS_MESSAGE or len(self.fds) != 2:
            for fd in self.fds:
                os.close(fd)
            detail = self.said.decode(errors="replace") or "it ended without a word, or took too long"
            raise SandboxSetupFailed("the sandbox launcher failed before running anything", detail=detail)
        return self.fds[0], self.fds[1]


def _check_fds(fds: Sequence[int], limit: int) -> None:
    """Refuse, before anything is sent, more than `limit` descriptors for a launcher or one that is not open."""
    if len(fds) > limit:
        raise SandboxSetupFailed(f"the sandbox launcher takes at most {limit} descriptors")
    for fd in fds:
        try:
            os.fstat(fd)
        except OSError as error:
            raise SandboxSetupFailed(f"descriptor {fd} for the sandbox launcher", detail=str(error)) from error
