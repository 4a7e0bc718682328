# pyright: strict
"""Review 20: the direct path for `tools/call` (`body_mcp/_direct_calls.py`) attacked in process, each case compared
with the SDK's own path for the same messages: the protocol era a connection is in, a kill switch that cannot be read
as the call arrives, and a request id reused across the two paths then cancelled."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import anyio
import mcp_types as types
import pytest
from anyio.streams.memory import MemoryObjectSendStream
from mcp.shared.message import SessionMessage

from body_mcp import _direct_calls as direct_calls  # pyright: ignore[reportPrivateUsage]
from body_mcp._direct_calls import DirectCalls  # pyright: ignore[reportPrivateUsage]
from body_mcp.killswitch import KillState, MemoryKillSwitch
from body_mcp.server import _Recovering, build_server  # pyright: ignore[reportPrivateUsage]
from tests.body.test_direct_calls import (
    WAIT_S,
    _Hold,  # pyright: ignore[reportPrivateUsage]
    _request,  # pyright: ignore[reportPrivateUsage]
    _session,  # pyright: ignore[reportPrivateUsage]
)
from tests.conftest import make_body

pytestmark = pytest.mark.anyio

READ = {"path": "README.md", "rationale": "r"}
ENVELOPE = {
    types.PROTOCOL_VERSION_META_KEY: "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "modern", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 50,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}},
}


def _tool_events(body: Any, tool: str) -> list[Any]:
    return [e for e in body.audit.tail(50) if e.kind == "tool_call" and e.tool == tool]


@pytest.mark.parametrize("direct", [True, False])
async def test_a_call_in_the_2026_envelope_on_a_handshake_connection_is_refused_on_both_paths(
    workspace: Path, home: Path, direct: bool
) -> None:
    """The SDK refuses a request carrying the 2026-07-28 envelope on a connection opened with `initialize`
    (INVALID_REQUEST, nothing runs); the direct path served it (MEDIUM: a write took effect that the SDK refuses)."""
    body = make_body(workspace, home)
    try:
        async with _session(body, direct=direct) as wire:
            args = {"path": "new.txt", "content": "x", "rationale": "r"}
            await wire.send(_request("write_file", args, ident=1, meta=ENVELOPE))
            reply = await wire.reply(1)
            assert wire.calls.taken == []
        assert reply["error"]["code"] == types.INVALID_REQUEST
        assert not (workspace / "new.txt").exists()
        assert _tool_events(body, "write_file") == []
    finally:
        body.close()


@pytest.mark.parametrize("direct", [True, False])
async def test_a_connection_opened_in_the_2026_era_serves_no_call_directly_after_an_initialize_it_refused(
    workspace: Path, home: Path, direct: bool
) -> None:
    """A connection whose first request carries the 2026-07-28 envelope is in that era for good: the SDK refuses a
    later `initialize`, and a call without the envelope; the direct path took the refused `initialize` and the
    `notifications/initialized` after it as a handshake and served that call (MEDIUM: an effect the SDK refuses,
    audited under the name the refused `initialize` gave)."""
    body = make_body(workspace, home)
    try:
        async with _session(body, direct=direct, version=None) as wire:
            await wire.send(_request("read_text_file", READ, ident=1, meta=ENVELOPE))
            assert (await wire.reply(1))["result"]["isError"] is False  # (the SDK's, in the 2026 era)
            await wire.send(INITIALIZE)
            assert (await wire.reply(50))["error"]["code"] == types.UNSUPPORTED_PROTOCOL_VERSION
            await wire.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            await wire.send(_request("write_file", {"path": "new.txt", "content": "x", "rationale": "r"}, ident=2))
            reply = await wire.reply(2)
            assert wire.calls.taken == []
        assert reply["error"]["code"] == types.INVALID_PARAMS
        assert not (workspace / "new.txt").exists()
        assert _tool_events(body, "write_file") == []
    finally:
        body.close()


class _Unreadable(MemoryKillSwitch):
    """A kill switch whose state cannot be read while `broken` (an `EACCES` on the kill file, say)."""

    broken = True

    def state(self) -> KillState:
        if self.broken:
            raise PermissionError(13, "Permission denied", "kill.json")
        return super().state()


@pytest.mark.parametrize("direct", [True, False])
async def test_a_kill_state_that_cannot_be_read_as_a_call_arrives_is_the_guards_to_refuse_not_the_transports_crash(
    workspace: Path, home: Path, direct: bool
) -> None:
    """The SDK's path meets an unreadable kill state in the guard: the call is refused (fail closed, `io_error`) and
    audited, and the session goes on. The direct path read the state on the transport's read loop, where the exception
    ended the whole session (MEDIUM: every other call in flight lost, the body process gone)."""
    kill_switch = _Unreadable()
    body = make_body(workspace, home, kill_switch=kill_switch)
    try:
        async with _session(body, direct=direct) as wire:
            await wire.send(_request("write_file", {"path": "a.txt", "content": "x", "rationale": "r"}, ident=1))
            first = await wire.reply(1)
            kill_switch.broken = False
            await wire.send(_request("write_file", {"path": "b.txt", "content": "x", "rationale": "r"}, ident=2))
            second = await wire.reply(2)
        assert first["result"]["isError"] is True
        assert first["result"]["structuredContent"]["code"] == "io_error"
        assert second["result"]["isError"] is False, second
        assert not (workspace / "a.txt").exists() and (workspace / "b.txt").read_text() == "x"
        events = _tool_events(body, "write_file")
        assert sorted((e.outcome, e.code) for e in events) == [("failed", "io_error"), ("ok", None)]
    finally:
        body.close()


@pytest.mark.parametrize("direct", [True, False])
async def test_a_reused_id_cancelled_cancels_only_the_later_request_as_the_sdk_does(
    workspace: Path, home: Path, direct: bool
) -> None:
    """Two calls under one id (a client's mistake): the first served directly, the second (with a progress token)
    the SDK's. A `notifications/cancelled` for the id cancels the later request only, as the SDK's table of requests
    does; the direct path cancelled both, the first's effect and reply lost (LOW: the client broke JSON-RPC first)."""
    first, second = _Hold("first.txt"), _Hold("second.txt")
    body = make_body(workspace, home, outer_guards=[first, second])
    try:
        async with _session(body, direct=direct) as wire:
            await wire.send(_request("write_file", {"path": "first.txt", "content": "1", "rationale": "r"}, ident=7))
            with anyio.fail_after(WAIT_S):
                await first.holding.wait()
            later = _request("write_file", {"path": "second.txt", "content": "2", "rationale": "r"}, ident=7)
            later["params"]["_meta"] = {"progressToken": "p"}
            await wire.send(later)
            with anyio.fail_after(WAIT_S):
                await second.holding.wait()
            await wire.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}})
            await wire.send({"jsonrpc": "2.0", "id": 8, "method": "ping"})
            assert await wire.reply(8) == {"jsonrpc": "2.0", "id": 8, "result": {}}
            first.go.set()
            second.go.set()
            reply = await wire.reply(7)
            rest = await wire.close()
        assert reply["result"]["isError"] is False
        assert [m for m in rest if m.get("id") == 7] == []
        assert (workspace / "first.txt").read_text() == "1"
        assert not (workspace / "second.txt").exists()
    finally:
        body.close()


@pytest.mark.parametrize("direct", [True, False])
async def test_a_reused_id_taken_from_the_sdk_then_cancelled_cancels_only_the_later_request(
    workspace: Path, home: Path, direct: bool
) -> None:
    """The other order: the first call under the id the SDK's (a progress token), the second served directly. Was a
    LOW hole (session 20's review): the cancellation went on to the SDK as well, which cancelled its call too; now a
    cancellation for a call served directly is not handed to the SDK."""
    first, second = _Hold("first.txt"), _Hold("second.txt")
    body = make_body(workspace, home, outer_guards=[first, second])
    try:
        async with _session(body, direct=direct) as wire:
            earlier = _request("write_file", {"path": "first.txt", "content": "1", "rationale": "r"}, ident=7)
            earlier["params"]["_meta"] = {"progressToken": "p"}
            await wire.send(earlier)
            with anyio.fail_after(WAIT_S):
                await first.holding.wait()
            await wire.send(_request("write_file", {"path": "second.txt", "content": "2", "rationale": "r"}, ident=7))
            with anyio.fail_after(WAIT_S):
                await second.holding.wait()
            await wire.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}})
            await wire.send({"jsonrpc": "2.0", "id": 8, "method": "ping"})
            assert await wire.reply(8) == {"jsonrpc": "2.0", "id": 8, "result": {}}
            first.go.set()
            second.go.set()
            with anyio.move_on_after(2):  # (the reply that must come; none if both were cancelled)
                reply = await wire.next()
                assert reply["id"] == 7 and reply["result"]["isError"] is False
            rest = await wire.close()
        assert [m for m in rest if m.get("id") == 7] == []
        assert (workspace / "first.txt").read_text() == "1"
        assert not (workspace / "second.txt").exists()
    finally:
        body.close()


class _HeldReplies:
    """The write stream a `DirectCalls` answers on, holding every `tools/call` answer until `go` is set."""

    def __init__(self, inner: MemoryObjectSendStream[SessionMessage]) -> None:
        self._inner = inner
        self.go, self.holding = anyio.Event(), anyio.Event()

    async def send(self, item: SessionMessage, /) -> None:
        self.holding.set()
        await self.go.wait()
        await self._inner.send(item)


class _Closes:
    """The SDK's write stream, telling when the SDK closes it."""

    def __init__(self, inner: MemoryObjectSendStream[SessionMessage]) -> None:
        self._inner = inner
        self.closed = anyio.Event()

    async def send(self, item: SessionMessage, /) -> None:
        await self._inner.send(item)

    async def aclose(self) -> None:
        self.closed.set()
        await self._inner.aclose()

    async def __aenter__(self) -> _Closes:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def test_an_answer_still_being_written_as_the_client_closes_the_wire_is_not_lost(
    workspace: Path, home: Path
) -> None:
    """A call that finished just before the client closed stdin, its reply not yet taken by the write stream (the
    writer busy with a burst's replies): the SDK must not close the stream under it. The direct path counted the call
    done before its reply was sent, so the SDK closed the stream and the reply was dropped (MEDIUM: over stdio, under
    load, 32 replies of 60 calls lost in 6 runs, `ok` writes among them, their effects audited but never answered)."""
    body = make_body(workspace, home)
    to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](16)
    sdk_writes = _Closes(server_writes)
    replies = _HeldReplies(server_writes)
    server = build_server(body)
    try:
        async with anyio.create_task_group() as tg, DirectCalls(body, replies) as direct:
            reads = _Recovering(server_reads, direct)
            tg.start_soon(server.run, reads, cast(Any, sdk_writes), server.create_initialization_options())
            client = {"name": "ide", "version": "1"}
            init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": client}
            for message in (
                {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init},
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                _request("write_file", {"path": "a.txt", "content": "x", "rationale": "r"}, ident=1),
            ):
                await to_server.send(
                    SessionMessage(types.jsonrpc_message_adapter.validate_python(message, by_name=False))
                )
            with anyio.fail_after(WAIT_S):
                assert (await from_server.receive()).message.id == 0  # type: ignore[union-attr]
                await replies.holding.wait()
            await to_server.aclose()
            with anyio.move_on_after(1):  # (the SDK closing its stream before the answer is written: the hole)
                await sdk_writes.closed.wait()
            replies.go.set()
            with anyio.fail_after(WAIT_S):
                rest = [item.message async for item in from_server]
        assert [(m.id, "result" in m.model_dump()) for m in rest] == [(1, True)]  # type: ignore[union-attr]
        assert (workspace / "a.txt").read_text() == "x"
    finally:
        body.close()


class _Wedged:
    """A write stream that never takes a `tools/call` answer (a client that closed stdin and reads no more)."""

    async def send(self, item: SessionMessage, /) -> None:
        await anyio.sleep_forever()


async def test_a_wire_that_takes_no_answer_does_not_hold_the_session_open_past_the_bound(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers owed at end of stream wait for the write stream, but only up to `_SHUTDOWN_WRITE_S`: a call's error
    answer (sent outside the call's own scope) and a finished call's reply that the wire never takes are given up on,
    and the session ends."""
    monkeypatch.setattr(direct_calls, "_SHUTDOWN_WRITE_S", 0.2)
    body = make_body(workspace, home)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(body, "call_tool", broken)
    to_server, server_reads = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    server_writes, from_server = anyio.create_memory_object_stream[SessionMessage](16)
    server = build_server(body)
    rest: list[Any] = []
    try:
        with anyio.fail_after(WAIT_S):
            async with anyio.create_task_group() as tg, DirectCalls(body, _Wedged()) as direct:
                tg.start_soon(
                    server.run, _Recovering(server_reads, direct), server_writes, server.create_initialization_options()
                )
                client = {"name": "ide", "version": "1"}
                init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": client}
                for message in (
                    {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init},
                    {"jsonrpc": "2.0", "method": "notifications/initialized"},
                    _request("read_text_file", READ, ident=1),
                ):
                    await to_server.send(
                        SessionMessage(types.jsonrpc_message_adapter.validate_python(message, by_name=False))
                    )
                await to_server.aclose()
                rest = [item.message async for item in from_server]
        assert [getattr(m, "id", None) for m in rest] == [0]  # (the initialize reply; call 1's never taken)
    finally:
        body.close()
