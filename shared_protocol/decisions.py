"""Decisions: the approval rules, the decision record, and its life, as pure functions.

The brain and standalone bodies both call these; their stores only load, compare-and-set and
save what they return. The rules, from the specification (the first matching row wins):

| measured impact                                  | needs       |
|--------------------------------------------------|-------------|
| > 10 files, > 1000 API calls or > $100           | `blocked`   |
| ≥ 5 files or ≥ $50                               | `consensus` |
| > $50, or a stated confidence < 0.70             | `human`     |
| otherwise                                        | `none`      |

A standalone body has no panel: a human approval stands in for consensus there. The brain gives a consensus
decision a panel and counts votes (`shared_protocol.consensus`, `brain_server.governance`); every verdict is still
an `Answer`. A decision's life:

    created ──rules──▶ approved (needs none) | denied (blocked) | pending (human, consensus)
    pending ──approve──▶ approved      pending ──deny──▶ denied
    pending ──deadline──▶ expired      (silence is never consent: expired is a denial)
    pending | approved ──override (captain)──▶ overridden

Every step appends an `Answer` (who, what, why, when) and `tally` reads the answers into the
state: votes (several answers before a verdict) will change `tally`, not the stores.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final, Literal

from pydantic import Field, field_validator

from ._base import Identifier, NonEmpty, ProtocolModel
from .audit import Impact
from .exceptions import AnswerRefused

RULES_VERSION = "1"
"""Recorded on every decision, so a decision can be explained by the rules it was judged under."""

Needs = Literal["none", "human", "consensus", "blocked"]
"""What a decision needs: nothing, a human, consensus (a panel's quorum; a standalone body's: a human), or it is never
allowed."""

DecisionState = Literal["pending", "approved", "denied", "expired", "overridden"]
"""`expired` is a denial by silence; `overridden` is a captain's veto, even of an approved decision."""

Verdict = Literal["approved", "denied", "overridden", "expired"]
"""The state an answer moved a decision to: every state but `pending`."""

FINAL_STATES: frozenset[DecisionState] = frozenset({"denied", "expired", "overridden"})
"""No answer moves a decision out of these; `approved` is not final, as a captain may still veto it."""

Role = Literal["body", "reviewer", "approver", "captain", "metrics"]
"""A brain token's role, recorded with its answers. body: the body endpoints; reviewer: an agent's vote on the
decisions its panel seat (or its captain agent's powers) lets it answer, bound to that one agent; approver: read
status, approve and deny (a human's vote); captain: an approver who may also kill, resume and override; metrics: a
scraper's, GET /metrics and nothing else (never answers)."""

VoteValue = Literal["approve", "deny", "abstain"]
"""A voter's answer to a decision before any verdict; only the voter's latest vote counts."""

LadderStepKind = Literal["deadlock", "captain_agent", "priority", "human_captain", "denied"]
"""The steps a consensus decision takes when its panel reaches no quorum in time (or ties): recorded on it."""

AnswerKind = Literal["approve", "deny", "override"]
"""What a person answers: approve or deny a pending decision, or override (veto) one not yet final."""

RULES: Final = "rules"
"""`Answer.by` when the rules settled a decision as it was created."""
DEADLINE: Final = "deadline"
"""`Answer.by` when nobody answered in time."""

APPROVED_BY_RULES: Final = "below every approval threshold"
DENIED_BY_RULES: Final = "over the blast radius: never allowed"
EXPIRED_AT_DEADLINE: Final = "no answer by the deadline: denied"

_VERDICTS: dict[AnswerKind, Verdict] = {"approve": "approved", "deny": "denied", "override": "overridden"}


# --- the rules -------------------------------------------------------------------------


class ApprovalThresholds(ProtocolModel):
    """The numbers behind `classify`, with the specification's defaults. Configurable; never loosened by an agent."""

    blocked_files: int = Field(default=10, ge=0, description="More files than this in one action: never allowed.")
    blocked_api_calls: int = Field(default=1000, ge=0, description="More API calls than this: never allowed.")
    blocked_usd: float = Field(default=100.0, ge=0, description="More money than this: never allowed.")
    consensus_files: int = Field(default=5, ge=1, description="At least this many files: consensus.")
    consensus_usd: float = Field(default=50.0, ge=0, description="At least this much money: consensus.")
    human_usd: float = Field(default=50.0, ge=0, description="More money than this: a human.")
    human_confidence: float = Field(default=0.70, ge=0, le=1, description="A stated confidence below this: a human.")


DEFAULT_THRESHOLDS = ApprovalThresholds()


def classify(
    impact: Impact,
    confidence: float,
    thresholds: ApprovalThresholds = DEFAULT_THRESHOLDS,
    *,
    irreversible: bool = False,
) -> Needs:
    """What an action of this measured impact, requested with this confidence, needs before it may act.

    An irreversible action (one Swarm cannot undo) needs at least a human.
    """
    t = thresholds
    if impact.files > t.blocked_files or impact.api_calls > t.blocked_api_calls or impact.usd > t.blocked_usd:
        return "blocked"
    if impact.files >= t.consensus_files or impact.usd >= t.consensus_usd:
        return "consensus"
    if impact.usd > t.human_usd or confidence < t.human_confidence or irreversible:
        return "human"
    return "none"


def initial_state(needs: Needs) -> DecisionState:
    """A decision's state the moment the rules have classified it: only a human can move `pending` on."""
    if needs == "blocked":
        return "denied"
    if needs == "none":
        return "approved"
    return "pending"


def covers(approved: Impact, measured: Impact) -> bool:
    """Whether a decision approved for `approved` covers an action that measures `measured` (at least that much)."""
    return (
        measured.files <= approved.files and measured.api_calls <= approved.api_calls and measured.usd <= approved.usd
    )


# --- the record ------------------------------------------------------------------------


class DecisionRequest(ProtocolModel):
    """`POST /v1/decisions`: an agent asks for approval of an action of this measured impact."""

    summary: NonEmpty
    rationale: NonEmpty
    confidence: float = Field(ge=0, le=1)
    impact: Impact = Field(default_factory=Impact)
    options: list[str] = Field(default_factory=list[str])
    agent: Identifier
    body_id: Identifier
    action: str | None = Field(default=None, description="Free text of the action the decision covers.")
    files: list[str] = Field(
        default_factory=list[str],
        description="The workspace paths (files or directories) the action may change; an approval covers only them.",
        max_length=1000,
    )
    irreversible: bool = Field(default=False, description="The action cannot be undone: a human must approve it.")
    deadline_s: int | None = Field(
        default=None, gt=0, le=30 * 24 * 3600, description="Seconds to answer; default from the brain's settings."
    )

    @field_validator("impact")
    @classmethod
    def _impact_not_negative(cls, impact: Impact) -> Impact:
        if impact.files < 0 or impact.api_calls < 0 or impact.usd < 0:
            raise ValueError("impact values must not be negative")
        return impact


OverrideAction = Literal["veto", "force"]
"""A captain's override: `veto` (overridden, even an approved decision) or `force` (approved; a human captain's)."""


class Answer(ProtocolModel):
    """Who moved a decision to `verdict`, and why. `by` is `rules`, `deadline` or `panel` when no person did."""

    verdict: Verdict
    by: str
    role: Role | None = None
    token_id: str | None = None
    reason: str
    at: datetime
    override: OverrideAction | None = None
    """Set when a captain's override gave this verdict (a human captain's, or the captain agent's veto)."""


class Vote(ProtocolModel):
    """One voter's vote on a decision, as the brain recorded it: who (from the token, never the request), what, why,
    when. A later vote of the same `voter` replaces this one in the count; both stay on the decision."""

    voter: str
    """The seat it counts for: `rules:<policy>` (the brain's rule reviewers), an agent's name (its reviewer token),
    or `human:<label>` (a human's approver or captain token)."""
    value: VoteValue
    rationale: str
    at: datetime
    role: Role | None = None
    """The token's role (None: the brain's own rule reviewers)."""
    token_id: str | None = None
    agent: str | None = None
    """The agent that voted (a reviewer token's), else None."""
    logic_version: str | None = None
    """The rule reviewers' rules version, or the logic version an agent reviewer stated."""
    shadow: bool = False
    """Recorded, not counted: the vote of a reviewer agent's logic version that does not vote live on this decision
    (a new version in shadow, a canary outside its share, a version rolled back; `brain_server.rollouts`). It never
    fills a seat, replaces a counted vote or breaks a deadlock."""


class LadderStep(ProtocolModel):
    """One step of a deadlock's ladder, as it happened: `captain_agent` → `priority` → `human_captain` → `denied`."""

    kind: LadderStepKind
    at: datetime
    reason: str


class Decision(ProtocolModel):
    """An approval request and its life: `needs` by the rules, `answers` in order, `state` their tally."""

    id: str
    state: DecisionState
    needs: Needs
    summary: str
    rationale: str
    confidence: float
    impact: Impact
    options: list[str]
    agent: str
    body_id: str
    action: str | None
    files: list[str] = Field(default_factory=list[str])
    """The paths the approved action may change (a directory covers what is below it); empty: any (counts only)."""
    created_at: datetime
    deadline: datetime
    answers: list[Answer]
    rules_version: str
    panel: list[str] = Field(default_factory=list[str])
    """The seats whose votes count toward the quorum (a consensus decision's; empty: no panel)."""
    quorum: int = 0
    """Approvals (or denials) of `panel` seats that settle it; 0: no panel."""
    human_required: bool = False
    """It also needs a human's approval besides the quorum (over the human thresholds, or irreversible)."""
    votes: list[Vote] = Field(default_factory=list[Vote])
    """Every vote, oldest first (a replaced one stays: the record of the change)."""
    quorum_deadline: datetime | None = None
    """When the panel's time runs out (a deadlock from then on); None: no panel."""
    ladder: list[LadderStep] = Field(default_factory=list[LadderStep])
    """The deadlock's steps so far, oldest first."""
    task_id: str | None = None
    """The task the proposing body held (claimed or parked) as its agent when it asked, if any: the task whose
    value is its priority, and to which reviewer agents' LLM spend on it is charged."""


# --- its life --------------------------------------------------------------------------


def new_decision_id() -> str:
    """A fresh decision id: the one impure function here (the clock and randomness), kept beside the others."""
    return f"dec_{time.time_ns():x}{secrets.token_hex(4)}"


def new_decision(
    request: DecisionRequest,
    *,
    decision_id: str,
    now: datetime,
    default_deadline_s: int,
    thresholds: ApprovalThresholds = DEFAULT_THRESHOLDS,
) -> Decision:
    """`request` as the rules classify it; a decision that needs nobody is answered at once by `rules`."""
    needs = classify(request.impact, request.confidence, thresholds, irreversible=request.irreversible)
    state = initial_state(needs)
    answers: list[Answer] = []
    if state != "pending":
        reason = APPROVED_BY_RULES if state == "approved" else DENIED_BY_RULES
        answers.append(Answer(verdict=state, by=RULES, reason=reason, at=now))
    return Decision(
        id=decision_id,
        state=tally(answers),
        needs=needs,
        summary=request.summary,
        rationale=request.rationale,
        confidence=request.confidence,
        impact=request.impact,
        options=list(request.options),
        agent=request.agent,
        body_id=request.body_id,
        action=request.action,
        files=request.files,
        created_at=now,
        deadline=now + timedelta(seconds=request.deadline_s or default_deadline_s),
        answers=answers,
        rules_version=RULES_VERSION,
    )


def is_due(decision: Decision, now: datetime) -> bool:
    """A pending decision whose deadline has come: `expire` it before anything else."""
    return decision.state == "pending" and decision.deadline <= now


def expire(decision: Decision, now: datetime) -> Decision:
    """The deadline came with no answer: denied by silence.

    `AnswerRefused` (`not_pending`) if an answer came first; before the deadline it is a caller's bug (`ValueError`).
    """
    if decision.state != "pending":
        raise _not_pending(decision, decision.state)
    if not is_due(decision, now):
        raise ValueError(f"decision {decision.id} is not due before {decision.deadline.isoformat()}")
    return _appended(decision, Answer(verdict="expired", by=DEADLINE, reason=EXPIRED_AT_DEADLINE, at=now))


def answer(
    decision: Decision,
    kind: AnswerKind,
    *,
    by: str,
    reason: str,
    now: datetime,
    role: Role | None = None,
    token_id: str | None = None,
) -> Decision:
    """A person's answer, recorded with who gave it (`by`, and the token's `role` and id when known) and why.

    approve and deny need a pending decision (`AnswerRefused`, `not_pending`); override takes any decision not yet
    final, an approved one included (`already_final`). A decision past its deadline counts as expired even before a
    store has recorded it, so an answer never beats the deadline.
    """
    state: DecisionState = "expired" if is_due(decision, now) else decision.state
    if kind == "override":
        if state in FINAL_STATES:
            raise AnswerRefused(
                f"decision {decision.id} is already {state}: nothing to override",
                code="already_final",
                decision_id=decision.id,
            )
    elif state != "pending":
        raise _not_pending(decision, state)
    record = Answer(verdict=_VERDICTS[kind], by=by, role=role, token_id=token_id, reason=reason, at=now)
    return _appended(decision, record)


def tally(answers: Sequence[Answer]) -> DecisionState:
    """The state a decision's answers, oldest first, add up to.

    Until voting exists every answer is a verdict (the rules', one human's standing in for consensus, the
    deadline's, a captain's veto), so the latest one is the state. Votes change this function: answers counted
    toward a quorum before any verdict.
    """
    return answers[-1].verdict if answers else "pending"


def _appended(decision: Decision, record: Answer) -> Decision:
    answers = [*decision.answers, record]
    return decision.model_copy(update={"answers": answers, "state": tally(answers)})


def _not_pending(decision: Decision, state: DecisionState) -> AnswerRefused:
    return AnswerRefused(f"decision {decision.id} is {state}, not pending", code="not_pending", decision_id=decision.id)
