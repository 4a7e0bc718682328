"""`run_command`: a command runs in the sandbox; its staged changes are sorted, checked, then applied.

Nothing a command does reaches the workspace until the whole staged set has passed the
same rules as the file tools: protected paths, special files and symlinks leading out
refuse everything; counted changes are held to the blast radius, the approval gate and
the hourly budget; `.git/` changes are discarded. What is applied gets pre-images, so
`undo` reverses a command like a file edit.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from sandbox import (
    ChangeKind,
    EntryType,
    ProxyNetwork,
    ResourceLimits,
    RunResult,
    Sandbox,
    SandboxSpec,
    StagedChange,
    StagedRun,
    default_toolchain_paths,
)
from shared_protocol import CommandChange, Impact, Refusal, RefusalCode, RunCommandArgs, RunCommandResult

from .. import _fsops
from .._fsops import ABSENT, EntryState
from ..exceptions import ApprovalRequired, RefusedWithResult, ToolRefused
from ..proxy import CountingProxy, ProxyRequest
from ..staging import SortedChanges, sort_changes
from ._spec import ToolSpec

if TYPE_CHECKING:
    from ..body import Body
    from ..guard import CallContext

_KILL_POLL_S = 0.05


def build_spec(body: Body, args: RunCommandArgs, cwd: str, hidden: list[str]) -> SandboxSpec:
    cfg = body.settings.config.sandbox
    env = {name: os.environ[name] for name in cfg.env_allow if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    # Home directories are never mounted; give tools a writable, throwaway one.
    env["HOME"] = "/tmp"
    toolchain = [Path(p) for p in cfg.toolchain_paths] or default_toolchain_paths()
    toolchain += [Path(p) for p in cfg.extra_toolchain_paths]
    timeout = min(args.timeout_s or cfg.default_timeout_s, cfg.max_timeout_s)
    return SandboxSpec(
        workspace=body.workspace.root,
        argv=args.argv,
        cwd=cwd,
        env=env,
        toolchain_paths=toolchain,
        hidden_paths=hidden,
        extra_hidden_abs=[body.settings.home],
        timeout_s=timeout,
        max_output_bytes=cfg.max_output_bytes,
        limits=ResourceLimits(
            cpu_seconds=cfg.cpu_seconds,
            memory_bytes=cfg.memory_mb * 1024 * 1024,
            max_processes=cfg.max_processes,
            max_file_bytes=cfg.max_file_mb * 1024 * 1024,
            max_open_files=cfg.max_open_files,
        ),
    )


async def _run_watching_kill(body: Body, sandbox: Sandbox, spec: SandboxSpec) -> StagedRun:
    """Run the command; if the kill switch is engaged meanwhile, kill it (within a poll interval)."""
    staged: StagedRun | None = None
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            while True:
                await anyio.sleep(_KILL_POLL_S)
                if body.kill_switch.state().engaged:
                    sandbox.kill_all()
                    return

        tg.start_soon(watch)
        staged = await sandbox.run(spec)
        tg.cancel_scope.cancel()
    assert staged is not None
    return staged


def _category(change: StagedChange, sorted_: SortedChanges) -> str:
    if change in sorted_.discarded:
        return "discarded"
    if change in sorted_.artifacts:
        return "artifact"
    if change in sorted_.counted:
        return "counted"
    return "refused"


def _apply(body: Body, ctx: CallContext, changes: list[StagedChange]) -> None:
    """Apply staged changes with pre-images: deletions deepest first, then the rest parents first."""
    recorder = ctx.recorder = body.undo.recorder(body.workspace)
    ws = body.workspace
    deletions = sorted((c for c in changes if c.kind == ChangeKind.DELETED), key=lambda c: -c.path.count("/"))
    for change in deletions:
        parts = tuple(change.path.split("/"))
        before = recorder.before(parts)
        if before.type != "absent":
            _fsops.remove_entry(ws, parts)
        recorder.changed(parts, before, after=ABSENT)
    for change in changes:
        if change.kind == ChangeKind.DELETED:
            continue
        parts = tuple(change.path.split("/"))
        before = recorder.before(parts)
        if change.entry_type == EntryType.DIR:
            if before.type not in ("dir", "absent"):
                _fsops.remove_entry(ws, parts)
            _fsops.make_dir(ws, parts, change.mode)
            recorder.changed(parts, before)
        elif change.entry_type == EntryType.SYMLINK and change.symlink_target is not None:
            if before.type != "absent":
                _fsops.remove_entry(ws, parts)
            _fsops.make_symlink(ws, parts, change.symlink_target)
            recorder.changed(parts, before, after=EntryState(type="symlink", target=change.symlink_target))
        elif change.entry_type == EntryType.FILE and change.source is not None:
            if before.type == "dir":
                _fsops.remove_entry(ws, parts)
            _fsops.write_atomic(ws, parts, change.source.read_bytes(), mode=change.mode)
            recorder.changed(parts, before)


@dataclass(kw_only=True)
class HeldRun:
    """A command's staged changes waiting for the approval they need (PRODUCT.md, "Approval rules")."""

    staged: StagedRun
    sorted_: SortedChanges
    changes: list[CommandChange]
    states: dict[str, EntryState]
    """What the workspace held at each path when the command ran: applying later requires it unchanged."""
    expires: float


HeldKey = tuple[tuple[str, ...], str]


def command_result(
    ctx: CallContext, run: RunResult, changes: list[CommandChange], *, applied: bool, refusal: Refusal | None = None
) -> RunCommandResult:
    return RunCommandResult(
        action_id=ctx.action_id,
        mode=ctx.mode,
        exit_code=run.exit_code,
        stdout=run.stdout,
        stderr=run.stderr,
        truncated=run.stdout_truncated or run.stderr_truncated,
        timed_out=run.timed_out,
        killed=run.killed,
        duration_s=round(run.duration_s, 4),
        changes=changes,
        applied=applied,
        refusal=refusal,
    )


async def discard_expired(held: dict[HeldKey, HeldRun], now: float) -> None:
    for key in [k for k, v in held.items() if v.expires <= now]:
        await held.pop(key).staged.aclose()


def _unchanged(body: Body, states: dict[str, EntryState]) -> bool:
    for path, state in states.items():
        current, _ = _fsops.read_entry(body.workspace, tuple(path.split("/")))
        if (current.type, current.sha256, current.target) != (state.type, state.sha256, state.target):
            return False
    return True


async def _apply_held(body: Body, ctx: CallContext, args: RunCommandArgs, key: HeldKey) -> RunCommandResult | None:
    """Apply a held staged set under an approved decision, if the workspace has not moved under it."""
    held = body.held_runs.pop(key, None)
    if held is None:
        return None
    async with held.staged:
        if not _unchanged(body, held.states):
            return None  # the workspace changed since: run the command again instead
        impact = Impact(files=held.sorted_.counted_files)
        await body.check_measured(ctx, impact)
        ctx.files = [c.path for c in held.sorted_.to_apply]
        ctx.detail["applied_held_run"] = True
        result = command_result(ctx, held.staged.result, held.changes, applied=ctx.mode == "live")
        if ctx.mode == "live":
            _apply(body, ctx, held.sorted_.to_apply)
            ctx.impact = impact
        return result


async def run_command(body: Body, ctx: CallContext, args: RunCommandArgs) -> RunCommandResult:
    allowed = body.settings.config.sandbox.allowed_domains
    if args.network and not allowed:
        raise ToolRefused(
            "this workspace allows commands no network ([sandbox] allowed_domains is empty); "
            "run the command without network=true",
            code=RefusalCode.NETWORK_NOT_ALLOWED,
            rule="sandbox.allowed_domains",
        )
    cwd = ctx.paths["cwd"].rel
    key: HeldKey = (tuple(args.argv), cwd)
    await discard_expired(body.held_runs, time.time())
    if args.decision_id is not None and (held := await _apply_held(body, ctx, args, key)) is not None:
        return held
    sandbox = body.sandbox()
    scan = body.scanner.scan()
    spec = build_spec(body, args, cwd, scan.denied)
    proxy_requests: list[ProxyRequest] = []
    if args.network:
        # Every request goes through the body's proxy: counted as an API call, checked against the allow-list,
        # audited by method and host; the command's network namespace stays closed.
        max_requests = body.settings.config.limits.max_api_calls_per_action
        async with CountingProxy(allowed_domains=allowed, max_requests=max_requests) as proxy:
            spec = dataclasses.replace(spec, network=ProxyNetwork(socket_path=proxy.socket_path))
            staged = await _run_watching_kill(body, sandbox, spec)
        proxy_requests = proxy.requests
    else:
        staged = await _run_watching_kill(body, sandbox, spec)
    api_calls = sum(1 for r in proxy_requests if r.allowed)
    if proxy_requests:
        ctx.detail["requests"] = [
            {"method": r.method, "host": r.host, "port": r.port, "allowed": r.allowed, "status": r.status}
            for r in proxy_requests[:1000]
        ]
    # Requests already happened: they count whatever becomes of the files.
    ctx.impact = Impact(api_calls=api_calls)
    hold = False
    try:
        run = staged.result
        cfg = body.settings.config.sandbox
        sorted_ = sort_changes(
            staged.changes,
            policy=body.policy,
            gitignore=scan.gitignore,
            artifact_names=cfg.artifact_paths,
        )
        changes = [
            CommandChange(path=c.path, kind=c.kind.value, type=c.entry_type.value, category=_category(c, sorted_))  # type: ignore[arg-type]
            for c in staged.changes
        ]
        ctx.detail.update(
            exit_code=run.exit_code,
            timed_out=run.timed_out,
            discarded=[c.path for c in sorted_.discarded],
            sandbox=sandbox.name,
        )

        def result(applied: bool, refusal: Refusal | None = None) -> RunCommandResult:
            return command_result(ctx, run, changes, applied=applied, refusal=refusal)

        def refuse(exc: ToolRefused) -> RefusedWithResult:
            ctx.files = [c.path for c in staged.changes]
            refusal = Refusal(code=exc.code, rule=exc.rule, message=exc.message, action_id=ctx.action_id)
            return RefusedWithResult(exc, result(False, refusal))

        if run.killed:
            raise refuse(
                ToolRefused(
                    "the kill switch was engaged while the command ran: it was killed and nothing was applied",
                    code=RefusalCode.KILL_SWITCH_ENGAGED,
                    rule="kill_switch",
                )
            )
        if sorted_.problems:
            code = RefusalCode.PROTECTED_PATH if sorted_.protected else RefusalCode.PATH_OUTSIDE_WORKSPACE
            if not sorted_.protected and all("device, FIFO" in p for p in sorted_.problems):
                code = RefusalCode.SPECIAL_FILE
            raise refuse(
                ToolRefused(
                    "nothing was applied, because the command changed: " + "; ".join(sorted_.problems),
                    code=code,
                    rule="sandbox.staged_changes",
                )
            )
        impact = Impact(files=sorted_.counted_files, api_calls=api_calls)
        try:
            await body.check_measured(ctx, impact)
        except ApprovalRequired as exc:
            # Keep the staged set, so the approved retry applies exactly what was reviewed, without re-running.
            ttl = body.settings.config.policy.decision_deadline_s
            states = {c.path: _fsops.read_entry(body.workspace, tuple(c.path.split("/")))[0] for c in sorted_.to_apply}
            body.held_runs[key] = HeldRun(
                staged=staged, sorted_=sorted_, changes=changes, states=states, expires=time.time() + ttl
            )
            hold = True
            listed = ", ".join(c.path for c in sorted_.counted[:30])
            exc.message = (
                f"{exc.message.rstrip('.')}. Nothing was applied yet: the staged changes are held for {ttl // 60} "
                f"minutes; once approved, call run_command again with the same argv and cwd and the decision_id "
                f"to apply them without re-running. Files: {listed}"
            )
            raise refuse(exc) from None
        except ToolRefused as exc:
            listed = ", ".join(c.path for c in sorted_.counted[:30])
            exc.message = f"{exc.message.rstrip('.')}. Nothing was applied. Files: {listed}"
            raise refuse(exc) from None
        ctx.files = [c.path for c in sorted_.to_apply]
        if ctx.mode == "shadow" or not sorted_.to_apply:
            return result(False)
        _apply(body, ctx, sorted_.to_apply)
        ctx.impact = impact
        return result(True)
    finally:
        if not hold:
            await staged.aclose()


def _irreversible(args: RunCommandArgs) -> str | None:
    return "its network requests cannot be undone" if args.network else None


def _plan(_args: RunCommandArgs) -> Impact:
    # What a command changes is measured from its staged diff, then held to the same rules.
    return Impact()


EXEC_TOOLS = [
    ToolSpec(
        name="run_command",
        description="Run a command (argv, no shell unless you run one) in the sandbox: no network, read-only system, "
        "secrets hidden. Its changes to the workspace are staged, checked against policy and budgets, and applied "
        "all or nothing; applied changes are undoable. .git/ changes are discarded.",
        args_model=RunCommandArgs,
        result_model=RunCommandResult,
        handler=run_command,
        read_only=False,
        destructive=True,
        path_fields={"cwd": "read"},
        plan=_plan,
        irreversible=_irreversible,
    ),
]

__all__ = ["EXEC_TOOLS"]
