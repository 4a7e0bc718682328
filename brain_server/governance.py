"""A decision's life, as pure functions: created by the rules, answered by humans, expired by the clock.

    created ──rules──▶ approved (needs none) | denied (blocked) | pending (human, consensus)
    pending ──approve──▶ approved      pending ──deny──▶ denied
    pending ──deadline──▶ expired      (silence is never consent: expired is a denial)
    pending | approved ──override (captain)──▶ overridden

Every transition appends an `Answer` saying who and why. The state engine stores the result
only if the decision is still in the state these functions saw.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timedelta
from typing import Literal

from shared_protocol.brain import Answer, Decision, DecisionRequest
from shared_protocol.decisions import RULES_VERSION, ApprovalThresholds, classify, initial_state

from .auth import Principal
from .exceptions import AlreadyFinal, NotPending

Verb = Literal["approve", "deny", "override"]

_RULES_REASON = {
    "approved": "below every approval threshold",
    "denied": "over the blast radius: never allowed",
}


def new_decision_id() -> str:
    return f"dec_{time.time_ns():x}{secrets.token_hex(4)}"


def new_decision(
    request: DecisionRequest,
    *,
    decision_id: str,
    now: datetime,
    default_deadline_s: int,
    thresholds: ApprovalThresholds,
) -> Decision:
    """Classify a request by the rules; those that need nobody are answered at once by `rules`."""
    needs = classify(request.impact, request.confidence, thresholds, irreversible=request.irreversible)
    state = initial_state(needs)
    answers: list[Answer] = []
    if state != "pending":
        answers.append(Answer(verdict=state, by="rules", reason=_RULES_REASON[state], at=now))
    return Decision(
        id=decision_id,
        state=state,
        needs=needs,
        summary=request.summary,
        rationale=request.rationale,
        confidence=request.confidence,
        impact=request.impact,
        options=list(request.options),
        agent=request.agent,
        body_id=request.body_id,
        action=request.action,
        created_at=now,
        deadline=now + timedelta(seconds=request.deadline_s or default_deadline_s),
        answers=answers,
        rules_version=RULES_VERSION,
    )


def is_due(decision: Decision, now: datetime) -> bool:
    """A pending decision whose deadline has come."""
    return decision.state == "pending" and decision.deadline <= now


def expire(decision: Decision, now: datetime) -> Decision:
    """The deadline passed with no answer: denied by silence."""
    answer = Answer(verdict="expired", by="deadline", reason="no answer by the deadline: denied", at=now)
    return decision.model_copy(update={"state": "expired", "answers": [*decision.answers, answer]})


def answer(decision: Decision, verb: Verb, *, by: Principal, reason: str, now: datetime) -> Decision:
    """A human's answer. Raises `NotPending` (approve, deny) or `AlreadyFinal` (override) if it comes too late.

    The caller expires a due decision first (`is_due`), so an answer never beats its deadline.
    """
    if verb == "override":
        if decision.state not in ("pending", "approved"):
            raise AlreadyFinal(f"decision {decision.id} is already {decision.state}: nothing to override")
        verdict: Literal["approved", "denied", "overridden"] = "overridden"
    else:
        if decision.state != "pending":
            raise NotPending(f"decision {decision.id} is {decision.state}, not pending")
        verdict = "approved" if verb == "approve" else "denied"
    record = Answer(verdict=verdict, by=by.name, role=by.role, token_id=by.token_id, reason=reason, at=now)
    return decision.model_copy(update={"state": verdict, "answers": [*decision.answers, record]})
