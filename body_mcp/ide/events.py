"""The IDEs' hook events, read into one shape: an `Attempt` to use a tool.

Claude Code sends one event here, `PreToolUse`:
`{session_id, transcript_path, cwd, permission_mode, hook_event_name, tool_name, tool_input, tool_use_id}`.

Cursor sends a common part (`conversation_id`, `generation_id`, `model`, `hook_event_name`,
`cursor_version`, `workspace_roots`, `user_email`, `transcript_path`) plus per event:
`preToolUse` {tool_name, tool_input, tool_use_id, cwd, agent_message}; `beforeShellExecution`
{command, cwd}; `beforeMCPExecution` {tool_name, tool_input (a JSON string), command | url};
`beforeReadFile` {file_path, content, attachments}; `afterFileEdit` {file_path, edits}.

Anything else (not JSON, not an object, a missing or mistyped field, another event) is a
`MalformedEvent`, which the hook answers with a deny.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .exceptions import MalformedEvent

Ide = Literal["claude-code", "cursor"]
"""The IDEs whose built-in tools a hook can gate."""

CURSOR_EVENTS = ("preToolUse", "beforeShellExecution", "beforeMCPExecution", "beforeReadFile", "afterFileEdit")
"""The Cursor events `swarm init --ide cursor` subscribes the hook to."""


@dataclass(kw_only=True, frozen=True)
class Attempt:
    """One tool use an IDE is about to make (or, for `afterFileEdit`, has made)."""

    ide: Ide
    event: str
    tool: str
    """The tool as the IDE names it (`Bash`, `mcp__swarm__write_file`, `Shell`, `MCP:write_file`)."""
    tool_input: dict[str, Any] = field(default_factory=dict[str, Any])
    session: str | None = None
    cwd: str | None = None
    workspace_hint: str | None = None
    """The project root the event names (Cursor's first workspace root), when the hook was not given one."""
    mcp_server: str | None = None
    """For `beforeMCPExecution`: the server's command line or URL."""


def parse_event(ide: Ide, raw: bytes) -> Attempt:
    """Read one hook event from the bytes on stdin; `MalformedEvent` when it is not one."""
    try:
        data: object = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"hook input is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedEvent("hook input is not a JSON object")
    event: dict[str, Any] = {str(k): v for k, v in data.items()}  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    return _claude_code(event) if ide == "claude-code" else _cursor(event)


def _text(event: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = event.get(key)
    if isinstance(value, str) and value:
        return value
    if required:
        raise MalformedEvent(f"event field '{key}' is missing or not a non-empty string")
    return None


def _object(value: object, key: str, *, text: bool = False) -> dict[str, Any]:
    """A tool input: an object, or (`text`: Cursor's MCP events) a JSON string holding one."""
    if text and isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            return {"raw": value}
    if not isinstance(value, dict):
        raise MalformedEvent(f"event field '{key}' is not an object")
    return {str(k): v for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]


def _claude_code(event: dict[str, Any]) -> Attempt:
    name = _text(event, "hook_event_name")
    if name != "PreToolUse":
        raise MalformedEvent(f"expected a PreToolUse event, got '{name}'")
    return Attempt(
        ide="claude-code",
        event=name,
        tool=_text(event, "tool_name") or "",
        tool_input=_object(event.get("tool_input"), "tool_input"),
        session=_text(event, "session_id", required=False),
        cwd=_text(event, "cwd", required=False),
    )


def _cursor(event: dict[str, Any]) -> Attempt:
    name = _text(event, "hook_event_name") or ""
    roots = event.get("workspace_roots")
    root = roots[0] if isinstance(roots, list) and roots and isinstance(roots[0], str) else None  # pyright: ignore[reportUnknownVariableType]
    common: dict[str, Any] = {
        "ide": "cursor",
        "event": name,
        "session": _text(event, "conversation_id", required=False) or _text(event, "session_id", required=False),
        "cwd": _text(event, "cwd", required=False),
        "workspace_hint": root,
    }
    if name == "preToolUse":
        return Attempt(
            tool=_text(event, "tool_name") or "", tool_input=_object(event.get("tool_input"), "tool_input"), **common
        )
    if name == "beforeShellExecution":
        command = _text(event, "command") or ""
        return Attempt(tool="Shell", tool_input={"command": command, "cwd": common["cwd"]}, **common)
    if name == "beforeMCPExecution":
        server = _text(event, "command", required=False) or _text(event, "url", required=False)
        return Attempt(
            tool=_text(event, "tool_name") or "",
            tool_input=_object(event.get("tool_input", {}), "tool_input", text=True),
            mcp_server=server,
            **common,
        )
    if name == "beforeReadFile":
        # The file's content is in the event too; it is never kept (it may be the secret being protected).
        return Attempt(tool="Read", tool_input={"file_path": _text(event, "file_path")}, **common)
    if name == "afterFileEdit":
        edits = event.get("edits")
        return Attempt(
            tool="Edit",
            tool_input={"file_path": _text(event, "file_path"), "edits": edits if isinstance(edits, list) else []},
            **common,
        )
    raise MalformedEvent(f"the hook does not handle Cursor's '{name}' event")
