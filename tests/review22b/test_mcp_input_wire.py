"""Review 22b: junk at the JSON-RPC level, written as raw lines to a real `swarm body` over stdio: lines that are not
JSON, batches, requests with no id or an id of no kind JSON-RPC allows, a call before `initialize`, bytes that are
not UTF-8. The body keeps serving, answers what it can answer, and does nothing it does not answer."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from ..conftest import make_body

pytestmark = pytest.mark.anyio

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}


class Wire:
    """Raw lines to and from a body's stdio."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._out = BufferedByteReceiveStream(process.stdout)

    async def send(self, line: bytes | dict[str, Any]) -> None:
        data = line if isinstance(line, bytes) else json.dumps(line).encode()
        assert self.process.stdin is not None
        await self.process.stdin.send(data + b"\n")

    async def reply_to(self, ident: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The reply to the request `ident`, and every line the body wrote before it."""
        before: list[dict[str, Any]] = []
        with anyio.fail_after(20):
            while True:
                message = json.loads(await self._out.receive_until(b"\n", 64 * 1024 * 1024))
                if message.get("id") == ident:
                    return message, before
                before.append(message)

    async def start(self) -> None:
        await self.send(INITIALIZE)
        await self.reply_to(0)
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})


@asynccontextmanager
async def raw_body(workspace: Path, home: Path) -> AsyncGenerator[Wire]:
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_AGENT": "review22b"}
    command = [sys.executable, "-m", "swarm_cli", "body", "--workspace", str(workspace)]
    async with await anyio.open_process(command, env=env) as process:
        try:
            yield Wire(process)
        finally:
            assert process.stdin is not None
            await process.stdin.aclose()
            with anyio.fail_after(20):
                await process.wait()


def write_call(ident: Any, path: str, content: str = "x") -> dict[str, Any]:
    arguments = {"path": path, "content": content, "rationale": "r"}
    return {
        "jsonrpc": "2.0",
        "id": ident,
        "method": "tools/call",
        "params": {"name": "write_file", "arguments": arguments},
    }


async def test_junk_lines_and_calls_with_no_valid_id_leave_the_body_serving_and_write_nothing(
    workspace: Path, home: Path
) -> None:
    async with raw_body(workspace, home) as wire:
        await wire.start()
        await wire.send(b"this is not json")
        await wire.send(b'{"jsonrpc": "2.0", "id": ')
        await wire.send(json.dumps([write_call(1, "batch1.txt"), write_call(2, "batch2.txt")]).encode())
        await wire.send(b"[]")
        no_id = write_call(None, "no-id.txt")
        del no_id["id"]
        await wire.send(no_id)  # (a notification: never run, as it could never be answered)
        for n, ident in enumerate([None, {"a": 1}, [1], 1.5, True]):
            await wire.send(write_call(ident, f"odd-id-{n}.txt"))
        await wire.send({**write_call(3, "old-version.txt"), "jsonrpc": "1.0"})
        await wire.send({"jsonrpc": "2.0", "id": 998, "result": {}})  # (a reply to nothing the body asked)
        await wire.send(write_call(4, "after.txt"))
        reply, before = await wire.reply_to(4)
        assert reply["result"]["isError"] is False
        assert before == []  # (nothing above was run: a run call is answered)
        assert wire.process.returncode is None
    assert sorted(p.name for p in workspace.iterdir()) == [
        ".env",
        ".git",
        "README.md",
        "after.txt",
        "src",
        "swarm.toml",
    ]
    body = make_body(workspace, home)
    try:
        assert [e.arguments["path"] for e in body.audit.tail(100) if e.tool == "write_file"] == ["after.txt"]
    finally:
        body.close()


async def test_content_with_bytes_that_are_not_utf8_is_refused_not_written_as_replacement_characters(
    workspace: Path, home: Path
) -> None:
    """Fixed (was medium): a tools/call line whose `content` string holds the raw bytes ff fe (not UTF-8, so not
    JSON) was decoded as U+FFFD, as the SDK's reader does, and `write_file` wrote `a\\ufffd\\ufffdb`, bytes the client
    never sent. Now the reader keeps them as lone surrogates and the guard refuses the call naming `content`, as it
    refuses the same string sent as JSON escapes."""
    async with raw_body(workspace, home) as wire:
        await wire.start()
        line = json.dumps(write_call(1, "bytes.txt", "a@@b")).encode().replace(b"@@", b"\xff\xfe")
        await wire.send(line)
        reply, _ = await wire.reply_to(1)
    assert reply["result"]["isError"] is True
    assert reply["result"]["structuredContent"]["code"] == "invalid_arguments"
    assert not (workspace / "bytes.txt").exists()


async def test_a_call_before_initialize_is_answered_with_an_error_that_says_so(workspace: Path, home: Path) -> None:
    """Fixed (was low): a tools/call before `initialize` got the SDK's -32602 "Invalid request parameters" with empty
    data, the same as a call whose `arguments` is an array: nothing said which. Now -32600 saying the session is not
    initialized; nothing is run (no file, no audit of a call), and the session can still be opened and used."""
    async with raw_body(workspace, home) as wire:
        await wire.send(write_call(1, "early.txt"))
        reply, _ = await wire.reply_to(1)
        assert reply["error"]["code"] == -32600
        assert "initializ" in reply["error"]["message"]
        await wire.start()
        await wire.send(write_call(2, "late.txt"))
        done, _ = await wire.reply_to(2)
        assert done["result"]["isError"] is False
    assert not (workspace / "early.txt").exists() and (workspace / "late.txt").exists()
