# pyright: strict
"""Review 20: the direct path over stdio, with a real `swarm body` process fed raw JSON lines: commands cancelled and
cut off by the client closing stdin while a burst of calls, listings and pings is under way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import mcp_types as types

from tests.conftest import make_body

DEADLINE_S = 30
CONFIG = """
[limits]
calls_per_minute = 100000
file_mods_per_hour = 100000
breaker_consecutive_failures = 1000
breaker_breaches = 256
[policy]
approval_min_files = 1000
cumulative_window_s = 0
"""


def _send(stdin: IO[bytes], message: dict[str, Any]) -> None:
    stdin.write(json.dumps(message).encode() + b"\n")
    stdin.flush()


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _running(marker: str) -> bool:
    """Whether a process whose command line holds `marker` runs (a sandboxed command, seen from outside)."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path("/proc", pid, "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline.split(b"\0"):
                return True
    return False


def _call(ident: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


def test_calls_cancelled_and_cut_off_by_stdin_closing_are_answered_honestly_and_audited(
    workspace: Path, home: Path
) -> None:
    """A command cancelled mid-run is never answered and is audited cancelled; a command still running when stdin
    closes is answered "Connection closed"; every other request of a burst sent just before the close is answered
    once; the process exits 0 with its commands stopped (neither wrote its late file); each write's file is there
    exactly when its event says `ok`, and the audit chain verifies."""
    (home / "swarm.toml").write_text(CONFIG)
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_AGENT": "review20"}
    body = subprocess.Popen(
        [sys.executable, "-m", "swarm_cli", "body", "--workspace", str(workspace)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert body.stdin is not None and body.stdout is not None
    stdout = body.stdout
    replies: list[dict[str, Any]] = []

    def read() -> None:
        for line in stdout:
            replies.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    markers = {1: "7.31", 2: "7.32"}  # (each command's `sleep` argument: how it is found running)
    sent: dict[int, dict[str, Any]] = {}
    try:
        client = {"name": "review20", "version": "0"}
        init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": client}
        _send(body.stdin, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        _until(lambda: any(r.get("id") == 0 for r in replies), "the initialize reply")
        _send(body.stdin, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        for ident, marker in markers.items():
            script = f"sleep {marker}; echo late > late{ident}.txt"
            sent[ident] = _call(ident, "run_command", {"argv": ["sh", "-c", script], "rationale": f"cmd{ident}"})
            _send(body.stdin, sent[ident])
            _until(lambda marker=marker: _running(marker), f"command {ident} to run")
            if ident == 1:
                cancel = {"requestId": 1, "reason": "the user stopped it"}
                _send(body.stdin, {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel})
                _until(lambda: not _running(markers[1]), "the cancelled command to stop")
        for ident in range(10, 70):
            kind = ident % 4
            if kind == 0:
                message: dict[str, Any] = {"jsonrpc": "2.0", "id": ident, "method": "ping"}
            elif kind == 1:
                message = {"jsonrpc": "2.0", "id": ident, "method": "tools/list"}
            elif kind == 2:
                message = _call(ident, "list_directory", {"path": ".", "rationale": "r"})
            else:
                args = {"path": f"w/{ident}.txt", "content": f"{ident}\n" * 20_000, "rationale": f"w{ident}"}
                message = _call(ident, "write_file", args)
            sent[ident] = message
            body.stdin.write(json.dumps(message).encode() + b"\n")
        body.stdin.close()
        assert body.wait(timeout=DEADLINE_S) == 0
        reader.join(timeout=DEADLINE_S)
    finally:
        body.kill()
        body.wait(timeout=DEADLINE_S)
    answers: dict[int, list[dict[str, Any]]] = {}
    for reply in replies:
        answers.setdefault(reply["id"], []).append(reply)
    assert sorted(answers) == sorted({0, *sent} - {1})  # (the cancelled command: never answered)
    assert all(len(answered) == 1 for answered in answers.values())
    closed = {types.CONNECTION_CLOSED: "Connection closed"}
    assert {answers[2][0]["error"]["code"]: answers[2][0]["error"]["message"]} == closed
    assert not _running(markers[1]) and not _running(markers[2])
    assert not (workspace / "late1.txt").exists() and not (workspace / "late2.txt").exists()
    reopened = make_body(workspace, home)
    try:
        events = {e.rationale: e for e in reopened.audit.tail(500) if e.kind == "tool_call"}
        assert [(events[f"cmd{n}"].outcome, events[f"cmd{n}"].code) for n in (1, 2)] == [("failed", "cancelled")] * 2
        for ident, message in sent.items():
            if message.get("params", {}).get("name") != "write_file":
                continue
            written = workspace / "w" / f"{ident}.txt"
            event = events.get(f"w{ident}")
            reply = answers[ident][0]
            assert written.exists() == (event is not None and event.outcome == "ok"), (ident, event)
            if "result" in reply:
                assert reply["result"]["isError"] is False and written.read_text() == f"{ident}\n" * 20_000
            else:
                assert reply["error"]["code"] == types.CONNECTION_CLOSED
        assert reopened.audit.verify().ok
    finally:
        reopened.close()


def test_a_writes_event_outlives_a_sigkill_right_after_its_direct_reply(workspace: Path, home: Path) -> None:
    """Each write answered on the direct path, the process SIGKILLed as soon as the last reply is read: every write
    whose reply came has its `ok` event (with its rationale) on reopening, the file as written, and the chain
    verifies (the reply never goes out before its event is durable)."""
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_AGENT": "review20"}
    body = subprocess.Popen(
        [sys.executable, "-m", "swarm_cli", "body", "--workspace", str(workspace)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert body.stdin is not None and body.stdout is not None
    replies: list[dict[str, Any]] = []
    try:
        client = {"name": "review20", "version": "0"}
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": client}
        _send(body.stdin, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        assert "result" in json.loads(body.stdout.readline())
        _send(body.stdin, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        for ident in (1, 2, 3):
            args = {"path": f"k{ident}.txt", "content": f"{ident}\n", "rationale": f"durable {ident}"}
            _send(body.stdin, _call(ident, "write_file", args))
            replies.append(json.loads(body.stdout.readline()))
        body.kill()
    finally:
        body.kill()
        body.wait(timeout=DEADLINE_S)
    assert [(r["id"], r["result"]["isError"]) for r in replies] == [(1, False), (2, False), (3, False)]
    reopened = make_body(workspace, home)
    try:
        for reply in replies:
            event = reopened.audit.get(reply["result"]["structuredContent"]["action_id"])
            assert event is not None and (event.outcome, event.rationale) == ("ok", f"durable {reply['id']}")
            assert (workspace / f"k{reply['id']}.txt").read_text() == f"{reply['id']}\n"
        assert reopened.audit.verify().ok
    finally:
        reopened.close()
