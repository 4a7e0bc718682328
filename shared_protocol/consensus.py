"""Counting a panel's votes: pure functions, no clock, no store.

A consensus decision has a panel of seats and a quorum larger than half the panel (so approval and denial cannot
both be reached). Only each seat's latest vote counts; votes of voters without a seat, and shadow votes (a reviewer
agent's logic version not live yet), are not counted here.

    approvals ≥ quorum                                  → approved
    denials ≥ quorum                                    → denied
    approvals + seats not yet voted < quorum:
        approvals == denials > 0                        → tie (a deadlock: the captain's ladder decides)
        otherwise                                       → unreachable (denied: 3 can no longer be reached)
    otherwise                                           → open (waiting for votes, until the panel's deadline)

An abstention is a vote: it fills its seat and approves nothing (a later vote of that seat replaces it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .decisions import Vote

Outcome = Literal["approved", "denied", "unreachable", "tie", "open"]

RULE_REVIEWERS: tuple[str, ...] = ("rules:cost", "rules:files", "rules:paths", "rules:confidence", "rules:value")
"""The brain's own reviewers, each a different policy (see `brain_server.governance`): the default panel, so a
consensus needs no model. They vote when the decision is created."""
HUMAN_SEAT = "human:"
"""A seat held by a human: `human:<token label>` (an approver or captain token with that label)."""
DEFAULT_QUORUM = 3
DEFAULT_DEADLINE_S = 1800


@dataclass(kw_only=True, frozen=True)
class Count:
    """A panel's votes as they stand."""

    approvals: int
    denials: int
    abstentions: int
    missing: int
    """Seats that have not voted."""
    outcome: Outcome


def latest(votes: Sequence[Vote]) -> dict[str, Vote]:
    """Each voter's latest counted vote (votes are oldest first; a shadow vote is kept on the decision, never
    counted: `Vote.shadow`)."""
    by_voter: dict[str, Vote] = {}
    for vote in votes:
        if not vote.shadow:
            by_voter[vote.voter] = vote
    return by_voter


def valid_quorum(panel_size: int, quorum: int) -> bool:
    """A quorum settles one way only: more than half the panel, and no more than all of it."""
    return panel_size >= 1 and panel_size < 2 * quorum and quorum <= panel_size


def count(votes: Sequence[Vote], panel: Sequence[str], quorum: int) -> Count:
    """The panel's count of `votes` (`ValueError` for a quorum `valid_quorum` refuses: a caller's bug)."""
    if not valid_quorum(len(set(panel)), quorum):
        raise ValueError(f"quorum {quorum} does not settle a panel of {len(set(panel))} one way only")
    seats = set(panel)
    current = [vote for voter, vote in latest(votes).items() if voter in seats]
    approvals = sum(1 for vote in current if vote.value == "approve")
    denials = sum(1 for vote in current if vote.value == "deny")
    abstentions = len(current) - approvals - denials
    missing = len(seats) - len(current)
    outcome: Outcome
    if approvals >= quorum:
        outcome = "approved"
    elif denials >= quorum:
        outcome = "denied"
    elif approvals + missing < quorum:
        outcome = "tie" if approvals == denials > 0 else "unreachable"
    else:
        outcome = "open"
    return Count(approvals=approvals, denials=denials, abstentions=abstentions, missing=missing, outcome=outcome)
