"""Choosing among competing proposals for one task or goal: pure functions, no clock, no store.

Each reviewer's ballot says which proposals it finds acceptable (approval voting) and, optionally, its order of
preference (a Borda count). `rank` then

1. keeps the acceptable proposals: those approved by at least `quorum` ballots (approval voting);
2. orders them by Borda score: on each ballot that ranks `k` of the `m` candidates, the proposal in place `i`
   (0-based) gets `m - 1 - i` points and an unranked one 0 — so a ballot's points sum to
   `m(m-1)/2 - (m-k)(m-k-1)/2`, and a full ranking's to `m(m-1)/2` (the Borda sum invariant);
3. breaks a tie in Borda score, in this order: more approvals, then the higher priority (the value of the task
   the proposal is for: it orders, it never approves), then the earlier proposal, then the smaller id. The last key
   is unique, so the order is total and never depends on the order the candidates or ballots were given in.

A proposal nobody approved often enough is never ranked above an acceptable one: it is not in the result's
`ranked` at all, and `rejected` lists it (ordered the same way) for the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(kw_only=True, frozen=True)
class Candidate:
    """One competing proposal (a decision's id, with what the tie-break needs)."""

    id: str
    proposed_at: datetime
    priority: float = 0.0
    """The value of the task it is for (`Task.value_usd`; 0 when none is known)."""


@dataclass(kw_only=True, frozen=True)
class Ballot:
    """One reviewer's say on the candidates: which it approves, and its order of preference, best first (the
    candidates it does not rank get no Borda points from it)."""

    voter: str
    approve: frozenset[str] = frozenset()
    order: tuple[str, ...] = ()


@dataclass(kw_only=True, frozen=True)
class Standing:
    """A candidate's place and the numbers that put it there."""

    id: str
    approvals: int
    borda: int
    acceptable: bool


@dataclass(kw_only=True, frozen=True)
class Ranking:
    ranked: list[Standing] = field(default_factory=list[Standing])
    """The acceptable candidates, best first: `ranked[0]` is the winner (none: no candidate is acceptable)."""
    rejected: list[Standing] = field(default_factory=list[Standing])
    """The others, in the same order."""

    @property
    def winner(self) -> str | None:
        return self.ranked[0].id if self.ranked else None


class BallotError(ValueError):
    """A ballot that names an unknown candidate, or ranks one twice."""


def approvals(candidates: Sequence[Candidate], ballots: Sequence[Ballot]) -> dict[str, int]:
    """How many ballots approve each candidate."""
    _check(candidates, ballots)
    return {c.id: sum(1 for b in ballots if c.id in b.approve) for c in candidates}


def borda(candidates: Sequence[Candidate], ballots: Sequence[Ballot]) -> dict[str, int]:
    """Each candidate's Borda score over the ballots' orders (see the module's docstring)."""
    _check(candidates, ballots)
    m = len(candidates)
    scores = {c.id: 0 for c in candidates}
    for ballot in ballots:
        for place, cid in enumerate(ballot.order):
            scores[cid] += m - 1 - place
    return scores


def rank(candidates: Sequence[Candidate], ballots: Sequence[Ballot], *, quorum: int) -> Ranking:
    """Approval voting for the acceptable candidates (≥ `quorum` approvals), Borda count to order them, and the
    documented tie-break. `BallotError` for a ballot naming an unknown candidate or ranking one twice, `ValueError`
    for a quorum under 1 or two candidates with one id."""
    if quorum < 1:
        raise ValueError(f"quorum {quorum}: at least one approval makes a proposal acceptable")
    approved = approvals(candidates, ballots)
    scores = borda(candidates, ballots)
    standings = [
        Standing(id=c.id, approvals=approved[c.id], borda=scores[c.id], acceptable=approved[c.id] >= quorum)
        for c in candidates
    ]
    by_id = {c.id: c for c in candidates}

    def key(s: Standing) -> tuple[int, int, float, datetime, str]:
        c = by_id[s.id]
        return (-s.borda, -s.approvals, -c.priority, c.proposed_at, c.id)

    ordered = sorted(standings, key=key)
    return Ranking(ranked=[s for s in ordered if s.acceptable], rejected=[s for s in ordered if not s.acceptable])


def _check(candidates: Sequence[Candidate], ballots: Sequence[Ballot]) -> None:
    ids = [c.id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ValueError(f"candidates must have distinct ids: {sorted(ids)}")
    known = set(ids)
    for ballot in ballots:
        unknown = sorted((set(ballot.order) | ballot.approve) - known)
        if unknown:
            raise BallotError(f"ballot of {ballot.voter} names unknown proposals: {', '.join(unknown)}")
        if len(set(ballot.order)) != len(ballot.order):
            raise BallotError(f"ballot of {ballot.voter} ranks a proposal twice: {list(ballot.order)}")


__all__ = ["Ballot", "BallotError", "Candidate", "Ranking", "Standing", "approvals", "borda", "rank"]
