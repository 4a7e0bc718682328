"""The approval rules: what a decision of a given impact and confidence needs before it may act.

Pure functions shared by the brain (which applies them to every decision it is asked for)
and by standalone bodies (which apply the same rules locally). From the specification:

| measured impact                                  | needs       |
|--------------------------------------------------|-------------|
| > 10 files, > 1000 API calls or > $100           | `blocked`   |
| ≥ 5 files or ≥ $50                               | `consensus` |
| > $50, or a stated confidence < 0.70             | `human`     |
| otherwise                                        | `none`      |

The first matching row wins. Until voting exists, a human approval stands in for consensus.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import ProtocolModel
from .audit import Impact

RULES_VERSION = "1"
"""Recorded on every decision, so a decision can be explained by the rules it was judged under."""

Needs = Literal["none", "human", "consensus", "blocked"]
"""What a decision needs: nothing, a human, consensus (a human until voting exists), or it is never allowed."""

DecisionState = Literal["pending", "approved", "denied", "expired", "overridden"]
"""`expired` is a denial by silence; `overridden` is a captain's veto, even of an approved decision."""

FINAL_STATES: frozenset[DecisionState] = frozenset({"denied", "expired", "overridden"})


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
