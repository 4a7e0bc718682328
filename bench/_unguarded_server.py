"""The baseline for bench_guard.py and bench_tool_calls.py: the same write/read/list tools over stdio, no guard at all.

Arguments are validated and paths resolved (any file server does that much), then the file is
written or read directly: no kill switch, policy, budgets, audit, anchor or undo record.

    python bench/_unguarded_server.py WORKSPACE           the Python MCP SDK's serving path (the SDK's floor)
    python bench/_unguarded_server.py WORKSPACE --ours    the body's own serving path (`serve_wire`: its stdin
                                                          reader, reply writer and direct path for tool calls)

The second is what the guard's own cost is measured against once the body serves calls faster than the SDK would:
against the first, the body's faster serving path would hide part of the guard.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server

from body_mcp import _fsops
from body_mcp.confinement import Workspace
from body_mcp.killswitch import KillSwitch, MemoryKillSwitch
from body_mcp.pipeline import CallOutcome
from body_mcp.server import serve_wire, tool_definition, without_idle_spans
from body_mcp.tools import ALL_TOOLS
from shared_protocol import PathArgs, ReadTextFileArgs, WriteFileArgs


class Unguarded:
    """The three tools on `root`, served with nothing around them (what `DirectCalls` needs of a body)."""

    def __init__(self, root: str) -> None:
        self._ws = Workspace(Path(root))
        self._kill = MemoryKillSwitch()  # (never engaged)

    @property
    def kill_switch(self) -> KillSwitch:
        return self._kill

    def run(self, name: str, arguments: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
        """The tool's reply: its text and structured content."""
        ws = self._ws
        listing: str | None = None  # (list_directory's text is its listing, as the body's is; the others', JSON)
        if name == "write_file":
            args = WriteFileArgs.model_validate(arguments or {})
            path = ws.resolve(args.path)
            _fsops.write_atomic(ws, path.parts, args.content.encode())
            data: dict[str, Any] = {
                "action_id": "none",
                "mode": "live",
                "changes": [{"path": path.rel, "kind": "modified"}],
                "diff": "",
            }
        elif name == "list_directory":
            largs = PathArgs.model_validate(arguments or {})
            path = ws.resolve(largs.path)
            with ws.open_dir(path.parts) as fd, os.scandir(os.dup(fd)) as it:
                names = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in it)
            data = {
                "action_id": "none",
                "path": path.rel,
                "files": [name for name, is_dir in names if not is_dir],
                "directories": [name for name, is_dir in names if is_dir],
                "symlinks": [],
                "other": [],
            }
            listing = "\n".join(f"{'[DIR]' if is_dir else '[FILE]'} {name}" for name, is_dir in names)
        else:
            rargs = ReadTextFileArgs.model_validate(arguments or {})
            path = ws.resolve(rargs.path)
            _, raw = _fsops.read_entry(ws, path.parts)
            text = (raw or b"").decode()
            data = {
                "action_id": "none",
                "path": path.rel,
                "content": text,
                "binary": False,
                "size": len(raw or b""),
                "sha256": "",
            }
        return (listing if listing is not None else json.dumps(data)), data

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        client: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CallOutcome:
        text, data = self.run(name, arguments)
        return CallOutcome(is_error=False, structured=data, text=text, action_id="none")

    async def refuse_killed(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        client: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CallOutcome | None:
        return None


def main(root: str, *, ours: bool) -> None:
    tools = Unguarded(root)
    specs = [s for s in ALL_TOOLS if s.name in ("write_file", "read_text_file", "list_directory")]

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool_definition(s) for s in specs])

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        text, data = tools.run(params.name, params.arguments)
        return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=data)

    server = Server("unguarded", on_list_tools=list_tools, on_call_tool=call_tool)

    async def serve() -> None:
        if ours:  # (as the body serves: no idle span per message, so tool calls take the direct path)
            await serve_wire(without_idle_spans(server), tools, lambda: None)
            return
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(serve)


if __name__ == "__main__":
    main(sys.argv[1], ours="--ours" in sys.argv[2:])
