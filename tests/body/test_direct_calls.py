"""The direct path (`body_mcp/_direct_calls.py`): a well-formed `tools/call` is served by the body as the transport
reads it (in a task of its own, or, refused by the kill switch, on the read loop) with the reply the SDK would send;
anything else still goes to the SDK, whose errors and progress it keeps."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.message import SessionMessage

from body_mcp import Body
from body_mcp._direct_calls import DirectCalls
from body_mcp.audit import _store as audit_store  # pyright: ignore[reportPrivateUsage]
from body_mcp.killswitch import RELEASED, KillState, MemoryKillSwitch
from body_mcp.pipeline import CallContext, Next
from body_mcp.server import _Recovering, build_server  # pyright: ignore[reportPrivateUsage]
from body_mcp.tools._spec import ToolOutput

from ..cli.inprocess import run_swarm
from ..conftest import make_body

pytestmark = pytest.mark.anyio

KILLED = KillState(engaged=True, reason="stop", by="captain", source="brain")
WAIT_S = 10


class _LiftedAfter(MemoryKillSwitch):
    """Engaged for the first `reads` reads of its state, released after: a resume that lands while a call is read."""

    def __init__(self, reads: int) -> None:
        super().__init__()
        self.current = KILLED
        self._reads = reads

    def state(self) -> KillState:
        self._reads -= 1
        return KILLED if self._reads >= 0 else RELEASED


class _Counted(DirectCalls):
    """`DirectCalls` that keeps the ids of the calls it took."""

    taken: list[types.RequestId]

    async def answered(self, request: types.JSONRPCRequest) -> bool:
        took = await super().answered(request)
        if took:
            self.taken.append(request.id)
        return took


class _Hold:
    """A guard that holds calls on `path` until `go` is set; with `report`, a call first reports progress."""

    def __init__(self, path: str = "held.txt", *, report: bool = False) -> None:
        self.path, self.report = path, report
        self.go, self.holding = anyio.Event(), anyio.Event()

    async def __call__(self, ctx: CallContext, call_next: Next) -> ToolOutput:
        if self.report and ctx.progress is not None:
            await ctx.progress(1, 2, "half way")
        if ctx.raw_arguments.get("path") == self.path:
            self.holding.set()
            await self.go.wait()
        return await call_next(ctx)


class _Wire:
    """The client's side of a session served as `serve_stdio` serves it, over memory streams."""

    def __init__(self, send: Any, receive: Any, calls: _Counted) -> None:
        self._send, self._receive, self.calls = send, receive, calls

    async def send(self, message: dict[str, Any]) -> None:
        await self._send.send(SessionMessage(types.jsonrpc_message_adapter.validate_python(message, by_name=False)))

    async def next(self) -> dict[str, Any]:
        with anyio.fail_after(WAIT_S):
            item: SessionMessage = await self._receive.receive()
        return _as_written(item)

    async def reply(self, ident: int) -> dict[str, Any]:
        message = await self.next()
        assert message.get("id") == ident, message
        return message

    async def close(self) -> list[dict[str, Any]]:
        """End of stream, as a client closing stdin: what the server still writes."""
        await self._send.aclose()
        rest: list[dict[str, Any]] = []
        with anyio.fail_after(WAIT_S):
            async for item in self._receive:
                rest.append(_as_written(item))
        return rest


def _as_written(item: SessionMessage) -> dict[str, Any]:
    """A message as the stdio transport writes it (its keys in that order)."""
    return json.loads(item.message.model_dump_json(by_alias=True, exclude_unset=True))


@asynccontextmanager
async def _session(body: Body, *, direct: bool = True, version: str | None = "2025-11-25") -> AsyncGenerator[_Wire]:
    """`body` served with the direct path (or, `direct=False`, without it: every call the SDK's), initialized with
    `version` (None: not initialized)."""
    to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](16)
    server = build_server(body)
    calls = _Counted(body, server_writes)
    calls.taken = []
    async with anyio.create_task_group() as tg, calls:
        reads = _Recovering(server_reads, calls if direct else None)
        tg.start_soon(server.run, reads, server_writes, server.create_initialization_options())
        wire = _Wire(to_server, from_server, calls)
        if version is not None:
            client = {"name": "ide", "version": "1"}
            await wire.send(
                {
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": client},
                }
            )
            assert "result" in await wire.reply(0)
            await wire.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield wire
        await wire.close()


def _request(name: str, arguments: Any, *, ident: int = 1, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": params}


async def _answer(body: Body, request: dict[str, Any], *, version: str | None = "2025-11-25") -> dict[str, Any] | None:
    """`request` on a session initialized with `version` (None: not initialized): the reply's result when the direct
    path answered it, None when it was left to the SDK."""
    async with _session(body, version=version) as wire:
        await wire.send(request)
        reply = await wire.reply(request["id"])
        if request["id"] not in wire.calls.taken:
            return None
    return reply["result"]


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


async def test_what_the_direct_path_does_not_serve_goes_to_the_sdk(workspace: Path, home: Path) -> None:
    body = make_body(workspace, home)
    try:
        write = _request("write_file", {"path": "a.txt", "content": "x", "rationale": "r"})
        async with _session(body, version=None) as wire:  # (before any initialize: answered here, saying why)
            await wire.send(write)
            early = await wire.reply(write["id"])
            assert wire.calls.taken == [1] and early["error"]["code"] == types.INVALID_REQUEST
            assert "not initialized" in early["error"]["message"]
        assert not (workspace / "a.txt").exists()
        assert await _answer(body, write, version="2025-03-26") is None  # (the SDK shapes that version's result)
        with_progress = _request("read_text_file", {"path": "README.md", "rationale": "r"}, meta={"progressToken": 7})
        assert await _answer(body, with_progress) is None
        unread: list[dict[str, Any]] = [
            {"name": "write_file", "arguments": [1]},
            {"name": 5, "arguments": {}},
            {"arguments": {}},
            {"name": "read_text_file", "arguments": {}, "task": {"ttl": 1}},
        ]
        for params in unread:
            assert await _answer(body, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params}) is None
        # Served here: a call on an initialized session of a known version, with or without a `_meta` of its own.
        assert await _answer(body, write) is not None
        read = _request("read_text_file", {"path": "a.txt", "rationale": "r"}, meta={"origin": "x"})
        assert await _answer(body, read) is not None
    finally:
        body.close()


async def test_a_session_initialized_again_with_another_version_leaves_its_calls_to_the_sdk(
    workspace: Path, home: Path
) -> None:
    body = make_body(workspace, home)
    try:
        async with _session(body) as wire:
            read = {"path": "README.md", "rationale": "r"}
            await wire.send(_request("read_text_file", read, ident=1))
            assert (await wire.reply(1))["result"]["isError"] is False
            client = {"name": "ide", "version": "1"}
            again = {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": client}
            await wire.send({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": again})
            assert (await wire.reply(2))["result"]["protocolVersion"] == "2025-03-26"
            await wire.send(_request("read_text_file", read, ident=3))
            assert (await wire.reply(3))["result"]["isError"] is False
            assert wire.calls.taken == [1]  # (that version's result is the SDK's to shape)
    finally:
        body.close()


async def test_a_kill_lifted_as_the_call_is_read_leaves_it_to_the_guard_and_one_lifted_after_refuses_it(
    workspace: Path, home: Path
) -> None:
    args = {"path": "a.txt", "content": "x", "rationale": "r"}
    # Engaged when the transport looks, released when the short path takes the state: the whole call serves it.
    body = make_body(workspace, home, kill_switch=_LiftedAfter(reads=1))
    try:
        result = await _answer(body, _request("write_file", args))
        assert result is not None and result["isError"] is False
        assert (workspace / "a.txt").read_text() == "x"
    finally:
        body.close()
    (workspace / "a.txt").unlink()
    # Released once the body took the state it refuses under: refused (as a call the guard refused is, today).
    body = make_body(workspace, home, kill_switch=_LiftedAfter(reads=2))
    try:
        result = await _answer(body, _request("write_file", args))
        assert result is not None and result["structuredContent"]["code"] == "kill_switch_engaged"
        assert not (workspace / "a.txt").exists()
    finally:
        body.close()


async def test_a_refusal_that_cannot_be_audited_is_left_to_the_whole_call_not_raised_into_the_transport(
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
        async with _session(body) as wire:
            await wire.send(write)
            reply = await wire.reply(1)  # (answered all the same: by `call_tool`, as the SDK's path would)
        assert not (workspace / "a.txt").exists()
        assert reply.get("error") is not None or reply["result"]["isError"] is True
        monkeypatch.undo()
        result = await _answer(body, write)
        assert result is not None and result["structuredContent"]["code"] == "kill_switch_engaged"
        assert not (workspace / "a.txt").exists()
    finally:
        body.close()


def _seeded(root: Path) -> Path:
    (root / "d").mkdir(parents=True)
    for n in range(3):
        (root / "d" / f"f{n}.txt").write_text(f"line {n}\n")
    return root


def _same(reply: dict[str, Any]) -> str:
    """`reply` as JSON, its keys in the order they were written, with its action id made a constant (each call has
    its own)."""
    text = json.dumps(reply)
    action_id = reply.get("result", {}).get("structuredContent", {}).get("action_id")
    return text.replace(action_id, "ACT") if isinstance(action_id, str) else text


async def test_the_direct_paths_replies_are_the_sdks_for_the_same_calls(tmp_path: Path) -> None:
    """The same calls through the direct path and through the SDK's (each on a body of its own, over the same files):
    the same replies, field for field, successes, refusals and an unknown tool alike, for both versions."""
    calls: list[tuple[str, Any]] = [
        ("write_file", {"path": "d/new.txt", "content": "one\ntwo\n", "rationale": "r"}),
        ("read_text_file", {"path": "d/new.txt", "rationale": "r"}),
        ("list_directory", {"path": "d", "rationale": "r"}),
        ("write_file", {"path": "d/f0.txt", "content": "changed\n", "rationale": "r"}),
        ("read_text_file", {"path": "d/f1.txt"}),  # (no rationale: refused)
        ("read_text_file", {"path": "../outside", "rationale": "r"}),
        ("no_such_tool", {"rationale": "r"}),
        ("list_directory", None),
    ]
    meta = {"name": "read_text_file", "arguments": {"path": "d/f1.txt", "rationale": "r"}, "_meta": 5}
    for version in ("2025-11-25", "2025-06-18"):
        replies: dict[bool, list[str]] = {}
        for direct in (True, False):
            root = tmp_path / version / str(direct)
            body = make_body(_seeded(root / "ws"), (root / "home"))
            try:
                async with _session(body, direct=direct, version=version) as wire:
                    got: list[str] = []
                    for ident, (name, arguments) in enumerate(calls, start=1):
                        await wire.send(_request(name, arguments, ident=ident))
                        got.append(_same(await wire.reply(ident)))
                    # (a `_meta` that is no object: made one naming the problem as it is read, refused by the guard)
                    await wire.send({"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": meta})
                    got.append(_same(await wire.reply(99)))
                    assert wire.calls.taken == ([*range(1, len(calls) + 1), 99] if direct else [])
                replies[direct] = got
            finally:
                body.close()
        assert replies[True] == replies[False]
        assert [json.loads(r)["result"]["isError"] for r in replies[True]] == [
            False,
            False,
            False,
            False,
            True,
            True,
            True,
            True,
            True,
        ]


async def test_a_call_the_sdk_refuses_gets_the_sdks_error_as_before(workspace: Path, home: Path) -> None:
    malformed: list[dict[str, Any]] = [
        {"name": "write_file", "arguments": [1]},
        {"name": 5, "arguments": {}},
        {"arguments": {}},
        {"name": "read_text_file", "arguments": {}, "_meta": {"progressToken": [1]}},
        {"name": "read_text_file", "arguments": {}, "task": 5},
    ]
    body = make_body(workspace, home)
    try:
        errors: dict[bool, list[Any]] = {}
        for direct in (True, False):
            async with _session(body, direct=direct) as wire:
                got: list[Any] = []
                for ident, params in enumerate(malformed, start=1):
                    await wire.send({"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": params})
                    got.append(await wire.reply(ident))
                assert wire.calls.taken == []
            errors[direct] = got
        assert errors[True] == errors[False]
        assert all(e["error"]["code"] == types.INVALID_PARAMS for e in errors[True])
    finally:
        body.close()


async def test_calls_on_the_direct_path_run_concurrently_each_answered_when_done(workspace: Path, home: Path) -> None:
    hold = _Hold()
    body = make_body(workspace, home, outer_guards=[hold])
    try:
        async with _session(body) as wire:
            await wire.send(_request("write_file", {"path": "held.txt", "content": "x", "rationale": "r"}, ident=1))
            with anyio.fail_after(WAIT_S):
                await hold.holding.wait()
            await wire.send(_request("read_text_file", {"path": "README.md", "rationale": "r"}, ident=2))
            assert (await wire.reply(2))["result"]["structuredContent"]["content"] == "# sample\n"
            assert not (workspace / "held.txt").exists()
            hold.go.set()
            assert (await wire.reply(1))["result"]["isError"] is False
            assert wire.calls.taken == [1, 2]
        assert (workspace / "held.txt").read_text() == "x"
    finally:
        body.close()


@pytest.mark.parametrize("direct", [True, False])
async def test_a_call_cancelled_mid_way_is_never_answered_and_is_audited_cancelled(
    workspace: Path, home: Path, direct: bool
) -> None:
    """Both paths: `notifications/cancelled` stops the call; no reply is written for it (the SDK's rule)."""
    hold = _Hold()
    body = make_body(workspace, home, outer_guards=[hold])
    try:
        async with _session(body, direct=direct) as wire:
            await wire.send(_request("write_file", {"path": "held.txt", "content": "x", "rationale": "r"}, ident=1))
            with anyio.fail_after(WAIT_S):
                await hold.holding.wait()
            cancel = {"requestId": 1, "reason": "the user stopped it"}
            await wire.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel})
            await wire.send(_request("read_text_file", {"path": "README.md", "rationale": "r"}, ident=2))
            assert (await wire.reply(2))["result"]["isError"] is False  # (the next message: none for call 1)
            assert wire.calls.taken == ([1, 2] if direct else [])
            rest = await wire.close()
        assert [m for m in rest if m.get("id") == 1] == []
        assert not (workspace / "held.txt").exists()
        events = [e for e in body.audit.tail(10) if e.kind == "tool_call" and e.tool == "write_file"]
        assert [(e.outcome, e.code) for e in events] == [("failed", "cancelled")]
    finally:
        body.close()


@pytest.mark.parametrize("direct", [True, False])
async def test_a_call_running_when_the_client_closes_the_wire_is_answered_connection_closed(
    workspace: Path, home: Path, direct: bool
) -> None:
    hold = _Hold()
    body = make_body(workspace, home, outer_guards=[hold])
    try:
        async with _session(body, direct=direct) as wire:
            await wire.send(_request("write_file", {"path": "held.txt", "content": "x", "rationale": "r"}, ident=1))
            with anyio.fail_after(WAIT_S):
                await hold.holding.wait()
            rest = await wire.close()
            assert [(m["id"], m["error"]["code"]) for m in rest] == [(1, types.CONNECTION_CLOSED)]
        assert not (workspace / "held.txt").exists()
    finally:
        body.close()


async def test_a_call_with_a_progress_token_still_gets_the_sdks_progress(workspace: Path, home: Path) -> None:
    body = make_body(workspace, home, outer_guards=[_Hold(report=True)])
    try:
        async with _session(body) as wire:
            args = {"path": "README.md", "rationale": "r"}
            await wire.send(_request("read_text_file", args, ident=1, meta={"progressToken": "p1"}))
            progress = await wire.next()
            assert progress["method"] == "notifications/progress"
            assert progress["params"] == {"progressToken": "p1", "progress": 1.0, "total": 2.0, "message": "half way"}
            assert (await wire.reply(1))["result"]["isError"] is False
            await wire.send(_request("read_text_file", args, ident=2))  # (no token: no progress, served directly)
            assert (await wire.reply(2))["result"]["isError"] is False
            assert wire.calls.taken == [2]
    finally:
        body.close()


@pytest.mark.parametrize("direct", [True, False])
async def test_an_exception_out_of_the_body_is_the_sdks_error_reply(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    body = make_body(workspace, home)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(body, "call_tool", broken)
    try:
        async with _session(body, direct=direct) as wire:
            await wire.send(_request("read_text_file", {"path": "README.md", "rationale": "r"}))
            reply = await wire.reply(1)
        assert reply["error"] == {"code": 0, "message": "[Errno 5] Input/output error"}
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
    """A real body process: the direct path's replies, a read's and a refusal's, are the SDK's (a call with a progress
    token goes the SDK's way), and a refusal's audit event outlives a SIGKILL right after the reply."""
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
        read = {"name": "read_text_file", "arguments": {"path": "README.md", "rationale": "r"}}
        _send(body.stdin, {"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": read})
        direct_read = _line(body.stdout)
        _send(
            body.stdin,
            {"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {**read, "_meta": {"progressToken": 1}}},
        )
        sdk_read = _line(body.stdout)
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
    assert (direct_read["id"], sdk_read["id"]) == (10, 11)
    reads = direct_read["result"], sdk_read["result"]
    assert not reads[0]["isError"] and reads[0]["structuredContent"]["content"] == "# sample\n"
    read_ids = [r["structuredContent"]["action_id"] for r in reads]
    assert json.dumps(reads[0]).replace(read_ids[0], "ACT") == json.dumps(reads[1]).replace(read_ids[1], "ACT")
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


def test_the_ids_taken_by_direct_calls_are_remembered_up_to_a_bound(workspace: Path, home: Path) -> None:
    """A cancellation of an id whose latest request was served directly is never the SDK's, even after the call
    ended; the ids are remembered up to `_LATEST_KEPT` (the oldest dropped first), and one the SDK takes again is its
    own (its cancellation goes to the SDK)."""
    from body_mcp import _direct_calls

    body = make_body(workspace, home)
    try:
        direct = DirectCalls(body, _NoWrites())
        for n in range(_direct_calls._LATEST_KEPT + 10):  # pyright: ignore[reportPrivateUsage]
            direct._took(n)  # pyright: ignore[reportPrivateUsage]

        def cancel(n: int) -> types.JSONRPCNotification:
            params = {"requestId": n}
            return types.JSONRPCNotification(jsonrpc="2.0", method="notifications/cancelled", params=params)

        assert not direct.note(cancel(0)), "the oldest ids are dropped: the SDK's again"
        assert direct.note(cancel(_direct_calls._LATEST_KEPT + 9))  # pyright: ignore[reportPrivateUsage]
        direct.note(types.JSONRPCRequest(jsonrpc="2.0", id=20, method="ping"))  # (the SDK takes id 20 again)
        assert not direct.note(cancel(20))
        assert direct.note(cancel(21))
    finally:
        body.close()


class _NoWrites:
    async def send(self, item: SessionMessage, /) -> None:
        raise AssertionError(f"nothing is written here: {item}")
