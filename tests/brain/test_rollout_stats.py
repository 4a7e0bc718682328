"""The rollout's statistical test (`brain_server.canary`): hand-computed examples, and properties (hypothesis)."""

from __future__ import annotations

from math import comb

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brain_server.canary import (
    ALPHA,
    MAX_COST_RATIO,
    Sample,
    bucket,
    compare,
    cost_ratio,
    fisher_worse,
    rate_higher,
)


def test_fisher_worse_matches_hand_computed_hypergeometric_tails() -> None:
    # 0/3 against 3/3: the only table as extreme has probability C(3,0)C(3,3)/C(6,3) = 1/20.
    assert fisher_worse(0, 3, 3, 3) == pytest.approx(1 / 20)
    # 1/4 against 4/4: P(X<=1), X ~ Hypergeom(N=8, K=5, n=4): (C(5,1)C(3,3)) / C(8,4) = 5/70 (X=0 impossible).
    assert fisher_worse(1, 4, 4, 4) == pytest.approx(5 / 70)
    # 0/20 against 20/20: 1/C(40,20), far under ALPHA.
    assert fisher_worse(0, 20, 20, 20) == pytest.approx(1 / comb(40, 20))
    # equal rates: not significant.
    assert fisher_worse(10, 20, 10, 20) > 0.5
    # no data on a side: no evidence.
    assert fisher_worse(0, 0, 5, 5) == 1.0 and fisher_worse(0, 5, 0, 0) == 1.0


def test_rate_higher_matches_a_hand_computed_binomial_tail() -> None:
    # 3 refusals over 2 tasks against 0 over 2: X ~ Bin(3, 1/2), P(X>=3) = 1/8.
    assert rate_higher(3, 2, 0, 2) == pytest.approx(1 / 8)
    # 5 over 10 tasks against 0 over 30: X ~ Bin(5, 1/4), P(X>=5) = 1/1024.
    assert rate_higher(5, 10, 0, 30) == pytest.approx(1 / 1024)
    assert rate_higher(0, 10, 0, 10) == 1.0 and rate_higher(4, 0, 1, 3) == 1.0


@pytest.mark.parametrize(
    ("args", "ok"),
    [((-1, 1, 0, 1), False), ((2, 1, 0, 1), False), ((0, 1, 3, 2), False), ((1, 1, 1, 1), True)],
)
def test_fisher_worse_refuses_impossible_counts(args: tuple[int, int, int, int], ok: bool) -> None:
    if ok:
        assert 0 <= fisher_worse(*args) <= 1
    else:
        with pytest.raises(ValueError, match="successes"):
            fisher_worse(*args)


counts = st.integers(min_value=0, max_value=40)


@st.composite
def rates(draw: st.DrawFn) -> tuple[int, int, int, int]:
    n_c, n_l = draw(counts), draw(counts)
    return draw(st.integers(0, n_c)), n_c, draw(st.integers(0, n_l)), n_l


@given(rates())
def test_fisher_worse_is_a_probability(r: tuple[int, int, int, int]) -> None:
    assert 0.0 <= fisher_worse(*r) <= 1.0 + 1e-12


@given(rates())
def test_one_more_candidate_success_never_makes_it_look_worse(r: tuple[int, int, int, int]) -> None:
    k_c, n_c, k_l, n_l = r
    if k_c < n_c:
        assert fisher_worse(k_c + 1, n_c, k_l, n_l) >= fisher_worse(k_c, n_c, k_l, n_l) - 1e-12


@given(rates())
def test_a_candidate_at_least_as_good_as_live_never_fails(r: tuple[int, int, int, int]) -> None:
    k_c, n_c, k_l, n_l = r
    if n_c and n_l and k_c * n_l >= k_l * n_c:
        assert fisher_worse(k_c, n_c, k_l, n_l) >= ALPHA


@given(counts, counts, counts, counts)
def test_rate_higher_is_a_probability_and_monotone(k_c: int, n_c: int, k_l: int, n_l: int) -> None:
    p = rate_higher(k_c, n_c, k_l, n_l)
    assert 0.0 <= p <= 1.0 + 1e-12
    assert rate_higher(k_c + 1, n_c, k_l, n_l) <= p + 1e-12


@given(st.text(min_size=1, max_size=40))
def test_a_task_bucket_is_deterministic_and_a_percent(task_id: str) -> None:
    assert 0 <= bucket(task_id) < 100 and bucket(task_id) == bucket(task_id)


def test_buckets_spread_tasks_over_the_percent_range() -> None:
    share = sum(bucket(f"task_{i}") < 10 for i in range(2000)) / 2000
    assert 0.07 < share < 0.13


def test_compare_passes_a_candidate_as_good_as_live_and_says_each_metric_side_by_side() -> None:
    live = Sample(tasks=20, verified=16, decided=4, approved=3, refusals=2, usd=2.0)
    candidate = Sample(tasks=20, verified=17, decided=2, approved=2, refusals=1, usd=2.2)
    result = compare(candidate, live, min_tasks=20)
    assert result.holds and result.failing == []
    by_name = {m.name: m for m in result.metrics}
    assert by_name["verified_success"].candidate == "17/20 = 85%" and by_name["verified_success"].live == "16/20 = 80%"
    assert by_name["cost_per_task"].test == "ratio=1.10"


def test_compare_fails_each_metric_on_its_own_evidence() -> None:
    live = Sample(tasks=20, verified=20, decided=10, approved=10, refusals=0, usd=2.0)
    worse_success = Sample(tasks=20, verified=5, usd=2.0)
    assert compare(worse_success, live, min_tasks=20).failing == ["verified_success"]
    worse_approval = Sample(tasks=20, verified=20, decided=10, approved=1, usd=2.0)
    assert compare(worse_approval, live, min_tasks=20).failing == ["approval_rate"]
    more_refusals = Sample(tasks=20, verified=20, refusals=12, usd=2.0)
    assert compare(more_refusals, live, min_tasks=20).failing == ["refusals"]
    costlier = Sample(tasks=20, verified=20, usd=2.0 * MAX_COST_RATIO * 1.1)
    assert compare(costlier, live, min_tasks=20).failing == ["cost_per_task"]


def test_cost_is_judged_only_from_the_minimum_of_tasks() -> None:
    live = Sample(tasks=20, verified=20, usd=2.0)
    one_costly = Sample(tasks=1, verified=1, usd=5.0)
    assert cost_ratio(one_costly, live) == pytest.approx(50.0)
    assert compare(one_costly, live, min_tasks=5).holds
    assert cost_ratio(Sample(tasks=1, usd=1.0), Sample(tasks=1, usd=0.0)) == float("inf")
    assert cost_ratio(Sample(tasks=1), Sample(tasks=1)) == 1.0
    assert cost_ratio(Sample(), live) is None


def test_a_sample_refuses_impossible_numbers_and_compare_a_zero_minimum() -> None:
    with pytest.raises(ValueError, match="successes"):
        Sample(tasks=1, verified=2)
    with pytest.raises(ValueError, match="never negative"):
        Sample(tasks=1, usd=-1.0)
    with pytest.raises(ValueError, match="min_tasks"):
        compare(Sample(), Sample(), min_tasks=0)
