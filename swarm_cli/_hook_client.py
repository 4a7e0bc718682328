"""`swarm hook …` through a warm hook server: the IDE runs the hook on every tool call, and importing the CLI
takes a third of a second (more under load), so a hook asks a server that has imported it already.

The server (`_hook_server`) forks a child per call that runs the very same `swarm hook` command with this
process's arguments, environment, working directory, umask, stdin and stderr: same code, same decisions,
same audit. Only the import is saved. This module imports the standard library's small modules only.

Whenever the warm path cannot answer for sure, `run` returns None and the caller runs the command in this
process: no server yet (one is started for the next call), a server that runs other code than the files on
disk now (it refuses and exits), a child that died before answering, no answer in time. The in-process run
then reads what is left of stdin: an event the child already read makes it deny (a malformed event), never
allow. Exactly one answer is printed either way.

`SWARM_HOOK_SERVER=0` runs every hook in its own process (no server); `SWARM_HOOK_SERVER=only` fails instead
of falling back (tests use it to prove the warm path answered).
"""

from __future__ import annotations

import _socket
import os
import select
import sys
import time
import zlib

WAIT_S = 6.0
"""The child answers within the hook's 4 s budget; past this the in-process run answers (the IDE waits 10 s)."""
REFUSED = -1
"""Status: the server did not run the command (stale code, no such directory): nothing read stdin."""
KILLED = -2
"""Status: the child died of a signal."""
STATUS_SIZE = 4
"""A status or a length: 4 bytes, big-endian, signed."""
_MAX_PATH = 100
"""An AF_UNIX path is at most 107 bytes; a longer one is reached through the directory's descriptor."""


class NotServed(Exception):
    """The warm path could not answer (`SWARM_HOOK_SERVER=only` turns this into an error)."""


def server_key() -> str:
    """Which server: one per interpreter and installed CLI, so another venv or checkout never answers."""
    here = os.path.dirname(os.path.abspath(__file__))
    return f"{zlib.crc32((sys.executable + chr(0) + here).encode()):08x}"


def run_dir() -> str:
    """`$SWARM_HOME/run`, resolved as `body_mcp.state.resolve_home` resolves the home."""
    home = os.environ.get("SWARM_HOME") or os.path.join(os.path.expanduser("~"), ".swarm")
    return os.path.join(os.path.realpath(os.path.expanduser(home)), "run")


def socket_name() -> str:
    return f"hook-{server_key()}.sock"


def pack(value: int) -> bytes:
    return value.to_bytes(STATUS_SIZE, "big", signed=True)


def unpack(raw: bytes) -> int:
    return int.from_bytes(raw, "big", signed=True)


def _connect(directory: str, name: str) -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        path = os.path.join(directory, name)
        if len(path.encode()) <= _MAX_PATH:
            sock.connect(path)
        else:
            dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                sock.connect(f"/proc/self/fd/{dir_fd}/{name}")
            finally:
                os.close(dir_fd)
    except BaseException:
        sock.close()
        raise
    return sock


def _spawn_server(directory: str) -> None:
    """Start a server for the next call, detached (its own session, no stdio), and do not wait for it."""
    import contextlib
    import subprocess

    with contextlib.suppress(OSError):  # (no server: every call runs in its own process, as before)
        subprocess.Popen(
            [sys.executable, "-m", "swarm_cli._hook_server", directory, socket_name()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )


def request(argv: list[str]) -> bytes:
    """What the child needs to run `swarm *argv` as this process would: NUL-separated (no argument, variable or
    path holds a NUL), the working directory, the umask, the number of arguments, the arguments, then the
    environment as NAME=VALUE (a name holds no `=`)."""
    umask = os.umask(0o022)
    os.umask(umask)
    fields = [os.getcwd(), str(umask), str(len(argv)), *argv, *(f"{k}={v}" for k, v in os.environ.items())]
    body = "\0".join(fields).encode("utf-8", "surrogateescape")
    return pack(len(body)) + body


def parse_request(body: bytes) -> tuple[list[str], dict[str, str], str, int]:
    """(argv, env, cwd, umask) of a `request`; ValueError when it is not one."""
    fields = body.decode("utf-8", "surrogateescape").split("\0")
    cwd, umask, count = fields[0], int(fields[1]), int(fields[2])
    if count < 0 or len(fields) < 3 + count:
        raise ValueError("bad argument count")
    argv = fields[3 : 3 + count]
    env: dict[str, str] = {}
    for item in fields[3 + count :]:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError("bad environment entry")
        env[name] = value
    return argv, env, cwd, umask


def run(argv: list[str]) -> int | None:
    """Run `swarm *argv` (a `hook` command) in the warm server; its exit code, or None to run it here."""
    mode = os.environ.get("SWARM_HOOK_SERVER", "1")
    if mode == "0":
        return None
    try:
        return _served(argv, spawn=mode != "only")
    except NotServed as exc:
        if mode == "only":
            print(f"swarm: the hook server did not answer: {exc}", file=sys.stderr)
            return 3
        return None


def _served(argv: list[str], *, spawn: bool) -> int:
    directory = run_dir()
    try:
        sock = _connect(directory, socket_name())
    except OSError as exc:
        if spawn:
            _spawn_server(directory)
        raise NotServed(f"no server ({exc.strerror or exc})") from None
    read_end, write_end = os.pipe()
    try:
        try:
            sent = request(argv)
            fds = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in (0, write_end, 2))  # (C ints)
            sock.sendmsg([sent[:STATUS_SIZE]], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
            sock.sendall(sent[STATUS_SIZE:])
        except (OSError, ValueError) as exc:  # (no stdin to pass, a server gone meanwhile)
            raise NotServed(f"could not pass the call ({exc})") from None
        os.close(write_end)
        write_end = -1
        output, status = _collect(sock, read_end)
    finally:
        sock.close()
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if status is None or status in (KILLED, REFUSED):
        if status == REFUSED or not output:
            # Refused: nothing read stdin. Died without a word: the in-process run answers (a deny, if the
            # event was read).
            raise NotServed("refused" if status == REFUSED else "the child gave no answer")
        if status == KILLED:
            # Killed after printing (between its answer and its status): a hook exits 0 with its answer, and an IDE
            # takes any other status but 2 for a failure it lets the call through on. An answer printed whole
            # stands (its event was durable before it); one cut short is the in-process run's to answer (a deny:
            # the child read the event).
            if not _whole_answer(output):
                raise NotServed("the child died in its answer")
            status = 0
        else:
            status = 1
    out = sys.stdout.buffer
    out.write(output)
    out.flush()
    return status


def _whole_answer(output: bytes) -> bool:
    """Whether `output` is one whole hook answer: a JSON object on one line, ended."""
    import json

    if not output.endswith(b"\n") or output.count(b"\n") != 1:
        return False
    try:
        return isinstance(json.loads(output), dict)
    except ValueError:
        return False


def _collect(sock: _socket.socket, read_end: int) -> tuple[bytes, int | None]:
    """The child's stdout (until every copy of the pipe is closed) and its status (None: none in time)."""
    deadline = time.monotonic() + WAIT_S
    chunks: list[bytes] = []
    raw_status = b""
    poller = select.poll()
    status_fd = sock.fileno()
    poller.register(read_end, select.POLLIN)
    poller.register(status_fd, select.POLLIN)
    open_fds = {read_end, status_fd}
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), None
        for fd, _ in poller.poll(left * 1000):
            if fd == read_end:
                chunk = os.read(read_end, 65536)
                if chunk:
                    chunks.append(chunk)
                    continue
            else:
                data = sock.recv(STATUS_SIZE - len(raw_status))
                raw_status += data
                if data and len(raw_status) < STATUS_SIZE:
                    continue
            poller.unregister(fd)
            open_fds.discard(fd)
    if len(raw_status) != STATUS_SIZE:
        return b"".join(chunks), None
    return b"".join(chunks), unpack(raw_status)
