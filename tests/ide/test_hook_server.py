"""The warm hook server: `swarm hook` answered by a forked child of a process that imported the CLI already.

Same decisions and same audit as a hook run in its own process; a spare child takes a call, then the next spare
waits; a stale server refuses and the call runs in its own process; calls at once each get one answer; the server
leaves when its socket goes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from body_mcp.ide import hook as hook_module
from swarm_cli import _hook_client

from ..conftest import make_body
from .conftest import claude_event, cursor_event, encode, swarm


def _wait_for(condition: object, what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not callable(condition) or not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def server(home: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A hook server for `home`, started as the first hook call starts one, stopped (SIGTERM) at the end."""
    run_dir = home / "run"
    env = {**os.environ, "SWARM_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm_cli._hook_server", str(run_dir), _hook_client.socket_name()],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sock = run_dir / _hook_client.socket_name()
    _wait_for(lambda: sock.exists() or proc.poll() is not None, "the hook server's socket")
    if proc.poll() is not None:
        assert proc.stderr is not None
        pytest.fail(f"the hook server exited: {proc.stderr.read().decode()}")
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()


def _hook(ide: str, workspace: Path, home: Path, event: object, mode: str) -> subprocess.CompletedProcess[str]:
    args = ("hook", ide, "--workspace", str(workspace))
    return swarm(*args, home=home, stdin=encode(event), env={"SWARM_HOOK_SERVER": mode})


def _hook_events(workspace: Path, home: Path) -> list[tuple[str, str | None, str | None, str | None]]:
    body = make_body(workspace, home)
    try:
        assert body.audit.verify().ok
        return [(e.agent, e.tool, e.code, e.outcome) for e in body.audit.tail(50) if e.rule == "ide.hooks"]
    finally:
        body.close()


def test_the_warm_server_answers_and_audits_exactly_as_a_hook_in_its_own_process(
    workspace: Path, home: Path, server: subprocess.Popen[bytes]
) -> None:
    events = [
        ("claude-code", claude_event("Write", {"file_path": str(workspace / "x.py"), "content": "x"}, cwd=workspace)),
        ("claude-code", claude_event("Read", {"file_path": str(workspace / "README.md")}, cwd=workspace)),
        ("claude-code", claude_event("Read", {"file_path": str(workspace / ".env")}, cwd=workspace)),
        ("claude-code", claude_event("mcp__swarm__write_file", {"path": "x.py", "content": "x"}, cwd=workspace)),
        ("cursor", cursor_event("beforeShellExecution", root=workspace, command="rm -rf /", cwd=str(workspace))),
        ("cursor", b"\x00 not an event"),
    ]
    answers: dict[str, list[str]] = {"only": [], "0": []}
    for mode in ("only", "0"):  # the server (failing if it does not answer), then a process of its own
        for ide, event in events:
            done = (
                _hook(ide, workspace, home, event, mode)
                if isinstance(event, dict)
                else swarm(
                    "hook", ide, "--workspace", str(workspace), home=home, stdin=event, env={"SWARM_HOOK_SERVER": mode}
                )
            )
            assert done.returncode == 0, done.stderr
            assert len(done.stdout.splitlines()) == 1
            answers[mode].append(done.stdout)
    assert answers["only"] == answers["0"]
    verdicts = [json.loads(a).get("hookSpecificOutput", json.loads(a)) for a in answers["only"]]
    assert [v.get("permissionDecision", v.get("permission")) for v in verdicts] == [
        "deny",
        "allow",
        "deny",
        "allow",
        "deny",
        "deny",
    ]

    audited = _hook_events(workspace, home)
    half = len(audited) // 2
    assert len(audited) == 10  # the body's own tool is not audited by the hook
    assert audited[:half] == audited[half:]
    assert [code for _, _, code, _ in audited[:half]] == [
        "builtin_tool_denied",
        None,  # an allowed read is recorded without a refusal code
        "protected_path",
        "builtin_tool_denied",
        "malformed_event",
    ]


def test_calls_at_once_through_the_server_each_get_one_answer_and_the_chain_holds_them_all(
    workspace: Path, home: Path, server: subprocess.Popen[bytes]
) -> None:
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_HOOK_SERVER": "only"}
    env.pop("SWARM_CONFIG", None)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "swarm_cli", "hook", "claude-code", "--workspace", str(workspace)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for _ in range(8)
    ]
    for n, proc in enumerate(procs):
        event = claude_event("Write", {"file_path": str(workspace / f"f{n}.py"), "content": "x"}, cwd=workspace)
        out, err = proc.communicate(encode(event), timeout=60)
        assert proc.returncode == 0, err
        assert json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "deny"
    audited = _hook_events(workspace, home)
    assert [code for _, _, code, _ in audited] == ["builtin_tool_denied"] * 8


def _children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def test_a_spare_child_takes_the_next_call_and_exits_after_it_and_a_new_spare_replaces_it(
    workspace: Path, home: Path, server: subprocess.Popen[bytes]
) -> None:
    _wait_for(lambda: len(_children(server.pid)) == 1, "the spare child")
    (spare,) = _children(server.pid)
    event = claude_event("Read", {"file_path": str(workspace / "README.md")}, cwd=workspace)
    done = _hook("claude-code", workspace, home, event, "only")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["hookSpecificOutput"]["permissionDecision"] == "allow"
    # (a call the server forked a child for would have left the spare waiting)
    _wait_for(lambda: spare not in _children(server.pid) and len(_children(server.pid)) == 1, "the next spare")
    assert [(tool, outcome) for _, tool, _, outcome in _hook_events(workspace, home)] == [("builtin:Read", "ok")]


def test_a_server_whose_code_changed_on_disk_refuses_and_the_call_runs_in_its_own_process(
    workspace: Path, home: Path, server: subprocess.Popen[bytes]
) -> None:
    event = claude_event("Write", {"file_path": str(workspace / "x.py"), "content": "x"}, cwd=workspace)
    assert _hook("claude-code", workspace, home, event, "only").returncode == 0
    source = Path(hook_module.__file__)  # a module the server imported
    before = source.stat()
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))  # an upgrade, or an edit
    try:
        refused = _hook("claude-code", workspace, home, event, "only")
        assert refused.returncode == 3 and "refused" in refused.stderr
        server.wait(timeout=30)  # a stale server leaves
        fallback = _hook("claude-code", workspace, home, event, "1")
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert fallback.returncode == 0, fallback.stderr
    assert json.loads(fallback.stdout)["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert [code for _, _, code, _ in _hook_events(workspace, home)] == ["builtin_tool_denied"] * 2


def test_the_server_leaves_when_its_socket_is_removed_and_a_call_then_runs_in_its_own_process(
    workspace: Path, home: Path, server: subprocess.Popen[bytes]
) -> None:
    (home / "run" / _hook_client.socket_name()).unlink()
    server.wait(timeout=30)
    event = claude_event("Read", {"file_path": str(workspace / ".env")}, cwd=workspace)
    missing = _hook("claude-code", workspace, home, event, "only")
    assert missing.returncode == 3 and "no server" in missing.stderr
    alone = _hook("claude-code", workspace, home, event, "0")
    assert alone.returncode == 0, alone.stderr
    assert json.loads(alone.stdout)["hookSpecificOutput"]["permissionDecision"] == "deny"


def test_a_call_carries_arguments_directory_umask_and_environment_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SWARM_ODD", "a=b\nc \udcff é")
    monkeypatch.chdir(tmp_path)
    raw = _hook_client.request(["hook", "cursor", "--workspace", "/w s/é"])
    assert _hook_client.unpack(raw[:4]) == len(raw) - 4
    argv, env, cwd, umask = _hook_client.parse_request(raw[4:])
    assert argv == ["hook", "cursor", "--workspace", "/w s/é"]
    assert env == dict(os.environ)
    assert cwd == str(tmp_path) and umask == os.umask(umask)
    with pytest.raises(ValueError):
        _hook_client.parse_request(b"/\x0018\x009\x00hook")
