"""`swarm doctor`: is each IDE set up so the body is its only hands, and does the body answer?

Each check is a `Finding` with a stable `check` code, the `subject` it is about (a file, a
rule, an event), whether it passed, and, when it did not, the exact fix. The file checks
are pure functions of the parsed files; `probe.probe_body` starts the registered body over
stdio with the official MCP client and lists its tools, under a timeout.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import cast

from shared_protocol.config import SandboxConfig

from .configs import (
    CLAUDE_CODE_LEGACY_ALLOWED,
    CLAUDE_CODE_PERSONAL,
    CURSOR_FAIL_CLOSED,
    Environment,
    Launch,
    SetupIde,
    claude_code_allowed,
    claude_code_denials,
    claude_desktop_config_path,
    home_read_rule,
    is_swarm_hook,
    unscoped_read_allows,
)
from .events import CURSOR_EVENTS
from .exceptions import ConfigFileUnreadable
from .findings import DoctorCheck, Finding
from .install import gitignored, load_json_object
from .merge import JsonObject
from .probe import BodyLaunch, probe_body
from .tools import SERVER_NAME


def _init_fix(ide: str, workspace: Path) -> str:
    return f"run `swarm init --ide {ide} --workspace {workspace}`"


def _entry(doc: JsonObject | None, section: str) -> JsonObject | None:
    servers = doc.get(section) if doc is not None else None
    entry = cast(JsonObject, servers).get(SERVER_NAME) if isinstance(servers, dict) else None
    return cast(JsonObject, entry) if isinstance(entry, dict) else None


def _executable(command: str) -> bool:
    if os.path.isabs(command):
        return os.path.isfile(command) and os.access(command, os.X_OK)
    return shutil.which(command) is not None


def check_registration(
    ide: str, doc: JsonObject | None, *, section: str, where: str, workspace: Path
) -> tuple[Finding, BodyLaunch | None]:
    """The `swarm` server is registered, its command exists, and it serves this workspace."""
    entry = _entry(doc, section)
    fix = _init_fix(ide, workspace)
    if entry is None:
        return Finding(
            ide=ide,
            check=DoctorCheck.REGISTRATION,
            ok=False,
            subject=where,
            message=f"{where} does not register the '{SERVER_NAME}' server under '{section}'",
            fix=fix,
        ), None
    command, args, env = entry.get("command"), entry.get("args", []), entry.get("env", {})
    words = [w for w in cast(list[object], args) if isinstance(w, str)] if isinstance(args, list) else []
    problem: str | None = None
    if not isinstance(command, str) or not _executable(command):
        problem = f"its command {command!r} is not an executable (swarm moved or was uninstalled?)"
    elif "body" not in words or "--workspace" not in words[:-1]:
        problem = "its args do not run `body --workspace DIR`"
    elif Path(words[words.index("--workspace") + 1]).expanduser().resolve() != workspace:
        problem = f"it serves {words[words.index('--workspace') + 1]}, not {workspace}"
    launch = None
    if isinstance(command, str):
        pairs = cast(dict[str, object], env).items() if isinstance(env, dict) else ()
        launch = BodyLaunch(argv=(command, *words), env=tuple((k, str(v)) for k, v in pairs))
    if problem is not None:
        message = f"{where} registers '{SERVER_NAME}', but {problem}"
        return Finding(
            ide=ide, check=DoctorCheck.REGISTRATION, ok=False, subject=where, message=message, fix=fix
        ), launch
    message = f"{where} registers '{SERVER_NAME}' for this workspace"
    return Finding(ide=ide, check=DoctorCheck.REGISTRATION, ok=True, subject=where, message=message), launch


def _strings(doc: JsonObject | None, *path: str) -> list[str]:
    node: object = doc
    for key in path:
        node = cast(dict[str, object], node).get(key) if isinstance(node, dict) else None
    return [v for v in cast(list[object], node) if isinstance(v, str)] if isinstance(node, list) else []


def check_claude_code(
    settings: JsonObject | None, local: JsonObject | None, *, workspace: Path, machine: Environment
) -> list[Finding]:
    """Deny rules, allow rules (reads scoped to the workspace), the `PreToolUse` hook and the server's approval."""
    ide, where = "claude-code", ".claude/settings.json"
    findings: list[Finding] = []
    denied = set(_strings(settings, "permissions", "deny"))
    required = claude_code_denials(machine.denied_paths, home_read_rule(machine.swarm_home, machine.user_home))
    for rule in required:
        ok = rule in denied
        findings.append(
            Finding(
                ide=ide,
                check=DoctorCheck.DENY_RULE,
                ok=ok,
                subject=rule,
                message=f"{where} denies {rule}" if ok else f"{where} does not deny {rule}",
                fix=None if ok else f'add "{rule}" to permissions.deny in {where}, or {_init_fix(ide, workspace)}',
            )
        )
    allowed = set(_strings(settings, "permissions", "allow"))
    rule = claude_code_allowed(workspace)[0]
    findings.append(
        Finding(
            ide=ide,
            check=DoctorCheck.ALLOW_RULE,
            ok=rule in allowed,
            subject=rule,
            message=f"{where} {'allows' if rule in allowed else 'does not allow'} the body's tools ({rule})",
            fix=None if rule in allowed else f'add "{rule}" to permissions.allow in {where}',
        )
    )
    findings += _claude_reads(settings, local, workspace=workspace, user_home=machine.user_home)
    findings.append(_claude_hook(settings, workspace))
    findings.append(_claude_approval(settings, local, workspace))
    return findings


def _claude_reads(
    settings: JsonObject | None, local: JsonObject | None, *, workspace: Path, user_home: Path
) -> list[Finding]:
    """No allow rule lets a built-in read outside the workspace unprompted (the IDE's prompt decides there)."""
    findings: list[Finding] = []
    for where, doc in ((".claude/settings.json", settings), (CLAUDE_CODE_PERSONAL, local)):
        for rule in unscoped_read_allows(_strings(doc, "permissions", "allow"), workspace, user_home):
            fix = f'remove "{rule}" from permissions.allow in {where}'
            if rule in CLAUDE_CODE_LEGACY_ALLOWED and where == ".claude/settings.json":
                fix += f" (an earlier swarm init wrote it), or {_init_fix('claude-code', workspace)}"
            findings.append(
                Finding(
                    ide="claude-code",
                    check=DoctorCheck.ALLOW_RULE,
                    ok=False,
                    subject=rule,
                    message=f"{where} allows {rule}: a built-in read outside the workspace (~/.aws/credentials) "
                    "gets no prompt",
                    fix=fix,
                )
            )
    if not findings:
        message = "built-in reads are allowed without a prompt inside the workspace only"
        findings.append(
            Finding(ide="claude-code", check=DoctorCheck.ALLOW_RULE, ok=True, subject="Read", message=message)
        )
    return findings


def check_personal_ignored(workspace: Path) -> Finding:
    """`.claude/settings.local.json` (personal approvals) is kept out of git by the workspace's `.gitignore`."""
    if gitignored(workspace, CLAUDE_CODE_PERSONAL):
        message = f"{CLAUDE_CODE_PERSONAL} is ignored by git"
        return Finding(
            ide="claude-code", check=DoctorCheck.GITIGNORE, ok=True, subject=CLAUDE_CODE_PERSONAL, message=message
        )
    return Finding(
        ide="claude-code",
        check=DoctorCheck.GITIGNORE,
        ok=False,
        subject=CLAUDE_CODE_PERSONAL,
        message=f"the workspace's .gitignore does not ignore {CLAUDE_CODE_PERSONAL}: personal approvals could be "
        "committed and shared",
        fix=f"add a line {CLAUDE_CODE_PERSONAL} to .gitignore, or {_init_fix('claude-code', workspace)}",
    )


def _claude_hook(settings: JsonObject | None, workspace: Path) -> Finding:
    hooks = settings.get("hooks") if settings is not None else None
    groups = cast(JsonObject, hooks).get("PreToolUse") if isinstance(hooks, dict) else None
    found = False
    for group in cast(list[object], groups) if isinstance(groups, list) else []:
        if not isinstance(group, dict):
            continue
        g = cast(JsonObject, group)
        if g.get("matcher") not in (None, "", "*"):
            continue
        entries = g.get("hooks")
        for hook in cast(list[object], entries) if isinstance(entries, list) else []:
            if isinstance(hook, dict) and is_swarm_hook(cast(JsonObject, hook).get("command"), "claude-code"):
                found = True
    subject = "PreToolUse"
    if found:
        message = "a PreToolUse hook runs `swarm hook claude-code` on every tool"
        return Finding(ide="claude-code", check=DoctorCheck.HOOK, ok=True, subject=subject, message=message)
    return Finding(
        ide="claude-code",
        check=DoctorCheck.HOOK,
        ok=False,
        subject=subject,
        message='no PreToolUse hook (matcher "*") runs `swarm hook claude-code` in .claude/settings.json',
        fix=_init_fix("claude-code", workspace),
    )


def _claude_approval(settings: JsonObject | None, local: JsonObject | None, workspace: Path) -> Finding:
    enabled = SERVER_NAME in _strings(local, "enabledMcpjsonServers") + _strings(settings, "enabledMcpjsonServers")
    enabled = enabled or any(d is not None and d.get("enableAllProjectMcpServers") is True for d in (settings, local))
    disabled = SERVER_NAME in _strings(local, "disabledMcpjsonServers") + _strings(settings, "disabledMcpjsonServers")
    ok = enabled and not disabled
    if ok:
        message = "the project's swarm server is approved (enabledMcpjsonServers)"
        return Finding(ide="claude-code", check=DoctorCheck.MCP_APPROVAL, ok=True, subject=SERVER_NAME, message=message)
    why = "listed in disabledMcpjsonServers" if disabled else "not in enabledMcpjsonServers"
    return Finding(
        ide="claude-code",
        check=DoctorCheck.MCP_APPROVAL,
        ok=False,
        subject=SERVER_NAME,
        message=f"Claude Code ignores the project's swarm server: it is {why}",
        fix='put "swarm" in enabledMcpjsonServers (and not in disabledMcpjsonServers) in .claude/settings.local.json, '
        f"or {_init_fix('claude-code', workspace)}",
    )


def check_cursor(hooks_doc: JsonObject | None, *, workspace: Path) -> list[Finding]:
    """`version: 1`, and Swarm's hook on every gating event (fail-closed) and on `afterFileEdit`."""
    ide, where, fix = "cursor", ".cursor/hooks.json", _init_fix("cursor", workspace)
    findings: list[Finding] = []
    version = hooks_doc.get("version") if hooks_doc is not None else None
    if version != 1:
        findings.append(
            Finding(
                ide=ide,
                check=DoctorCheck.HOOK,
                ok=False,
                subject="version",
                message=f"{where} is missing or not version 1 (found {version!r}): Cursor would not load the hooks",
                fix=fix,
            )
        )
    hooks = hooks_doc.get("hooks") if hooks_doc is not None else None
    for event in CURSOR_EVENTS:
        entries = cast(JsonObject, hooks).get(event) if isinstance(hooks, dict) else None
        ours = [
            cast(JsonObject, e)
            for e in (cast(list[object], entries) if isinstance(entries, list) else [])
            if isinstance(e, dict) and is_swarm_hook(cast(JsonObject, e).get("command"), "cursor")
        ]
        problem = None
        if not ours:
            problem = f"no {event} hook runs `swarm hook cursor`"
        elif event in CURSOR_FAIL_CLOSED and not any(e.get("failClosed") is True for e in ours):
            problem = f"the {event} hook is not failClosed: Cursor lets the action through if the hook fails"
        findings.append(
            Finding(
                ide=ide,
                check=DoctorCheck.HOOK,
                ok=problem is None,
                subject=event,
                message=problem or f"{event} runs `swarm hook cursor`",
                fix=None if problem is None else fix,
            )
        )
    return findings


def _load(ide: str, path: Path, findings: list[Finding]) -> JsonObject | None:
    try:
        return load_json_object(path)
    except ConfigFileUnreadable as exc:
        findings.append(
            Finding(
                ide=ide,
                check=DoctorCheck.CONFIG_FILE,
                ok=False,
                subject=str(path),
                message=str(exc),
                fix="fix the JSON by hand",
            )
        )
        return None


def detect_ides(workspace: Path, machine: Environment) -> list[SetupIde]:
    """The IDEs this workspace (or, for Claude Desktop, this machine) has a Swarm setup for."""
    found: list[SetupIde] = []
    if (workspace / ".cursor" / "mcp.json").exists() or (workspace / ".cursor" / "hooks.json").exists():
        found.append("cursor")
    if (workspace / ".mcp.json").exists() or (workspace / ".claude" / "settings.json").exists():
        found.append("claude-code")
    if (workspace / ".vscode" / "mcp.json").exists():
        found.append("vscode")
    desktop = claude_desktop_config_path(machine.platform, machine.env, machine.user_home)
    if desktop is not None and desktop.exists():
        found.append("claude-desktop")
    return found


def check_files(ide: SetupIde, workspace: Path, machine: Environment) -> tuple[list[Finding], list[BodyLaunch]]:
    """Every file check of one IDE, and the body command lines it registers."""
    findings: list[Finding] = []
    launches: list[BodyLaunch] = []

    def registration(doc: JsonObject | None, section: str, where: str) -> None:
        finding, launch = check_registration(ide, doc, section=section, where=where, workspace=workspace)
        findings.append(finding)
        if launch is not None:
            launches.append(launch)

    if ide == "claude-code":
        registration(_load(ide, workspace / ".mcp.json", findings), "mcpServers", ".mcp.json")
        settings = _load(ide, workspace / ".claude" / "settings.json", findings)
        local = _load(ide, workspace / ".claude" / "settings.local.json", findings)
        findings += check_claude_code(settings, local, workspace=workspace, machine=machine)
        findings.append(check_personal_ignored(workspace))
    elif ide == "cursor":
        registration(_load(ide, workspace / ".cursor" / "mcp.json", findings), "mcpServers", ".cursor/mcp.json")
        findings += check_cursor(_load(ide, workspace / ".cursor" / "hooks.json", findings), workspace=workspace)
    elif ide == "vscode":
        registration(_load(ide, workspace / ".vscode" / "mcp.json", findings), "servers", ".vscode/mcp.json")
        findings.append(_no_hooks(ide, "VS Code"))
    else:
        path = claude_desktop_config_path(machine.platform, machine.env, machine.user_home)
        if path is None:
            message = "Claude Desktop has no official Linux build: its registration cannot be checked here"
            findings.append(Finding(ide=ide, check=DoctorCheck.REGISTRATION, ok=True, subject="-", message=message))
        else:
            registration(_load(ide, path, findings), "mcpServers", str(path))
    return findings, launches


def _no_hooks(ide: str, name: str) -> Finding:
    return Finding(
        ide=ide,
        check=DoctorCheck.BUILTIN_TOOLS,
        ok=True,
        subject="built-in tools",
        message=f"{name} offers no hook to gate its built-in edit/terminal tools: turn them off in its tool picker",
    )


Probe = Callable[..., Awaitable[Finding]]


async def run_doctor(
    ides: Sequence[SetupIde],
    launch: Launch,
    machine: Environment,
    *,
    timeout_s: float,
    probe: Probe = probe_body,
) -> list[Finding]:
    """Check every IDE named (or found), then start each distinct registered body once (with `probe`)."""
    workspace = launch.workspace
    chosen = list(ides) or detect_ides(workspace, machine)
    findings: list[Finding] = []
    probes: dict[BodyLaunch, str] = {}
    if not chosen:
        findings.append(
            Finding(
                ide="-",
                check=DoctorCheck.SETUP,
                ok=False,
                subject=str(workspace),
                message="no IDE is set up to use the swarm body in this workspace",
                fix=f"run `swarm init --ide cursor|claude-code|claude-desktop|vscode --workspace {workspace}`",
            )
        )
    for ide in chosen:
        found, launches = check_files(ide, workspace, machine)
        findings += found
        for body in launches:
            probes.setdefault(body, ide)
    if not probes:
        default_env = tuple(sorted(launch.env.items()))
        probes[BodyLaunch(argv=tuple(launch.body_argv()), env=default_env)] = "body"
    for body, ide in probes.items():
        findings.append(await probe(body, timeout_s=timeout_s, ide=ide))
    findings.append(check_sandbox())
    return findings


def check_sandbox() -> Finding:
    """Whether commands can be isolated here: without a sandbox, `run_command` refuses every command."""
    from sandbox import NoIsolationAvailable, select_sandbox

    try:
        backend = select_sandbox("auto")
    except NoIsolationAvailable as exc:
        return Finding(
            ide="-",
            check=DoctorCheck.SANDBOX,
            ok=False,
            subject="sandbox",
            message=f"no sandbox can isolate commands here, so run_command refuses them: {exc}",
            fix="install bubblewrap (apt-get install bubblewrap) and allow unprivileged user namespaces",
        )
    return Finding(
        ide="-", check=DoctorCheck.SANDBOX, ok=True, subject="sandbox", message=f"commands run in {backend.name}"
    )


def check_rates_file(home: Path) -> list[Finding]:
    """The home's per-minute rates file (`compliance.WINDOWS_FILE`, shared by its bodies): a finding only when it
    cannot be used, as every request to a site with a per-minute cap is refused until it is fixed."""
    from ..compliance import WINDOWS_FILE, check_windows

    path = home / WINDOWS_FILE
    problem = check_windows(path)
    if problem is None:
        return []
    fix = (
        f"rm -f {path} {path}-wal {path}-shm (it holds only the last minute's request counts)"
        if problem.damaged
        else f"let the user the bodies run as read and write {path}, or remove it"
    )
    return [Finding(ide="-", check=DoctorCheck.COMPLIANCE, ok=False, subject=str(path), message=str(problem), fix=fix)]


def check_toolchains(config: SandboxConfig, workspace: Path) -> list[Finding]:
    """What commands in `workspace` get: the toolchains found here, the interpreter `python` runs, what the
    workspace declares that this machine lacks; a toolchain the config names but this machine lacks fails."""
    from sandbox import ToolchainNotFound

    from ..tools.exec import configured_toolchains

    def finding(ok: bool, subject: str, message: str, fix: str | None = None) -> Finding:
        return Finding(ide="-", check=DoctorCheck.TOOLCHAINS, ok=ok, subject=subject, message=message, fix=fix)

    try:
        _, plan = configured_toolchains(config, workspace)
    except ToolchainNotFound as exc:
        fix = "install it, or change or remove that key in swarm.toml ([sandbox])"
        return [finding(False, f"toolchain {exc.name}", str(exc), fix)]
    found = ", ".join(
        f"{t.name} {t.version} ({t.executable})".replace("  ", " ") for t in plan.found if t != plan.python
    )
    python = f"{plan.python.executable} ({plan.python.version})" if plan.python is not None else "none"
    findings = [finding(True, "toolchains", f"python in the sandbox runs {python}; also found: {found or 'nothing'}")]
    findings += [finding(True, "toolchains", f"declared but not here: {note}") for note in plan.notes]
    return findings
