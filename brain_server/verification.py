"""Checking an outcome's verification against the body's own audit trail, which the brain ingests.

A runner reports `verified=true` with the `action_id` of its body's re-run of the task's acceptance command. That is
the runner's word; the body's audit event is the evidence. The brain keeps the claim `pending` (verified false) until
it holds that event of the claiming body (POST /v1/audit), then settles it: `confirmed` when the event is a
`run_command` the runner made (not one of the model's calls), after the claim in the body's chain (its seq above the
chain head the brain held when it granted the claim: the brain's own order, never the body's clock), in the workspace
root, with the task's acceptance argv, that ran and exited 0; `refuted` (with the reason) otherwise.

Pure functions: the state engines call `settle_task` inside the transaction that stores the event (or, right after
an outcome, the one that looks the event up), so a claim and its evidence are never missed between two writes.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared_protocol import AuditEvent
from shared_protocol.brain import Task, TaskEvent, Verification

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


def refutation(verification: Verification, event: AuditEvent, acceptance: str) -> str | None:
    """Why `event` does not prove `verification` (None: it does)."""
    if event.body_id != verification.body_id:
        return f"audit event {event.id} is body '{event.body_id}''s, not the claiming body's"
    if event.kind != "tool_call" or event.tool != "run_command":
        return f"audit event {event.id} is not a run_command (it is {event.tool or event.kind})"
    if event.turn is not None:
        return f"audit event {event.id} is a call the model made, not the runner's re-run"
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
    return None


def settled(verification: Verification, event: AuditEvent, acceptance: str) -> Verification:
    """A pending verification, settled by the body's audit event it names."""
    why = refutation(verification, event, acceptance)
    if why is None:
        exit_code = event.detail.get("exit_code")
        return verification.model_copy(
            update={
                "verified": True,
                "exit_code": exit_code if isinstance(exit_code, int) else verification.exit_code,
                "status": "confirmed",
                "detail": f"the body's audit event {event.id} shows the acceptance command exited 0",
            }
        )
    return verification.model_copy(update={"verified": False, "status": "refuted", "detail": why})


def settle_task(task: Task, find: Callable[[str, str], AuditEvent | None], *, at: datetime) -> Task | None:
    """`task` with every pending verification (its own, its shadow runs') that `find(body_id, action_id)` can
    settle now, and a history line for each; None when none could be."""
    lines: list[TaskEvent] = []
    update: dict[str, Any] = {}
    own = task.verification
    if own is not None and is_pending(own):
        done = _settle_one(own, find, task.acceptance)
        if done is not None:
            update["verification"] = done
            update["verified"] = done.verified and task.state == "succeeded"
            lines.append(_line(done, at=at, agent=task.claimed_by.agent if task.claimed_by else None, shadow=False))
    runs = list(task.shadow_runs)
    for index, run in enumerate(runs):
        if run.verification is None or not is_pending(run.verification):
            continue
        done = _settle_one(run.verification, find, task.acceptance)
        if done is not None:
            runs[index] = run.model_copy(update={"verification": done})
            update["shadow_runs"] = runs
            lines.append(_line(done, at=at, agent=run.agent, shadow=True, logic_version=run.logic_version))
    if not lines:
        return None
    return task.model_copy(update={**update, "history": [*task.history, *lines]})


def _settle_one(
    verification: Verification, find: Callable[[str, str], AuditEvent | None], acceptance: str
) -> Verification | None:
    if verification.body_id is None or verification.action_id is None:
        return None
    event = find(verification.body_id, verification.action_id)
    return None if event is None else settled(verification, event, acceptance)


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
