"""What each IDE must read to use the body, and only the body, as its hands.

- Cursor: `.cursor/mcp.json` (`mcpServers.swarm`); `.cursor/hooks.json` (`version: 1`, and
  `swarm hook cursor` on `preToolUse`, `beforeShellExecution`, `beforeMCPExecution`,
  `beforeReadFile`, each `failClosed`, and on `afterFileEdit` to audit).
- Claude Code: `.mcp.json` (`mcpServers.swarm`, `type: stdio`); `.claude/settings.json` (deny
  the shell and edit built-ins and reads of protected paths and `$SWARM_HOME`, allow
  `mcp__swarm` and built-in reads inside the workspace only, a `PreToolUse` hook
  `swarm hook claude-code`); `.claude/settings.local.json` (`enabledMcpjsonServers: ["swarm"]`:
  Claude Code ignores an unapproved `.mcp.json` server), which is personal, so `.gitignore`
  gets a line for it.
- VS Code: `.vscode/mcp.json` (`servers.swarm`, `type: stdio`).
- Claude Desktop: `claude_desktop_config.json` on macOS and Windows (`mcpServers.swarm`);
  printed on Linux, which has no official build.

Every command is absolute (Claude Desktop starts servers in `/` and expands no variables).
This module is pure: it says what to merge where; `install` reads and writes the files.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import merge
from .events import CURSOR_EVENTS, Ide
from .merge import JsonObject
from .tools import CLAUDE_CODE_DENIED, CLAUDE_CODE_FILE_READERS, SERVER_NAME, is_swarm_launcher

SetupIde = Literal["cursor", "claude-code", "claude-desktop", "vscode"]
IDE_NAMES: tuple[SetupIde, ...] = ("cursor", "claude-code", "claude-desktop", "vscode")

HOOK_TIMEOUT_S = 10
"""Seconds each IDE waits for the hook (both read `timeout` in seconds); the hook answers within 4 s."""
CURSOR_FAIL_CLOSED = ("preToolUse", "beforeShellExecution", "beforeMCPExecution", "beforeReadFile")
"""The gating events: if the hook cannot answer, Cursor blocks the action instead of letting it through."""

CLAUDE_CODE_PERSONAL = ".claude/settings.local.json"
"""Claude Code's per-person project settings (approvals, `enabledMcpjsonServers`): never committed."""
CLAUDE_CODE_LEGACY_ALLOWED = ("Read", "Glob", "Grep", "LSP")
"""Unscoped allow rules earlier versions of `swarm init` wrote (reads anywhere, unprompted); init takes them out."""

CLAUDE_CODE_MANAGED_PATHS = {
    "macOS": "/Library/Application Support/ClaudeCode/managed-settings.json",
    "Linux and WSL": "/etc/claude-code/managed-settings.json",
    "Windows": "C:\\Program Files\\ClaudeCode\\managed-settings.json",
}
CURSOR_MANAGED_PATHS = {
    "macOS": "/Library/Application Support/Cursor/hooks.json",
    "Linux and WSL": "/etc/cursor/hooks.json",
    "Windows": "C:\\ProgramData\\Cursor\\hooks.json",
}


@dataclass(kw_only=True, frozen=True)
class Launch:
    """How the IDE starts this `swarm`: the absolute argv prefix, the workspace, and the env to pin."""

    swarm: tuple[str, ...]
    workspace: Path
    env: Mapping[str, str] = field(default_factory=dict[str, str])
    """`SWARM_HOME`/`SWARM_CONFIG` when set at init, so the IDE's processes use the same state as the CLI."""

    def body_argv(self) -> list[str]:
        return [*self.swarm, "body", "--workspace", str(self.workspace)]

    def hook_argv(self, ide: Ide, *, pinned: bool = True) -> list[str]:
        """`pinned=False` (managed, machine-wide): the hook takes the workspace from the IDE's event."""
        prefix = ["env", *(f"{k}={v}" for k, v in sorted(self.env.items()))] if self.env else []
        workspace = ["--workspace", str(self.workspace)] if pinned else []
        return [*prefix, *self.swarm, "hook", ide, *workspace]

    def hook_command(self, ide: Ide, *, pinned: bool = True) -> str:
        """A shell command line (both IDEs run hook commands through a shell)."""
        return shlex.join(self.hook_argv(ide, pinned=pinned))

    def server_entry(self, *, typed: bool) -> JsonObject:
        argv = self.body_argv()
        entry: JsonObject = {"type": "stdio"} if typed else {}
        entry |= {"command": argv[0], "args": argv[1:]}
        if self.env:
            entry["env"] = dict(self.env)
        return entry


def is_swarm_hook(command: object, ide: Ide) -> bool:
    """Whether a hook command is `… swarm … hook <ide> …` (Swarm's, to replace rather than duplicate)."""
    if not isinstance(command, str):
        return False
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    for i, word in enumerate(words[:-1]):
        if word == "hook" and words[i + 1] == ide:
            return any(is_swarm_launcher(w) for w in words[:i])
    return False


def home_read_rule(home: Path, user_home: Path) -> str:
    """The Claude Code rule denying reads of `$SWARM_HOME` (`~/` if under the user's home, else `//abs`)."""
    if home.is_relative_to(user_home):
        return f"Read(~/{home.relative_to(user_home).as_posix()}/**)"
    return f"Read(//{home.as_posix().lstrip('/')}/**)"


def claude_code_denials(denied_paths: Sequence[str], home_rule: str) -> list[str]:
    """Deny rules: the shell and edit built-ins, then reads of the protected paths and of `$SWARM_HOME`.

    Read rules follow gitignore: `**/p` matches `p` at any depth below the project, `./p` at its root.
    """
    rules = list(CLAUDE_CODE_DENIED)
    for pattern in denied_paths:
        base = f"./{pattern.strip('/')}" if "/" in pattern else f"**/{pattern}"
        rules += [f"Read({base})", f"Read({base}/**)"]
    rules.append(home_rule)
    return rules


def workspace_read_rule(workspace: Path) -> str:
    """The Claude Code rule for reads inside the workspace: absolute (`//` is the filesystem root), so it
    means the same whichever directory Claude Code was started in."""
    return f"Read(//{workspace.as_posix().lstrip('/')}/**)"


def claude_code_allowed(workspace: Path) -> list[str]:
    """Allow rules: the body's server wholesale, and built-in reads inside the workspace.

    A read anywhere else is left to Claude Code's own prompt (the hook passes it on). `Glob`, `Grep` and
    `LSP` get no rule of their own: a rule for them takes no path, so it would let them read anywhere;
    Claude Code applies `Read` rules to them instead, and asks no approval inside the workspace.
    """
    return [f"mcp__{SERVER_NAME}", workspace_read_rule(workspace)]


def unscoped_read_allows(rules: Iterable[str], workspace: Path, user_home: Path) -> list[str]:
    """The allow rules that let a built-in read files outside the workspace with no prompt.

    A file reader's rule is scoped when its path pattern stays inside the workspace: relative to the project
    (`./p`, `p`, `/p`) without `..`, or absolute (`//abs`, `~/p`) with its fixed leading directories inside
    the workspace. A bare tool name, `Tool(*)` or `Tool(**)` matches every path.
    """
    found: list[str] = []
    for rule in rules:
        name, paren, spec = rule.partition("(")
        if name not in CLAUDE_CODE_FILE_READERS:
            continue
        spec = spec.removesuffix(")") if paren else ""
        if spec in ("", "*", "**") or ".." in spec.split("/"):
            found.append(rule)
            continue
        if spec.startswith("//"):
            absolute = "/" + spec[2:]
        elif spec.startswith("~"):
            absolute = user_home.as_posix() + spec[1:]
        else:
            continue  # relative to the project: inside it
        fixed = absolute[: min((i for i, c in enumerate(absolute) if c in "*?["), default=len(absolute))]
        directory = os.path.normpath(fixed[: fixed.rfind("/") + 1] or "/")
        if not Path(directory).is_relative_to(workspace):
            found.append(rule)
    return found


def claude_code_hook_group(launch: Launch, *, pinned: bool = True) -> JsonObject:
    """The `PreToolUse` matcher group: `swarm hook claude-code` on every tool."""
    hook = {"type": "command", "command": launch.hook_command("claude-code", pinned=pinned), "timeout": HOOK_TIMEOUT_S}
    return {"matcher": "*", "hooks": [hook]}


def cursor_hook_entries(launch: Launch, *, pinned: bool = True) -> dict[str, JsonObject]:
    """Swarm's entry for each Cursor event it subscribes to (the gates fail closed)."""
    command = launch.hook_command("cursor", pinned=pinned)
    entries: dict[str, JsonObject] = {}
    for event in CURSOR_EVENTS:
        entry: JsonObject = {"command": command, "timeout": HOOK_TIMEOUT_S}
        if event in CURSOR_FAIL_CLOSED:
            entry["failClosed"] = True
        entries[event] = entry
    return entries


def claude_desktop_config_path(platform: str, env: Mapping[str, str], user_home: Path) -> Path | None:
    """Claude Desktop's config file on macOS and Windows; None on Linux, which it does not officially support."""
    if platform == "darwin":
        return user_home / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json"
    if platform == "win32":
        appdata = Path(env["APPDATA"]) if env.get("APPDATA") else user_home / "AppData" / "Roaming"
        return appdata / "Claude" / "claude_desktop_config.json"
    return None


@dataclass(kw_only=True, frozen=True)
class FileEdit:
    """One file to bring up to date: where, what it is, and how Swarm's entries merge into it."""

    path: Path
    label: str
    merge: Callable[[JsonObject], JsonObject]


@dataclass(kw_only=True, frozen=True)
class IgnoreEdit:
    """Paths the workspace's `.gitignore` must ignore: a line is appended for each it does not yet ignore."""

    path: Path
    label: str
    ignored: tuple[str, ...]
    """Workspace-relative, posix: each becomes a `.gitignore` line as it is."""


@dataclass(kw_only=True, frozen=True)
class IdePlan:
    """Everything `swarm init` does for one IDE: files to merge, snippets to print, notes."""

    ide: SetupIde
    edits: list[FileEdit | IgnoreEdit] = field(default_factory=list[FileEdit | IgnoreEdit])
    snippets: list[tuple[str, JsonObject]] = field(default_factory=list[tuple[str, JsonObject]])
    """What to print for the human to paste, when Swarm cannot write the file itself."""
    notes: list[str] = field(default_factory=list[str])


@dataclass(kw_only=True, frozen=True)
class Environment:
    """The facts about this machine a plan depends on (passed in, so planning stays pure)."""

    platform: str
    env: Mapping[str, str]
    user_home: Path
    swarm_home: Path
    denied_paths: Sequence[str]


def plan_ide(ide: SetupIde, launch: Launch, machine: Environment) -> IdePlan:
    """The files to write for one IDE."""
    ws = launch.workspace
    if ide == "cursor":
        return IdePlan(
            ide=ide,
            edits=[
                FileEdit(
                    path=ws / ".cursor" / "mcp.json",
                    label="Cursor MCP registration",
                    merge=lambda doc: merge.set_server(
                        doc,
                        section="mcpServers",
                        name=SERVER_NAME,
                        entry=launch.server_entry(typed=False),
                        where=".cursor/mcp.json",
                    ),
                ),
                FileEdit(
                    path=ws / ".cursor" / "hooks.json",
                    label="Cursor hooks",
                    merge=lambda doc: merge.set_cursor_hooks(
                        merge.set_flag(doc, "version", 1),
                        entries=cursor_hook_entries(launch),
                        is_ours=lambda c: is_swarm_hook(c, "cursor"),
                        where=".cursor/hooks.json",
                    ),
                ),
            ],
        )
    if ide == "claude-code":
        denials = claude_code_denials(machine.denied_paths, home_read_rule(machine.swarm_home, machine.user_home))

        def settings(doc: JsonObject) -> JsonObject:
            where = ".claude/settings.json"
            doc = merge.add_unique(doc, ("permissions", "deny"), denials, where)
            doc = merge.remove_items(doc, ("permissions", "allow"), CLAUDE_CODE_LEGACY_ALLOWED)
            doc = merge.add_unique(doc, ("permissions", "allow"), claude_code_allowed(ws), where)
            return merge.set_claude_hook(
                doc,
                event="PreToolUse",
                group=claude_code_hook_group(launch),
                is_ours=lambda c: is_swarm_hook(c, "claude-code"),
                where=where,
            )

        return IdePlan(
            ide=ide,
            edits=[
                FileEdit(
                    path=ws / ".mcp.json",
                    label="Claude Code MCP registration",
                    merge=lambda doc: merge.set_server(
                        doc,
                        section="mcpServers",
                        name=SERVER_NAME,
                        entry=launch.server_entry(typed=True),
                        where=".mcp.json",
                    ),
                ),
                FileEdit(
                    path=ws / ".claude" / "settings.json", label="Claude Code permissions and hook", merge=settings
                ),
                FileEdit(
                    path=ws / CLAUDE_CODE_PERSONAL,
                    label="Claude Code approval of the project's swarm server",
                    merge=lambda doc: merge.add_unique(
                        doc, ("enabledMcpjsonServers",), [SERVER_NAME], CLAUDE_CODE_PERSONAL
                    ),
                ),
                IgnoreEdit(
                    path=ws / ".gitignore",
                    label="Claude Code's personal settings kept out of git",
                    ignored=(CLAUDE_CODE_PERSONAL,),
                ),
            ],
        )
    if ide == "vscode":
        return IdePlan(
            ide=ide,
            edits=[
                FileEdit(
                    path=ws / ".vscode" / "mcp.json",
                    label="VS Code MCP registration",
                    merge=lambda doc: merge.set_server(
                        doc,
                        section="servers",
                        name=SERVER_NAME,
                        entry=launch.server_entry(typed=True),
                        where=".vscode/mcp.json",
                    ),
                ),
            ],
            notes=[
                "VS Code has no hook Swarm can use to gate its built-in edit and terminal tools: in the Chat view's "
                "tool picker, turn off the built-in edit and terminal tools so the agent uses the swarm server's."
            ],
        )
    entry = launch.server_entry(typed=False)
    path = claude_desktop_config_path(machine.platform, machine.env, machine.user_home)
    if path is None:
        return IdePlan(
            ide=ide,
            snippets=[
                (
                    "Claude Desktop (no official Linux build): add to its claude_desktop_config.json",
                    {"mcpServers": {SERVER_NAME: entry}},
                )
            ],
        )
    return IdePlan(
        ide=ide,
        edits=[
            FileEdit(
                path=path,
                label="Claude Desktop MCP registration",
                merge=lambda doc: merge.set_server(
                    doc, section="mcpServers", name=SERVER_NAME, entry=entry, where=str(path)
                ),
            )
        ],
        notes=["Restart Claude Desktop to load the swarm server."],
    )


@dataclass(kw_only=True, frozen=True)
class ManagedVariant:
    """A machine-wide file an administrator deploys (users cannot loosen it); printed, never installed."""

    ide: Ide
    paths: Mapping[str, str]
    content: JsonObject
    notes: list[str]


def managed_variant(ide: Ide, launch: Launch, denied_paths: Sequence[str]) -> ManagedVariant:
    """The managed settings for Claude Code or Cursor: the hook finds the workspace in each event."""
    if ide == "claude-code":
        content: JsonObject = {
            "permissions": {
                "deny": claude_code_denials(denied_paths, "Read(~/.swarm/**)"),
                "allow": [f"mcp__{SERVER_NAME}"],
            },
            "hooks": {"PreToolUse": [claude_code_hook_group(launch, pinned=False)]},
            "disableBypassPermissionsMode": "disable",
        }
        notes = [
            "Managed deny rules and hooks apply to every project and cannot be overridden by user or project settings.",
            "Each project still registers its body: users run `swarm init --ide claude-code` in the workspace.",
            f"The hook command is absolute ({launch.swarm[0]}): install swarm at that path on every machine.",
        ]
        return ManagedVariant(ide=ide, paths=CLAUDE_CODE_MANAGED_PATHS, content=content, notes=notes)
    content = {
        "version": 1,
        "hooks": {event: [entry] for event, entry in cursor_hook_entries(launch, pinned=False).items()},
    }
    notes = [
        "Enterprise hooks run before project and user hooks and cannot be removed by users.",
        "Each project still registers its body: users run `swarm init --ide cursor` in the workspace.",
        f"The hook command is absolute ({launch.swarm[0]}): install swarm at that path on every machine.",
    ]
    return ManagedVariant(ide=ide, paths=CURSOR_MANAGED_PATHS, content=content, notes=notes)
