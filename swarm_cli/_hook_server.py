"""The warm hook server: the CLI imported once, a forked child per `swarm hook` call (see `_hook_client`).

    python -m swarm_cli._hook_server RUN_DIR SOCKET_NAME     (started by the first hook call that finds none)

It serves only its own user (the peer's uid), in `$SWARM_HOME/run` (0700; commands never see `$SWARM_HOME`).
Each child (`_hook_child`) takes the caller's argv, environment, working directory, umask, stdin and stderr,
and writes its stdout into the caller's pipe. The server opens no database and holds no state of a workspace:
a child opens what the command opens, as a fresh process would.

A call waits for the command and little else (forking this 65 MB process, and tearing a child down, cost
more than the hook's own work):
- a spare child, forked before the call, accepts it; the server forks the next spare once that call is
  answered. A call that finds no spare (calls at once) is accepted by the server, which forks a child for it;
- the child sends its exit status itself as soon as the command has returned, its stdout closed, and only
  then does what the command left for after its answer (`_after_answer`) and exits; the server sends the
  status of a child that could not (killed by a signal, or gone by `os._exit`) when it reaps it;
- what the server imported is frozen out of the collector's reach (`gc.freeze`), so that a child's
  collections do not copy the server's pages.

It refuses a call (the caller then runs it itself) and exits when a module it imported changed on disk since
(an upgrade, an edit), and it exits when its socket is gone or replaced (another server took over, the home
was removed) or after `SWARM_HOOK_IDLE_S` seconds without a call (default 600).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import selectors
import signal
import socket
import stat
import sys
import time
from dataclasses import dataclass

from ._hook_child import ANSWERED, NO_CALL, STALE, TOOK, Call, child, refuse, source_stamps, spare, stale, take
from ._hook_client import KILLED, pack

IDLE_S = 600.0
_TICK_S = 1.0


@dataclass(kw_only=True)
class _Child:
    link: socket.socket
    """The server's end of a socket pair with the child."""
    conn: socket.socket | None = None
    """The caller's connection, once the child has a call."""
    reported: bool = False
    """The child sent the caller its status."""


def _preload() -> argparse.ArgumentParser:
    """Import what a hook call runs, build what is built lazily on first use; the CLI's parser, built once."""
    import importlib

    from shared_protocol._base import build_models
    from shared_protocol.config import load_config
    from shared_protocol.privacy import compile_patterns

    for name in ("body_mcp.admin", "body_mcp.ide", "body_mcp.ide.hook", "swarm_cli._context"):
        importlib.import_module(name)
    from .main import build_parser

    load_config(None)
    build_models()  # (wire models build on first use: here once, not in every child)
    compile_patterns()  # (so are the privacy detector's patterns, which every audited call's event is scanned with)
    return build_parser()


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
    """Listen on `name` in the directory, replacing a previous server's socket atomically; (socket, inode).
    Non-blocking: the server and its spare child both accept on it (never at the same time)."""
    base = f"/proc/self/fd/{dir_fd}"
    tmp = f".{name}.{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dir_fd)
    listener.bind(f"{base}/{tmp}")
    os.chmod(tmp, 0o600, dir_fd=dir_fd)
    listener.listen(64)
    listener.setblocking(False)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    return listener, os.stat(name, dir_fd=dir_fd).st_ino


def _noted(signum: int, frame: object) -> None:
    """A signal's only effect is its byte on the wake-up pipe (`signal.set_wakeup_fd`)."""


class Server:
    def __init__(self, directory: str, name: str, *, idle_s: float, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.directory = directory
        self.dir_fd = _private_dir(directory)
        self.name = name
        self.idle_s = idle_s
        self.listener, self.inode = _bind(self.dir_fd, name)
        self.stamps = source_stamps(__file__)
        self.children: dict[int, _Child] = {}
        self.spare: int | None = None
        """The child waiting to accept the next call (while there is one, the server does not accept)."""
        self.accepting = False
        self.last_call = time.monotonic()
        self.stopping = False
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.wake_r, selectors.EVENT_READ, "signal")
        self._accepting(True)

    def _still_ours(self) -> bool:
        try:
            return os.stat(self.name, dir_fd=self.dir_fd).st_ino == self.inode
        except OSError:
            return False

    def _accepting(self, on: bool) -> None:
        if on and not self.accepting and not self.stopping:
            self.selector.register(self.listener, selectors.EVENT_READ, "accept")
            self.accepting = True
        elif not on and self.accepting:
            self.selector.unregister(self.listener)
            self.accepting = False

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, _noted)
        signal.signal(signal.SIGTERM, _noted)
        signal.set_wakeup_fd(self.wake_w)
        self._fork_spare()
        while not self.stopping or self.children:
            for key, _ in self.selector.select(_TICK_S):
                if key.data == "accept":
                    self._accept()
                elif key.data == "signal":
                    self._wake()
                else:
                    self._heard(key.data)
            self._reap()
            if self.stopping:
                continue
            busy = any(pid != self.spare for pid in self.children)
            if not self._still_ours() or (not busy and time.monotonic() - self.last_call > self.idle_s):
                self._stop()

    def _stop(self) -> None:
        self.stopping = True
        self._accepting(False)
        if self._still_ours():
            with contextlib.suppress(OSError):
                os.unlink(self.name, dir_fd=self.dir_fd)
        self.listener.close()
        if self.spare is not None:  # (its link closing tells it to leave)
            self._close_link(self.children[self.spare])

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            signals = os.read(self.wake_r, 512)
            if signal.SIGTERM.value in signals:
                self._stop()

    def _fork(self, taken: tuple[Call, socket.socket] | None) -> int | None:
        """Fork a child: the spare (`taken` None) or one for a call the server accepted. None if fork failed."""
        link, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = os.fork()
        except OSError:
            link.close()
            child_end.close()
            return None
        if pid == 0:
            try:
                self.selector.close()
                os.close(self.wake_r)
                os.close(self.wake_w)
                link.close()
                for other in self.children.values():
                    other.link.close()
                    if other.conn is not None:
                        other.conn.close()
            except BaseException:  # noqa: BLE001  (a child that cannot start exits: the server reaps it)
                os._exit(NO_CALL)
            if taken is None:
                spare(self.listener, child_end, self.stamps, self.parser, self.directory)
            self.listener.close()
            child(*taken, child_end, self.parser)
        child_end.close()
        self.children[pid] = _Child(link=link, conn=taken[1] if taken else None)
        self.selector.register(link, selectors.EVENT_READ, pid)
        return pid

    def _fork_spare(self) -> None:
        if self.stopping or self.spare is not None:
            return
        self.spare = self._fork(None)
        self._accepting(self.spare is None)

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.last_call = time.monotonic()
        call = take(conn)
        if call is None:
            return
        if stale(self.stamps):
            refuse(call, conn)
            self._stop()
            return
        pid = self._fork((call, conn))
        for fd in call.fds:
            os.close(fd)
        if pid is None:
            conn.close()  # (the caller runs the command itself)

    def _heard(self, pid: int) -> None:
        """What a child said on its link."""
        child = self.children.get(pid)
        if child is not None:
            self._read_link(pid, child)

    def _read_link(self, pid: int, child: _Child) -> bool:
        """Read what the child said; False when there is nothing more to read for now."""
        try:
            data, fds, _, _ = socket.recv_fds(child.link, 64, 1, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            data, fds = b"", []
        if not data:
            self._close_link(child)
            return False
        for fd in fds:
            if child.conn is None:
                child.conn = socket.socket(fileno=fd)
            else:
                os.close(fd)
        if TOOK in data and pid == self.spare:
            self.spare = None
            self.last_call = time.monotonic()
            self._accepting(True)  # (calls meanwhile: the server forks for them until the next spare)
        if ANSWERED in data:
            child.reported = True
            self._fork_spare()
        if STALE in data:
            self._stop()
        return True

    def _close_link(self, child: _Child) -> None:
        if child.link.fileno() >= 0:
            self.selector.unregister(child.link)
            child.link.close()

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.get(pid)
            if child is None:
                continue
            while child.link.fileno() >= 0 and self._read_link(pid, child):  # (what it said before it exited)
                pass
            del self.children[pid]
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else KILLED
            if child.conn is not None:
                if not child.reported and code != NO_CALL:
                    with contextlib.suppress(OSError):
                        child.conn.sendall(pack(code))
                child.conn.close()
            self._close_link(child)
            if pid == self.spare:
                # A spare gone without a call: the server accepts until a call's answer forks the next one (a
                # spare that cannot start is not forked again and again).
                self.spare = None
                self._accepting(True)
            elif not child.reported:
                self._fork_spare()


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
    gc.freeze()  # (after the last import: a child's collections leave the server's objects, and pages, alone)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
