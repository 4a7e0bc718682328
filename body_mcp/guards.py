"""The guards of the pipeline (`pipeline.py`), in order; each is given what it needs when it is built."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import anyio
import anyio.lowlevel
from pydantic import ValidationError

from shared_protocol import Impact, RefusalCode
from shared_protocol.config import RUNNER_TOOLS
from shared_protocol.refusals import Rule

from .approval import ApprovalGate
from .audit import AuditStore, escape_string
from .confinement import Workspace
from .exceptions import InvalidArguments, InvalidPath, KillSwitchEngaged, ToolRefused
from .killswitch import KillState, KillSwitch
from .limits import Limits
from .names import representable, shown
from .pipeline import CallContext, Guard, Next
from .policy import PathPolicy, import_shadow
from .settings import AgentProfile
from .tools._spec import ToolContext, ToolDeps, ToolOutput, ToolSpec


class KillSwitchGuard:
    """While the kill switch is engaged, every mutating tool is refused; read-only tools keep working."""

    def __init__(self, kill_switch: KillSwitch, tools: Mapping[str, ToolSpec]) -> None:
        self._kill_switch = kill_switch
        self._tools = tools

    async def __call__(self, ctx: CallContext, call_next: Next) -> ToolOutput:
        spec = self._tools.get(ctx.tool)
        if spec is None or not spec.read_only:
            refuse_if_killed(self._kill_switch, ctx)
        return await call_next(ctx)


def refuse_if_killed(kill_switch: KillSwitch, ctx: CallContext) -> None:
    """Refuse a mutating call while the kill switch is engaged (`KillSwitchGuard`, and again as the call is about to
    run: a kill that lands while a call waits past the first check stops it too)."""
    refusal = kill_refusal(kill_switch.state(), ctx)
    if refusal is not None:
        raise refusal


def kill_refusal(state: KillState, ctx: CallContext) -> KillSwitchEngaged | None:
    """The refusal of a mutating call under `state` (None: not engaged); what the audit event says of the kill (when
    the failsafe began, how this body heard its brain's kill) goes in `ctx`."""
    if not state.engaged:
        return None
    if state.source == "failsafe":
        # Every call this failsafe refuses names the moment it began: the brain alerts once per episode.
        ctx.effects.detail["failsafe_since"] = state.at
        return KillSwitchEngaged(
            f"{state.reason}; mutating tools are refused until the body reconnects. Read-only tools still work.",
            code=RefusalCode.BRAIN_UNREACHABLE,
            rule=Rule.BRAIN_FAILSAFE,
        )
    if state.heard is not None:
        # How and when this body heard its brain's kill, for whoever asks why a kill took as long as it did.
        ctx.effects.detail["kill_heard"] = {"by": state.heard.by, "at": state.heard.at}
    by = f" by {state.by}" if state.by else ""
    return KillSwitchEngaged(
        f"the kill switch is engaged ({state.source}{by}: {state.reason or 'no reason given'}); "
        "mutating tools are refused until a human resumes. Read-only tools still work."
    )


class AuditTrailGuard:
    """While the audit chain does not verify against its anchor and key, mutating tools are refused; read-only
    tools keep working (and are audited: `check()` keeps the chain's evidence as it is)."""

    def __init__(self, audit: AuditStore, tools: Mapping[str, ToolSpec]) -> None:
        self._audit = audit
        self._tools = tools

    async def __call__(self, ctx: CallContext, call_next: Next) -> ToolOutput:
        problem = self._audit.broken
        if problem is not None:
            spec = self._tools.get(ctx.tool)
            if spec is None or not spec.read_only:
                raise ToolRefused(
                    f"the audit trail does not verify ({problem}); mutating tools are refused until a human starts a "
                    "new chain with `swarm audit reset`. Read-only tools still work.",
                    code=RefusalCode.AUDIT_BROKEN,
                    rule=Rule.AUDIT_INTEGRITY,
                )
        return await call_next(ctx)


class CallOriginGuard:
    """A call's `_meta` origin and turn are well formed; in agent mode, a call the runner makes for its model
    (`swarm/origin` = model) names a tool of the agent's subset, never one only the runner calls."""

    def __init__(self, agent: AgentProfile | None) -> None:
        self._agent = agent

    async def __call__(self, ctx: CallContext, call_next: Next) -> ToolOutput:
        origin = ctx.origin
        if origin.problem is not None:
            raise ToolRefused(
                f"{origin.problem}; nothing ran", code=RefusalCode.INVALID_ARGUMENTS, rule=Rule.INPUT_META
            )
        agent = self._agent
        if agent is not None and origin.origin == "model" and not agent.model_may_call(ctx.tool):
            why = (
                "only the runner calls it"
                if ctx.tool in RUNNER_TOOLS
                else f"it is not one of agent '{agent.name}''s tools ({', '.join(sorted(agent.tools))})"
            )
            raise ToolRefused(
                f"the model may not call '{escape_string(ctx.tool)}': {why}; nothing ran",
                code=RefusalCode.TOOL_NOT_ALLOWED,
                rule=Rule.AGENT_TOOLS,
            )
        return await call_next(ctx)


class ValidationGuard:
    """The tool exists, and its arguments are what its model says, every string of them valid Unicode."""

    def __init__(self, tools: Mapping[str, ToolSpec]) -> None:
        self._tools = tools

    async def __call__(self, ctx: CallContext, call_next: Next) -> ToolOutput:
        spec = self._tools.get(ctx.tool)
        if spec is None:
            raise ToolRefused(
                f"there is no tool named '{escape_string(ctx.tool)}'",
                code=RefusalCode.UNKNOWN_TOOL,
                rule=Rule.TOOL_NAME,
            )
        ctx.spec = spec
        for name, value in ctx.raw_arguments.items():
            # A lone surrogate (JSON "\udcff") names no file and cannot be written as UTF-8: refused before any tool
            # sees it. (The usual argument is an ASCII string: one O(1) check.)
            if (type(value) is str and value.isascii()) or _encodable(value):
                if name.isascii() or _encodable(name):
                    continue
                name = escape_string(name)
            raise InvalidArguments(
                f"argument '{name}' holds a string that is not valid Unicode (a lone surrogate, U+D800 to U+DFFF); "
                "nothing ran",
                rule=Rule.INPUT_UNICODE,
            )
        try:
            ctx.args = spec.args_model.model_validate(ctx.raw_arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()
            )
            raise InvalidArguments(f"invalid arguments for {ctx.tool}: {problems}") from None
        return await call_next(ctx)


class ConfinementGuard:
    """Resolves every path argument inside the workspace (read as results show names: `names.named`) and applies
    the path policy (for a call the runner makes for its model, `model_policy`: its task's acceptance inputs
    protected too); a path a tool would change must be a name UTF-8 can hold (`names.representable`)."""

    def __init__(self, workspace: Workspace, policy: PathPolicy, model_policy: PathPolicy | None = None) -> None:
        self._workspace = workspace
        self._policy = policy
        self._model_policy = model_policy

    async def __call__(self, ctx: CallContext, call_next: Next) -> ToolOutput:
        assert ctx.spec is not None and ctx.args is not None
        policy = self._policy
        if self._model_policy is not None and ctx.origin.origin == "model":
            policy = ctx.policy = self._model_policy
        for name, access in ctx.spec.path_fields.items():
            raw = getattr(ctx.args, name)
            path = self._workspace.resolve(raw, follow_last=access != "write_nofollow")
            if access == "read":
                policy.check_read(path)
            else:
                policy.check_write(path)
                if not representable(path.rel):
                    raise InvalidPath(
                        f"'{shown(path.rel)}' is not UTF-8 on disk: a change to it could not be audited or recorded "
                        "for undo; it can be read, and renamed by a command"
                    )
            ctx.paths[name] = path
        return await call_next(ctx)


class LimitsGuard:
    """Blast radius on the planned impact, then a reservation against every window."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits

    async def __call__(self, ctx: CallContext, call_next: Next) -> ToolOutput:
        assert ctx.spec is not None and ctx.args is not None
        limits = self._limits
        ctx.planned = ctx.spec.plan(ctx.args)
        limits.check_blast_radius(ctx.planned)
        ctx.reservation = limits.reserve(ctx.planned, mutating=not ctx.spec.read_only)
        try:
            result = await call_next(ctx)
        except ToolRefused:
            # A later stage refused before anything happened: the budget is given back.
            if not ctx.effects.files:
                limits.release(ctx.reservation)
                ctx.reservation = None
            raise
        return result


class ApprovalGuard:
    """A mutating call whose planned impact needs approval must name a decision approved for at least that.

    The decision an action claims (here, or for its measured impact further in) is used up once the action
    is carried out, and given back if it is refused or only shadowed (`ApprovalGate.settle`)."""

    def __init__(self, gate: ApprovalGate) -> None:
        self._gate = gate

    async def __call__(self, ctx: CallContext, call_next: Next) -> ToolOutput:
        assert ctx.args is not None and ctx.spec is not None
        gate, writes = self._gate, ctx.effects.writes
        try:
            reason = ctx.spec.irreversible(ctx.args)
            if reason is not None:
                # Recorded when proposed, whatever happens next: undo will not be able to take it back.
                ctx.effects.detail["irreversible"] = reason
                await gate.check_irreversible(ctx.args.decision_id, ctx.planned, reason, action_id=ctx.action_id)
            spec = ctx.spec
            if not spec.read_only:
                ctx.changes_paths = [
                    ctx.paths[name].rel for name, access in spec.path_fields.items() if access != "read"
                ]
            if await gate.check(ctx.args.decision_id, ctx.planned, action_id=ctx.action_id, paths=ctx.changes_paths):
                ctx.approved = True
            result = await call_next(ctx)
        except ToolRefused:
            gate.settle(writes, ctx.action_id, carried_out=False)
            raise
        except BaseException:
            gate.settle(writes, ctx.action_id, carried_out=None)  # (part of it may have happened)
            raise
        gate.settle(writes, ctx.action_id, carried_out=ctx.mode == "live")
        return result


class ExecuteGuard:
    """The innermost stage: the tool itself, in the body's mode, with its measured impact held to the rules."""

    def __init__(
        self, deps: ToolDeps, *, limits: Limits, gate: ApprovalGate, workspace_lock: anyio.Lock, shadow: bool
    ) -> None:
        self._deps = deps
        self._limits = limits
        self._gate = gate
        self._lock = workspace_lock
        self._shadow = shadow

    async def _check_measured(self, ctx: CallContext, impact: Impact, paths: Sequence[str] = ()) -> None:
        self._limits.check_blast_radius(impact)
        assert ctx.args is not None
        if paths:
            ctx.changes_paths = paths
        if await self._gate.check(ctx.args.decision_id, impact, action_id=ctx.action_id, paths=paths):
            ctx.approved = True
        # The tool's effect follows (a write, a command's changes applied): a kill heard while the gate was asked (a
        # worker thread's count, the brain's decision) refuses the call before it, as the last check would have.
        refuse_if_killed(self._deps.kill_switch, ctx)
        if ctx.reservation is not None:
            planned = ctx.planned
            extra = Impact(
                files=max(impact.files - planned.files, 0),
                api_calls=max(impact.api_calls - planned.api_calls, 0),
                usd=max(impact.usd - planned.usd, 0.0),
            )
            if extra != Impact():
                self._limits.extend(ctx.reservation, extra)

    async def _require_human(self, ctx: CallContext, impact: Impact, paths: Sequence[str], why: str) -> None:
        self._limits.check_blast_radius(impact)
        assert ctx.args is not None
        await self._gate.require(
            ctx.args.decision_id, impact, "human", action_id=ctx.action_id, why=why, paths=paths, human_only=True
        )
        refuse_if_killed(self._deps.kill_switch, ctx)  # (as `_check_measured`: the effect follows)
        ctx.approved = True

    async def __call__(self, ctx: CallContext, call_next: Next) -> ToolOutput:
        spec, args = ctx.spec, ctx.args
        assert spec is not None and args is not None
        ctx.mode = "shadow" if self._shadow and not spec.read_only else "live"
        tool_ctx = ToolContext(
            action_id=ctx.action_id,
            agent=ctx.agent,
            mode=ctx.mode,
            args=args,
            paths=ctx.paths,
            deps=self._deps,
            effects=ctx.effects,
            check_measured=partial(self._check_measured, ctx),
            require_human=partial(self._require_human, ctx),
            progress=ctx.progress,
            policy=ctx.policy,
            from_model=ctx.origin.origin == "model",
            env=ctx.origin.env,
            fresh_env=ctx.origin.fresh_env,
            task_id=ctx.origin.task_id,
        )
        if spec.read_only:
            return await spec.handler(tool_ctx)
        # While a command runs against an overlay of the workspace, nothing may change its lower layer.
        lock = self._lock
        try:
            lock.acquire_nowait()  # (the usual case: free)
        except anyio.WouldBlock:
            await lock.acquire()
        else:
            try:
                await anyio.lowlevel.checkpoint_if_cancelled()  # as `acquire` does: a cancelled call runs nothing
            except BaseException:
                lock.release()
                raise
        try:
            # The last moment before it runs: a kill that landed while the call passed the other guards (an approval
            # asked of the brain, a budget, this lock held by a command) refuses it.
            refuse_if_killed(self._deps.kill_switch, ctx)
            result = await spec.handler(tool_ctx)
        finally:
            lock.release()
        if ctx.mode == "live" and (ctx.changes_paths or ctx.approved):
            self._gate.changed(ctx.effects.writes, ctx.changes_paths, approved=ctx.approved)
        return result


def _encodable(value: object) -> bool:
    """Whether every string in `value` (keys included) can be encoded as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    if isinstance(value, list):
        return all(_encodable(item) for item in value)  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    return True


def default_guards(
    *,
    tools: Mapping[str, ToolSpec],
    kill_switch: KillSwitch,
    audit: AuditStore,
    workspace: Workspace,
    policy: PathPolicy,
    limits: Limits,
    gate: ApprovalGate,
    deps: ToolDeps,
    workspace_lock: anyio.Lock,
    shadow: bool,
    agent: AgentProfile | None = None,
) -> list[Guard]:
    protected = agent.protected if agent is not None else ()
    model_policy = (
        policy.with_acceptance_inputs(protected, shadow=import_shadow(workspace.root, protected, deps.env_root))
        if protected
        else None
    )
    return [
        KillSwitchGuard(kill_switch, tools),
        AuditTrailGuard(audit, tools),
        CallOriginGuard(agent),
        ValidationGuard(tools),
        ConfinementGuard(workspace, policy, model_policy),
        LimitsGuard(limits),
        ApprovalGuard(gate),
        ExecuteGuard(deps, limits=limits, gate=gate, workspace_lock=workspace_lock, shadow=shadow),
    ]
