"""A bare MCP client over stdio for the benches: JSON-RPC lines written and read by hand.

`initialize`, `notifications/initialized`, then `tools/call` and its reply line: what an IDE's client does, with
little of the official SDK's per-call Python (message models, dispatch, tasks and streams). The kill fan-out bench
runs 32 clients in one process, where the SDK's ~1.5 ms of CPU a call, serialized by one GIL, is the bench's own
cost, not the bodies': a real IDE's client runs in a process of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, cast

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

PROTOCOL_VERSION = "2025-11-25"
"""The newest protocol version with the `initialize` handshake (the body's SDK speaks it)."""
_MAX_LINE = 64 * 1024 * 1024


class RawClientError(Exception):
    """The server answered a request with a JSON-RPC error, or went away."""


@dataclass(frozen=True)
class RawToolResult:
    """What the benches read of a `tools/call` result (named as the SDK's `CallToolResult` fields)."""

    is_error: bool
    structured_content: dict[str, Any] | None


class RawClient:
    """One server process spoken to over its stdin and stdout; one call at a time (`call_tool` holds a lock)."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self._next_id = 0
        self._lock = anyio.Lock()

    @classmethod
    async def start(cls, command: list[str], *, env: dict[str, str], cwd: Path, stderr: Path) -> Self:
        """Start the server and initialize the session."""
        with stderr.open("ab") as log:
            process = await anyio.open_process(command, env=env, cwd=cwd, stderr=log)
        client = cls(process)
        try:
            await client._request(
                "initialize",
                {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "swarm-bench-raw", "version": "0"},
                },
            )
            await client._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        except BaseException:
            await client.aclose()
            raise
        return client

    @property
    def pid(self) -> int:
        """The server's process id (the benches read its CPU time from /proc)."""
        return self._process.pid

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> RawToolResult:
        result = await self._request("tools/call", {"name": name, "arguments": arguments})
        structured = result.get("structuredContent")
        return RawToolResult(
            is_error=bool(result.get("isError", False)),
            structured_content=cast("dict[str, Any]", structured) if isinstance(structured, dict) else None,
        )

    async def _send(self, message: dict[str, Any]) -> None:
        await self._stdin.send(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            self._next_id += 1
            ident = self._next_id
            await self._send({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
            while True:
                try:
                    line = await self._stdout.receive_until(b"\n", _MAX_LINE)
                except (anyio.EndOfStream, anyio.IncompleteRead) as exc:
                    raise RawClientError(f"the server closed its output while {method} was out") from exc
                message: dict[str, Any] = json.loads(line)
                if "method" in message:
                    if "id" in message:  # (a request of the server's: none is expected here, so none is served)
                        await self._send(
                            {
                                "jsonrpc": "2.0",
                                "id": message["id"],
                                "error": {"code": -32601, "message": "Method not found"},
                            }
                        )
                    continue  # (a notification: a log message, progress)
                if message.get("id") != ident:
                    continue
                if "error" in message:
                    raise RawClientError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    async def aclose(self) -> None:
        """Close the server's input (it exits at end of input), then wait for it, or kill it after 10 s."""
        await self._stdin.aclose()
        with anyio.move_on_after(10):
            await self._process.wait()
            return
        self._process.kill()
        await self._process.wait()
