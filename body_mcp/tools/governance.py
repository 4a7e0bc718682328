"""Governance tools: undo, status, explain."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

from ..exceptions import ToolRefused, UndoRefused
from ..explain import explain_event
from ..undo import UndoStore
from ._spec import ToolSpec

if TYPE_CHECKING:
    from ..body import Body
    from ..guard import CallContext


async def undo(body: Body, ctx: CallContext, args: UndoArgs) -> UndoResult:
    if ctx.mode == "shadow":
        pending = body.undo.pending_records(args.id)
        changes = [FileChange(path=item.record.path, kind="modified") for item in pending]
        ctx.files = [c.path for c in changes]
        return UndoResult(action_id=ctx.action_id, undone=[], changes=changes)
    try:
        recorder, actions, changes, rows = body.undo.reverse(body.workspace, args.id, force=args.force)
    except UndoRefused as exc:
        if (reason := _irreversible(body, args.id)) is not None:
            exc.message = f"{exc.message}; note that {args.id} cannot be taken back: {reason}"
        raise
    ctx.recorder = recorder
    ctx.files = [c.path for c in changes]
    ctx.impact = Impact(files=len(changes))
    ctx.detail["undid"] = actions
    UndoStore.mark_undone(ctx.writes, rows, ctx.action_id)
    kept = [f"{aid}: {reason}" for aid in actions if (reason := _irreversible(body, aid)) is not None]
    return UndoResult(action_id=ctx.action_id, undone=actions, changes=changes, irreversible=kept)


def _irreversible(body: Body, action_id: str) -> str | None:
    event = body.audit.get(action_id)
    reason = event.detail.get("irreversible") if event is not None else None
    return str(reason) if reason else None


async def status(body: Body, ctx: CallContext, args: StatusArgs) -> StatusResult:
    kill = body.kill_switch.state()
    return StatusResult(
        action_id=ctx.action_id,
        kill_switch="engaged" if kill.engaged else "released",
        kill_reason=kill.reason,
        mode="shadow" if body.shadow else "live",
        brain=body.brain_state,
        circuit_breaker=body.limits.breaker_state(),
        workspace=str(body.workspace.root),
        body_id=body.identity.body_id,
        session=body.session,
        budgets=body.limits.budgets(),
    )


async def explain(body: Body, ctx: CallContext, args: ExplainArgs) -> ExplainResult:
    event = body.audit.get(args.id)
    if event is None:
        raise ToolRefused(f"no audit event with id '{args.id}'", code=RefusalCode.NOT_FOUND, rule="audit")
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
        description="Kill switch, mode (shadow/live), brain link, circuit breaker and remaining budgets.",
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


def _decision_result(ctx: CallContext, decision: Decision) -> DecisionResult:
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


async def request_approval(body: Body, ctx: CallContext, args: RequestApprovalArgs) -> DecisionResult:
    request = DecisionRequest(
        summary=args.summary,
        rationale=args.rationale,
        confidence=args.confidence,
        impact=Impact(files=len(set(args.files)), api_calls=args.api_calls, usd=args.impact_usd),
        options=args.options,
        agent=ctx.agent,
        body_id=body.identity.body_id,
        action=", ".join(args.files[:50]) or None,
        irreversible=args.irreversible,
    )
    decision = await body.decisions.create(request)
    ctx.detail.update(decision_id=decision.id, needs=decision.needs, state=decision.state)
    if decision.state == "pending":
        body.notify_human(decision)
    return _decision_result(ctx, decision)


async def decision_status(body: Body, ctx: CallContext, args: DecisionStatusArgs) -> DecisionResult:
    decision = await body.decisions.get(args.id)
    if decision is None:
        raise ToolRefused(f"no decision with id '{args.id}'", code=RefusalCode.NOT_FOUND, rule="decisions")
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
