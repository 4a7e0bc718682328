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
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import anyio

from sandbox import (
    SANDBOX_BIN_DIR,
    ChangeKind,
    EntryType,
    ProxyNetwork,
    ResourceLimits,
    RunResult,
    Sandbox,
    SandboxSpec,
    StagedChange,
    StagedRun,
    ToolchainNotFound,
    ToolchainPlan,
    check_toolchain_paths,
    default_toolchain_paths,
    minimal_path,
    plan_toolchains,
    task_environment,
)
from shared_protocol import CommandChange, Impact, Refusal, RefusalCode, RunCommandArgs, RunCommandResult
from shared_protocol.config import SandboxConfig
from shared_protocol.refusals import Rule
from shared_protocol.secrets import is_credential_variable
from shared_protocol.tools import CommandChangeClass
from shared_protocol.verdict import event_report

from .. import _fsops
from .._fsops import ABSENT, EntryState
from ..exceptions import ApprovalRequired, KillSwitchEngaged, RefusedWithResult, ToolRefused
from ..held import HeldKey, HeldRun
from ..proxy import CountingProxy, ProxyRequest
from ..scan import ScanResult
from ..staging import SortedChanges, printable, quota_refusal, sort_changes
from ._progress import OutputMeter, report_progress
from ._spec import ToolContext, ToolSpec
from ._verdict import pytest_report, reports_verdict
from .output import ShownOutput, keep_output

_KILL_POLL_S = 0.05


def configured_toolchains(cfg: SandboxConfig, workspace: Path) -> tuple[list[Path], ToolchainPlan]:
    """The toolchain paths the config names (or the default) and the toolchains for `workspace`'s commands;
    `ToolchainNotFound` names a configured one this machine does not have (the body checks at start)."""
    toolchain = check_toolchain_paths(cfg.toolchain_paths, key="[sandbox] toolchain_paths") or default_toolchain_paths()
    toolchain += check_toolchain_paths(cfg.extra_toolchain_paths, key="[sandbox] extra_toolchain_paths")
    # What the machine has and the workspace declares: `python` is the interpreter the project expects.
    return toolchain, plan_toolchains(workspace, python=cfg.python)


CHECK_INSTALLER_VARIABLES = {"UV_NO_CONFIG": "1", "PIP_CONFIG_FILE": os.devnull}
"""The runner's own check (its setup and the acceptance re-run) runs with the installers' project config off: a
`uv.toml` or `pip.conf` the model wrote in the workspace does not choose what the check installs."""


def _env_roots(ctx: ToolContext[RunCommandArgs]) -> tuple[Path, Path, bool]:
    """Where the command's env dirs and package caches come from, and whether its env dirs are mounted.

    The model's commands (and a body that serves no agent) get the task's. An agent's own check (the runner's
    re-run of the acceptance command, not a call of its model) never runs on the env dirs its model's commands
    wrote: nothing there is staged or reviewed, so a planted `.venv/bin/pytest` or `.pth`, or a poisoned wheel in
    the cache, must not be what verifies a task. Without `swarm/env` it gets none (they are hidden); with
    `swarm/env: check` it gets the check's own, which its setup built afresh (`swarm/fresh_env`); with
    `swarm/env: task` (the runner's setup at the start of a task) the model's."""
    deps = ctx.deps
    if deps.agent_profile is None or ctx.from_model or ctx.env == "task":
        return deps.env_root, deps.cache_root, True
    if ctx.env == "check":
        if ctx.fresh_env:
            shutil.rmtree(deps.check_root, ignore_errors=True)
        ctx.effects.detail["env"] = "check (fresh)" if ctx.fresh_env else "check"
        return deps.check_root / "env", deps.check_root / "cache", True
    return deps.env_root, deps.cache_root, False


def build_spec(
    ctx: ToolContext[RunCommandArgs], cwd: str, hidden: list[str], generation: int | None = None
) -> SandboxSpec:
    """The command's sandbox spec. With the scan's `generation` (the workspace watched), the spec is remembered
    (`ToolDeps.specs`, `sandbox.PlanMemo`) while that generation, everything else it is built from (the config,
    the allowed variables' values, the env dirs chosen, the hidden paths) and every host path it read (the
    toolchains, the env and cache dirs, a virtualenv's `pyvenv.cfg`) are unchanged: only the command and its
    timeout are new. It carries the generation on, for the sandbox's own plan (`SandboxSpec.workspace_state`)."""
    args, deps = ctx.args, ctx.deps
    cfg = deps.sandbox_config
    # (the config refuses credential variables in env_allow; filtered here too, whatever built the config)
    env = {name: os.environ[name] for name in cfg.env_allow if name in os.environ and not is_credential_variable(name)}
    env_root, cache_root, mounted = _env_roots(ctx)
    env_dirs = cfg.env_dirs if mounted else []
    if not mounted:
        hidden = [*hidden, *cfg.env_dirs]
    check = deps.agent_profile is not None and not ctx.from_model and ctx.env == "check"
    timeout = min(args.timeout_s or cfg.default_timeout_s, cfg.max_timeout_s)

    def build() -> tuple[SandboxConfig, SandboxSpec]:
        return cfg, _build_spec(ctx, env, env_root, cache_root, env_dirs, hidden, check)

    if generation is None:
        _, spec = build()
    else:
        # The host's toolchain facts depend on these variables too (`sandbox._detect`: PATH, PYENV_ROOT, HOME).
        host = tuple(os.environ.get(name) for name in ("PATH", "PYENV_ROOT", "HOME"))
        key = (generation, id(cfg), tuple(env.items()), env_root, cache_root, tuple(env_dirs), tuple(hidden), check)
        sources = [env_root / "__".join(PurePosixPath(raw).parts) for raw in env_dirs]
        watched = [
            env_root,
            cache_root,
            *sources,
            *(source / "pyvenv.cfg" for source in sources),
            *(Path(raw) for raw in (*cfg.toolchain_paths, *cfg.extra_toolchain_paths)),
        ]
        # (the entry holds the config itself: its id cannot be another's while it is remembered)
        _, spec = deps.specs.get((*key, host, deps.home, deps.secret_files), build, watched=watched)
    return dataclasses.replace(
        spec, argv=args.argv, cwd=cwd, env=dict(spec.env), timeout_s=timeout, workspace_state=generation
    )


def _build_spec(
    ctx: ToolContext[RunCommandArgs],
    env: dict[str, str],
    env_root: Path,
    cache_root: Path,
    env_dirs: list[str],
    hidden: list[str],
    check: bool,
) -> SandboxSpec:
    deps = ctx.deps
    cfg = deps.sandbox_config
    env = dict(env)
    # Home directories are never mounted; give tools a writable, throwaway one.
    env["HOME"] = "/tmp"
    root = deps.workspace.root
    try:
        toolchain, tools = configured_toolchains(cfg, root)
    except ToolchainNotFound as exc:
        raise ToolRefused(str(exc), code=RefusalCode.TOOLCHAIN_NOT_FOUND, rule=Rule.SANDBOX_TOOLCHAINS) from None
    task_env = task_environment(workspace=root, env_root=env_root, cache_root=cache_root, env_dirs=env_dirs)
    env.update(task_env.variables)
    if check:
        env.update(CHECK_INSTALLER_VARIABLES)
    # Exactly these directories, in this order (the host's PATH names directories the sandbox does not mount).
    path = [*map(str, task_env.path_dirs), *([str(SANDBOX_BIN_DIR)] if tools.commands else [])]
    path += [*map(str, tools.bin_dirs), *minimal_path(toolchain).split(":")]
    env["PATH"] = ":".join(dict.fromkeys(path))
    return SandboxSpec(
        workspace=root,
        argv=ctx.args.argv,
        env=env,
        toolchain_paths=[*toolchain, *tools.expose],
        writable_mounts=task_env.mounts,
        commands=tools.commands,
        hidden_paths=hidden,
        extra_hidden_abs=[deps.home, *deps.secret_files],
        max_output_bytes=cfg.max_output_bytes,
        limits=ResourceLimits(
            cpu_seconds=cfg.cpu_seconds,
            memory_bytes=cfg.memory_mb * 1024 * 1024,
            max_processes=cfg.max_processes,
            max_file_bytes=cfg.max_file_mb * 1024 * 1024,
            max_open_files=cfg.max_open_files,
            max_write_bytes=cfg.max_write_mb * 1024 * 1024,
            max_write_inodes=cfg.max_write_inodes,
            max_tmp_bytes=cfg.max_tmp_mb * 1024 * 1024,
            max_tmp_inodes=cfg.max_tmp_inodes,
        ),
    )


def _check_network(args: RunCommandArgs, allowed: list[str]) -> None:
    if args.network and not allowed:
        raise ToolRefused(
            "this workspace allows commands no network ([sandbox] allowed_domains is empty); "
            "run the command without network=true",
            code=RefusalCode.NETWORK_NOT_ALLOWED,
            rule=Rule.SANDBOX_ALLOWED_DOMAINS,
        )


async def _run_watching(ctx: ToolContext[RunCommandArgs], sandbox: Sandbox, spec: SandboxSpec) -> StagedRun:
    """Run the command; if the kill switch is engaged meanwhile, kill it (within a poll interval). Report
    progress meanwhile when the client asked for it."""
    kill_switch = ctx.deps.kill_switch
    staged: StagedRun | None = None
    # The last moment before the command starts (a launcher made ahead starts it without an await from here): a
    # kill that landed after the guards' last check (on the brain stream's thread, or while the scan was read)
    # refuses the call instead of letting the command run until the watch's first poll.
    if (state := kill_switch.state()).engaged:
        failsafe = state.source == "failsafe"
        if failsafe:  # (as the guard's refusal: the moment the failsafe began, how the brain's kill was heard)
            ctx.effects.detail["failsafe_since"] = state.at
        elif state.heard is not None:
            ctx.effects.detail["kill_heard"] = {"by": state.heard.by, "at": state.heard.at}
        raise KillSwitchEngaged(
            f"the kill switch was engaged before the command could run ({state.reason or 'no reason given'}): "
            "nothing was run",
            code=RefusalCode.BRAIN_UNREACHABLE if failsafe else RefusalCode.KILL_SWITCH_ENGAGED,
            rule=Rule.BRAIN_FAILSAFE if failsafe else Rule.KILL_SWITCH,
        )
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            while True:
                await anyio.sleep(_KILL_POLL_S)
                if kill_switch.state().engaged:
                    sandbox.kill_all()
                    return

        tg.start_soon(watch)
        if ctx.progress is not None:
            meter = OutputMeter()
            spec = dataclasses.replace(spec, on_output=meter)
            every_s = ctx.deps.sandbox_config.progress_interval_s
            tg.start_soon(partial(report_progress, ctx.progress, meter, timeout_s=spec.timeout_s, every_s=every_s))
        staged = await sandbox.run(spec)
        tg.cancel_scope.cancel()
    assert staged is not None
    return staged


async def _run(ctx: ToolContext[RunCommandArgs], cwd: str, scan: ScanResult) -> StagedRun:
    """Run the command in the sandbox (a runner's pytest check with the body's reporter: `_verdict`)."""
    spec = build_spec(ctx, cwd, scan.denied, scan.generation)
    if not reports_verdict(ctx):
        return await _run_spec(ctx, spec)
    async with pytest_report(ctx.deps.check_root, spec) as report:
        staged = await _run_spec(ctx, report.spec)
    verdict = report.judge(staged.result.exit_code)
    ctx.effects.detail["report"] = verdict.model_dump(mode="json")
    return staged


async def _run_spec(ctx: ToolContext[RunCommandArgs], spec: SandboxSpec) -> StagedRun:
    """Run the command in the sandbox, its network (if any) through the body's counting proxy."""
    deps, args = ctx.deps, ctx.args
    sandbox = deps.sandbox()
    ctx.effects.detail["sandbox"] = sandbox.name
    if not args.network:
        return await _run_watching(ctx, sandbox, spec)
    # Every request goes through the body's proxy: counted as an API call, checked against the allow-list,
    # audited by method and host; the command's network namespace stays closed.
    allowed = deps.sandbox_config.allowed_domains
    pins = deps.sandbox_config.pinned_hosts
    compliance = deps.compliance
    proxy = CountingProxy(
        allowed_domains=allowed,
        pinned_hosts=pins,
        max_requests=deps.max_api_calls_per_action,
        compliance=compliance,
        max_exchanges_per_tunnel=compliance.config.max_exchanges_per_tunnel if compliance else 100,
        max_tunnel_s=compliance.config.max_tunnel_s if compliance else 300.0,
    )
    async with proxy:
        spec = dataclasses.replace(spec, network=ProxyNetwork(socket_path=proxy.socket_path))
        staged = await _run_watching(ctx, sandbox, spec)
    requests: list[ProxyRequest] = proxy.requests
    if requests:
        # Metadata only (never a body or a query string): why a request was refused or a tunnel cut, the path
        # robots.txt refused, and the reason of a refusal that was not the request's doing (a rates file busy).
        ctx.effects.detail["requests"] = [
            {"method": r.method, "host": r.host, "port": r.port, "allowed": r.allowed, "status": r.status}
            | ({"rule": r.rule} if r.rule else {})
            | ({"path": r.path} if r.path else {})
            | ({"reason": r.reason} if r.reason else {})
            for r in requests[:1000]
        ]
    # Requests already happened: they count whatever becomes of the files.
    ctx.effects.impact = Impact(api_calls=sum(1 for r in requests if r.allowed))
    return staged


def _category(change: StagedChange, sorted_: SortedChanges) -> CommandChangeClass:
    if change in sorted_.discarded:
        return "discarded"
    if change in sorted_.artifacts:
        return "artifact"
    if change in sorted_.counted:
        return "counted"
    return "refused"


@dataclass(kw_only=True)
class _Measured:
    """A finished run, its changes sorted and its impact measured."""

    staged: StagedRun
    sorted_: SortedChanges
    changes: list[CommandChange]
    impact: Impact
    output: ShownOutput

    def result(
        self, ctx: ToolContext[RunCommandArgs], *, applied: bool, refusal: Refusal | None = None
    ) -> RunCommandResult:
        return command_result(ctx, self.staged.result, self.output, self.changes, applied=applied, refusal=refusal)

    def refused(self, ctx: ToolContext[RunCommandArgs], exc: ToolRefused) -> RefusedWithResult:
        ctx.effects.files = [printable(c.path) for c in self.staged.changes]
        refusal = Refusal(code=exc.code, rule=exc.rule, message=exc.message, action_id=ctx.action_id, ask=exc.ask)
        return RefusedWithResult(exc, self.result(ctx, applied=False, refusal=refusal))


def _measure(ctx: ToolContext[RunCommandArgs], staged: StagedRun, scan: ScanResult) -> _Measured:
    run = staged.result
    sorted_ = sort_changes(
        staged.changes,
        policy=ctx.path_policy,
        gitignore=scan.gitignore,
        artifact_names=ctx.deps.sandbox_config.artifact_paths,
        tracked=scan.tracked,
    )
    changes = [
        CommandChange(
            path=printable(c.path),
            kind=c.kind.value,  # type: ignore[arg-type]
            type=c.entry_type.value,  # type: ignore[arg-type]
            category=_category(c, sorted_),
        )
        for c in staged.changes
    ]
    ctx.effects.detail.update(
        exit_code=run.exit_code, timed_out=run.timed_out, discarded=[c.path for c in sorted_.discarded]
    )
    if stripped := sorted_.stripped_modes:
        ctx.effects.detail["stripped_mode_bits"] = {path: oct(bits) for path, bits in stripped.items()}
    impact = Impact(files=sorted_.counted_files, api_calls=ctx.effects.impact.api_calls)
    output = keep_output(ctx, run)
    return _Measured(staged=staged, sorted_=sorted_, changes=changes, impact=impact, output=output)


async def _decide(ctx: ToolContext[RunCommandArgs], measured: _Measured) -> None:
    """Refuse a run the kill switch stopped, one whose changes include a problem, or one over the rules."""
    if measured.staged.result.killed:
        raise ToolRefused(
            "the kill switch was engaged while the command ran: it was killed and nothing was applied",
            code=RefusalCode.KILL_SWITCH_ENGAGED,
            rule=Rule.KILL_SWITCH,
        )
    if (over_quota := quota_refusal(measured.staged.result)) is not None:
        raise over_quota
    sorted_ = measured.sorted_
    if sorted_.problems:
        raise ToolRefused(
            "nothing was applied, because the command changed: " + "; ".join(str(p) for p in sorted_.problems),
            code=sorted_.refusal_code,
            rule=Rule.SANDBOX_STAGED_CHANGES,
        )
    try:
        await ctx.check_measured(measured.impact, [c.path for c in sorted_.counted])
    except ApprovalRequired:
        raise
    except ToolRefused as exc:
        exc.message = f"{exc.message.rstrip('.')}. Nothing was applied. Files: {_listed(sorted_)}"
        raise


def _listed(sorted_: SortedChanges) -> str:
    return ", ".join(c.path for c in sorted_.counted[:30])


async def _hold(ctx: ToolContext[RunCommandArgs], key: HeldKey, measured: _Measured, exc: ApprovalRequired) -> bool:
    """Keep the staged set, so that the approved retry applies exactly what was reviewed, without re-running;
    False when it is too large to keep."""
    deps = ctx.deps
    ttl = deps.decision_ttl_s
    sorted_ = measured.sorted_
    states = {c.path: _fsops.read_entry(deps.workspace, tuple(c.path.split("/")))[0] for c in sorted_.to_apply}
    held = HeldRun(
        staged=measured.staged, sorted_=sorted_, changes=measured.changes, states=states, expires=time.time() + ttl
    )
    if not await deps.held_runs.put(key, held):
        exc.message = (
            f"{exc.message.rstrip('.')}. Nothing was applied, and the staged changes are too large to hold "
            f"([sandbox] max_held_mb): once approved, run the command again with the decision_id. "
            f"Files: {_listed(sorted_)}"
        )
        return False
    exc.message = (
        f"{exc.message.rstrip('.')}. Nothing was applied yet: the staged changes are held for {ttl // 60} "
        f"minutes; once approved, call run_command again with the same argv and cwd and the decision_id "
        f"to apply them without re-running. Files: {_listed(sorted_)}"
    )
    return True


def _apply(ctx: ToolContext[RunCommandArgs], changes: list[StagedChange]) -> None:
    """Apply staged changes with pre-images: deletions deepest first, then the rest parents first."""
    recorder = ctx.recorder()
    ws = ctx.deps.workspace
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


def _applied(ctx: ToolContext[RunCommandArgs], measured: _Measured) -> RunCommandResult:
    to_apply = measured.sorted_.to_apply
    ctx.effects.files = [c.path for c in to_apply]
    if ctx.mode == "shadow" or not to_apply:
        return measured.result(ctx, applied=False)
    _apply(ctx, to_apply)
    ctx.effects.impact = measured.impact
    return measured.result(ctx, applied=True)


def command_result(
    ctx: ToolContext[RunCommandArgs],
    run: RunResult,
    output: ShownOutput,
    changes: list[CommandChange],
    *,
    applied: bool,
    refusal: Refusal | None = None,
) -> RunCommandResult:
    return RunCommandResult(
        report=event_report(ctx.effects.detail),
        action_id=ctx.action_id,
        mode=ctx.mode,
        exit_code=run.exit_code,
        stdout=output.stdout,
        stderr=output.stderr,
        truncated=output.truncated,
        output=output.summary,
        timed_out=run.timed_out,
        killed=run.killed,
        duration_s=round(run.duration_s, 4),
        changes=changes,
        applied=applied,
        refusal=refusal,
    )


async def _apply_held(ctx: ToolContext[RunCommandArgs], key: HeldKey) -> RunCommandResult | None:
    """Apply a held staged set under an approved decision, if the workspace has not moved under it."""
    held = ctx.deps.held_runs.take(key)
    if held is None:
        return None
    async with held.staged:
        if not held.unchanged(ctx.deps.workspace):
            return None  # the workspace changed since: run the command again instead
        measured = _Measured(
            staged=held.staged,
            sorted_=held.sorted_,
            changes=held.changes,
            impact=Impact(files=held.sorted_.counted_files),
            output=keep_output(ctx, held.staged.result),  # (kept again: this call's result names this call)
        )
        await ctx.check_measured(measured.impact, [c.path for c in held.sorted_.counted])
        ctx.effects.detail["applied_held_run"] = True
        return _applied(ctx, measured)


async def run_command(ctx: ToolContext[RunCommandArgs]) -> RunCommandResult:
    """run → measure → decide → apply."""
    args, deps = ctx.args, ctx.deps
    _check_network(args, deps.sandbox_config.allowed_domains)
    cwd = ctx.paths["cwd"].rel
    key: HeldKey = (tuple(args.argv), cwd)
    await deps.held_runs.discard_expired(time.time())
    if args.decision_id is not None and (held := await _apply_held(ctx, key)) is not None:
        return held
    scan = await deps.scanner.current()  # (the first waits for the body's first walk)
    staged = await _run(ctx, cwd, scan)
    kept = False
    try:
        measured = _measure(ctx, staged, scan)
        try:
            await _decide(ctx, measured)
        except ApprovalRequired as exc:
            kept = await _hold(ctx, key, measured, exc)
            raise measured.refused(ctx, exc) from None
        except ToolRefused as exc:
            raise measured.refused(ctx, exc) from None
        return _applied(ctx, measured)
    finally:
        if not kept:
            # Not waited for: the write area is released now, the staging directory removed off the reply's path.
            staged.discard_soon()


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
