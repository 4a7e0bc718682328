"""Governance tools: undo, status, explain."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared_protocol import (
    ExplainArgs,
    ExplainResult,
    FileChange,
    Impact,
    RefusalCode,
    StatusArgs,
    StatusResult,
    UndoArgs,
    UndoResult,
)

from ..exceptions import ToolRefused
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
    recorder, actions, changes, rows = body.undo.reverse(body.workspace, args.id, force=args.force)
    ctx.recorder = recorder
    ctx.files = [c.path for c in changes]
    ctx.impact = Impact(files=len(changes))
    ctx.detail["undid"] = actions
    action_id = ctx.action_id
    ctx.also.append(lambda conn: UndoStore.mark_undone(conn, rows, action_id))
    return UndoResult(action_id=ctx.action_id, undone=actions, changes=changes)


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


GOVERNANCE_TOOLS = [
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
