"""The baseline for bench_guard.py and bench_tool_calls.py: the same write/read/list tools over stdio, no guard at all.

Arguments are validated and paths resolved (any file server does that much), then the file is
written or read directly: no kill switch, policy, budgets, audit, anchor or undo record.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server

from body_mcp import _fsops
from body_mcp.confinement import Workspace
from body_mcp.server import tool_definition
from body_mcp.tools import ALL_TOOLS
from shared_protocol import PathArgs, ReadTextFileArgs, WriteFileArgs


def main(root: str) -> None:
    ws = Workspace(Path(root))
    specs = [s for s in ALL_TOOLS if s.name in ("write_file", "read_text_file", "list_directory")]

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool_definition(s) for s in specs])

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        listing: str | None = None  # (list_directory's text is its listing, as the body's is; the others', JSON)
        if params.name == "write_file":
            args = WriteFileArgs.model_validate(params.arguments or {})
            path = ws.resolve(args.path)
            _fsops.write_atomic(ws, path.parts, args.content.encode())
            data: dict[str, Any] = {
                "action_id": "none",
                "mode": "live",
                "changes": [{"path": path.rel, "kind": "modified"}],
                "diff": "",
            }
        elif params.name == "list_directory":
            largs = PathArgs.model_validate(params.arguments or {})
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
            rargs = ReadTextFileArgs.model_validate(params.arguments or {})
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
        text = listing if listing is not None else json.dumps(data)
        return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=data)

    server = Server("unguarded", on_list_tools=list_tools, on_call_tool=call_tool)

    async def serve() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(serve)


if __name__ == "__main__":
    main(sys.argv[1])
