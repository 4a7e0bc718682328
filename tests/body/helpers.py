"""Small helpers for calling the body in tests."""

from __future__ import annotations

from typing import Any

from mcp import Client
from mcp_types import CallToolResult


async def call(client: Client, tool: str, **arguments: Any) -> CallToolResult:
    arguments.setdefault("rationale", "test")
    return await client.call_tool(tool, arguments)


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.structured_content
    assert isinstance(result.structured_content, dict)
    return result.structured_content  # pyright: ignore[reportUnknownVariableType]


def refused(result: CallToolResult, code: str) -> dict[str, Any]:
    assert result.is_error, result.structured_content
    data = result.structured_content
    assert isinstance(data, dict)
    assert data["code"] == code, data
    assert data["rule"] and data["action_id"].startswith("act_")
    return data  # pyright: ignore[reportUnknownVariableType]
