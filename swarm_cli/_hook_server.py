"""The warm hook server: the CLI imported once, a forked child per `swarm hook` call (see `_hook_client`).

    python -m swarm_cli._hook_server RUN_DIR SOCKET_NAME     (started by the first hook call that finds none)

It serves only its own user (the peer's uid), in `$SWARM_HOME/run` (0700; commands never see `$SWARM_HOME`).
Each child takes the caller's argv, environment, working directory, umask, stdin and stderr, and writes its
stdout into the caller's pipe; the server sends the child's exit status when it has reaped it. The server
opens no database and holds no state of a workspace: a child opens what the command opens, as a fresh
process would.

It refuses a call (the caller then runs it itself) and exits when a module it imported changed on disk since
(an upgrade, an edit), and it exits when its socket is gone or replaced (another server took over, the home
was removed) or after `SWARM_HOOK_IDLE_S` seconds without a call (default 600).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import selectors
import signal
import socket
import stat
import sys
import time
from dataclasses import dataclass

from ._hook_client import KILLED, REFUSED, STATUS_SIZE, pack, parse_request, unpack

IDLE_S = 600.0
_TICK_S = 1.0
_PACKAGES = ("swarm_cli", "body_mcp", "shared_protocol", "sandbox", "brain_server", "agent_runner")
_REQUEST_LIMIT = 16 * 1024 * 1024
_CHDIR_FAILED = 75
"""A child's exit code when it could not enter the caller's directory (it read nothing: refused)."""


@dataclass(kw_only=True, frozen=True)
class Call:
    """One hook call as the client sent it."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    umask: int
    fds: tuple[int, int, int]
    """The caller's stdin, the write end of its stdout pipe, its stderr."""


def _preload() -> argparse.ArgumentParser:
    """Import what a hook call runs, build what is built lazily on first use; the CLI's parser, built once."""
    import importlib

    from shared_protocol.config import load_config

    for name in ("body_mcp.admin", "body_mcp.ide", "body_mcp.ide.hook", "swarm_cli._context"):
        importlib.import_module(name)
    from .main import build_parser

    load_config(None)
    return build_parser()


def source_stamps() -> dict[str, tuple[int, int]]:
    """(mtime, size) of every imported module of the project: a change means this server runs stale code."""
    paths = {__file__}  # (this module runs as `__main__`)
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name.partition(".")[0] in _PACKAGES and isinstance(path, str):
            paths.add(path)
    stamps: dict[str, tuple[int, int]] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamps[path] = (-1, -1)
            continue
        stamps[path] = (st.st_mtime_ns, st.st_size)
    return stamps


def _stale(stamps: dict[str, tuple[int, int]]) -> bool:
    for path, stamp in stamps.items():
        try:
            st = os.stat(path)
        except OSError:
            return True
        if (st.st_mtime_ns, st.st_size) != stamp:
            return True
    return False


def _private_dir(directory: str) -> int:
    """Open (creating) the run directory; refuse one another user owns or others may write."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    st = os.fstat(fd)
    if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.close(fd)
        raise PermissionError(f"{directory} is not private to this user")
    return fd


def _bind(dir_fd: int, name: str) -> tuple[socket.socket, int]:
    """Listen on `name` in the directory, replacing a previous server's socket atomically; (socket, inode)."""
    base = f"/proc/self/fd/{dir_fd}"
    tmp = f".{name}.{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    listener.bind(f"{base}/{tmp}")
    os.chmod(tmp, 0o600, dir_fd=dir_fd)
    listener.listen(64)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    return listener, os.stat(name, dir_fd=dir_fd).st_ino


def _receive(conn: socket.socket) -> Call:
    conn.settimeout(2.0)
    head, fds, _, _ = socket.recv_fds(conn, STATUS_SIZE, 3)
    try:
        if len(fds) != 3 or len(head) != STATUS_SIZE:
            raise ValueError("a call carries three descriptors and a length")
        size = unpack(head)
        if not 0 < size <= _REQUEST_LIMIT:
            raise ValueError("bad length")
        body = bytearray()
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                raise ValueError("short request")
            body += chunk
        argv, env, cwd, umask = parse_request(bytes(body))
        return Call(argv=argv, env=env, cwd=cwd, umask=umask, fds=(fds[0], fds[1], fds[2]))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _child(call: Call, parser: argparse.ArgumentParser) -> None:
    """In the forked child: become the caller's `swarm` process, run the command, exit. Never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for target, fd in enumerate(call.fds):
            os.dup2(fd, target)
            os.close(fd)
        try:
            os.chdir(call.cwd)
        except OSError:
            os._exit(_CHDIR_FAILED)
        os.environ.clear()
        os.environ.update(call.env)
        os.umask(call.umask)
        sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8")
        sys.stderr = io.TextIOWrapper(
            io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace", write_through=True
        )
        sys.argv = [sys.argv[0], *call.argv]
        from .main import main as cli_main

        try:
            code = cli_main(call.argv, parser=parser)
        except SystemExit as exc:  # (argparse: --help, a bad argument)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
    except BaseException as exc:  # noqa: BLE001  (the child's top: one line, like the CLI, and a failing exit)
        with contextlib.suppress(BaseException):
            print(f"swarm: {exc!r}", file=sys.stderr)
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(code)


def _noted(signum: int, frame: object) -> None:
    """A signal's only effect is its byte on the wake-up pipe (`signal.set_wakeup_fd`)."""


class Server:
    def __init__(self, directory: str, name: str, *, idle_s: float, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.dir_fd = _private_dir(directory)
        self.name = name
        self.idle_s = idle_s
        self.listener, self.inode = _bind(self.dir_fd, name)
        self.stamps = source_stamps()
        self.children: dict[int, socket.socket] = {}
        self.last_call = time.monotonic()
        self.stopping = False
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "signal")

    def _still_ours(self) -> bool:
        try:
            return os.stat(self.name, dir_fd=self.dir_fd).st_ino == self.inode
        except OSError:
            return False

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, _noted)
        signal.signal(signal.SIGTERM, _noted)
        signal.set_wakeup_fd(self.wake_w)
        while not self.stopping or self.children:
            for key, _ in self.selector.select(_TICK_S):
                if key.data == "accept":
                    self._accept()
                else:
                    self._wake()
            self._reap()
            if self.stopping:
                continue
            if not self._still_ours() or (not self.children and time.monotonic() - self.last_call > self.idle_s):
                self._stop()

    def _stop(self) -> None:
        self.stopping = True
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.listener)
        if self._still_ours():
            with contextlib.suppress(OSError):
                os.unlink(self.name, dir_fd=self.dir_fd)
        self.listener.close()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            signals = os.read(self.wake_r, 512)
            if signal.SIGTERM.value in signals:
                self._stop()

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.last_call = time.monotonic()
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            uid = int.from_bytes(creds[4:8], sys.byteorder)
            if uid != os.getuid():
                conn.close()
                return
            call = _receive(conn)
        except (OSError, ValueError):
            conn.close()
            return
        if _stale(self.stamps):
            self._refuse(conn, call)
            self._stop()
            return
        pid = os.fork()
        if pid == 0:
            self.selector.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            self.listener.close()
            conn.close()
            for other in self.children.values():
                other.close()
            _child(call, self.parser)
        for fd in call.fds:
            os.close(fd)
        self.children[pid] = conn

    def _refuse(self, conn: socket.socket, call: Call) -> None:
        for fd in call.fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            conn.sendall(pack(REFUSED))
        conn.close()

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            if os.WIFEXITED(status):
                code = os.WEXITSTATUS(status)
                code = REFUSED if code == _CHDIR_FAILED else code
            else:
                code = KILLED
            with contextlib.suppress(OSError):
                conn.sendall(pack(code))
            conn.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m swarm_cli._hook_server RUN_DIR SOCKET_NAME", file=sys.stderr)
        return 2
    try:
        idle_s = float(os.environ.get("SWARM_HOOK_IDLE_S", IDLE_S))
    except ValueError:
        idle_s = IDLE_S
    parser = _preload()
    try:
        server = Server(argv[0], argv[1], idle_s=idle_s, parser=parser)
    except OSError as exc:
        print(f"swarm: the hook server cannot listen in {argv[0]}: {exc}", file=sys.stderr)
        return 1
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
