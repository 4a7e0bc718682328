"""`swarm`: wires the parts together. Every command exits 0 on success, else non-zero with one line on stderr."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import cast

import anyio
from pydantic import ValidationError

from body_mcp import Admin, Body, BodySettings, SwarmError, UserError
from body_mcp.admin import reset_trail
from body_mcp.brain_client import BrainClient, BrainRejected, BrainUnavailable
from body_mcp.explain import printable
from body_mcp.killswitch import LocalKillSwitch
from body_mcp.link_state import describe as describe_link
from body_mcp.outputs import OutputStore
from body_mcp.settings import AgentProfile
from body_mcp.state import StatePaths, all_workspace_states, resolve_home
from shared_protocol import AuditEvent
from shared_protocol.agents import LOGIC_VERSION_ENV
from shared_protocol.brain import (
    BrainErrorCode,
    BrainStatus,
    Decision,
    DecisionOverrideRequest,
    ReversalResult,
    check_acceptance_input,
)
from shared_protocol.config import SwarmConfig, render_config
from shared_protocol.decisions import AnswerKind

from . import _after_answer, _context, _errors, ide_cmds

Command = Callable[[argparse.Namespace], int]


def _out(line: str = "") -> None:
    print(line, flush=True)


def _state_settings(args: argparse.Namespace) -> BodySettings:
    """The state a command reads: the workspace's (`--workspace`, default the current directory) or the agent's
    (`--agent NAME`, whatever workspace its tasks worked in)."""
    agent = getattr(args, "agent", None)
    if agent is not None and args.workspace is not None:
        raise UserError("give --workspace DIR or --agent NAME, not both: an agent's state is not a workspace's")
    return _context.body_settings(
        workspace=args.workspace, config=getattr(args, "config", None), agent=agent, agent_state_only=agent is not None
    )


def _open_admin(args: argparse.Namespace) -> AbstractContextManager[Admin]:
    """The workspace's (or agent's) state for the human running this command (no serving body: no limits,
    pipeline or link)."""
    return _context.open_admin(_state_settings(args))


def swarm_command() -> list[str]:
    """How an IDE should launch this `swarm`: absolute, since IDEs do not expand variables."""
    found = shutil.which("swarm")
    if found:
        return [str(Path(found).resolve())]
    return [sys.executable, "-m", "swarm_cli"]


def mcp_snippet(workspace: Path) -> dict[str, object]:
    command = swarm_command()
    return {
        "mcpServers": {"swarm": {"command": command[0], "args": [*command[1:], "body", "--workspace", str(workspace)]}}
    }


# -- commands ----------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    home = resolve_home()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = Path(args.config).expanduser() if args.config else home / "swarm.toml"
    config = _context.load(str(path), home) if path.exists() else _context.load(None, home)
    # The workspace is checked before anything is written: `--workspace /` (or a typo) leaves no config behind.
    _context.body_settings(workspace=args.workspace, config=None, loaded=config).paths.require_workspace()
    if path.exists() and not args.force:
        _out(f"kept existing config {path} (valid; --force rewrites it with every default)")
    else:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")  # (two inits at once: one file each)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # (`--config` in a directory not made yet)
            tmp.write_text(render_config(config))
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)  # (a full disk: no half-written file left behind)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        _out(f"wrote {path}")
    workspace = _context.body_settings(workspace=args.workspace, config=str(path)).paths.require_workspace()
    if args.ide:
        return ide_cmds.init_ide(args.ide, workspace, managed=args.managed, assume_yes=args.yes, config=str(path))
    _out("Add this to your IDE's MCP configuration (mcp.json):")
    _out(json.dumps(mcp_snippet(workspace), indent=2))
    return 0


def cmd_body(args: argparse.Namespace) -> int:
    from body_mcp.server import run_stdio

    url = _context.brain_url(args.brain)
    protect: list[str] = args.protect or []
    if protect and args.agent is None:
        raise UserError("--protect protects a task's acceptance inputs from an agent's model: it needs --agent NAME")
    for pattern in protect:
        try:
            check_acceptance_input(pattern)
        except ValueError as exc:
            raise UserError(f"--protect: {exc}") from None
    settings = _context.body_settings(
        workspace=args.workspace,
        config=args.config,
        brain=url,
        brain_token=_context.token(args.token) if url else None,
        agent=args.agent,
    )
    expected = os.environ.get(LOGIC_VERSION_ENV)
    if expected and settings.agent_profile is not None and settings.agent_profile.logic_version != expected:
        raise UserError(
            f"agent '{args.agent}' is at logic version {settings.agent_profile.logic_version} in its config, but the "
            f"runner starting this body works as {expected}: the config changed since the runner started; restart it"
        )
    if protect and settings.agent_profile is not None:
        profile = dataclasses.replace(settings.agent_profile, protected=tuple(protect))
        settings = dataclasses.replace(settings, agent_profile=profile)
    if args.no_network:
        sandbox = settings.config.sandbox.model_copy(update={"allowed_domains": []})
        settings = dataclasses.replace(settings, config=settings.config.model_copy(update={"sandbox": sandbox}))
    run_stdio(Body(settings))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = _state_settings(args)
    with _context.open_admin(settings) as admin:
        status = admin.status(settings.config)
        if settings.agent_profile is not None:
            _out(f"agent:           {settings.agent_profile.name} ({settings.agent_profile.logic_version})")
        else:
            _out(f"workspace:       {status.workspace}")
        _out(f"body:            {status.body_id}")
        kill = status.kill
        brain, stale = ("standalone", "") if status.link is None else describe_link(status.link)
        by = f", by {kill.by}" if kill.by else ""
        _out(
            f"kill switch:     {'ENGAGED' if kill.engaged else 'released'}"
            + (f" ({kill.source}: {kill.reason}{by})" if kill.engaged else "")
            + stale
        )
        _out(f"mode:            {status.mode}")
        _out(f"brain:           {brain}")
        _out(f"circuit breaker: {status.breaker}")
        for budget in status.budgets:
            _out(f"budget {budget.name}: {budget.used:g} of {budget.limit:g} used")
        report = admin.audit.verify()
        _out(report.summary())
        if not report.ok:
            _out(
                "audit: BROKEN — mutating calls are refused (audit_broken); `swarm audit reset --reason TEXT` sets "
                "this chain aside as evidence and starts a new one"
            )
    if _context.brain_url(args.brain):
        _brain_status(args)
    return 0


def _brain_status(args: argparse.Namespace) -> None:
    """What the brain says (`GET /v1/status`): its kill switch, which every linked body obeys, paused agents, bodies
    and work; asked only when a brain is named, as `swarm kill` and `swarm resume` act on it then."""
    url = _context.brain_url(args.brain)
    status = cast("BrainStatus", _on_brain(args, lambda client: client.status()))
    kill = status.kill
    by = f", by {kill.by}" if kill.by else ""
    _out(f"brain {url}:")
    _out(
        f"  kill switch:   {'ENGAGED' if kill.engaged else 'released'}"
        + (f" ({kill.reason}{by})" if kill.engaged else "")
    )
    for pause in status.paused_agents:
        _out(f"  agent {pause.agent} PAUSED ({pause.reason}, by {pause.by})")
    live = [b for b in status.bodies if b.left_at is None]
    connected = sum(1 for b in live if b.connected)
    _out(f"  bodies:        {connected} connected of {len(live)} registered")
    _out(
        f"  tasks:         {status.queued_tasks} queued, {status.claimed_tasks} claimed, "
        f"{status.waiting_tasks} waiting for a decision"
    )
    _out(f"  decisions:     {status.pending_decisions} pending")


def _each_workspace(action: Callable[[Admin], object], *, done: str) -> None:
    """`action` in every workspace's trail on this machine; one that fails does not stop the others."""
    home = resolve_home()
    found, unreadable = all_workspace_states(home)
    failed = [f"{ident.parent} (its {ident.name} is unreadable or damaged)" for ident in unreadable]
    for paths in found:
        if paths.agent is not None:
            settings = BodySettings(
                workspace=None,
                home=home,
                config=SwarmConfig(),
                agent_profile=AgentProfile(name=paths.agent, logic_version=None),
            )
            where = f"agent {paths.agent}"
        elif paths.workspace is not None and paths.workspace.is_dir():
            settings = BodySettings(workspace=paths.workspace, home=home, config=SwarmConfig())
            where = str(paths.workspace)
        else:
            continue
        try:
            with _context.open_admin(settings) as admin:
                action(admin)
        except (SwarmError, OSError) as exc:
            failed.append(f"{where} ({_errors.describe(exc)})")
    if failed:
        raise SwarmError(f"{done}, but it is not in the audit trail of {len(failed)} workspace(s): {'; '.join(failed)}")


def _agent_on_brain(args: argparse.Namespace) -> bool:
    """`--agent NAME` pauses or resumes that agent on the brain: there is no such thing on this machine alone."""
    if args.agent is None:
        return False
    if not _context.brain_url(args.brain):
        raise UserError("--agent pauses or resumes an agent on the brain: give --brain URL (or set SWARM_BRAIN_URL)")
    return True


def cmd_kill(args: argparse.Namespace) -> int:
    if _agent_on_brain(args):
        _on_brain(args, lambda client: client.pause_agent(args.agent, args.reason))
        _out(f"agent {args.agent} PAUSED on the brain: its bodies refuse mutating calls ({args.reason})")
        return 0
    if _context.brain_url(args.brain):
        _on_brain(args, lambda client: client.kill(args.reason))
        _out(f"kill switch ENGAGED on the brain: every linked body refuses mutating calls ({args.reason})")
        return 0
    home = resolve_home()
    LocalKillSwitch(StatePaths(home=home, workspace=home).kill_file).engage(reason=args.reason, by=_context.human())
    _out(f"kill switch ENGAGED on this machine: {args.reason}")
    _each_workspace(
        lambda admin: admin.record(action="kill", rationale=args.reason, detail={"scope": "local"}),
        done="the kill switch is ENGAGED",
    )
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    if _agent_on_brain(args):
        _on_brain(args, lambda client: client.resume_agent(args.agent, args.reason))
        _out(f"agent {args.agent} resumed on the brain")
        return 0
    if _context.brain_url(args.brain):
        _on_brain(args, lambda client: client.resume(args.reason))
        _out("kill switch released on the brain")
        return 0
    home = resolve_home()
    released = LocalKillSwitch(StatePaths(home=home, workspace=home).kill_file).release()
    if not released:
        _out("kill switch was not engaged")
        return 0
    _out("kill switch released on this machine")
    _each_workspace(
        lambda admin: admin.record(action="resume", rationale=args.reason), done="the kill switch is released"
    )
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    with _open_admin(args) as admin:
        report = admin.verify()
    if not report.ok:
        for line in (report.summary(), *report.damage):  # one line per problem
            print(line, file=sys.stderr)
        return 1
    _out(report.summary())
    return 0


def cmd_audit_reset(args: argparse.Namespace) -> int:
    settings = _state_settings(args)
    if not args.force:
        # A reset sets the undo data aside with the chain: meant for a chain that does not verify, never a typo's
        # price. Any failure to open or read it is a chain that needs the reset.
        report = None
        with contextlib.suppress(SwarmError, OSError, sqlite3.DatabaseError), _context.open_admin(settings) as admin:
            report = admin.verify()
        if report is not None and report.ok:
            raise UserError(
                f"the audit chain verifies ({report.summary()}): a reset would set a sound trail and its undo data "
                "aside; pass --force to reset it all the same"
            )
    result = reset_trail(settings, reason=args.reason, by=_context.human())
    _out(f"the old audit chain (body {result.previous_body_id}, {result.previous_head}) is kept in {result.set_aside}")
    _out(f"a new chain starts with event {result.event.id}, recording the reset; the body is now {result.body_id}")
    return 0


def _tail_settings(args: argparse.Namespace) -> tuple[BodySettings, str | None]:
    """Whose trail `swarm audit tail` reads, and the agent to keep (None: every event): `--agent NAME` alone reads
    that `[[agents]]` entry's own state, all of it (an unknown name is an error, as for every command);
    `--workspace DIR --agent NAME` keeps NAME's events of the workspace's trail (an IDE's agent, say)."""
    if args.agent is not None and args.workspace is not None:
        return _context.body_settings(workspace=args.workspace, config=args.config), args.agent
    return _state_settings(args), None


def _tail_line(event: AuditEvent, *, as_json: bool) -> str:
    if as_json:
        return event.model_dump_json()  # (JSON escapes every control character: one event, one line)
    what = event.tool or event.kind
    code = f" [{event.code}]" if event.code else ""
    return printable(
        f"#{event.seq} {event.ts} {event.id} {event.agent} {what} {event.outcome}{code} — {event.rationale}"
    )


def cmd_audit_tail(args: argparse.Namespace) -> int:
    """The last `-n` events (that pass the filters); with `--follow`, then every new one as the body writes it,
    until Ctrl-C (exit 0)."""
    if args.n < 0:
        raise UserError(f"-n must be 0 or more (got {args.n})")
    if not args.interval > 0:  # (and not NaN)
        raise UserError(f"--interval must be more than 0 seconds (got {args.interval})")
    args.n = min(args.n, 2**62)  # (SQLite's integers are 64-bit: a larger -n is "all of them")
    settings, agent = _tail_settings(args)

    def wanted(event: AuditEvent) -> bool:
        if agent is not None and event.agent != agent:
            return False
        if args.code is not None and event.code != args.code:
            return False
        return args.task is None or args.task in (event.detail.get("task_id"), event.arguments.get("task_id"))

    filtered = agent is not None or args.code is not None or args.task is not None
    with _context.open_admin(settings) as admin:
        trail = admin.audit
        if filtered:
            last: deque[AuditEvent] = deque(maxlen=args.n)
            seq = 0
            while batch := trail.after(seq):
                last.extend(e for e in batch if wanted(e))
                seq = batch[-1].seq
        else:
            last = deque(trail.tail(args.n) if args.n else [])
            head = trail.tail(1)
            seq = head[0].seq if head else 0
        for event in last:
            _out(_tail_line(event, as_json=args.json))
        if not args.follow:
            return 0
        try:
            while True:
                batch = trail.after(seq)
                if not batch:
                    time.sleep(args.interval)
                    continue
                for event in batch:
                    if wanted(event):
                        _out(_tail_line(event, as_json=args.json))
                seq = batch[-1].seq
        except KeyboardInterrupt:
            return 0  # Ctrl-C is how a follow ends


def cmd_audit_explain(args: argparse.Namespace) -> int:
    with _open_admin(args) as admin:
        explanation = admin.explain(args.id)
    if explanation is None:
        whose = f"agent {args.agent}'s" if getattr(args, "agent", None) else "this workspace's"
        raise UserError(f"no audit event with id '{args.id}' in {whose} trail")
    _out(explanation)
    return 0


def cmd_audit_output(args: argparse.Namespace) -> int:
    with _open_admin(args) as admin:  # (opening commits what a body that died just after replying left journaled)
        # Decrypted while its subjects' keys exist ([privacy]), as `read_command_output` reads it.
        outputs = OutputStore(admin.db, directory=admin.paths.outputs, privacy=admin.audit.privacy)
        _, data = outputs.get(args.id, args.stream)
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    """This workspace's changes (from pre-images) and, with a brain, its task updates (compensating records).

    The brain is asked first whether it could reverse (a dry run that refuses as the real one would), so a
    conflict or an unreachable brain stops everything before the workspace is touched.
    """
    on_brain = _context.brain_url(args.brain) is not None
    brain_has = False
    if on_brain:
        try:
            brain_has = _brain_undo(args, dry_run=True) is not None
        except BrainUnavailable as exc:
            raise SwarmError(
                f"{exc}; nothing was undone. To undo only this workspace, run without --brain "
                "(and without SWARM_BRAIN_URL)"
            ) from exc
    with _open_admin(args) as admin:
        # With a brain, an id may have changed only the brain's tasks: then the workspace has nothing, and that is fine.
        has_local = not on_brain or admin.has_undo(args.id)
        local = admin.undo(args.id, force=args.force) if has_local else None
    if local is not None:
        event, actions = local
        _out(f"undone: {', '.join(actions)} (recorded as {event.id}; undo that to redo)")
    if not on_brain:
        return 0
    if local is None and not brain_has:
        raise UserError(f"nothing to undo for '{args.id}', in this workspace or on the brain")
    if local is None:
        _out(f"workspace: nothing to undo for '{args.id}'")
    if not brain_has:
        _out(f"brain: nothing to reverse for '{args.id}'")
        return 0
    try:
        # Kept under the workspace undo's id: undoing that one id later redoes both sides.
        result = _brain_undo(args, dry_run=False, as_action=local[0].id if local is not None else None)
    except SwarmError as exc:
        if local is None:
            raise
        raise SwarmError(f"{exc} — this workspace's changes were undone already (see above)") from exc
    if result is None:  # reversed by someone else since the dry run
        _out(f"brain: nothing left to reverse for '{args.id}'")
        return 0
    reversed_ = ", ".join(f"{r.kind} of {r.task_id} ({r.action_id})" for r in result.reversed)
    _out(f"brain: reversed {reversed_}")
    if local is None and result.undo_id is not None:
        _out(f"brain: recorded as {result.undo_id}; undo that to redo")
    if result.conflicts:
        _out(f"brain: forced over changes made since: {'; '.join(result.conflicts)}")
    return 0


def _brain_undo(args: argparse.Namespace, *, dry_run: bool, as_action: str | None = None) -> ReversalResult | None:
    """The brain's reversal of `args.id` (None: it has nothing to reverse); conflicts and failures raise."""
    try:
        result = _on_brain(
            args,
            lambda client: client.undo(args.id, args.reason, force=args.force, dry_run=dry_run, as_action=as_action),
        )
    except BrainRejected as exc:
        if exc.error.code == BrainErrorCode.NOTHING_TO_REVERSE:
            return None
        raise
    assert isinstance(result, ReversalResult)
    return result


def _answer(kind: AnswerKind) -> Command:
    def run(args: argparse.Namespace) -> int:
        force = kind == "override" and args.force
        if not args.reason.strip():
            raise UserError("--reason must not be empty: it is recorded with the answer")
        if force and not _context.brain_url(args.brain):
            raise UserError("--force is a brain's human captain's: pass --brain URL (a standalone body only vetoes)")
        if _context.brain_url(args.brain):
            if kind == "override":
                version = (args.logic_version or "").strip() or None
                try:
                    request = DecisionOverrideRequest(
                        reason=args.reason, action="force" if force else "veto", logic_version=version
                    )
                except ValidationError:
                    raise UserError("--logic-version is at most 200 characters: the agent's logic version") from None
                answered = _on_brain(args, lambda client: client.override(args.id, request))
            else:
                answered = _on_brain(args, lambda client: client.answer(args.id, kind, args.reason))
            assert isinstance(answered, Decision)
            _out(f"decision {answered.id} is now {answered.state}: {answered.summary}")
            return 0
        with _open_admin(args) as admin:
            decision = admin.answer(args.id, kind, reason=args.reason)
        _out(f"decision {decision.id} is now {decision.state}: {decision.summary}")
        return 0

    return run


# -- parser ------------------------------------------------------------------------------


def _brain_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--brain", metavar="URL", help="the brain (default: $SWARM_BRAIN_URL; none: this machine)")
    parser.add_argument("--token", help="bearer token for the brain (default: $SWARM_TOKEN)")


def _on_brain(args: argparse.Namespace, call: Callable[[BrainClient], Awaitable[object]]) -> object:
    url = _context.brain_url(args.brain)
    assert url is not None
    client = BrainClient(url, _context.token(args.token))

    async def run() -> object:
        try:
            return await call(client)
        finally:
            await client.aclose()

    return anyio.run(run)


def _workspace_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", metavar="DIR", help="the workspace (default: the current directory)")
    parser.add_argument("--config", metavar="FILE", help="swarm.toml (default: $SWARM_CONFIG, $SWARM_HOME/swarm.toml)")


def _state_arg(parser: argparse.ArgumentParser) -> None:
    """`--workspace DIR` or `--agent NAME`: whose state (an agent's body keeps one for all its tasks)."""
    parser.add_argument("--workspace", metavar="DIR", help="the workspace (default: the current directory)")
    parser.add_argument("--agent", metavar="NAME", help="an [[agents]] entry's state, instead of --workspace")
    parser.add_argument("--config", metavar="FILE", help="swarm.toml (default: $SWARM_CONFIG, $SWARM_HOME/swarm.toml)")


BODY_HELP = "the MCP server over stdio (launched by the IDE)"


def _body_args(p: argparse.ArgumentParser) -> None:
    _workspace_arg(p)
    p.add_argument(
        "--agent",
        metavar="NAME",
        help="serve an [[agents]] entry: its identity, audit chain and limits, whatever the workspace",
    )
    _brain_args(p)
    p.add_argument(
        "--no-network", action="store_true", help="refuse network=true to every command (a shadow agent's body)"
    )
    p.add_argument(
        "--protect",
        action="append",
        metavar="GLOB",
        help="with --agent: a file of the task's acceptance check the model may not change (repeatable; "
        "globs from the workspace root, `**` any directories)",
    )


def _body_parser() -> argparse.ArgumentParser:
    """A parser for `swarm body` alone, parsing its arguments as `build_parser()`'s does: what an IDE launches
    need not import every command's module and build ~60 parsers first (~30-60 ms of its start)."""
    parser = argparse.ArgumentParser(prog="swarm", description="Run AI coding agents autonomously and safely.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("body", help=BODY_HELP, description=BODY_HELP)
    p.set_defaults(func=cmd_body)
    _body_args(p)
    return parser


def build_parser() -> argparse.ArgumentParser:
    from . import (
        agent_cmds,
        brain_cmds,
        decision_cmds,
        kpi_cmds,
        privacy_cmds,
        readiness_cmds,
        rollout_cmds,
        secrets_cmds,
        snapshot_cmds,
        task_cmds,
        wake_cmds,
    )

    def cmd_demo(args: argparse.Namespace) -> int:
        from . import demo  # imports the MCP client: only `swarm demo` pays for it

        return demo.cmd_demo(args)

    parser = argparse.ArgumentParser(prog="swarm", description="Run AI coding agents autonomously and safely.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    p = add("demo", cmd_demo, "run the whole loop on a sample workspace in a temp dir (no keys, no network)")
    p.add_argument("--keep", action="store_true", help="keep the demo's temp dir and print where it is")

    p = add("init", cmd_init, "write swarm.toml with every default and print the mcp.json snippet")
    _workspace_arg(p)
    p.add_argument("--force", action="store_true", help="rewrite an existing swarm.toml")
    p.add_argument(
        "--ide", choices=ide_cmds.IDE_CHOICES, help="also write that IDE's registration, deny rules and hooks"
    )
    p.add_argument(
        "--managed", action="store_true", help="with --ide: print the managed (admin) variant, write nothing"
    )
    p.add_argument("--yes", "-y", action="store_true", help="with --ide: write without asking, even on a terminal")

    p = add("body", cmd_body, BODY_HELP)
    _body_args(p)

    p = add(
        "status",
        cmd_status,
        "kill switch, mode, breaker, budgets and audit health of a workspace or agent; with --brain, the brain's too",
    )
    _state_arg(p)
    _brain_args(p)

    p = add("kill", cmd_kill, "engage the kill switch: this machine's bodies, or with --brain every linked body")
    p.add_argument("--reason", default="manual kill", help="why (audited)")
    p.add_argument("--agent", metavar="NAME", help="pause only this agent's bodies, on the brain (needs --brain)")
    _brain_args(p)
    p = add("resume", cmd_resume, "lift the kill switch (local, or the brain's with --brain)")
    p.add_argument("--reason", default="manual resume", help="why (audited)")
    p.add_argument("--agent", metavar="NAME", help="resume this paused agent, on the brain (needs --brain)")
    _brain_args(p)

    audit = sub.add_parser("audit", help="verify, tail or explain the audit trail, or read a command's output")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    p = audit_sub.add_parser(
        "verify",
        help="recompute the keyed chain and check it against its anchor",
        description="Recompute the keyed chain from its first event (streamed: constant memory), check its head "
        "against the anchor, then the database's pages and every undo pre-image. Always the whole chain: a body's "
        "start and its daily check are the incremental ones (from the last verified event).",
    )
    p.set_defaults(func=cmd_audit_verify)
    p.add_argument(
        "--full",
        action="store_true",
        help="every event from the first, whatever was verified before (what verify always does; say it in scripts)",
    )
    _state_arg(p)
    p = audit_sub.add_parser(
        "reset", help="set a chain that does not verify aside as evidence and start a new one (audited)"
    )
    p.set_defaults(func=cmd_audit_reset)
    p.add_argument("--reason", required=True, help="why (the new chain's first event)")
    p.add_argument("--force", action="store_true", help="reset a chain that verifies too (its undo data set aside)")
    _state_arg(p)
    p = audit_sub.add_parser(
        "tail",
        help="the latest events; --follow: then each new one until Ctrl-C",
        description="The latest events of a workspace's (or an [[agents]] entry's) audit trail. --agent NAME "
        "alone reads that [[agents]] entry's state; with --workspace DIR it keeps NAME's events of the workspace's "
        "trail. Follows the local trail, on this machine (the brain's copy of every body's trail is on its "
        "dashboard, GET / and /v1/dashboard/stream).",
    )
    p.set_defaults(func=cmd_audit_tail)
    p.add_argument("-n", type=int, default=20, help="how many (default 20)")
    p.add_argument("--follow", "-f", action="store_true", help="then print each new event, until Ctrl-C (exit 0)")
    p.add_argument("--json", action="store_true", help="one JSON object per event and line (the AuditEvent)")
    p.add_argument("--task", metavar="TASK_ID", help="only the events of this task (next_task, report_outcome...)")
    p.add_argument("--code", metavar="CODE", help="only the events with this refusal code (kill_switch_engaged...)")
    p.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    _state_arg(p)
    p = audit_sub.add_parser("explain", help="a readable explanation of one event")
    p.set_defaults(func=cmd_audit_explain)
    p.add_argument("id", help="the event's action id (act_…), as `swarm audit tail` shows it")
    _state_arg(p)
    p = audit_sub.add_parser("output", help="all that was kept of a run_command's output (its action id)")
    p.set_defaults(func=cmd_audit_output)
    p.add_argument("id", help="the run_command's action id (act_…), as `swarm audit tail` shows it")
    p.add_argument("--stream", choices=("stdout", "stderr"), default="stdout", help="which stream (default stdout)")
    _state_arg(p)

    for kind, help_text in (
        ("approve", "approve a pending decision (with a brain: a human's vote)"),
        ("deny", "deny a pending decision (with a brain: a human's vote, which denies it)"),
        ("override", "captain's veto (default) or, with --force, approval of any decision; audited, with its reason"),
    ):
        p = add(kind, _answer(kind), help_text)  # type: ignore[arg-type]
        p.add_argument("id", help="the decision id")
        p.add_argument("--reason", default=f"{kind} from the command line", help="why (audited)")
        if kind == "override":
            how = p.add_mutually_exclusive_group()
            how.add_argument("--veto", action="store_true", help="overridden, even an approved decision (default)")
            how.add_argument(
                "--force", action="store_true", help="approved, whatever its votes (a brain's human captain only)"
            )
            p.add_argument(
                "--logic-version",
                metavar="LV",
                help="the captain agent's reviewer token: its logic version (a veto by a version not live is refused)",
            )
        _state_arg(p)
        _brain_args(p)

    snapshot_cmds.add_parsers(sub)  # type: ignore[arg-type]
    brain_cmds.add_parsers(sub)  # type: ignore[arg-type]
    ide_cmds.add_parsers(sub)  # type: ignore[arg-type]
    wake_cmds.add_parsers(sub)  # type: ignore[arg-type]
    agent_cmds.add_parsers(sub)  # type: ignore[arg-type]
    task_cmds.add_parsers(sub)  # type: ignore[arg-type]
    decision_cmds.add_parsers(sub)  # type: ignore[arg-type]
    readiness_cmds.add_parsers(sub)  # type: ignore[arg-type]
    kpi_cmds.add_parsers(sub)  # type: ignore[arg-type]
    rollout_cmds.add_parsers(sub)  # type: ignore[arg-type]
    secrets_cmds.add_parsers(sub)  # type: ignore[arg-type]
    privacy_cmds.add_parsers(sub)  # type: ignore[arg-type]

    p = add(
        "undo",
        cmd_undo,
        "reverse an action or every action of a decision (works while killed); with --brain, its task updates too",
    )
    p.add_argument("id", help="an action id (act_…) or a decision id (dec_…: every action it approved)")
    p.add_argument("--force", action="store_true", help="overwrite files (and, with --brain, tasks) changed since")
    p.add_argument("--reason", default="undo from the command line", help="why (recorded by the brain)")
    _state_arg(p)
    _brain_args(p)
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    """Give every command without a description of its own the line its parent lists it with, so that
    `swarm X Y --help` says what the command does (most said nothing above their options)."""
    for action in parser._actions:  # pyright: ignore[reportPrivateUsage]
        if not isinstance(action, argparse._SubParsersAction):  # pyright: ignore[reportPrivateUsage]
            continue
        listed = {choice.dest: choice.help for choice in action._choices_actions}  # pyright: ignore
        children = cast("dict[str, argparse.ArgumentParser]", action.choices)  # pyright: ignore[reportUnknownMemberType]
        for name, child in children.items():
            if child.description is None and listed.get(name):
                child.description = listed[name]
            _describe(child)


def main(
    argv: Sequence[str] | None = None,
    *,
    parser: argparse.ArgumentParser | None = None,
    answered: Callable[[int], None] | None = None,
) -> int:
    """Run one `swarm` command. `parser`: one `build_parser()` made already (the warm hook server builds it once;
    argparse takes tens of milliseconds to build this many commands). `answered`: told the exit code as soon as
    the command has returned, before what it left for after its answer (`_after_answer`) is done."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if parser is None:
        parser = _body_parser() if argv[:1] == ["body"] else build_parser()
    args = parser.parse_args(argv)
    code = _errors.run(args.func, args)
    if answered is not None:
        answered(code)
    _after_answer.run()
    return code


if __name__ == "__main__":
    sys.exit(main())
