"""Task tools: `next_task` claims work from the brain's queue; `report_outcome` finishes it.

Both send the call's action and decision ids, so the brain keeps what undoes its update: `swarm undo` of the
action or decision reverses the claim or outcome too.
"""

from __future__ import annotations

from shared_protocol import NextTaskArgs, NextTaskResult, RefusalCode, ReportOutcomeArgs, ReportOutcomeResult
from shared_protocol.brain import ClaimRequest, OutcomeRequest
from shared_protocol.refusals import Rule

from ..brain_client import BrainRejected, BrainUnavailable
from ..exceptions import ToolRefused
from ._spec import ToolContext, ToolSpec


def _brain_down(exc: Exception) -> ToolRefused:
    return ToolRefused(f"the brain did not answer: {exc}", code=RefusalCode.BRAIN_UNREACHABLE, rule=Rule.BRAIN_LINK)


async def next_task(ctx: ToolContext[NextTaskArgs]) -> NextTaskResult:
    args = ctx.args
    if ctx.deps.link is None:
        return NextTaskResult(
            action_id=ctx.action_id, task=None, note="standalone body: tasks come from a brain (swarm body --brain URL)"
        )
    try:
        request = ClaimRequest(
            body_id=ctx.deps.identity.body_id, agent=ctx.agent, action_id=ctx.action_id, decision_id=args.decision_id
        )
        claim = await ctx.deps.link.client.claim(request)
    except (BrainUnavailable, BrainRejected) as exc:
        raise _brain_down(exc) from exc
    if claim.task is None or claim.claim_token is None:
        return NextTaskResult(action_id=ctx.action_id, task=None, note="nothing queued")
    ctx.deps.link.hold(claim.task.id, claim.claim_token, claim.lease_s or 0)
    ctx.effects.detail["task_id"] = claim.task.id
    return NextTaskResult(
        action_id=ctx.action_id,
        task=claim.task,
        lease_s=claim.lease_s,
        note="report_outcome when done; this body renews the lease while it runs (if it stops, the task is requeued)",
    )


async def report_outcome(ctx: ToolContext[ReportOutcomeArgs]) -> ReportOutcomeResult:
    args = ctx.args
    link = ctx.deps.link
    claim = link.claims.get(args.task_id) if link is not None else None
    if link is None or claim is None:
        lost = link.lost_claims.get(args.task_id) if link is not None else None
        raise ToolRefused(
            f"this body's claim on task '{args.task_id}' was lost: {lost}"
            if lost is not None
            else f"this body holds no claim on task '{args.task_id}' (claim it with next_task first)",
            code=RefusalCode.NOT_FOUND,
            rule=Rule.TASKS_CLAIM,
        )
    try:
        task = await link.client.outcome(
            args.task_id,
            OutcomeRequest(
                claim_token=claim.token,
                outcome=args.outcome,
                summary=args.summary,
                action_id=ctx.action_id,
                decision_id=args.decision_id,
            ),
        )
    except BrainRejected as exc:
        link.release(args.task_id)
        raise ToolRefused(
            f"the brain refused the outcome: {exc.error.message}", code=RefusalCode.NOT_FOUND, rule=Rule.TASKS_CLAIM
        ) from exc
    except BrainUnavailable as exc:
        raise _brain_down(exc) from exc
    link.release(args.task_id)
    ctx.effects.detail["task_id"] = args.task_id
    return ReportOutcomeResult(action_id=ctx.action_id, task=task)


TASK_TOOLS = [
    ToolSpec(
        name="next_task",
        description="Claim the most valuable queued task from the brain (or none). You hold it until its lease ends.",
        args_model=NextTaskArgs,
        result_model=NextTaskResult,
        handler=next_task,
        read_only=False,
        destructive=False,
    ),
    ToolSpec(
        name="report_outcome",
        description="Finish a task you claimed: succeeded, failed or abandoned, with a summary.",
        args_model=ReportOutcomeArgs,
        result_model=ReportOutcomeResult,
        handler=report_outcome,
        read_only=False,
        destructive=False,
    ),
]
