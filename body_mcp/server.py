"""The body as an MCP server (official SDK, low-level `Server`).

The low-level server hands `tools/call` to us with the raw arguments, before any
validation, so the guard sees every call: one with a missing `rationale` or a wrong type
is refused and audited like any other refusal, not rejected by the SDK unseen.
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server

from .body import Body
from .tools._spec import ToolSpec

INSTRUCTIONS = (
    "These tools are your only hands in this workspace. Every call needs a rationale (why you want it); "
    "it is audited. Mutating calls are budgeted, reversible with `undo`, and refused while the kill switch is "
    "engaged. A refusal names its rule and code: read it and adapt rather than retrying the same call."
)


def tool_definition(spec: ToolSpec) -> types.Tool:
    return types.Tool(
        name=spec.name,
        description=spec.description,
        input_schema=spec.args_model.model_json_schema(),
        output_schema=spec.result_model.model_json_schema(),
        annotations=types.ToolAnnotations(
            read_only_hint=spec.read_only,
            destructive_hint=spec.destructive if not spec.read_only else False,
            idempotent_hint=spec.idempotent if not spec.read_only else True,
            open_world_hint=False,
        ),
    )


def build_server(body: Body) -> Server[Any]:
    definitions = [tool_definition(spec) for spec in body.tools.values()]

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=definitions)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        client_params = ctx.session.client_params
        client = client_params.client_info.name if client_params is not None else None
        outcome = await body.call_tool(params.name, params.arguments, client=client)
        return types.CallToolResult(
            content=[types.TextContent(text=outcome.text)],
            structured_content=outcome.structured,
            is_error=outcome.is_error,
        )

    return Server(
        "swarm-body",
        version="0.1.0",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def serve_stdio(body: Body) -> None:
    server = build_server(body)
    async with anyio.create_task_group() as background:
        background.start_soon(body.background)
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
        background.cancel_scope.cancel()


def run_stdio(body: Body) -> None:
    try:
        anyio.run(serve_stdio, body)
    finally:
        body.close()
