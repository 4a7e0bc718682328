"""Ranking competing proposals: approval voting, Borda count and the tie-break (hypothesis properties and examples
computed by hand)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared_protocol.ranking import Ballot, BallotError, Candidate, approvals, ballots_from_votes, borda, rank

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def cand(cid: str, n: int = 0, priority: float = 0.0) -> Candidate:
    return Candidate(id=cid, proposed_at=T0 + timedelta(seconds=n), priority=priority)


@st.composite
def elections(draw: st.DrawFn) -> tuple[list[Candidate], list[Ballot]]:
    """Candidates with distinct ids, and ballots that approve any subset and rank any ordered subset of them."""
    m = draw(st.integers(min_value=1, max_value=6))
    ids = [f"dec_{n}" for n in range(m)]
    candidates = [
        cand(cid, draw(st.integers(min_value=0, max_value=3)), draw(st.sampled_from([0.0, 10.0, 50.0]))) for cid in ids
    ]
    ballots: list[Ballot] = []
    for v in range(draw(st.integers(min_value=0, max_value=7))):
        approve = frozenset(draw(st.lists(st.sampled_from(ids), unique=True)))
        order = tuple(draw(st.permutations(ids))[: draw(st.integers(min_value=0, max_value=m))])
        ballots.append(Ballot(voter=f"r{v}", approve=approve, order=order))
    return candidates, ballots


@given(elections())
def test_borda_points_of_full_rankings_sum_to_m_choose_2_per_ballot(case: tuple[list[Candidate], list[Ballot]]) -> None:
    candidates, ballots = case
    m = len(candidates)
    full = [Ballot(voter=b.voter, order=tuple(c.id for c in candidates)) for b in ballots]
    assert sum(borda(candidates, full).values()) == len(full) * m * (m - 1) // 2
    # a partial ranking of k gives the top k places' points
    expected = sum(sum(m - 1 - i for i in range(len(b.order))) for b in ballots)
    assert sum(borda(candidates, ballots).values()) == expected


@given(elections())
def test_the_ranking_does_not_depend_on_the_order_of_candidates_or_ballots(
    case: tuple[list[Candidate], list[Ballot]],
) -> None:
    candidates, ballots = case
    quorum = max(1, len(ballots) // 2 + 1)
    once = rank(candidates, ballots, quorum=quorum)
    again = rank(list(reversed(candidates)), list(reversed(ballots)), quorum=quorum)
    assert once == again


@given(elections())
def test_only_proposals_approved_by_a_quorum_are_ranked_and_every_proposal_is_placed_once(
    case: tuple[list[Candidate], list[Ballot]],
) -> None:
    candidates, ballots = case
    quorum = max(1, len(ballots) // 2 + 1)
    result = rank(candidates, ballots, quorum=quorum)
    approved = approvals(candidates, ballots)
    assert {s.id for s in result.ranked} == {c.id for c in candidates if approved[c.id] >= quorum}
    assert sorted(s.id for s in [*result.ranked, *result.rejected]) == sorted(c.id for c in candidates)
    scores = [s.borda for s in result.ranked]
    assert scores == sorted(scores, reverse=True)


@given(elections(), st.data())
def test_a_proposal_every_ballot_approves_and_puts_first_wins(
    case: tuple[list[Candidate], list[Ballot]], data: st.DataObject
) -> None:
    candidates, ballots = case
    if not ballots:
        ballots = [Ballot(voter="r0")]
    best = data.draw(st.sampled_from([c.id for c in candidates]))
    unanimous = [
        Ballot(voter=b.voter, approve=b.approve | {best}, order=(best, *(c for c in b.order if c != best)))
        for b in ballots
    ]
    assert rank(candidates, unanimous, quorum=len(unanimous)).winner == best


@given(st.lists(st.sampled_from([0.0, 5.0, 20.0]), min_size=2, max_size=5))
def test_a_full_tie_goes_to_the_higher_priority_then_the_earlier_proposal(priorities: list[float]) -> None:
    candidates = [cand(f"dec_{n}", n, p) for n, p in enumerate(priorities)]
    ballots = [Ballot(voter="r", approve=frozenset(c.id for c in candidates))]
    top = max(priorities)
    expected = next(c.id for c in candidates if c.priority == top)  # the earliest among the most valuable
    assert rank(candidates, ballots, quorum=1).winner == expected


def test_hand_computed_borda_with_the_acceptable_set_from_approvals() -> None:
    a, b, c = cand("A", 0), cand("B", 1), cand("C", 2)
    ballots = [
        Ballot(voter="r1", approve=frozenset({"A", "B"}), order=("A", "B", "C")),  # A 2, B 1, C 0
        Ballot(voter="r2", approve=frozenset({"B"}), order=("B", "C", "A")),  # B 2, C 1, A 0
        Ballot(voter="r3", approve=frozenset({"B", "C"}), order=("C", "B")),  # C 2, B 1
    ]
    assert borda([a, b, c], ballots) == {"A": 2, "B": 4, "C": 3}
    assert approvals([a, b, c], ballots) == {"A": 1, "B": 3, "C": 1}
    result = rank([a, b, c], ballots, quorum=2)
    assert [s.id for s in result.ranked] == ["B"]
    assert [s.id for s in result.rejected] == ["C", "A"]  # C outscores A on Borda, but neither is acceptable
    assert rank([a, b, c], ballots, quorum=1).winner == "B"


def test_a_tie_in_borda_goes_to_more_approvals_before_priority() -> None:
    a, b = cand("A", 0, priority=100.0), cand("B", 1, priority=0.0)
    ballots = [
        Ballot(voter="r1", approve=frozenset({"A", "B"}), order=("A", "B")),
        Ballot(voter="r2", approve=frozenset({"B"}), order=("B", "A")),
    ]
    result = rank([a, b], ballots, quorum=1)
    assert [(s.id, s.borda, s.approvals) for s in result.ranked] == [("B", 1, 2), ("A", 1, 1)]


def test_the_last_tie_break_is_the_id() -> None:
    same = [Candidate(id=cid, proposed_at=T0) for cid in ("dec_b", "dec_a")]
    assert rank(same, [Ballot(voter="r", approve=frozenset({"dec_a", "dec_b"}))], quorum=1).winner == "dec_a"


def test_no_acceptable_proposal_means_no_winner() -> None:
    result = rank([cand("A")], [Ballot(voter="r", order=("A",))], quorum=1)
    assert result.winner is None
    assert [s.id for s in result.rejected] == ["A"]


def test_bad_ballots_and_quorums_are_refused() -> None:
    with pytest.raises(BallotError):
        rank([cand("A")], [Ballot(voter="r", approve=frozenset({"Z"}))], quorum=1)
    with pytest.raises(BallotError):
        rank([cand("A"), cand("B")], [Ballot(voter="r", order=("A", "A"))], quorum=1)
    with pytest.raises(ValueError, match="distinct"):
        rank([cand("A"), cand("A")], [], quorum=1)
    with pytest.raises(ValueError, match="quorum"):
        rank([cand("A")], [], quorum=0)


@st.composite
def tied_elections(draw: st.DrawFn) -> tuple[list[Candidate], list[Ballot]]:
    """Candidates, and ballots ranking a subset of them in groups of ties (any split of a permutation)."""
    m = draw(st.integers(min_value=1, max_value=6))
    candidates = [cand(f"dec_{n}", n) for n in range(m)]
    ballots: list[Ballot] = []
    for v in range(draw(st.integers(min_value=1, max_value=5))):
        order = draw(st.permutations([c.id for c in candidates]))[: draw(st.integers(min_value=1, max_value=m))]
        cuts = sorted(set(draw(st.lists(st.integers(min_value=1, max_value=len(order)), max_size=len(order)))))
        bounds = [0, *[c for c in cuts if c < len(order)], len(order)]
        groups = tuple(frozenset(order[i:j]) for i, j in pairwise(bounds))
        ballots.append(Ballot(voter=f"r{v}", tiers=groups))
    return candidates, ballots


@given(tied_elections())
def test_averaged_points_for_ties_keep_the_borda_sum_and_give_tied_proposals_equal_points(
    case: tuple[list[Candidate], list[Ballot]],
) -> None:
    candidates, ballots = case
    m = len(candidates)
    for ballot in ballots:
        scores = borda(candidates, [ballot])
        k = sum(len(g) for g in ballot.tiers)
        # the points of the k places the ballot fills, shared out: the same sum as an order without ties
        assert sum(scores.values()) == sum(m - 1 - i for i in range(k))
        for group in ballot.tiers:
            assert len({scores[cid] for cid in group}) == 1
        # a group's members outscore every member of a later group
        for better, worse in pairwise(ballot.tiers):
            assert min(scores[c] for c in better) > max(scores[c] for c in worse)
    # an order without ties scores the same as its groups of one
    plain = [Ballot(voter=b.voter, order=tuple(c for g in b.tiers for c in sorted(g))) for b in ballots]
    singles = [Ballot(voter=p.voter, tiers=tuple(frozenset({c}) for c in p.order)) for p in plain]
    assert borda(candidates, plain) == borda(candidates, singles)


def test_ballots_from_votes_put_approved_above_abstained_or_silent_above_denied() -> None:
    a, b, c = cand("A", 0), cand("B", 1), cand("C", 2)
    votes = {"A": {"r1": "approve", "r2": "deny"}, "B": {"r1": "approve", "r2": "abstain"}, "C": {"r1": "deny"}}
    r1, r2 = ballots_from_votes(["A", "B", "C"], votes)
    assert r1 == Ballot(voter="r1", approve=frozenset({"A", "B"}), tiers=(frozenset({"A", "B"}), frozenset({"C"})))
    # r2 did not vote on C: it sits with B, which r2 abstained on
    assert r2 == Ballot(voter="r2", tiers=(frozenset({"B", "C"}), frozenset({"A"})))
    # r1: A and B share places 0 and 1 (2 and 1 points): 1.5 each, C 0; r2: B, C 1.5 each, A 0
    assert borda([a, b, c], [r1, r2]) == {"A": 1.5, "B": 3.0, "C": 1.5}
    with pytest.raises(BallotError, match="maybe"):
        ballots_from_votes(["A"], {"A": {"r1": "maybe"}})


def test_ballots_with_bad_tiers_are_refused() -> None:
    with pytest.raises(BallotError, match="both"):
        borda([cand("A")], [Ballot(voter="r", order=("A",), tiers=(frozenset({"A"}),))])
    with pytest.raises(BallotError, match="empty"):
        borda([cand("A")], [Ballot(voter="r", tiers=(frozenset(),))])
    with pytest.raises(BallotError, match="twice"):
        borda([cand("A"), cand("B")], [Ballot(voter="r", tiers=(frozenset({"A"}), frozenset({"A", "B"})))])
