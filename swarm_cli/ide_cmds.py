"""`swarm init --ide`, `swarm hook claude-code|cursor` and `swarm doctor`: the IDE side of the CLI.

`main.py` registers the parsers with `add_parsers` and calls `init_ide` after `swarm init`
has written `swarm.toml`. Heavy imports wait until a command runs: the hook is started for
every tool call the agent makes.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .entry import HOOK_IDES

if TYPE_CHECKING:
    from body_mcp import BodySettings
    from body_mcp.ide import Environment, Finding, Launch, SetupIde
    from shared_protocol.config import SwarmConfig

IDE_CHOICES = ("cursor", "claude-code", "claude-desktop", "vscode", "all")
"""What `swarm init --ide` and `swarm doctor --ide` accept."""
_PINNED_ENV = ("SWARM_HOME", "SWARM_CONFIG")
"""Set when `swarm init` runs, these are written into the IDE's commands so its processes share the CLI's state."""


def _out(line: str = "") -> None:
    print(line, flush=True)


def _launch(workspace: Path) -> Launch:
    from body_mcp.ide import Launch

    from .main import swarm_command

    env = {key: os.environ[key] for key in _PINNED_ENV if os.environ.get(key)}
    return Launch(swarm=tuple(swarm_command()), workspace=workspace.resolve(), env=env)


def _machine(config_flag: str | None = None) -> Environment:
    from body_mcp.ide import Environment
    from body_mcp.state import resolve_home

    from . import _context

    home = resolve_home()
    config = _context.load(config_flag, home)
    return Environment(
        platform=sys.platform,
        env=dict(os.environ),
        user_home=Path.home(),
        swarm_home=home,
        denied_paths=tuple(config.policy.denied_paths),
    )


def _selected(ide: str) -> list[SetupIde]:
    from body_mcp.exceptions import UserError
    from body_mcp.ide import IDE_NAMES

    chosen: list[SetupIde] = [name for name in IDE_NAMES if ide in (name, "all")]
    if not chosen:
        raise UserError(f"unknown IDE '{ide}': choose one of {', '.join(IDE_CHOICES)}")
    return chosen


def _confirm(prompt: str) -> bool:
    try:
        return input(f"{prompt} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


# -- swarm init --ide ---------------------------------------------------------------------


def init_ide(ide: str, workspace: Path, *, managed: bool, assume_yes: bool, config: str | None = None) -> int:
    """Write (merging, with a diff and a backup) or print each IDE's files for `workspace`.

    `managed`: print the machine-wide variants an administrator deploys, and write nothing.
    Asks before writing only on a terminal without `assume_yes`; otherwise shows the diff and applies.
    `config`: the `--config` given to `swarm init` (its protected paths become Claude Code's deny rules).
    Returns 0, or 1 when the human declines; raises `UserError` for a file it will not rewrite.
    """
    from body_mcp.ide import apply_write, plan_ide, plan_write

    ides = _selected(ide)
    launch = _launch(workspace)
    machine = _machine(config)
    if managed:
        return _print_managed(ides, launch, machine)
    plans = [plan_ide(i, launch, machine) for i in ides]
    # Every file is read and merged before any is written: one unreadable file stops them all.
    writes = [plan_write(edit) for plan in plans for edit in plan.edits]
    for plan in plans:
        for heading, snippet in plan.snippets:
            _out(f"{heading}:")
            _out(_json(snippet))
    changed = [w for w in writes if w.changed]
    for write in writes:
        if not write.changed:
            _out(f"unchanged: {write.path} ({write.label})")
    if changed:
        for write in changed:
            _out(f"--- {write.label}")
            _out(write.diff().rstrip("\n"))
        if sys.stdin.isatty() and not assume_yes and not _confirm(f"Write these {len(changed)} file(s)?"):
            print("swarm: nothing written (declined)", file=sys.stderr)
            return 1
        backups = machine.swarm_home / "ide-backups"
        for write in changed:
            backup = apply_write(write, backup_dir=backups)
            _out(f"wrote {write.path}" + (f" (previous content kept in {backup})" if backup else ""))
    for plan in plans:
        for note in plan.notes:
            _out(f"note ({plan.ide}): {note}")
    if "claude-code" in ides or "cursor" in ides:
        _out(f"Check the setup with: swarm doctor --workspace {launch.workspace}")
    return 0


def _json(value: object) -> str:
    import json

    return json.dumps(value, indent=2)


def _print_managed(ides: list[SetupIde], launch: Launch, machine: Environment) -> int:
    from body_mcp.ide import managed_variant

    for ide in ides:
        if ide not in HOOK_IDES:
            _out(f"{ide}: no managed variant (it has no hooks to enforce); use `swarm init --ide {ide}` per user")
            continue
        variant = managed_variant("claude-code" if ide == "claude-code" else "cursor", launch, machine.denied_paths)
        _out(f"# {ide}: managed variant, for an administrator to deploy (not installed by swarm)")
        for system, path in variant.paths.items():
            _out(f"#   {system}: {path}")
        for note in variant.notes:
            _out(f"#   {note}")
        _out(_json(variant.content))
    return 0


# -- swarm hook ---------------------------------------------------------------------------


def cmd_hook(args: argparse.Namespace) -> int:
    """Answer one IDE hook event. Always exits 0 with a valid answer; every failure is a deny. The audit event is
    durable (in the journal) before the answer; its commit and anchor are left for after it (`_after_answer`)."""
    from body_mcp.ide import BodyAuditSink, HookRuntime, PathGuard, run_hook
    from body_mcp.state import resolve_home

    from . import _after_answer, _context

    ide = args.hook_ide
    config_flag: str | None = args.config

    @functools.cache
    def config() -> SwarmConfig:  # (read once per call, by the guard and by the audit alike)
        return _context.load(config_flag, resolve_home())

    def guard_for(workspace: Path | None) -> PathGuard:
        return PathGuard(
            workspace=workspace.resolve() if workspace else None,
            home=resolve_home(),
            denied=config().policy.denied_paths,
        )

    def settings_for(workspace: Path) -> BodySettings:
        from dataclasses import replace

        settings = _context.body_settings(workspace=str(workspace), config=config_flag, loaded=config())
        return replace(settings, agent=ide)

    sink = BodyAuditSink(settings_for, finish_later=True)
    _after_answer.defer(sink.close)
    runtime = HookRuntime(
        ide=ide,
        workspace=Path(args.workspace).expanduser().absolute() if args.workspace else None,
        env=dict(os.environ),
        guard_for=guard_for,
        sink=sink,
    )
    if not run_hook(runtime, sys.stdin.buffer, sys.stdout):
        # The watchdog answered; the worker may be stuck in a read or a lock. Leave without waiting for it (an event
        # it journaled is committed by the next store that opens the trail).
        sys.stdout.flush()
        os._exit(0)
    return 0


# -- swarm doctor -------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the IDE setup and the body; exit 1 (one line on stderr) when anything needs fixing."""
    import anyio

    from body_mcp.ide import check_rates_file, check_toolchains, run_doctor

    from . import _context

    settings = _context.body_settings(workspace=args.workspace, config=args.config)
    ides = _selected(args.ide) if args.ide else []
    launch = _launch(settings.paths.require_workspace())
    machine = _machine(args.config)
    findings = anyio.run(lambda: run_doctor(ides, launch, machine, timeout_s=args.timeout))
    findings += anyio.run(lambda: _wake_findings(args.config))
    findings += check_toolchains(settings.config.sandbox, settings.paths.require_workspace())
    findings += check_rates_file(settings.home)
    _print_findings(findings)
    failed = [f for f in findings if not f.ok]
    if failed:
        print(f"swarm: doctor found {len(failed)} problem(s); each is listed above with its fix", file=sys.stderr)
        return 1
    _out("all checks passed")
    return 0


async def _wake_findings(config_flag: str | None) -> list[Finding]:
    """The wake-up checks (channels, secrets, the Discord webhook's owner) as doctor findings."""
    import httpx

    from body_mcp.ide import DoctorCheck
    from body_mcp.ide import Finding as IdeFinding
    from body_mcp.state import resolve_home
    from brain_server.wake.doctor import check_wake
    from shared_protocol.secrets import Secrets

    from . import _context

    config = _context.load(config_flag, resolve_home())
    async with httpx.AsyncClient(timeout=10) as http:
        results = await check_wake(config, Secrets.from_environ(os.environ, config=config.secrets), http)
    return [
        IdeFinding(ide="-", check=DoctorCheck.WAKE, ok=r.ok, subject=r.subject, message=r.message, fix=r.fix)
        for r in results
    ]


def _print_findings(findings: list[Finding]) -> None:
    from body_mcp.ide import DoctorCheck

    rules = [f for f in findings if f.check == DoctorCheck.DENY_RULE]
    passed_rules = [f for f in rules if f.ok]
    for finding in findings:
        if finding in passed_rules:
            # One line for the rules in place; each missing one gets its own line and fix.
            if finding is passed_rules[0]:
                which = "all" if len(passed_rules) == len(rules) else "the other"
                _out(f"ok    {finding.ide:<14} {'deny_rule':<14} {which} {len(passed_rules)} Swarm deny rules present")
            continue
        status = "ok  " if finding.ok else "FAIL"
        _out(f"{status}  {finding.ide:<14} {finding.check.value:<14} {finding.message}")
        if finding.fix:
            _out(f"      {'':<14} {'':<14} fix: {finding.fix}")


# -- parsers ------------------------------------------------------------------------------


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # pyright: ignore[reportPrivateUsage]
    """Register `swarm hook claude-code|cursor` and `swarm doctor` on the top-level subparsers."""
    hook = sub.add_parser(
        "hook",
        help="answer an IDE hook event on stdin (called by the IDE; set up by `swarm init --ide`)",
        description="Read one Claude Code or Cursor hook event on stdin and answer allow/deny in its format.",
    )
    hook_sub = hook.add_subparsers(dest="hook_ide", required=True, metavar="IDE")
    for ide in HOOK_IDES:
        p = hook_sub.add_parser(ide, help=f"a {ide} hook event")
        p.set_defaults(func=cmd_hook, hook_ide=ide)
        p.add_argument("--workspace", metavar="DIR", help="the workspace (default: the project the IDE names)")
        p.add_argument("--config", metavar="FILE", help="swarm.toml (default: $SWARM_CONFIG, $SWARM_HOME/swarm.toml)")

    doctor = sub.add_parser(
        "doctor",
        help="check that each IDE uses the body as its only hands, and that the body starts",
        description="Check registrations, deny rules and hooks, then start the body over stdio.",
    )
    doctor.set_defaults(func=cmd_doctor)
    doctor.add_argument("--ide", choices=IDE_CHOICES, help="the IDE to check (default: every one set up here)")
    doctor.add_argument("--workspace", metavar="DIR", help="the workspace (default: the current directory)")
    doctor.add_argument("--config", metavar="FILE", help="swarm.toml (default: $SWARM_CONFIG, $SWARM_HOME/swarm.toml)")
    doctor.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the body (default 20)")
