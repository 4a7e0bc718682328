"""The panel's count: properties that hold for every panel, quorum and sequence of votes (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared_protocol.consensus import count, latest, valid_quorum
from shared_protocol.decisions import Vote, VoteValue

T0 = datetime(2026, 1, 1, tzinfo=UTC)
VALUES: list[VoteValue] = ["approve", "deny", "abstain"]


def vote(voter: str, value: VoteValue, n: int = 0) -> Vote:
    return Vote(voter=voter, value=value, rationale="because", at=T0 + timedelta(seconds=n))


@st.composite
def panels(draw: st.DrawFn) -> tuple[list[str], int, list[Vote]]:
    """A panel, a quorum that settles it one way only, and votes by its seats and by outsiders, in order."""
    size = draw(st.integers(min_value=1, max_value=9))
    seats = [f"seat-{n}" for n in range(size)]
    quorum = draw(st.integers(min_value=size // 2 + 1, max_value=size))
    voters = st.sampled_from([*seats, "outsider-1", "outsider-2"])
    cast = draw(st.lists(st.tuples(voters, st.sampled_from(VALUES)), max_size=30))
    return seats, quorum, [vote(voter, value, n) for n, (voter, value) in enumerate(cast)]


def _final(seats: list[str], votes: list[Vote]) -> dict[str, VoteValue]:
    current = {v.voter: v.value for v in votes if v.voter in seats}
    return current


@given(panels())
def test_the_count_is_of_each_seats_latest_vote_only(case: tuple[list[str], int, list[Vote]]) -> None:
    seats, quorum, votes = case
    tally = count(votes, seats, quorum)
    final = _final(seats, votes)
    assert tally.approvals == sum(1 for v in final.values() if v == "approve")
    assert tally.denials == sum(1 for v in final.values() if v == "deny")
    assert tally.abstentions == sum(1 for v in final.values() if v == "abstain")
    assert tally.approvals + tally.denials + tally.abstentions + tally.missing == len(seats)


@given(panels())
def test_the_outcome_follows_the_quorum_rules(case: tuple[list[str], int, list[Vote]]) -> None:
    seats, quorum, votes = case
    tally = count(votes, seats, quorum)
    reachable = tally.approvals + tally.missing >= quorum
    expected = (
        "approved"
        if tally.approvals >= quorum
        else "denied"
        if tally.denials >= quorum
        else "open"
        if reachable
        else "tie"
        if tally.approvals == tally.denials > 0
        else "unreachable"
    )
    assert tally.outcome == expected
    # A quorum over half the panel never lets both sides win.
    assert not (tally.approvals >= quorum and tally.denials >= quorum)


@given(panels(), st.sampled_from(VALUES))
def test_an_outsiders_vote_changes_nothing(case: tuple[list[str], int, list[Vote]], value: VoteValue) -> None:
    seats, quorum, votes = case
    assert count([*votes, vote("outsider-3", value, 99)], seats, quorum) == count(votes, seats, quorum)


@given(panels())
def test_approval_is_monotonic_more_approvals_never_deny(case: tuple[list[str], int, list[Vote]]) -> None:
    seats, quorum, votes = case
    before = count(votes, seats, quorum)
    missing = [seat for seat in seats if seat not in _final(seats, votes)]
    after = count([*votes, *(vote(seat, "approve", 100) for seat in missing)], seats, quorum)
    assert after.missing == 0
    if before.outcome == "approved":
        assert after.outcome == "approved"
    if before.outcome == "open" and before.approvals + before.missing >= quorum:
        assert after.outcome == "approved"


@given(panels())
def test_an_unreachable_or_tied_panel_stays_so_when_the_rest_deny(case: tuple[list[str], int, list[Vote]]) -> None:
    seats, quorum, votes = case
    before = count(votes, seats, quorum)
    if before.outcome in ("unreachable", "tie", "denied"):
        missing = [seat for seat in seats if seat not in _final(seats, votes)]
        after = count([*votes, *(vote(seat, "deny", 100) for seat in missing)], seats, quorum)
        assert after.outcome != "approved"


def test_three_of_five_settle_both_ways_and_two_two_one_is_a_tie() -> None:
    seats = ["a", "b", "c", "d", "e"]
    approve3 = [vote(s, "approve") for s in "abc"]
    assert count(approve3, seats, 3).outcome == "approved"
    assert count([vote(s, "deny") for s in "abc"], seats, 3).outcome == "denied"
    two_two_one = [vote("a", "approve"), vote("b", "approve"), vote("c", "deny"), vote("d", "deny")]
    assert count(two_two_one, seats, 3).outcome == "open"  # e may still approve
    assert count([*two_two_one, vote("e", "abstain")], seats, 3).outcome == "tie"
    unreachable = [vote("a", "approve"), vote("b", "deny"), vote("c", "deny"), vote("d", "abstain")]
    assert count(unreachable, seats, 3).outcome == "unreachable"
    # a later vote of a seat replaces its first
    assert count([*approve3, vote("c", "deny", 5)], seats, 3).outcome == "open"
    assert latest([vote("a", "approve"), vote("a", "deny", 1)])["a"].value == "deny"


@pytest.mark.parametrize(
    ("size", "quorum", "ok"), [(5, 3, True), (5, 2, False), (5, 6, False), (1, 1, True), (0, 1, False)]
)
def test_a_quorum_must_settle_one_way_only(size: int, quorum: int, ok: bool) -> None:
    assert valid_quorum(size, quorum) is ok
    if not ok:
        with pytest.raises(ValueError, match="quorum"):
            count([], [f"s{n}" for n in range(size)], quorum)
