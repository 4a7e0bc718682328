# pyright: strict
"""Review 18 of the warm hook server's spare child (forked and rehearsed before the call, then taking it) and of
the audit left for after the answer. A real server process, the real `swarm` CLI, real audit files."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from swarm_cli import _hook_client
from tests.conftest import make_body
from tests.ide.conftest import claude_event, encode, swarm


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _unread(fd: int) -> int:
    """Bytes in the pipe `fd` is an end of, not read yet."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def _children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


@pytest.fixture
def server(home: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A hook server for `home` with its spare child up, stopped (SIGTERM) at the end."""
    env = {**os.environ, "SWARM_HOME": str(home)}
    env.pop("SWARM_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm_cli._hook_server", str(home / "run"), _hook_client.socket_name()],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: proc.poll() is not None or len(_children(proc.pid)) == 1, "the server's spare child")
        assert proc.poll() is None, "the hook server exited"
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def _hook(workspace: Path, home: Path, event: object, mode: str = "only") -> subprocess.CompletedProcess[str]:
    return swarm(
        "hook",
        "claude-code",
        "--workspace",
        str(workspace),
        home=home,
        stdin=encode(event),
        env={"SWARM_HOOK_SERVER": mode},
    )


def _verdict(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["hookSpecificOutput"]["permissionDecision"])


def _audited(workspace: Path, home: Path) -> list[tuple[str | None, str | None]]:
    body = make_body(workspace, home)
    try:
        assert body.audit.verify().ok
        return [(e.tool, e.code) for e in body.audit.tail(100) if e.rule == "ide.hooks"]
    finally:
        body.close()


def test_a_policy_edit_made_after_the_spare_forked_applies_to_the_very_next_call(
    workspace: Path, home: Path, server: subprocess.Popen[bytes]
) -> None:
    """Held: the spare rehearses on the default config, but a call reads `swarm.toml` afresh (a denied path added
    after the spare forked denies the next read; removed again, the read is allowed)."""
    (workspace / "notes.txt").write_text("n\n")
    read = claude_event("Read", {"file_path": str(workspace / "notes.txt")}, cwd=workspace)
    assert _verdict(_hook(workspace, home, read)) == "allow"
    _wait_for(lambda: len(_children(server.pid)) == 1, "the next spare")
    (home / "swarm.toml").write_text('[policy]\ndenied_paths = ["notes.txt"]\n')
    assert _verdict(_hook(workspace, home, read)) == "deny"
    _wait_for(lambda: len(_children(server.pid)) == 1, "the next spare")
    (home / "swarm.toml").unlink()
    assert _verdict(_hook(workspace, home, read)) == "allow"


def test_a_kill_switch_engaged_after_the_spare_forked_answers_as_a_hook_in_its_own_process(
    workspace: Path, home: Path, server: subprocess.Popen[bytes]
) -> None:
    """Held: the spare holds no kill state: with the switch engaged after it forked, the server's answers are the
    ones a hook in its own process gives (the hook itself never consulted the switch: the body refuses)."""
    events = [
        claude_event("mcp__swarm__write_file", {"path": "x.py", "content": "x"}, cwd=workspace),
        claude_event("Read", {"file_path": str(workspace / "README.md")}, cwd=workspace),
    ]
    engaged = swarm("kill", "--reason", "review 18", home=home)
    assert engaged.returncode == 0, engaged.stderr
    served = [_hook(workspace, home, e, "only").stdout for e in events]
    alone = [_hook(workspace, home, e, "0").stdout for e in events]
    assert served == alone


def test_the_rehearsal_leaves_nothing_in_the_audit_trail_or_the_run_directory(
    workspace: Path, home: Path, server: subprocess.Popen[bytes]
) -> None:
    """Held: after spares rehearsed (three: the first, and one after each call), the trail holds the two calls'
    events only, and the run directory the socket only (the rehearsal's workspace is never created)."""
    for _ in range(2):
        event = claude_event("Read", {"file_path": str(workspace / ".env")}, cwd=workspace)
        assert _verdict(_hook(workspace, home, event)) == "deny"
        _wait_for(lambda: len(_children(server.pid)) == 1, "the next spare")
    assert _audited(workspace, home) == [("builtin:Read", "protected_path")] * 2
    assert sorted(p.name for p in (home / "run").iterdir()) == [_hook_client.socket_name()]


def test_malformed_requests_on_the_socket_leave_the_server_answering(
    workspace: Path, home: Path, server: subprocess.Popen[bytes]
) -> None:
    """Held: a connection that sends garbage (no descriptors), a huge length, or closes at once is dropped, and the
    next call is still answered by the server (`SWARM_HOOK_SERVER=only`). The run directory is 0700 and the socket
    0600 (another local user cannot connect; one that could is refused by its peer credentials)."""
    run = home / "run"
    assert run.stat().st_mode & 0o777 == 0o700
    assert (run / _hook_client.socket_name()).stat().st_mode & 0o777 == 0o600
    dir_fd = os.open(run, os.O_PATH | os.O_DIRECTORY)  # (the path may be longer than AF_UNIX takes)
    path = f"/proc/self/fd/{dir_fd}/{_hook_client.socket_name()}"
    try:
        for payload in (b"", b"garbage and no descriptors", _hook_client.pack(2**31 - 1), b"\x00\x00\x00\x05abc"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(path)
                if payload:
                    sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(10)
                try:
                    said = sock.recv(16)
                except ConnectionResetError:  # (dropped with what it sent unread)
                    said = b""
                assert said == b""  # (dropped, no status)
    finally:
        os.close(dir_fd)
    event = claude_event("Write", {"file_path": str(workspace / "x.py"), "content": "x"}, cwd=workspace)
    assert _verdict(_hook(workspace, home, event)) == "deny"
    assert server.poll() is None


def test_a_child_killed_while_it_reads_the_event_leaves_a_deny_with_exit_status_0(
    workspace: Path, home: Path, server: subprocess.Popen[bytes]
) -> None:
    """Held: the spare took the call and is reading the event (half of it sent) when it is SIGKILLed: the server
    sends the caller the child's death, the caller runs the hook itself on what is left of stdin (half an event) and
    denies, exit status 0; the trail verifies and holds that deny only. The server forks a new spare."""
    (spare,) = _children(server.pid)
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_HOOK_SERVER": "1"}
    env.pop("SWARM_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm_cli", "hook", "claude-code", "--workspace", str(workspace)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=workspace,
    )
    stdin = proc.stdin
    assert stdin is not None
    raw = encode(claude_event("Read", {"file_path": str(workspace / "README.md")}, cwd=workspace))
    stdin.write(raw[: len(raw) // 2])
    stdin.flush()
    _wait_for(lambda: _unread(stdin.fileno()) == 0, "the spare reading the half event")
    os.kill(spare, signal.SIGKILL)
    _wait_for(lambda: spare not in _children(server.pid), "the server reaping the spare")
    out, err = proc.communicate(raw[len(raw) // 2 :], timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert _audited(workspace, home) == [("builtin:?", "malformed_event")]
    _wait_for(lambda: len(_children(server.pid)) == 1, "a new spare")


def _stand_in_server(workspace: Path, home: Path, printed: bytes) -> tuple[bytes, int]:
    """`swarm hook` through a stand-in for the server: it takes the call, reads the event from the caller's stdin (as a
    child does), writes `printed` into the caller's stdout pipe, and reports KILLED, as `_hook_server._reap` does
    for a child that died of a signal before sending its status. (The caller's stdout, its exit status.)"""
    run = home / "run"
    run.mkdir(mode=0o700)
    dir_fd = os.open(run, os.O_PATH | os.O_DIRECTORY)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(f"/proc/self/fd/{dir_fd}/{_hook_client.socket_name()}")
        listener.listen(1)
        listener.settimeout(60)
        env = {**os.environ, "SWARM_HOME": str(home), "SWARM_HOOK_SERVER": "1"}
        env.pop("SWARM_CONFIG", None)
        event = claude_event("Write", {"file_path": str(workspace / "x.py"), "content": "x"}, cwd=workspace)
        proc = subprocess.Popen(
            [sys.executable, "-m", "swarm_cli", "hook", "claude-code", "--workspace", str(workspace)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert proc.stdin is not None
        proc.stdin.write(encode(event))
        proc.stdin.close()
        conn, _ = listener.accept()
        with conn:
            head, fds, _, _ = socket.recv_fds(conn, 4, 3)
            left = _hook_client.unpack(head)
            while left > 0:  # (the request read to its end, as the server does)
                left -= len(conn.recv(left))
            try:
                while os.read(fds[0], 65536):  # (the event read)
                    pass
                os.write(fds[1], printed)
            finally:
                for fd in fds:
                    os.close(fd)
            conn.sendall(_hook_client.pack(_hook_client.KILLED))  # (then it died of a signal)
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
        code = proc.wait(timeout=60)
    finally:
        listener.close()
        os.close(dir_fd)
    assert code in (0, 1), err
    return out, code


def test_a_child_killed_after_its_answer_still_leaves_exit_status_0_and_its_answer(workspace: Path, home: Path) -> None:
    """Was a hole (low), fixed. The server reports a child that died of a signal as KILLED; when the child had
    printed its answer already (its stdout flushed, its status not yet sent: the window between them, an OOM kill),
    the client printed that output and exited 1. An IDE reads a hook's JSON only with exit 0 (2 blocks): exit 1 is a
    non-blocking error, so the call went through whatever the answer said, against the hook's rule that every
    failure is a deny. Reproduce: a stand-in server on the hook's socket that writes a deny into the caller's stdout
    pipe and reports KILLED, as `_hook_server._reap` does for such a child. Fix (`_hook_client._served`): on KILLED,
    a whole answer (one JSON line) stands with exit 0; one cut short is left to the in-process run (a deny: the
    child read the event), as a child that printed nothing is."""
    deny = b'{"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny"}}\n'
    out, code = _stand_in_server(workspace, home, deny)
    assert (code, out) == (0, deny)


def test_a_child_killed_in_the_middle_of_its_answer_leaves_a_deny_of_the_callers_own(
    workspace: Path, home: Path
) -> None:
    """Held with the fix above: the stand-in writes half an answer (an allow cut short) and reports KILLED: the
    caller prints no part of it, runs the hook itself on what is left of stdin (nothing: the child read it) and
    denies, exit status 0."""
    out, code = _stand_in_server(workspace, home, b'{"hookSpecificOutput": {"permissionDecision": "al')
    assert code == 0
    assert json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "deny"
