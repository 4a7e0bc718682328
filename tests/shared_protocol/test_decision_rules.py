"""The approval rules (shared_protocol.decisions): the specification's table, at its boundaries."""

from __future__ import annotations

import pytest

from shared_protocol import Impact
from shared_protocol.decisions import ApprovalThresholds, classify, covers, initial_state


@pytest.mark.parametrize(
    ("files", "api_calls", "usd", "confidence", "needs"),
    [
        (0, 0, 0.0, 0.9, "none"),
        (4, 1000, 49.99, 0.70, "none"),
        (11, 0, 0.0, 0.9, "blocked"),
        (0, 1001, 0.0, 0.9, "blocked"),
        (0, 0, 100.01, 0.9, "blocked"),
        (10, 1000, 100.0, 0.9, "consensus"),
        (5, 0, 0.0, 0.9, "consensus"),
        (0, 0, 50.0, 0.9, "consensus"),
        (0, 0, 50.01, 0.9, "consensus"),
        (4, 0, 0.0, 0.69, "human"),
        (0, 0, 0.0, 0.0, "human"),
        (11, 0, 0.0, 0.1, "blocked"),
        (5, 0, 0.0, 0.1, "consensus"),
    ],
)
def test_classify_follows_the_specification_table_first_match_wins(
    files: int, api_calls: int, usd: float, confidence: float, needs: str
) -> None:
    assert classify(Impact(files=files, api_calls=api_calls, usd=usd), confidence) == needs


def test_the_human_money_threshold_applies_when_consensus_is_set_higher() -> None:
    thresholds = ApprovalThresholds(consensus_usd=80)
    assert classify(Impact(usd=60), 0.9, thresholds) == "human"
    assert classify(Impact(usd=50), 0.9, thresholds) == "none"


def test_only_a_human_moves_a_decision_that_needs_one() -> None:
    assert initial_state("none") == "approved"
    assert initial_state("blocked") == "denied"
    assert initial_state("human") == "pending"
    assert initial_state("consensus") == "pending"


def test_an_approval_covers_an_action_of_at_most_its_impact() -> None:
    approved = Impact(files=5, api_calls=10, usd=20)
    assert covers(approved, Impact(files=5, api_calls=10, usd=20))
    assert covers(approved, Impact(files=1))
    assert not covers(approved, Impact(files=6))
    assert not covers(approved, Impact(usd=20.01))


def test_an_irreversible_action_needs_at_least_a_human() -> None:
    from shared_protocol import Impact
    from shared_protocol.decisions import classify as rules

    assert rules(Impact(), 0.99, irreversible=True) == "human"
    assert rules(Impact(files=6), 0.99, irreversible=True) == "consensus"
    assert rules(Impact(files=11), 0.99, irreversible=True) == "blocked"
