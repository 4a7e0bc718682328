"""Choosing among competing proposals for one task or goal: pure functions, no clock, no store.

Each reviewer's ballot says which proposals it finds acceptable (approval voting) and, optionally, its order of
preference (a Borda count). `rank` then

1. keeps the acceptable proposals: those approved by at least `quorum` ballots (approval voting);
2. orders them by Borda score: on each ballot that ranks `k` of the `m` candidates, the proposal in place `i`
   (0-based) gets `m - 1 - i` points and an unranked one 0 — so a ballot's points sum to
   `m(m-1)/2 - (m-k)(m-k-1)/2`, and a full ranking's to `m(m-1)/2` (the Borda sum invariant). A ballot may
   rank with ties instead (`Ballot.tiers`: groups of equally preferred proposals, best group first): the `t`
   proposals of a group filling places `p .. p+t-1` each get the average of those places' points,
   `m - 1 - p - (t-1)/2` (averaged Borda points, so a half point can occur), which keeps the sum invariant; an order
   without ties is the same as its groups of one;
3. breaks a tie in Borda score, in this order: more approvals, then the higher priority (the value of the task
   the proposal is for: it orders, it never approves), then the earlier proposal, then the smaller id. The last key
   is unique, so the order is total and never depends on the order the candidates or ballots were given in.

Where the ballots come from (`ballots_from_votes`): a vote is approve, deny or abstain, with no order of
preference, so the brain derives each voter's ballot over the competing proposals of one task from its latest
votes on them: the ones it approved, above the ones it abstained on or did not vote on, above the ones it denied
(three groups, ties within each, averaged Borda points). Every seat that voted on any of the proposals has one
ballot; a seat that voted on none has none.

A proposal nobody approved often enough is never ranked above an acceptable one: it is not in the result's
`ranked` at all, and `rejected` lists it (ordered the same way) for the record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    tiers: tuple[frozenset[str], ...] = ()
    """An order with ties instead of `order` (not both): groups of equally preferred candidates, best first;
    each member gets its group's averaged Borda points."""

    def groups(self) -> tuple[frozenset[str], ...]:
        """The ballot's order as groups, best first (`order`'s candidates each alone)."""
        return self.tiers or tuple(frozenset({cid}) for cid in self.order)


@dataclass(kw_only=True, frozen=True)
class Standing:
    """A candidate's place and the numbers that put it there."""

    id: str
    approvals: int
    borda: float
    """Whole unless a ballot ranked it in a tie (averaged points: then possibly a half)."""
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


def borda(candidates: Sequence[Candidate], ballots: Sequence[Ballot]) -> dict[str, float]:
    """Each candidate's Borda score over the ballots' orders, ties averaged (see the module's docstring)."""
    _check(candidates, ballots)
    m = len(candidates)
    scores: dict[str, float] = {c.id: 0 for c in candidates}
    for ballot in ballots:
        place = 0
        for group in ballot.groups():
            points = m - 1 - place - (len(group) - 1) / 2
            for cid in group:
                scores[cid] += points
            place += len(group)
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

    def key(s: Standing) -> tuple[float, int, float, datetime, str]:
        c = by_id[s.id]
        return (-s.borda, -s.approvals, -c.priority, c.proposed_at, c.id)

    ordered = sorted(standings, key=key)
    return Ranking(ranked=[s for s in ordered if s.acceptable], rejected=[s for s in ordered if not s.acceptable])


VOTE_GROUPS: tuple[str, ...] = ("approve", "abstain", "deny")
"""A derived ballot's groups, best first (a proposal the voter did not vote on sits with its abstentions)."""


def ballots_from_votes(candidates: Sequence[str], votes: Mapping[str, Mapping[str, str]]) -> list[Ballot]:
    """Each voter's ballot over `candidates` (ids) from `votes`: candidate id -> voter -> its latest vote
    ("approve", "abstain" or "deny"). Approved above abstained or not voted above denied; ballots by voter."""
    voters = sorted({voter for cid in candidates for voter in votes.get(cid, {})})
    ballots: list[Ballot] = []
    for voter in voters:
        said = {cid: votes.get(cid, {}).get(voter, "abstain") for cid in candidates}
        unknown = sorted({value for value in said.values()} - set(VOTE_GROUPS))
        if unknown:
            raise BallotError(f"votes of {voter}: {', '.join(unknown)} is not approve, abstain or deny")
        groups = tuple(
            group for value in VOTE_GROUPS if (group := frozenset(c for c in candidates if said[c] == value))
        )
        approve = frozenset(c for c in candidates if said[c] == "approve")
        ballots.append(Ballot(voter=voter, approve=approve, tiers=groups))
    return ballots


def _check(candidates: Sequence[Candidate], ballots: Sequence[Ballot]) -> None:
    ids = [c.id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ValueError(f"candidates must have distinct ids: {sorted(ids)}")
    known = set(ids)
    for ballot in ballots:
        if ballot.order and ballot.tiers:
            raise BallotError(f"ballot of {ballot.voter} gives both an order and tiers: one or the other")
        if any(not group for group in ballot.tiers):
            raise BallotError(f"ballot of {ballot.voter} has an empty tier")
        ranked = [cid for group in ballot.groups() for cid in sorted(group)]
        unknown = sorted((set(ranked) | ballot.approve) - known)
        if unknown:
            raise BallotError(f"ballot of {ballot.voter} names unknown proposals: {', '.join(unknown)}")
        if len(set(ranked)) != len(ranked):
            raise BallotError(f"ballot of {ballot.voter} ranks a proposal twice: {ranked}")


__all__ = [
    "VOTE_GROUPS",
    "Ballot",
    "BallotError",
    "Candidate",
    "Ranking",
    "Standing",
    "approvals",
    "ballots_from_votes",
    "borda",
    "rank",
]
