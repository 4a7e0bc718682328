"""What the brain stores about waking humans: escalations (one per decision or alert) and answer tokens."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import PageKind

EscalationState = Literal["active", "acknowledged", "resolved", "exhausted"]
"""active: climbing the ladder; acknowledged: someone is on it (no more pages, a decision still expires);
resolved: answered or expired; exhausted: an alert paged through the whole ladder and its repeats."""

OPEN_STATES: tuple[EscalationState, ...] = ("active", "acknowledged")

AnswerVerb = Literal["approve", "deny", "ack", "gather"]


class Escalation(BaseModel):
    """One decision or alert on its way up the ladder. Written with compare-and-set on `version`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    """The decision id, or the alert id (`alr_…`)."""
    kind: PageKind
    state: EscalationState = "active"
    title: str
    summary: str
    facts: dict[str, str] = Field(default_factory=dict[str, str])
    body_id: str = ""
    dedup_key: str | None = None
    """Alerts with the same key (kind and body) join an open one instead of starting a new ladder."""
    created_at: datetime
    deadline: datetime | None = None
    """A decision's deadline: unanswered by then it is denied, and the ladder stops."""
    next_step: int = 0
    """The next rung (levels, then repeats of the last level) to page."""
    next_at: datetime | None = None
    """When `next_step` is due; None when nothing more will be paged."""
    pages_sent: int = 0
    occurrences: int = 1
    """How many alerts were folded into this one by deduplication."""
    version: int = 0
    closed_by: str | None = None
    closed_reason: str = ""
    updated_at: datetime


def protect_escalation(protect: Callable[[str], str], escalation: Escalation) -> Escalation:
    """An escalation record with its text through `protect` (`[privacy]`: what it quotes — a decision's summary, a
    body's refusal message — encrypted before it is stored)."""
    return escalation.model_copy(
        update={
            "title": protect(escalation.title),
            "summary": protect(escalation.summary),
            "facts": {label: protect(value) for label, value in escalation.facts.items()},
            "closed_reason": protect(escalation.closed_reason),
        }
    )


@dataclass(kw_only=True, frozen=True)
class AnswerToken:
    """A single-use capability to answer one subject from one page (stored as its hash only)."""

    token_hash: str
    page_id: str
    subject_id: str
    verb: AnswerVerb
    channel: str
    target: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


def hash_answer_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
