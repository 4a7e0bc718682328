"""Governance tools: undo, status, explain."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from shared_protocol import (
    DecisionResult,
    DecisionStatusArgs,
    ExplainArgs,
    ExplainResult,
    FileChange,
    Impact,
    RefusalCode,
    RequestApprovalArgs,
    StatusArgs,
    StatusResult,
    UndoArgs,
    UndoResult,
)
from shared_protocol.brain import Decision, DecisionRequest
from shared_protocol.refusals import Rule

from ..exceptions import ToolRefused, UndoRefused
from ..explain import explain_event
from ..undo import StoredRecord, UndoStore
from ._spec import ToolContext, ToolSpec


async def undo(ctx: ToolContext[UndoArgs]) -> UndoResult:
    args = ctx.args
    pending = ctx.deps.undo.pending_records(args.id)
    if _redoes(ctx, pending):
        # Undoing an undo applies the changes it took back again: held to the rules as making them was (blast
        # radius, approval, the cumulative window), so the agent cannot redo, with no decision, an approved change
        # a human undid (its decision was used up).
        paths = {item.record.path for item in pending} | {s for item in pending if (s := item.record.source)}
        await ctx.check_measured(Impact(files=len(paths)), sorted(paths))
    if ctx.mode == "shadow":
        changes = [FileChange(path=item.record.path, kind="modified") for item in pending]
        ctx.effects.files = [c.path for c in changes]
        return UndoResult(action_id=ctx.action_id, undone=[], changes=changes)
    try:
        recorder, actions, changes, rows = ctx.deps.undo.reverse(ctx.deps.workspace, args.id, force=args.force)
    except UndoRefused as exc:
        if (reason := _irreversible(ctx, args.id)) is not None:
            exc.message = f"{exc.message}; note that {args.id} cannot be taken back: {reason}"
        raise
    ctx.effects.recorder = recorder
    ctx.effects.files = [c.path for c in changes]
    ctx.effects.impact = Impact(files=len(changes))
    ctx.effects.detail["undid"] = actions
    UndoStore.mark_undone(ctx.effects.writes, rows, ctx.action_id)
    kept = [f"{aid}: {reason}" for aid in actions if (reason := _irreversible(ctx, aid)) is not None]
    return UndoResult(action_id=ctx.action_id, undone=actions, changes=changes, irreversible=kept)


def _redoes(ctx: ToolContext[Any], pending: list[StoredRecord]) -> bool:
    """Whether any of the actions these records belong to was itself an undo (the agent's or a human's)."""
    for action_id in {item.action_id for item in pending}:
        event = ctx.deps.audit.get(action_id)
        if event is not None and event.tool == "undo":
            return True
    return False


def _irreversible(ctx: ToolContext[Any], action_id: str) -> str | None:
    event = ctx.deps.audit.get(action_id)
    reason = event.detail.get("irreversible") if event is not None else None
    return str(reason) if reason else None


async def status(ctx: ToolContext[StatusArgs]) -> StatusResult:
    kill = ctx.deps.kill_switch.state()
    return StatusResult(
        action_id=ctx.action_id,
        kill_switch="engaged" if kill.engaged else "released",
        kill_reason=kill.reason,
        mode="shadow" if ctx.deps.shadow else "live",
        brain=ctx.deps.brain_state,
        circuit_breaker=ctx.deps.limits.breaker_state(),
        audit="ok" if ctx.deps.audit.broken is None else "broken",
        audit_problem=ctx.deps.audit.broken,
        workspace=str(ctx.deps.workspace.root),
        body_id=ctx.deps.identity.body_id,
        session=ctx.deps.session,
        budgets=ctx.deps.limits.budgets(),
    )


async def explain(ctx: ToolContext[ExplainArgs]) -> ExplainResult:
    args = ctx.args
    event = ctx.deps.audit.get(args.id)
    if event is None:
        raise ToolRefused(f"no audit event with id '{args.id}'", code=RefusalCode.NOT_FOUND, rule=Rule.AUDIT)
    data: dict[str, Any] = event.model_dump(mode="json")
    return ExplainResult(action_id=ctx.action_id, id=args.id, explanation=explain_event(event), event=data)


def _explain_text(result: ExplainResult) -> str:
    return result.explanation


_CORE_TOOLS = [
    ToolSpec(
        name="undo",
        description="Reverse an action (or every action of a decision, newest first) by restoring pre-images. "
        "Refused on conflict (the file changed since) unless force. The undo is itself undoable.",
        args_model=UndoArgs,
        result_model=UndoResult,
        handler=undo,
        read_only=False,
        destructive=True,
    ),
    ToolSpec(
        name="status",
        description="Kill switch, mode (shadow/live), brain link, circuit breaker, audit chain health and remaining "
        "budgets.",
        args_model=StatusArgs,
        result_model=StatusResult,
        handler=status,
        read_only=True,
    ),
    ToolSpec(
        name="explain",
        description="Explain an audited action: context, what was asked, what the guard decided and why.",
        args_model=ExplainArgs,
        result_model=ExplainResult,
        handler=explain,
        read_only=True,
        text=_explain_text,
    ),
]


def _decision_result(ctx: ToolContext[Any], decision: Decision) -> DecisionResult:
    steps = {
        "pending": f"wait: poll decision_status('{decision.id}'); a human answers with `swarm approve {decision.id}`",
        "approved": f"go ahead: pass decision_id='{decision.id}' to the calls this decision covers",
        "denied": "do not do it; choose another approach",
        "expired": "nobody answered in time, so it is denied; do not do it",
        "overridden": "a captain vetoed it; do not do it",
    }
    return DecisionResult(
        action_id=ctx.action_id,
        decision_id=decision.id,
        state=decision.state,
        needs=decision.needs,
        deadline=decision.deadline.isoformat(),
        answered_by=[f"{a.by}: {a.verdict} ({a.reason})" for a in decision.answers],
        next_step=steps[decision.state],
    )


async def request_approval(ctx: ToolContext[RequestApprovalArgs]) -> DecisionResult:
    args = ctx.args
    # What is stored and shipped to the brain holds personal data encrypted under this body's keys (`[privacy]`).
    privacy = ctx.deps.audit.privacy
    protect: Callable[[str], str] = privacy.protect if privacy is not None else str
    action = ", ".join(args.files[:50]) or None
    request = DecisionRequest(
        summary=protect(args.summary),
        rationale=protect(args.rationale),
        confidence=args.confidence,
        impact=Impact(files=len(set(args.files)), api_calls=args.api_calls, usd=args.impact_usd),
        options=[protect(option) for option in args.options],
        agent=ctx.agent,
        body_id=ctx.deps.identity.body_id,
        action=protect(action) if action is not None else None,
        files=sorted({posixpath.normpath(f).removeprefix("./") for f in args.files})[:1000],
        irreversible=args.irreversible,
    )
    decision = await ctx.deps.decisions.create(request)
    ctx.effects.detail.update(decision_id=decision.id, needs=decision.needs, state=decision.state)
    if decision.state == "pending":
        ctx.deps.notify_human(decision)
    return _decision_result(ctx, decision)


async def decision_status(ctx: ToolContext[DecisionStatusArgs]) -> DecisionResult:
    args = ctx.args
    decision = await ctx.deps.decisions.get(args.id)
    if decision is None:
        raise ToolRefused(f"no decision with id '{args.id}'", code=RefusalCode.NOT_FOUND, rule=Rule.DECISIONS)
    return _decision_result(ctx, decision)


GOVERNANCE_TOOLS = [
    *_CORE_TOOLS,
    ToolSpec(
        name="request_approval",
        description="Ask for approval of an action (returns at once: never waits for a human). The rules decide "
        "what it needs: nothing, a human (confidence < 0.70 or > $50), consensus (>= 5 files or >= $50), or it is "
        "blocked (over the blast radius). Poll decision_status, then pass the decision_id to the covered calls.",
        args_model=RequestApprovalArgs,
        result_model=DecisionResult,
        handler=request_approval,
        read_only=False,
        destructive=False,
    ),
    ToolSpec(
        name="decision_status",
        description="The state of a decision (pending, approved, denied, expired, overridden) and who answered.",
        args_model=DecisionStatusArgs,
        result_model=DecisionResult,
        handler=decision_status,
        read_only=True,
    ),
]
