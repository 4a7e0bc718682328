"""The guard: one pipeline every `tools/call` passes, whatever the tool.

    audit (outermost: records every call, allowed, refused or failed; fails closed)
      → kill switch → input validation → confinement and policy → blast radius and budgets
      → approval gate → the tool (shadow or live) → undo record (committed with the audit event)

Each stage is a `Guard`: `(ctx, call_next) -> result`, raising `ToolRefused` to refuse. A
new rule is a new guard in `default_guards()`, not an edit to every tool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import anyio.lowlevel
from pydantic import ValidationError

from shared_protocol import NO_IMPACT, Impact, Refusal, RefusalCode, ToolArgs

from . import _json
from ._db import Writes
from ._factories import empty_dict, empty_list
from .confinement import WorkspacePath
from .decisions import require_approval
from .exceptions import InvalidArguments, KillSwitchEngaged, RefusedWithResult, ToolRefused
from .limits import Reservation
from .tools._spec import ToolOutput, ToolSpec
from .undo import Recorder

if TYPE_CHECKING:
    from .body import Body

logger = logging.getLogger(__name__)

Next = Callable[["CallContext"], Awaitable[ToolOutput]]


@dataclass(kw_only=True)
class CallContext:
    """One tool call as it passes the guard; the audit event is built from it."""

    action_id: str
    tool: str
    raw_arguments: dict[str, Any]
    agent: str
    session: str
    started: float = field(default_factory=time.perf_counter)
    spec: ToolSpec | None = None
    args: ToolArgs | None = None
    paths: dict[str, WorkspacePath] = field(default_factory=empty_dict)
    planned: Impact = NO_IMPACT
    impact: Impact = NO_IMPACT
    files: list[str] = field(default_factory=empty_list)
    reservation: Reservation | None = None
    recorder: Recorder | None = None
    mode: Literal["live", "shadow"] = "live"
    detail: dict[str, Any] = field(default_factory=empty_dict)
    writes: Writes = field(default_factory=Writes)
    """Statements to commit with the call's audit event (its undo records, marking others undone)."""

    @property
    def mutating(self) -> bool:
        # An unknown or unvalidated tool is treated as mutating: refusals err on the safe side.
        return self.spec is None or not self.spec.read_only


@dataclass(kw_only=True, frozen=True)
class CallOutcome:
    """A finished call, independent of MCP: the server turns it into a `CallToolResult`."""

    is_error: bool
    structured: dict[str, Any]
    text: str
    action_id: str


def refused_outcome(refusal: ToolRefused, action_id: str, *, audited: bool = True) -> CallOutcome:
    """A refusal as the client sees it: `{code, rule, message, action_id}`, and the same in a line of text."""
    structured = Refusal(code=refusal.code, rule=refusal.rule, message=refusal.message, action_id=action_id)
    where = f"action {action_id}" if audited else f"action {action_id}, not audited"
    return CallOutcome(
        is_error=True,
        structured=structured.model_dump(mode="json"),
        text=f"Refused [{refusal.code.value}] {refusal.message} ({where})",
        action_id=action_id,
    )


class Guard(Protocol):
    async def __call__(self, body: Body, ctx: CallContext, call_next: Next) -> ToolOutput: ...


class KillSwitchGuard:
    async def __call__(self, body: Body, ctx: CallContext, call_next: Next) -> ToolOutput:
        spec = body.tools.get(ctx.tool)
        if spec is None or not spec.read_only:
            state = body.kill_switch.state()
            if state.engaged and state.source == "failsafe":
                raise KillSwitchEngaged(
                    f"{state.reason}; mutating tools are refused until the body reconnects. "
                    "Read-only tools still work.",
                    code=RefusalCode.BRAIN_UNREACHABLE,
                    rule="brain.failsafe",
                )
            if state.engaged:
                by = f" by {state.by}" if state.by else ""
                raise KillSwitchEngaged(
                    f"the kill switch is engaged ({state.source}{by}: {state.reason or 'no reason given'}); "
                    "mutating tools are refused until a human resumes. Read-only tools still work."
                )
        return await call_next(ctx)


class ValidationGuard:
    async def __call__(self, body: Body, ctx: CallContext, call_next: Next) -> ToolOutput:
        spec = body.tools.get(ctx.tool)
        if spec is None:
            raise ToolRefused(
                f"there is no tool named '{ctx.tool}'", code=RefusalCode.UNKNOWN_TOOL, rule="input.tool_name"
            )
        ctx.spec = spec
        try:
            ctx.args = spec.args_model.model_validate(ctx.raw_arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()
            )
            raise InvalidArguments(f"invalid arguments for {ctx.tool}: {problems}") from None
        return await call_next(ctx)


class ConfinementGuard:
    """Resolves every path argument inside the workspace and applies the path policy."""

    async def __call__(self, body: Body, ctx: CallContext, call_next: Next) -> ToolOutput:
        assert ctx.spec is not None and ctx.args is not None
        for name, access in ctx.spec.path_fields.items():
            raw = getattr(ctx.args, name)
            path = body.workspace.resolve(raw, follow_last=access != "write_nofollow")
            if access == "read":
                body.policy.check_read(path)
            else:
                body.policy.check_write(path)
            ctx.paths[name] = path
        return await call_next(ctx)


class LimitsGuard:
    """Blast radius on the planned impact, then a reservation against every window."""

    async def __call__(self, body: Body, ctx: CallContext, call_next: Next) -> ToolOutput:
        assert ctx.spec is not None and ctx.args is not None
        ctx.planned = ctx.spec.plan(ctx.args)
        body.limits.check_blast_radius(ctx.planned)
        ctx.reservation = body.limits.reserve(ctx.planned, mutating=not ctx.spec.read_only)
        try:
            result = await call_next(ctx)
        except ToolRefused:
            # A later stage refused before anything happened: the budget is given back.
            if not ctx.files:
                body.limits.release(ctx.reservation)
                ctx.reservation = None
            raise
        return result


class ApprovalGuard:
    """A mutating call whose planned impact needs approval must name a decision approved for at least that."""

    async def __call__(self, body: Body, ctx: CallContext, call_next: Next) -> ToolOutput:
        assert ctx.args is not None and ctx.spec is not None
        reason = ctx.spec.irreversible(ctx.args)
        if reason is not None:
            # Recorded when proposed, whatever happens next: undo will not be able to take it back.
            ctx.detail["irreversible"] = reason
            if body.settings.config.policy.approve_irreversible:
                decision_id = ctx.args.decision_id
                await require_approval(
                    body.decisions,
                    decision_id,
                    ctx.planned,
                    "human",
                    why=f"it is irreversible ({reason})",
                    human_only=True,
                )
        await body.require_approval_for(ctx, ctx.planned)
        return await call_next(ctx)


class ExecuteGuard:
    """The innermost stage: the tool itself, in the body's mode."""

    async def __call__(self, body: Body, ctx: CallContext, call_next: Next) -> ToolOutput:
        assert ctx.spec is not None and ctx.args is not None
        ctx.mode = "shadow" if body.shadow and not ctx.spec.read_only else "live"
        if ctx.spec.read_only:
            return await ctx.spec.handler(body, ctx, ctx.args)
        # While a command runs against an overlay of the workspace, nothing may change its lower layer.
        lock = body.workspace_lock
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
            return await ctx.spec.handler(body, ctx, ctx.args)
        finally:
            lock.release()


def default_guards() -> list[Guard]:
    return [KillSwitchGuard(), ValidationGuard(), ConfinementGuard(), LimitsGuard(), ApprovalGuard(), ExecuteGuard()]


async def _end(ctx: CallContext) -> ToolOutput:
    raise AssertionError(f"the guard chain ended without running {ctx.tool}: its last guard must not call on")


class Pipeline:
    """Runs the guards around a call and turns the outcome into an audited MCP result."""

    def __init__(self, body: Body, guards: Sequence[Guard]) -> None:
        self._body = body
        # Each guard bound to the body and to the stage after it, once (a C partial: no Python frame per stage).
        self._run: Next = _end
        for guard in reversed(guards):
            self._run = partial(guard, body, call_next=self._run)

    async def call(self, ctx: CallContext) -> CallOutcome:
        body = self._body
        refusal: ToolRefused | None = None
        failed = False
        result: ToolOutput | None = None
        try:
            result = await self._run(ctx)
        except ToolRefused as exc:
            refusal = exc
        except OSError as exc:
            failed = True
            refusal = ToolRefused(
                f"the operating system refused: {exc.strerror or exc}", code=RefusalCode.IO_ERROR, rule="fs"
            )
        except Exception as exc:
            logger.exception("internal error in %s", ctx.tool)
            failed = True
            refusal = ToolRefused(
                f"internal error; the call was refused ({type(exc).__name__})",
                code=RefusalCode.INTERNAL_ERROR,
                rule="guard.fail_closed",
            )
        except BaseException:
            # Cancelled (the client gave up, or the body is stopping): what the call did so far is still
            # audited and its budget settled (synchronously) before the cancellation goes on.
            cancelled = ToolRefused(
                "the call was cancelled before it finished", code=RefusalCode.CANCELLED, rule="guard.cancelled"
            )
            try:
                body.record(ctx, outcome="failed", refusal=cancelled, failed=False, cancelled=True)
            except Exception:
                logger.exception("could not record the cancelled call %s", ctx.action_id)  # the cancellation goes on
            raise
        outcome: Literal["ok", "refused", "failed", "shadow"]
        if refusal is not None:
            outcome = "failed" if failed else "refused"
        else:
            outcome = "shadow" if ctx.mode == "shadow" else "ok"
        event = body.record(ctx, outcome=outcome, refusal=refusal, failed=failed)
        if isinstance(refusal, RefusedWithResult):
            data = refusal.result.model_dump(mode="json")
            return CallOutcome(
                is_error=True,
                structured=data,
                text=f"Refused [{refusal.code.value}] {refusal.message} (action {event.id})\n" + _json.plain(data),
                action_id=event.id,
            )
        if refusal is not None:
            return refused_outcome(refusal, event.id)
        assert result is not None and ctx.spec is not None
        data = result if isinstance(result, dict) else result.model_dump(mode="json")
        text = ctx.spec.text(result) if ctx.spec.text is not None else _json.plain(data)
        return CallOutcome(is_error=False, structured=data, text=text, action_id=event.id)
