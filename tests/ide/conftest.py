"""Fixtures for the IDE integration: real hook event shapes, a path guard, and the `swarm` CLI as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from body_mcp.ide import HookRuntime, MemoryAuditSink, PathGuard
from body_mcp.ide.events import Ide
from shared_protocol.config import DEFAULT_DENIED_PATHS


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def claude_event(tool: str, tool_input: dict[str, Any], *, cwd: Path) -> dict[str, Any]:
    """A Claude Code PreToolUse event as it arrives on the hook's stdin."""
    return {
        "session_id": "ses-claude-1",
        "transcript_path": "/home/dev/.claude/projects/p/ses-claude-1.jsonl",
        "cwd": str(cwd),
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": tool,
        "tool_input": tool_input,
        "tool_use_id": "toolu_01",
    }


def cursor_event(event: str, *, root: Path, **fields: Any) -> dict[str, Any]:
    """A Cursor hook event: the common fields every event carries, plus the event's own."""
    return {
        "conversation_id": "conv-1",
        "generation_id": "gen-1",
        "model": "claude-sonnet-4",
        "hook_event_name": event,
        "cursor_version": "2.0.77",
        "workspace_roots": [str(root)],
        "user_email": None,
        "transcript_path": None,
        **fields,
    }


def encode(event: object) -> bytes:
    return json.dumps(event).encode()


def make_runtime(ide: Ide, workspace: Path, home: Path, sink: MemoryAuditSink | None = None) -> HookRuntime:
    return HookRuntime(
        ide=ide,
        workspace=workspace,
        env={},
        guard_for=lambda ws: PathGuard(workspace=ws, home=home, denied=DEFAULT_DENIED_PATHS),
        sink=sink or MemoryAuditSink(),
    )


def swarm(
    *args: str, home: Path, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real CLI, as an IDE or a human runs it (stdin is never a terminal here)."""
    # (A hook call starts a warm hook server for the next one: here it leaves after 20 idle seconds.)
    full_env = {**os.environ, "SWARM_HOME": str(home), "SWARM_HOOK_IDLE_S": "20", **(env or {})}
    full_env.pop("SWARM_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "swarm_cli", *args],
        input=(stdin or b"").decode(),
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )
