"""The kill switch's short path (`body_mcp/_killed_calls.py`): a mutating call that arrives while the kill is engaged
is refused and audited before the SDK dispatches it; anything else still goes to the SDK."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.message import SessionMessage

from body_mcp import Body
from body_mcp._killed_calls import KilledCalls
from body_mcp.audit import _store as audit_store  # pyright: ignore[reportPrivateUsage]
from body_mcp.killswitch import RELEASED, KillState, MemoryKillSwitch

from ..cli.inprocess import run_swarm
from ..conftest import make_body

pytestmark = pytest.mark.anyio

KILLED = KillState(engaged=True, reason="stop", by="captain", source="brain")


class _LiftedAfter(MemoryKillSwitch):
    """Engaged for the first `reads` reads of its state, released after: a resume that lands while a call is read."""

    def __init__(self, reads: int) -> None:
        super().__init__()
        self.current = KILLED
        self._reads = reads

    def state(self) -> KillState:
        self._reads -= 1
        return KILLED if self._reads >= 0 else RELEASED


def _request(name: str, arguments: dict[str, Any], *, ident: int = 1, meta: dict[str, Any] | None = None) -> Any:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    return types.JSONRPCRequest(jsonrpc="2.0", id=ident, method="tools/call", params=params)


def _initialized(killed: KilledCalls, version: str = "2025-11-25") -> None:
    killed.note(
        types.JSONRPCRequest(
            jsonrpc="2.0",
            id=0,
            method="initialize",
            params={"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "ide", "version": "1"}},
        )
    )
    killed.note(types.JSONRPCNotification(jsonrpc="2.0", method="notifications/initialized"))


async def _answer(body: Body, request: Any, *, version: str | None = "2025-11-25") -> dict[str, Any] | None:
    """`KilledCalls.answered` for `request` on a session initialized with `version` (None: not initialized): the
    reply's result, or None when it was left to the SDK."""
    send, receive = anyio.create_memory_object_stream[SessionMessage](1)
    with send, receive:
        killed = KilledCalls(body, send)
        if version is not None:
            _initialized(killed, version)
        if not await killed.answered(request):
            assert receive.statistics().current_buffer_used == 0
            return None
        reply = receive.receive_nowait().message
    assert isinstance(reply, types.JSONRPCResponse) and reply.id == request.id
    return reply.result


async def test_a_mutating_call_under_the_kill_is_refused_audited_with_its_rationale_and_changes_nothing(
    workspace: Path, home: Path
) -> None:
    kill = MemoryKillSwitch()
    kill.current = KILLED
    body = make_body(workspace, home, kill_switch=kill)
    try:
        args = {"path": "new.txt", "content": "x", "rationale": "because the plan says so"}
        result = await _answer(body, _request("write_file", args))
        assert result is not None and result["isError"] is True
        data = result["structuredContent"]
        assert data["code"] == "kill_switch_engaged" and data["rule"] == "kill_switch"
        assert result["content"] == [{"type": "text", "text": result["content"][0]["text"]}]
        assert data["action_id"] in result["content"][0]["text"]
        assert not (workspace / "new.txt").exists()
        event = body.audit.get(data["action_id"])
        assert event is not None
        assert (event.outcome, event.tool, event.agent, event.code, event.rule) == (
            "refused",
            "write_file",
            "ide",
            "kill_switch_engaged",
            "kill_switch",
        )
        assert event.rationale == "because the plan says so"
        assert event.arguments["content"]["size"] == 1  # (redacted as the guard's refusal is: a hash, not the text)
        assert body.audit.verify().ok
    finally:
        body.close()


async def test_what_the_short_path_does_not_answer_goes_to_the_sdk(workspace: Path, home: Path) -> None:
    kill = MemoryKillSwitch()
    body = make_body(workspace, home, kill_switch=kill)
    try:
        write = _request("write_file", {"path": "a.txt", "content": "x", "rationale": "r"})
        assert await _answer(body, write) is None  # (not engaged)
        kill.current = KILLED
        assert await _answer(body, write, version=None) is None  # (before the handshake: the SDK's to answer)
        assert await _answer(body, write, version="2025-03-26") is None  # (the SDK shapes that version's result)
        read = _request("read_text_file", {"path": "README.md", "rationale": "r"})
        assert await _answer(body, read) is None  # (read-only tools keep working)
        with_progress = _request(
            "write_file", {"path": "a.txt", "content": "x", "rationale": "r"}, meta={"progressToken": 7}
        )
        assert await _answer(body, with_progress) is None
        bad = types.JSONRPCRequest(
            jsonrpc="2.0", id=3, method="tools/call", params={"name": "write_file", "arguments": [1]}
        )
        assert await _answer(body, bad) is None  # (the SDK says what is wrong with it)
        assert all(e.kind != "tool_call" for e in body.audit.tail(10))
    finally:
        body.close()


async def test_a_kill_lifted_as_the_call_is_read_leaves_it_to_the_sdk_and_one_lifted_after_refuses_it(
    workspace: Path, home: Path
) -> None:
    args = {"path": "a.txt", "content": "x", "rationale": "r"}
    # Engaged when the transport looks, released when the body takes the state: served as before (the SDK's path).
    body = make_body(workspace, home, kill_switch=_LiftedAfter(reads=1))
    try:
        assert await _answer(body, _request("write_file", args)) is None
        assert all(e.kind != "tool_call" for e in body.audit.tail(10))
    finally:
        body.close()
    # Released once the body took the state it refuses under: refused (as a call the guard refused is, today).
    body = make_body(workspace, home, kill_switch=_LiftedAfter(reads=2))
    try:
        result = await _answer(body, _request("write_file", args))
        assert result is not None and result["structuredContent"]["code"] == "kill_switch_engaged"
        assert not (workspace / "a.txt").exists()
    finally:
        body.close()


async def test_a_refusal_that_cannot_be_audited_is_left_to_the_sdk_path_not_raised_into_the_transport(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kill = MemoryKillSwitch()
    kill.current = KILLED
    body = make_body(workspace, home, kill_switch=kill)
    try:
        write = _request("write_file", {"path": "a.txt", "content": "x", "rationale": "r"})

        def full(fd: int, data: bytes, offset: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(audit_store, "_write_all", full)
        assert await _answer(body, write) is None  # (the SDK's path then answers, as it did before the short path)
        monkeypatch.undo()
        result = await _answer(body, write)
        assert result is not None and result["structuredContent"]["code"] == "kill_switch_engaged"
        assert not (workspace / "a.txt").exists()
    finally:
        body.close()


def _line(stdout: IO[bytes]) -> dict[str, Any]:
    while True:
        line = stdout.readline()
        assert line, "the body closed its output"
        message: dict[str, Any] = json.loads(line)
        if "id" in message:
            return message


def _send(stdin: IO[bytes], message: dict[str, Any]) -> None:
    stdin.write(json.dumps(message).encode() + b"\n")
    stdin.flush()


def test_over_stdio_the_refusal_is_the_sdks_reply_and_is_durable_before_it(workspace: Path, home: Path) -> None:
    """A real body process: the short path's reply has the shape of the SDK's (a call with a progress token goes
    the SDK's way), and its audit event outlives a SIGKILL right after the reply."""
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_AGENT": "stdio-test"}
    body = subprocess.Popen(
        [sys.executable, "-m", "swarm_cli", "body", "--workspace", str(workspace)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert body.stdin is not None and body.stdout is not None
    try:
        _send(
            body.stdin,
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "0"},
                },
            },
        )
        assert "result" in _line(body.stdout)
        _send(body.stdin, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert run_swarm(["kill", "--reason", "test"], {**os.environ, "SWARM_HOME": str(home)}).returncode == 0
        args = {"path": "after.txt", "content": "x", "rationale": "the short path's"}
        _send(
            body.stdin,
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "write_file", "arguments": args}},
        )
        short = _line(body.stdout)
        params = {"name": "write_file", "arguments": {**args, "rationale": "the SDK's"}, "_meta": {"progressToken": 9}}
        _send(body.stdin, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params})
        sdk = _line(body.stdout)
        os.kill(body.pid, signal.SIGKILL)
    finally:
        body.kill()
        body.wait(timeout=30)
    assert short["id"] == 1 and sdk["id"] == 2
    ids = short["result"]["structuredContent"]["action_id"], sdk["result"]["structuredContent"]["action_id"]
    same = json.loads(json.dumps(short["result"]).replace(ids[0], "ACT"))
    assert same == json.loads(json.dumps(sdk["result"]).replace(ids[1], "ACT"))
    assert not (workspace / "after.txt").exists()
    reopened = make_body(workspace, home)
    try:
        events = [reopened.audit.get(action_id) for action_id in ids]
        assert [(e.rationale, e.code, e.agent) for e in events if e is not None] == [
            ("the short path's", "kill_switch_engaged", "stdio-test"),
            ("the SDK's", "kill_switch_engaged", "stdio-test"),
        ]
        assert reopened.audit.verify().ok
    finally:
        reopened.close()
