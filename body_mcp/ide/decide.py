"""What a hook answers: allow, deny, ask, or pass (leave it to the IDE's own permission flow).

| the attempt | answer | audited |
|---|---|---|
| a tool of the `swarm` MCP server (the body) | allow | no: the body audits its own calls |
| a built-in shell or edit tool | deny, naming the body tool to use | yes |
| a read-only built-in on a protected path or `$SWARM_HOME` | deny | yes |
| a read-only built-in inside the workspace | allow | yes |
| a read-only built-in outside the workspace, a network tool | pass (the IDE prompts as it would) | yes |
| another MCP server's tool | pass (Claude Code), ask (Cursor) | yes |
| the IDE's bookkeeping (todos, plans, subagents) | pass | no |
| a tool nobody classified, or an event that is not well-formed | deny | yes |
| Cursor's `afterFileEdit` (a built-in edit happened) | (nothing to decide) | yes |

Deciding is pure: no I/O but `realpath` (so a symlink cannot launder a protected name).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

from ..policy import PathPolicy
from .events import Attempt, Ide
from .tools import (
    BODY_TOOLS,
    GLOB_TOOLS,
    PATH_KEYS,
    SERVER_NAME,
    claude_code_tool,
    cursor_tool,
    is_swarm_launcher,
    normalize_cursor_name,
)

Verdict = Literal["allow", "deny", "ask", "pass"]


class HookCode(StrEnum):
    """Why a hook answered as it did: stable strings, recorded in the audit trail (tests assert on them)."""

    BODY_TOOL = "body_tool"
    READ_ONLY_BUILTIN = "read_only_builtin"
    OUTSIDE_WORKSPACE = "outside_workspace"
    NETWORK_BUILTIN = "network_builtin"
    IDE_INTERNAL = "ide_internal"
    OTHER_MCP_TOOL = "other_mcp_tool"
    BUILTIN_TOOL_DENIED = "builtin_tool_denied"
    """A built-in shell or edit tool: the body's tool does the same job under the guard."""
    PROTECTED_PATH = "protected_path"
    UNKNOWN_TOOL = "unknown_tool"
    MALFORMED_EVENT = "malformed_event"
    HOOK_ERROR = "hook_error"
    """Something failed inside the hook (auditing included): it denies rather than let the call through."""
    HOOK_TIMEOUT = "hook_timeout"
    BUILTIN_EDIT_OBSERVED = "builtin_edit_observed"


@dataclass(kw_only=True, frozen=True)
class Decision:
    """A hook's answer to one attempt, before it is put in the IDE's format."""

    verdict: Verdict
    code: HookCode
    reason: str
    """For the agent (and the human): what happened and what to do instead."""
    audit: bool
    files: tuple[str, ...] = ()
    instead: str | None = None
    """The body tool that does the job of a denied built-in."""


class PathGuard:
    """Which paths a built-in tool may not read: secrets (the denied patterns) anywhere, and `$SWARM_HOME`."""

    def __init__(self, *, workspace: Path | None, home: Path, denied: Sequence[str]) -> None:
        self.workspace = workspace
        self.home = home
        self._policy = PathPolicy(denied=denied, read_only=())

    def _absolute(self, raw: str, base: str | None) -> Path:
        path = Path(os.path.expanduser(raw))
        if not path.is_absolute():
            root = Path(base) if base else self.workspace
            path = (root / path) if root is not None else Path("/", path)
        return Path(os.path.normpath(path))

    def protection(self, raw: str, *, base: str | None = None) -> tuple[Literal["protected", "outside", "inside"], str]:
        """Classify one path as the tool wrote it; the second value names the rule (or the path)."""
        lexical = self._absolute(raw, base)
        real = Path(os.path.realpath(lexical))
        inside = False
        for candidate in dict.fromkeys((lexical, real)):
            if candidate == self.home or candidate.is_relative_to(self.home):
                return "protected", "$SWARM_HOME"
            ws = self.workspace
            if ws is not None and (candidate == ws or candidate.is_relative_to(ws)):
                inside = True
                parts = candidate.relative_to(ws).parts
            else:
                parts = candidate.parts[1:]
            level, pattern = self._policy.classify_parts(tuple(parts))
            if level == "denied":
                return "protected", pattern or raw
        return ("inside" if inside else "outside"), str(lexical)


def _first_text(values: dict[str, object], keys: tuple[str, ...]) -> str | None:
    return next((v for k in keys if isinstance(v := values.get(k), str)), None)


def _mcp_identity(ide: Ide, tool: str, tool_input: dict[str, object]) -> tuple[str | None, str] | None:
    """(server, tool) when the IDE's tool name is an MCP tool; None for a built-in."""
    if tool.startswith("mcp__"):
        server, _, name = tool[len("mcp__") :].partition("__")
        return (server, name) if name else (None, server)
    if ide != "cursor":
        return None
    if tool.lower().startswith("mcp:"):
        rest = tool[len("mcp:") :]
        server, sep, name = rest.partition(":")
        return (server, name) if sep else (None, rest)
    if tool.lower() == "mcp":
        return _first_text(tool_input, ("server", "server_name", "serverName")), (
            _first_text(tool_input, ("tool_name", "toolName", "name")) or ""
        )
    return None


def is_swarm_server(command: str | None) -> bool:
    """Whether an MCP server's command line is this body: `<…swarm…> body --workspace …`."""
    if not command:
        return False
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    if "body" not in words:
        return False
    launcher = words[: words.index("body")]
    return any(is_swarm_launcher(w) for w in launcher)


def _pointer(ide: Ide, tool: str) -> str:
    if ide == "claude-code":
        return f"`mcp__{SERVER_NAME}__{tool}`"
    return f"the `{tool}` tool of the `{SERVER_NAME}` MCP server"


def _paths(attempt: Attempt, builtin_name: str) -> list[str]:
    found: list[str] = []
    for key in PATH_KEYS:
        value = attempt.tool_input.get(key)
        if isinstance(value, str) and value:
            found.append(value)
    pattern = attempt.tool_input.get("pattern")
    if builtin_name in GLOB_TOOLS and isinstance(pattern, str) and pattern:
        found.append(pattern)
    return found


def _deny(code: HookCode, reason: str, files: Iterable[str] = (), instead: str | None = None) -> Decision:
    return Decision(verdict="deny", code=code, reason=reason, audit=True, files=tuple(files), instead=instead)


def denied_for_error(code: HookCode, detail: str) -> Decision:
    """The answer when the hook itself cannot decide: deny, and say why."""
    return _deny(code, f"Swarm's hook could not check this call, so it is refused ({detail}).")


_BODY = Decision(verdict="allow", code=HookCode.BODY_TOOL, reason="the swarm body's tool", audit=False)


def decide(attempt: Attempt, guard: PathGuard) -> Decision:
    """The hook's answer to one attempt (see the module's table)."""
    ide = attempt.ide
    if attempt.event == "afterFileEdit":
        path = str(attempt.tool_input.get("file_path", ""))
        return Decision(
            verdict="pass",
            code=HookCode.BUILTIN_EDIT_OBSERVED,
            reason=f"a built-in edit changed {path} outside the guard (no budget, no undo record)",
            audit=True,
            files=(path,),
        )
    if attempt.event == "beforeMCPExecution":
        # Cursor names the server by its command line here: the one place a body tool cannot be impersonated.
        if is_swarm_server(attempt.mcp_server):
            return _BODY
        return _other_mcp(attempt, "ask")
    mcp = _mcp_identity(ide, attempt.tool, attempt.tool_input)
    if mcp is not None:
        server, name = mcp
        if server == SERVER_NAME or (server is None and name in BODY_TOOLS):
            return _BODY
        return _other_mcp(attempt, "pass" if ide == "claude-code" else "ask")

    builtin = claude_code_tool(attempt.tool) if ide == "claude-code" else cursor_tool(attempt.tool)
    name = attempt.tool if ide == "claude-code" else normalize_cursor_name(attempt.tool)
    if builtin is None:
        return _deny(
            HookCode.UNKNOWN_TOOL,
            f"Swarm does not know the built-in tool '{attempt.tool}', so it is refused; "
            f"use the tools of the `{SERVER_NAME}` MCP server (the swarm body) instead.",
        )
    if builtin.kind in ("shell", "write"):
        instead = f" Use {_pointer(ide, builtin.instead)} instead (give it a rationale)." if builtin.instead else ""
        return _deny(
            HookCode.BUILTIN_TOOL_DENIED,
            f"The built-in {attempt.tool} tool is disabled in this workspace: every change goes through "
            f"the swarm body's guard (budgets, audit, undo).{instead}",
            _paths(attempt, name),
            builtin.instead,
        )
    if builtin.kind == "internal":
        return Decision(verdict="pass", code=HookCode.IDE_INTERNAL, reason="the IDE's own bookkeeping", audit=False)
    if builtin.kind == "network":
        return Decision(verdict="pass", code=HookCode.NETWORK_BUILTIN, reason="left to the IDE's prompt", audit=True)
    return _read(attempt, _paths(attempt, name), guard)


def _other_mcp(attempt: Attempt, verdict: Verdict) -> Decision:
    reason = f"'{attempt.tool}' belongs to another MCP server, not the swarm body"
    return Decision(verdict=verdict, code=HookCode.OTHER_MCP_TOOL, reason=reason, audit=True)


def _read(attempt: Attempt, paths: list[str], guard: PathGuard) -> Decision:
    """A read-only built-in: denied on a protected path, allowed inside the workspace, else the IDE's call."""
    outside = False
    for raw in paths:
        level, rule = guard.protection(raw, base=attempt.cwd)
        if level == "protected":
            return _deny(
                HookCode.PROTECTED_PATH,
                f"'{raw}' is protected (matches '{rule}'): no tool may read it, the swarm body's included.",
                paths,
            )
        outside = outside or level == "outside"
    if attempt.event == "beforeReadFile":
        # Cursor's read gate fires for every file the agent reads (attachments too); the `preToolUse`
        # event of the same read is what gets audited, so an allowed read is not recorded twice.
        return Decision(verdict="allow", code=HookCode.READ_ONLY_BUILTIN, reason="not protected", audit=False)
    if outside:
        return Decision(
            verdict="pass",
            code=HookCode.OUTSIDE_WORKSPACE,
            reason="outside the workspace: left to the IDE's prompt",
            audit=True,
            files=tuple(paths),
        )
    return Decision(
        verdict="allow", code=HookCode.READ_ONLY_BUILTIN, reason="a read-only built-in", audit=True, files=tuple(paths)
    )
