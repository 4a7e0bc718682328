"""Checking an outcome's verification against the body's own audit trail, which the brain ingests.

A runner reports `verified=true` with the `action_id` of its body's re-run of the task's acceptance command. That is
the runner's word; the body's audit event is the evidence. The brain keeps the claim `pending` (verified false) until
it holds that event of the claiming body (POST /v1/audit), then settles it: `confirmed` when the event is a
`run_command` the runner made (not one of the model's calls) for this task (`task_id`, from the call's `_meta`),
attested by the body (`attest`, under the verification key the body registered first: a hand-made event POSTed with
a body token alone is not), after the claim in the body's chain (its seq above the chain head the brain held when it
granted the claim: the brain's own order, never the body's clock), in the workspace root, with the task's acceptance
argv, that ran and exited 0 (and, for a pytest check, whose report from the body's pytest reporter says every
collected test passed: `shared_protocol.verdict`), and that confirmed no other verification (one re-run is the
evidence of one task's claim: the brain records which event confirmed which, `Evidence.uses`); `refuted` (with the
reason) otherwise.

Pure functions: the state engines call `settle_task` inside the transaction that stores the event, or the outcome's
own, so a claim and its evidence are never missed between two writes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared_protocol import AuditEvent
from shared_protocol.audit import attested
from shared_protocol.brain import Task, TaskEvent, Verification
from shared_protocol.verdict import event_report, pytest_start

AWAITING = "awaiting the body's audit event"


def pending(verification: Verification, *, body_id: str, after_seq: int) -> Verification:
    """A runner's verification as the brain first keeps it: a claim of `verified` is pending until checked; anything
    else is kept as the runner's report (no status)."""
    if not verification.verified:
        return verification.model_copy(update={"status": None, "detail": "", "body_id": None, "after_seq": None})
    return verification.model_copy(
        update={
            "verified": False,
            "status": "pending",
            "detail": f"{AWAITING} {verification.action_id} (body {body_id})",
            "body_id": body_id,
            "after_seq": after_seq,
        }
    )


def is_pending(verification: Verification | None) -> bool:
    return verification is not None and verification.status == "pending"


EventKey = tuple[str, str]
"""An audit event of a body: (body id, action id)."""


@dataclass(kw_only=True)
class Evidence:
    """What settling a task's verifications reads, looked up by the state engine in its transaction."""

    events: dict[EventKey, AuditEvent] = field(default_factory=dict[EventKey, AuditEvent])
    """The audit events awaited, by the (body id, action id) a verification names."""
    keys: dict[str, str | None] = field(default_factory=dict[str, str | None])
    """The verification key each claiming body registered (None: none)."""
    uses: dict[EventKey, str] = field(default_factory=dict[EventKey, str])
    """The verification (`slot`) each event already confirmed, by the event's own (body id, id)."""
    new_uses: list[tuple[EventKey, str, str]] = field(default_factory=list[tuple[EventKey, str, str]])
    """What `settle_task` confirmed here: (event, task id, slot), for the engine to record in the same transaction."""


def slot(task_id: str, *, shadow_of: tuple[str, str] | None = None) -> str:
    """Names one verification: a task's own, or a shadow run's (agent, logic version)."""
    return task_id if shadow_of is None else f"{task_id} shadow {shadow_of[0]} {shadow_of[1]}"


def refutation(
    verification: Verification,
    event: AuditEvent,
    acceptance: str,
    *,
    task_id: str,
    key: str | None,
    used_by: str | None = None,
    own: str | None = None,
) -> str | None:
    """Why `event` does not prove `verification` of task `task_id` (None: it does). `key`: the claiming body's
    verification key; `used_by`: the verification the event confirmed already (None: none), `own` this one's."""
    if event.body_id != verification.body_id:
        return f"audit event {event.id} is body '{event.body_id}''s, not the claiming body's"
    if key is None:
        return (
            f"body '{event.body_id}' registered no verification key, so its audit events cannot be told from "
            "hand-made ones (a body registers its key when it links to the brain)"
        )
    if not attested(key, event):
        what = "carries no attestation" if event.attest is None else "has an attestation that is not the body's"
        return (
            f"audit event {event.id} {what}: it was not shipped by the body whose verification key the brain holds "
            "(a hand-made or altered event)"
        )
    if event.kind != "tool_call" or event.tool != "run_command":
        return f"audit event {event.id} is not a run_command (it is {event.tool or event.kind})"
    if event.turn is not None:
        return f"audit event {event.id} is a call the model made, not the runner's re-run"
    if event.task_id != task_id:
        named = "names no task" if event.task_id is None else f"was for task {event.task_id!r}"
        return f"audit event {event.id} {named}, not this one ({task_id!r}): a re-run is the evidence of its own task"
    if used_by is not None and used_by != own:
        return f"audit event {event.id} confirmed another verification already ({used_by}): one re-run verifies one"
    if verification.after_seq is not None and event.seq <= verification.after_seq:
        return (
            f"audit event {event.id} (seq {event.seq}) came before the claim: the brain held the body's chain through "
            f"seq {verification.after_seq} when it granted the claim"
        )
    arguments: dict[str, Any] = event.arguments
    try:
        expected = shlex.split(acceptance)
    except ValueError as exc:
        return f"the task's acceptance command cannot be split into arguments: {exc}"
    if arguments.get("argv") != expected:
        return f"audit event {event.id} ran {arguments.get('argv')!r}, not the acceptance command {expected!r}"
    if arguments.get("cwd") not in (None, "", "."):
        return f"audit event {event.id} ran in {arguments.get('cwd')!r}, not the workspace root"
    if event.outcome not in ("ok", "shadow"):
        return f"audit event {event.id} was {event.outcome} ({event.code or 'no code'}: {event.message or ''})"
    exit_code = event.detail.get("exit_code")
    if exit_code != 0 or event.detail.get("timed_out"):
        return f"audit event {event.id} exited with {exit_code!r}, not 0"
    if pytest_start(expected) is not None:
        report = event_report(event.detail)
        if report is None:
            return (
                f"audit event {event.id} carries no pytest report: the acceptance command is a pytest run, whose "
                "verdict is what pytest reported to the body, not the exit code"
            )
        if report.verdict != "passed":
            return f"audit event {event.id} exited 0, but its pytest report is no pass: {report.reason}"
    return None


def settled(
    verification: Verification,
    event: AuditEvent,
    acceptance: str,
    *,
    task_id: str,
    key: str | None,
    used_by: str | None = None,
    own: str | None = None,
) -> Verification:
    """A pending verification, settled by the body's audit event it names."""
    why = refutation(verification, event, acceptance, task_id=task_id, key=key, used_by=used_by, own=own)
    if why is None:
        exit_code = event.detail.get("exit_code")
        return verification.model_copy(
            update={
                "verified": True,
                "exit_code": exit_code if isinstance(exit_code, int) else verification.exit_code,
                "status": "confirmed",
                "detail": f"the body's audit event {event.id} shows the acceptance command exited 0"
                + (
                    f" and pytest reported all {report.collected} collected tests passed"
                    if (report := event_report(event.detail)) is not None
                    else ""
                ),
            }
        )
    return verification.model_copy(update={"verified": False, "status": "refuted", "detail": why})


def settle_task(task: Task, evidence: Evidence, *, at: datetime) -> Task | None:
    """`task` with every pending verification (its own, its shadow runs') that `evidence` can settle now, and a
    history line for each; None when none could be. What it confirms goes on `evidence.uses` and `new_uses`."""
    lines: list[TaskEvent] = []
    update: dict[str, Any] = {}
    own = task.verification
    if own is not None and is_pending(own):
        done = _settle_one(own, evidence, task, slot(task.id))
        if done is not None:
            update["verification"] = done
            update["verified"] = done.verified and task.state == "succeeded"
            lines.append(_line(done, at=at, agent=task.claimed_by.agent if task.claimed_by else None, shadow=False))
    runs = list(task.shadow_runs)
    for index, run in enumerate(runs):
        if run.verification is None or not is_pending(run.verification):
            continue
        done = _settle_one(run.verification, evidence, task, slot(task.id, shadow_of=(run.agent, run.logic_version)))
        if done is not None:
            runs[index] = run.model_copy(update={"verification": done})
            update["shadow_runs"] = runs
            lines.append(_line(done, at=at, agent=run.agent, shadow=True, logic_version=run.logic_version))
    if not lines:
        return None
    return task.model_copy(update={**update, "history": [*task.history, *lines]})


def _settle_one(verification: Verification, evidence: Evidence, task: Task, own: str) -> Verification | None:
    if verification.body_id is None or verification.action_id is None:
        return None
    event = evidence.events.get((verification.body_id, verification.action_id))
    if event is None:
        return None
    used = (event.body_id, event.id)
    done = settled(
        verification,
        event,
        task.acceptance,
        task_id=task.id,
        key=evidence.keys.get(verification.body_id),
        used_by=evidence.uses.get(used),
        own=own,
    )
    if done.verified and used not in evidence.uses:
        evidence.uses[used] = own
        evidence.new_uses.append((used, task.id, own))
    return done


def _line(
    verification: Verification, *, at: datetime, agent: str | None, shadow: bool, logic_version: str | None = None
) -> TaskEvent:
    detail = {
        "action_id": verification.action_id,
        "verified": verification.verified,
        "status": verification.status,
        "detail": verification.detail,
        "shadow_run": shadow,
    }
    return TaskEvent(at=at, kind="verification", by="audit", agent=agent, logic_version=logic_version, detail=detail)


def awaited(task: Task) -> set[tuple[str, str]]:
    """The (body id, action id) pairs `task` waits for."""
    found: set[tuple[str, str]] = set()
    for verification in [task.verification, *(run.verification for run in task.shadow_runs)]:
        if verification is not None and is_pending(verification) and verification.body_id and verification.action_id:
            found.add((verification.body_id, verification.action_id))
    return found
