"""A child of the warm hook server (`_hook_server`): a spare waiting for a call, or one forked for a call.

It becomes the caller's `swarm` process (argv, environment, working directory, umask, stdin, stdout, stderr),
runs the command, and as soon as the command has returned sends the caller its exit status itself, its stdout
closed; only then does it do what the command left for after its answer (`_after_answer`: the hook's audit
commit) and exit. It tells the server what it did on its link, one byte each (`TOOK`, `ANSWERED`, `STALE`).

A spare is rehearsed before it waits (`rehearse`): a forked child copies each page of the server it writes to,
and running the hook's pure steps once beforehand makes those copies before the call, not during it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import select
import signal
import socket
import sys
from dataclasses import dataclass
from typing import NoReturn

from ._hook_client import REFUSED, STATUS_SIZE, pack, parse_request, unpack

_PACKAGES = ("swarm_cli", "body_mcp", "shared_protocol", "sandbox", "brain_server", "agent_runner")
_REQUEST_LIMIT = 16 * 1024 * 1024
NO_CALL = 75
"""A child's exit code when what it accepted was not a call (another user, a malformed request): no status."""

# What a child tells the server on its link (one byte each).
TOOK = b"T"
"""A spare accepted a call; the connection rides along (`SCM_RIGHTS`), for the status should the child die."""
ANSWERED = b"A"
"""The child sent its status itself."""
STALE = b"S"
"""The code on disk changed: the child refused its call; the server stops."""


@dataclass(kw_only=True, frozen=True)
class Call:
    """One hook call as the client sent it."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    umask: int
    fds: tuple[int, int, int]
    """The caller's stdin, the write end of its stdout pipe, its stderr."""


def source_stamps(main: str) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every imported module of the project, and of `main` (the server's file: it runs as
    `__main__`): a change means the server runs stale code."""
    paths = {main}
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


def stale(stamps: dict[str, tuple[int, int]]) -> bool:
    """Whether a file of `source_stamps` changed (or went) since."""
    for path, stamp in stamps.items():
        try:
            st = os.stat(path)
        except OSError:
            return True
        if (st.st_mtime_ns, st.st_size) != stamp:
            return True
    return False


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


def take(conn: socket.socket) -> Call | None:
    """The call on a connection just accepted; None (the connection closed) when it is not this user's call."""
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        if int.from_bytes(creds[4:8], sys.byteorder) != os.getuid():
            conn.close()
            return None
        return _receive(conn)
    except (OSError, ValueError):
        conn.close()
        return None


def become_child() -> None:
    """In a forked child: the server's signal handling undone (the command gets Python's defaults)."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def rehearse(parser: argparse.ArgumentParser, scratch: str) -> None:
    """Run a hook call's pure steps on sample events (the argv parsed, the default config, decisions recorded in
    memory, a thread started) so that the pages of the server they write to (reference counts) are this spare's
    own before its call comes: copying them took a body tool's call from 3 to 7 ms of CPU. Nothing is written."""
    import json
    import threading
    from pathlib import Path

    from body_mcp.ide import HookRuntime, MemoryAuditSink, PathGuard, handle
    from shared_protocol.config import load_config

    workspace = Path(scratch, "rehearsal")  # (neither is created)
    parser.parse_args(["hook", "claude-code", "--workspace", str(workspace)])
    denied = load_config(None).policy.denied_paths
    runtime = HookRuntime(
        ide="claude-code",
        workspace=workspace,
        env={},
        guard_for=lambda ws: PathGuard(workspace=ws, home=Path(scratch, "rehearsal-home"), denied=denied),
        sink=MemoryAuditSink(),
    )
    for tool, tool_input in (("mcp__swarm__read_text_file", {"path": "a"}), ("Read", {"file_path": "a"})):
        event = {"hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": tool_input, "cwd": str(workspace)}
        handle(runtime, json.dumps(event).encode())
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()


def spare(
    listener: socket.socket,
    link: socket.socket,
    stamps: dict[str, tuple[int, int]],
    parser: argparse.ArgumentParser,
    scratch: str,
) -> NoReturn:
    """A spare child: rehearse, wait for a call (or for the server to let go of it: its link closes), run it."""
    try:
        become_child()
        with contextlib.suppress(Exception):  # (a rehearsal that fails costs the call those copies, nothing else)
            rehearse(parser, scratch)
        poller = select.poll()
        poller.register(listener.fileno(), select.POLLIN)
        poller.register(link.fileno(), select.POLLIN)
        while True:
            if any(fd == link.fileno() for fd, _ in poller.poll()):
                os._exit(0)  # the server left, or stops
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            break
        listener.close()
        socket.send_fds(link, [TOOK], [conn.fileno()])
        call = take(conn)
        if call is None:
            os._exit(NO_CALL)
        if stale(stamps):
            refuse(call, conn)
            link.sendall(ANSWERED + STALE)
            os._exit(0)
    except BaseException:  # noqa: BLE001  (a spare that cannot take its call exits: the server reaps it)
        os._exit(NO_CALL)
    child(call, conn, link, parser)


def refuse(call: Call, conn: socket.socket) -> None:
    for fd in call.fds:
        os.close(fd)
    with contextlib.suppress(OSError):
        conn.sendall(pack(REFUSED))
    conn.close()


def child(call: Call, conn: socket.socket, link: socket.socket, parser: argparse.ArgumentParser) -> NoReturn:
    """In a forked child: become the caller's `swarm` process, run the command, report, exit. Never returns."""
    code = 1
    reported = False

    def report(status: int) -> None:
        """Send the caller its status once its stdout is closed (so it reads to the end), then tell the server."""
        nonlocal reported
        reported = True
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        # (Whatever the command still does after its answer writes nowhere: the caller is gone by then.)
        null = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        os.close(null)
        with contextlib.suppress(OSError):
            conn.sendall(pack(status))
        conn.close()
        with contextlib.suppress(OSError):
            link.sendall(ANSWERED)

    try:
        become_child()
        for target, fd in enumerate(call.fds):
            os.dup2(fd, target)
            os.close(fd)
        try:
            os.chdir(call.cwd)
        except OSError:
            report(REFUSED)  # (nothing read stdin: the caller runs the command itself)
            os._exit(0)
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
            code = cli_main(call.argv, parser=parser, answered=report)
        except SystemExit as exc:  # (argparse: --help, a bad argument)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
    except BaseException as exc:  # noqa: BLE001  (the child's top: one line, like the CLI, and a failing exit)
        with contextlib.suppress(BaseException):
            print(f"swarm: {exc!r}", file=sys.stderr)
    finally:
        if not reported:
            with contextlib.suppress(BaseException):
                report(code)
        os._exit(code)
