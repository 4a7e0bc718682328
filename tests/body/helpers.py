"""Small helpers for calling the body in tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp_types import CallToolResult

from body_mcp import Body
from shared_protocol.brain import Registration


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


async def reach_brain(body: Body) -> Registration:
    """A linked body's first registration with its brain: until one succeeds it behaves as killed (failsafe),
    so a test that calls its tools without running its link registers it once first."""
    assert body.link is not None, "not a linked body"
    return await body.link.register()


@asynccontextmanager
async def linked_up(*bodies: Body, timeout_s: float = 30) -> AsyncIterator[None]:
    """Run each linked body's link (register, stream events, heartbeat, ship) for the block, from when every one
    is connected; stopped after."""
    async with anyio.create_task_group() as tg:
        for body in bodies:
            assert body.link is not None, "not a linked body"
            tg.start_soon(body.link.run)
        with anyio.fail_after(timeout_s):
            while not all(body.brain_state == "connected" for body in bodies):
                await anyio.sleep(0.01)
        yield
        tg.cancel_scope.cancel()


def _command_lines() -> list[bytes]:
    found: list[bytes] = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                found.append((proc / "cmdline").read_bytes())
            except OSError:  # (gone meanwhile, or not ours to read)
                continue
    return found


async def until_running(marker: str, *, timeout_s: float = 60) -> None:
    """Until a process whose command line holds `marker` runs on this host (a command the body started in its
    sandbox, say): what a test waits for before it acts on a running command, rather than a guessed sleep.
    `marker` must be unique to the test (a uuid in the command, for instance)."""
    wanted = marker.encode()
    with anyio.fail_after(timeout_s):
        while not any(wanted in line for line in _command_lines()):
            await anyio.sleep(0.02)
