"""The vocabulary the hooks decide on: the body's tools and each IDE's built-in tools, by kind.

Claude Code's names are the exact strings of its tools reference (the strings permission
rules and hook matchers use). Cursor's are the tool types its `preToolUse` hook reports
(`Shell`, `Read`, `Write`, `Grep`, `LS`, `Delete`, `MCP`, `Task`, ...) plus the snake_case
names some versions use; Cursor's are matched case- and separator-insensitively.

A name in neither table is unknown, and the hook denies it: a new built-in tool could be a
new way around the guard, so it stays shut until someone classifies it here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

from ..tools import ALL_TOOLS

SERVER_NAME = "swarm"
"""The body's name in every MCP registration, so Claude Code calls its tools `mcp__swarm__<tool>`."""

BODY_TOOLS = frozenset(spec.name for spec in ALL_TOOLS)
"""Every tool the body serves: the hooks allow exactly these as the swarm server's tools."""

ToolKind = Literal["shell", "write", "read", "network", "internal"]
"""shell/write: denied (the body does it, guarded); read: allowed unless it touches a protected path;
network: left to the IDE's own prompt; internal: the IDE's own bookkeeping (plans, todos, subagents)."""


@dataclass(kw_only=True, frozen=True)
class BuiltinTool:
    """What a built-in tool is to the hooks."""

    kind: ToolKind
    instead: str | None = None
    """The body tool that does this job under the guard."""


_SHELL = BuiltinTool(kind="shell", instead="run_command")
_WRITE = BuiltinTool(kind="write", instead="write_file")
_EDIT = BuiltinTool(kind="write", instead="edit_file")
_DELETE = BuiltinTool(kind="write", instead="delete_file")
_READ = BuiltinTool(kind="read", instead="read_text_file")
_NETWORK = BuiltinTool(kind="network")
_INTERNAL = BuiltinTool(kind="internal")

CLAUDE_CODE_TOOLS: dict[str, BuiltinTool] = {
    # Shell: each runs arbitrary commands outside the sandbox.
    "Bash": _SHELL,
    "PowerShell": _SHELL,
    "Monitor": _SHELL,
    # Edits: each changes files without the guard, the budget or an undo record.
    "Edit": _EDIT,
    "MultiEdit": _EDIT,
    "Write": _WRITE,
    "NotebookEdit": _EDIT,
    # Creates a git worktree (and moves the session into it): a change to the repository.
    "EnterWorktree": BuiltinTool(kind="write"),
    "Read": _READ,
    "Glob": BuiltinTool(kind="read", instead="search_files"),
    "Grep": BuiltinTool(kind="read", instead="search_files"),
    "LS": BuiltinTool(kind="read", instead="list_directory"),
    "NotebookRead": _READ,
    "LSP": _READ,
    "ListMcpResourcesTool": _READ,
    "ReadMcpResourceTool": _READ,
    "ToolSearch": _READ,
    "BashOutput": _READ,
    "TaskOutput": _READ,
    "WebFetch": _NETWORK,
    "WebSearch": _NETWORK,
    **dict.fromkeys(
        (
            "Agent",
            "Task",
            "AskUserQuestion",
            "TodoWrite",
            "TodoRead",
            "EnterPlanMode",
            "ExitPlanMode",
            "ExitWorktree",
            "Skill",
            "SlashCommand",
            "CronCreate",
            "CronDelete",
            "CronList",
            "TaskCreate",
            "TaskGet",
            "TaskList",
            "TaskStop",
            "TaskUpdate",
            "SendMessage",
            "KillShell",
            "KillBash",
        ),
        _INTERNAL,
    ),
}
"""Claude Code's built-in tools (code.claude.com/docs/en/tools-reference, plus older names still seen)."""

CLAUDE_CODE_DENIED = tuple(name for name, tool in CLAUDE_CODE_TOOLS.items() if tool.kind in ("shell", "write"))
"""What `.claude/settings.json` denies outright: the shell and edit tools of current and recent versions."""

CLAUDE_CODE_REQUIRED_DENIALS = ("Bash", "Edit", "Write", "NotebookEdit")
"""The deny rules `swarm doctor` insists on (the others are checked as well, but these are the doors)."""

CLAUDE_CODE_FILE_READERS = ("Read", "Glob", "Grep", "LS", "NotebookRead", "LSP")
"""Built-ins that read files. An allow rule for one of them must name paths inside the workspace: a bare
`Read` lets a read of `~/.aws/credentials` through without Claude Code's prompt. Only `Read` rules take
paths; Claude Code applies them to the others on a best-effort basis."""

_CURSOR: dict[str, BuiltinTool] = {
    **dict.fromkeys(("shell", "terminal", "runterminalcmd", "runterminalcommand"), _SHELL),
    **dict.fromkeys(("write", "createfile", "tabwrite"), _WRITE),
    **dict.fromkeys(
        ("edit", "strreplace", "multiedit", "editnotebook", "notebookedit", "applypatch", "editfile", "searchreplace"),
        _EDIT,
    ),
    **dict.fromkeys(("delete", "deletefile"), _DELETE),
    **dict.fromkeys(("read", "readfile", "readlints", "fetchrules"), _READ),
    **dict.fromkeys(
        ("grep", "grepsearch", "glob", "globfilesearch", "filesearch", "semanticsearch", "codebasesearch"),
        BuiltinTool(kind="read", instead="search_files"),
    ),
    **dict.fromkeys(("ls", "listdir"), BuiltinTool(kind="read", instead="list_directory")),
    **dict.fromkeys(("websearch", "webfetch", "fetch"), _NETWORK),
    **dict.fromkeys(("task", "todowrite", "todoread", "createplan", "askquestion", "switchmode"), _INTERNAL),
}

GLOB_TOOLS = frozenset({"Glob", "glob", "globfilesearch", "filesearch"})
"""Tools whose `pattern` argument is a path glob (Grep's `pattern` is a regex over contents, not a path)."""

PATH_KEYS = (
    "file_path",
    "filePath",
    "path",
    "notebook_path",
    "target_file",
    "target_directory",
    "target_notebook",
    "relative_workspace_path",
    "directory",
    "glob",
    "glob_pattern",
)
"""Arguments of read-only built-ins that name a path (checked against the protected paths)."""


def is_swarm_launcher(word: str) -> bool:
    """Whether one word of a command line starts Swarm: the `swarm` executable or `python -m swarm_cli`."""
    return word == "swarm_cli" or PurePath(word.replace("\\", "/")).name in ("swarm", "swarm.exe")


def normalize_cursor_name(name: str) -> str:
    """`StrReplace`, `str_replace` and `str-replace` are one tool to Cursor's vocabulary."""
    return name.replace("_", "").replace("-", "").lower()


def claude_code_tool(name: str) -> BuiltinTool | None:
    """A Claude Code built-in by its exact name; None when unknown."""
    return CLAUDE_CODE_TOOLS.get(name)


def cursor_tool(name: str) -> BuiltinTool | None:
    """A Cursor built-in by any spelling of its name; None when unknown."""
    return _CURSOR.get(normalize_cursor_name(name))
