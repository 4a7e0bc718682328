"""A task's life as pure steps, and the engine operations built on them (`TaskTransitions`).

Each step takes the task as stored (`StoredTask`: the `Task` and its current claim token) and
returns what to store, or raises the refusal the client reads; the history event it adds is
part of the task it returns. An engine provides one primitive, `_change`: inside one
transaction, read the task, apply a step, write the row and the new history events (and a
compensating record, and a log line). Both engines take every step through here, so they
refuse and record alike.

    queued ─claim─▶ claimed ─park─▶ waiting_approval ─resume─▶ claimed
       ▲              │ └── lease ran out (lease_lost) ──▶ queued
       │              └── outcome ─▶ succeeded | failed | abandoned     (from waiting_approval too)
       │                 waiting_approval ─its decision denied, expired or overridden─▶ abandoned
       └── shadow outcome (a shadow run is kept; the task's own state is untouched)
    queued | claimed | waiting_approval ─cancel─▶ cancelled
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared_protocol import decisions
from shared_protocol.brain import (
    FINAL_TASK_STATES,
    Claimant,
    Decision,
    ShadowRun,
    Task,
    TaskEvent,
    TaskEventKind,
    TaskOutcome,
    TaskSpend,
    TaskState,
    Verification,
)

from ..canary import bucket
from ..exceptions import InvalidRequest, InvalidTransition, NotFound, StaleClaim, TaskCancelled
from ._records import ClaimGrant, Compensation, CompensationDraft, LogEntry
from ._rules import check_holder, task_row

ENDS_PARKED = decisions.FINAL_STATES
"""A task parked on a decision that comes to one of these ends with it (`end_parked`): its runner would wait for
an approval that cannot come, and a runner that died would leave it waiting for ever."""


@dataclass(kw_only=True, frozen=True)
class StoredTask:
    """A task as an engine keeps it: the `Task` (with its history) and its current claim token, if claimed."""

    task: Task
    claim_token: str | None = None


Step = Callable[[StoredTask | None], StoredTask]
"""Given the stored task (None: there is none), what to store instead; raises to refuse (nothing is written)."""


@dataclass(kw_only=True, frozen=True)
class OutcomeReport:
    """What an outcome carries besides its state and summary."""

    by: str = ""
    verification: Verification | None = None
    evidence: dict[str, str] = field(default_factory=dict[str, str])
    spend: TaskSpend | None = None
    logic_version: str | None = None
    """If given, must be the claim's."""
    mode: str | None = None
    """If given, must be the claim's."""


def event(
    task: Task, kind: TaskEventKind, *, at: datetime, by: str, detail: dict[str, Any] | None = None, **who: str | None
) -> Task:
    """`task` with one more history event (agent and logic version: the claim's unless given)."""
    holder = task.claimed_by
    line = TaskEvent(
        at=at,
        kind=kind,
        by=by,
        agent=who.get("agent", holder.agent if holder is not None else None),
        logic_version=who.get("logic_version", task.logic_version),
        detail=detail or {},
    )
    return task.model_copy(update={"history": [*task.history, line]})


def created(task: Task) -> Task:
    """A new task with its first history event."""
    detail = {"title": task.title, "value_usd": task.value_usd}
    return event(task, "created", at=task.created_at, by=task.created_by, detail=detail)


def claim(stored: StoredTask, grant: ClaimGrant) -> StoredTask:
    task = stored.task.model_copy(
        update={
            "state": "claimed",
            "claimed_by": Claimant(body_id=grant.body_id, agent=grant.agent),
            "claimed_at": grant.at,
            "lease_expires": grant.lease_expires,
            "attempts": stored.task.attempts + 1,
            "claim_mode": grant.mode,
            "logic_version": grant.logic_version or None,
            "parked_decision_id": None,
        }
    )
    detail = {"body_id": grant.body_id, "mode": grant.mode, "attempt": task.attempts, "audit_seq": grant.audit_seq}
    return StoredTask(
        task=event(task, "claimed", at=grant.at, by=grant.by, detail=detail), claim_token=grant.claim_token
    )


def claimable(task: Task, grant: ClaimGrant) -> bool:
    """Whether `grant` may take `task`: queued, and for a shadow claim not shadowed by this agent and version."""
    if task.state != "queued":
        return False
    outside = grant.buckets is not None and not grant.buckets[0] <= bucket(task.id) < grant.buckets[1]
    if outside and (grant.waited_before is None or task.created_at >= grant.waited_before):
        return False
    if grant.mode != "shadow":
        return True
    return not any(r.agent == grant.agent and r.logic_version == grant.logic_version for r in task.shadow_runs)


def held(
    task_id: str,
    stored: StoredTask | None,
    claim_token: str,
    holder: str | None,
    *,
    states: tuple[TaskState, ...] = ("claimed",),
    doing: str = "do this",
) -> StoredTask:
    """The task, if `claim_token` is its current claim, `holder`'s when given, and it is in one of `states`."""
    if stored is None:
        raise NotFound(f"no task '{task_id}'")
    task = stored.task
    check_holder(task_id, task_row(task, stored.claim_token), holder)
    if task.state == "cancelled":
        why = next((e.detail.get("reason") for e in reversed(task.history) if e.kind == "cancelled"), None)
        raise TaskCancelled(f"task '{task_id}' was cancelled ({why or 'no reason given'}): stop working on it")
    if stored.claim_token is None or stored.claim_token != claim_token:
        raise StaleClaim(f"task '{task_id}' is {task.state} and this claim token is not its current one")
    if task.state not in states:
        raise InvalidTransition(f"task '{task_id}' is {task.state}: cannot {doing} (needs {' or '.join(states)})")
    return stored


def finish(
    stored: StoredTask, *, outcome: TaskOutcome, summary: str, at: datetime, report: OutcomeReport
) -> StoredTask:
    """An outcome: final for an IDE or live claim; a shadow run (and back to the queue) for a shadow claim."""
    task = stored.task
    if report.mode is not None and report.mode != task.claim_mode:
        raise InvalidRequest(f"this is a {task.claim_mode} claim, not {report.mode}", field="mode")
    if report.logic_version is not None and report.logic_version != (task.logic_version or ""):
        raise InvalidRequest(
            f"this claim was made by logic version {task.logic_version or '(none)'}, not {report.logic_version}",
            field="logic_version",
        )
    verification = report.verification
    if verification is not None and task.acceptance and verification.command != task.acceptance:
        raise InvalidRequest(
            f"verification.command is not the task's acceptance command ({task.acceptance!r})",
            field="verification.command",
        )
    verified = outcome == "succeeded" and verification is not None and verification.verified
    detail: dict[str, Any] = {"outcome": outcome, "summary": summary, "verified": verified}
    if verification is not None and verification.status is not None:
        detail["verification"] = verification.status
    if task.claim_mode == "shadow":
        holder = task.claimed_by
        run = ShadowRun(
            at=at,
            agent=holder.agent if holder is not None else "",
            logic_version=task.logic_version or "",
            outcome=outcome,
            summary=summary,
            verification=verification,
            spend=report.spend,
        )
        shadowed = event(task, "shadow_run", at=at, by=report.by, detail=detail)
        back = _unclaimed(shadowed).model_copy(update={"shadow_runs": [*task.shadow_runs, run]})
        return StoredTask(task=back, claim_token=None)
    done = task.model_copy(
        update={
            "state": outcome,
            "outcome_summary": summary,
            "finished_at": at,
            "lease_expires": None,
            "parked_decision_id": None,
            "verification": verification,
            "verified": verified,
            "evidence": dict(report.evidence),
            "spend": report.spend,
        }
    )
    return StoredTask(task=event(done, "outcome", at=at, by=report.by, detail=detail), claim_token=None)


def _unclaimed(task: Task) -> Task:
    return task.model_copy(
        update={
            "state": "queued",
            "claimed_by": None,
            "claimed_at": None,
            "lease_expires": None,
            "claim_mode": None,
            "logic_version": None,
            "parked_decision_id": None,
        }
    )


def lose_lease(stored: StoredTask, *, at: datetime) -> StoredTask:
    """A claimed task whose lease ran out goes back to the queue; its claim token goes stale."""
    task = stored.task
    holder = task.claimed_by
    detail = {"reason": "lease ran out", "body_id": holder.body_id if holder is not None else None}
    return StoredTask(task=_unclaimed(event(task, "lease_lost", at=at, by="lease", detail=detail)))


def renew(stored: StoredTask, *, lease_expires: datetime) -> StoredTask:
    return StoredTask(
        task=stored.task.model_copy(update={"lease_expires": lease_expires}), claim_token=stored.claim_token
    )


def park(stored: StoredTask, *, decision_id: str, reason: str, at: datetime, by: str) -> StoredTask:
    task = stored.task.model_copy(
        update={"state": "waiting_approval", "lease_expires": None, "parked_decision_id": decision_id}
    )
    detail = {"decision_id": decision_id, "reason": reason}
    return StoredTask(task=event(task, "parked", at=at, by=by, detail=detail), claim_token=stored.claim_token)


def resume(stored: StoredTask, *, lease_expires: datetime, at: datetime, by: str) -> StoredTask:
    decision_id = stored.task.parked_decision_id
    task = stored.task.model_copy(
        update={"state": "claimed", "lease_expires": lease_expires, "parked_decision_id": None}
    )
    detail = {"decision_id": decision_id}
    return StoredTask(task=event(task, "resumed", at=at, by=by, detail=detail), claim_token=stored.claim_token)


def end_parked(stored: StoredTask, decision: Decision, *, at: datetime, by: str) -> StoredTask:
    """A task parked on `decision`, which came to an end without approval: abandoned (a shadow claim: a shadow run,
    and back to the queue), as an outcome would, with the decision named; its claim token goes stale."""
    reason = f"decision {decision.id} {decision.state}"
    return finish(stored, outcome="abandoned", summary=reason, at=at, report=OutcomeReport(by=by))


def parked_by(task_id: str, stored: StoredTask | None, holder: str) -> StoredTask:
    """The task, if it waits for approval under `holder`'s claim (the holder gives it up without its claim token:
    its runner lost it)."""
    if stored is None:
        raise NotFound(f"no task '{task_id}'")
    task = stored.task
    check_holder(task_id, task_row(task, stored.claim_token), holder)
    if task.state == "cancelled":
        raise TaskCancelled(f"task '{task_id}' was cancelled: stop working on it")
    if task.state != "waiting_approval" or task.claimed_by is None:
        raise InvalidTransition(f"task '{task_id}' is {task.state}: only a parked task is given up this way")
    return stored


def cancel(task_id: str, stored: StoredTask | None, *, reason: str, at: datetime, by: str) -> StoredTask:
    if stored is None:
        raise NotFound(f"no task '{task_id}'")
    task = stored.task
    if task.state in FINAL_TASK_STATES:
        raise InvalidTransition(f"task '{task_id}' is {task.state} already: only a task not finished can be cancelled")
    detail = {"reason": reason, "from": task.state}
    done = task.model_copy(
        update={"state": "cancelled", "finished_at": at, "lease_expires": None, "parked_decision_id": None}
    )
    return StoredTask(task=event(done, "cancelled", at=at, by=by, detail=detail), claim_token=None)


def reversal_event(record: Compensation, *, at: datetime, by: str, undo_id: str | None) -> TaskEvent:
    """The history line of a task row put back by a reversal (an undo of a body's action or decision)."""
    return TaskEvent(
        at=at,
        kind="reversed",
        by=by,
        agent=record.before.get("claimed_agent"),
        logic_version=record.before.get("logic_version"),
        detail={
            "kind": record.kind,
            "action_id": record.action_id,
            "decision_id": record.decision_id,
            "undo_id": undo_id,
            "state": record.before.get("state"),
        },
    )


class TaskTransitions:
    """The task operations of `TaskStore` on top of an engine's one primitive, `_change`."""

    async def _change(
        self,
        task_id: str,
        step: Step,
        *,
        log: LogEntry | None = None,
        compensation: tuple[CompensationDraft, str] | None = None,
        at: datetime | None = None,
        settle: bool = False,
    ) -> Task:
        """In one transaction: read the task, `step` it, (with `settle`) settle the verifications it then waits for
        against the audit events stored already, write it, its new history events, the compensating record (draft
        and kind, at `at`) and `log`. Returns the task as written."""
        raise NotImplementedError

    async def finish_task(
        self,
        task_id: str,
        *,
        claim_token: str,
        outcome: TaskOutcome,
        summary: str,
        at: datetime,
        log: LogEntry,
        compensation: CompensationDraft | None = None,
        holder: str | None = None,
        report: OutcomeReport | None = None,
    ) -> Task:
        outcome_of = report or OutcomeReport(by=log.by)

        def step(stored: StoredTask | None) -> StoredTask:
            current = held(
                task_id, stored, claim_token, holder, states=("claimed", "waiting_approval"), doing="report an outcome"
            )
            return finish(current, outcome=outcome, summary=summary, at=at, report=outcome_of)

        kept = None if compensation is None else (compensation, "task_outcome")
        # (settled in the outcome's transaction: the body may have shipped its re-run already, and the compensating
        # record then holds the settled row, so undoing the outcome finds nothing changed since)
        return await self._change(task_id, step, log=log, compensation=kept, at=at, settle=True)

    async def renew_lease(
        self, task_id: str, *, claim_token: str, lease_expires: datetime, holder: str | None = None
    ) -> Task:
        def step(stored: StoredTask | None) -> StoredTask:
            current = held(task_id, stored, claim_token, holder, doing="renew its lease (resume it first)")
            return renew(current, lease_expires=lease_expires)

        return await self._change(task_id, step)

    async def park_task(
        self,
        task_id: str,
        *,
        claim_token: str,
        decision_id: str,
        reason: str,
        at: datetime,
        log: LogEntry,
        holder: str | None = None,
    ) -> Task:
        def step(stored: StoredTask | None) -> StoredTask:
            current = held(task_id, stored, claim_token, holder, doing="park it")
            return park(current, decision_id=decision_id, reason=reason, at=at, by=log.by)

        return await self._change(task_id, step, log=log)

    async def resume_task(
        self,
        task_id: str,
        *,
        claim_token: str,
        lease_expires: datetime,
        at: datetime,
        log: LogEntry,
        holder: str | None = None,
    ) -> Task:
        def step(stored: StoredTask | None) -> StoredTask:
            current = held(task_id, stored, claim_token, holder, states=("waiting_approval",), doing="resume it")
            return resume(current, lease_expires=lease_expires, at=at, by=log.by)

        return await self._change(task_id, step, log=log)

    async def abandon_parked_task(self, task_id: str, *, reason: str, at: datetime, log: LogEntry, holder: str) -> Task:
        def step(stored: StoredTask | None) -> StoredTask:
            current = parked_by(task_id, stored, holder)
            return finish(current, outcome="abandoned", summary=reason, at=at, report=OutcomeReport(by=log.by))

        return await self._change(task_id, step, log=log)

    async def cancel_task(self, task_id: str, *, reason: str, at: datetime, log: LogEntry) -> Task:
        return await self._change(
            task_id, lambda stored: cancel(task_id, stored, reason=reason, at=at, by=log.by), log=log
        )
