"""The anomaly detector on a clock the test drives: a steady day pauses nothing, a burst is caught within one
evaluation interval, and the robust baseline is not moved by one outlier."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brain_server.anomaly import MAD_TO_SIGMA, METRICS, Detector, baseline, threshold
from shared_protocol.config import AnomalyConfig, AnomalyMetric, ConfigInvalid, parse_config

from .load import BUSY, QUIET, START, Profile, simulate_day, steady

SEEDS = range(5)


@pytest.mark.parametrize("profile", [QUIET, BUSY], ids=["quiet", "busy"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_day_of_noisy_but_steady_work_pauses_nothing(seed: int, profile: Profile) -> None:
    detector = Detector(AnomalyConfig())
    assert simulate_day(detector, random.Random(seed), profile) == []
    # Every metric was judged against a baseline most of the day (not silently skipped).
    assert detector.evaluated_samples > 5 * 200


def _burst(detector: Detector, metric: AnomalyMetric, at_s: float) -> None:
    """Within one minute: what an agent gone wrong does."""
    at = START + timedelta(hours=6, seconds=at_s)
    for n in range(120):
        moment = at + timedelta(seconds=n * 0.5)
        if metric == "task_failure_rate":
            if n < 10:
                detector.record_task("w1", moment, failed=True)
        elif metric == "spend_usd_per_hour":
            detector.record("w1", metric, moment, 0.5)
        else:
            detector.record("w1", metric, moment)


@pytest.mark.parametrize("metric", METRICS)
def test_a_burst_of_any_metric_pauses_within_one_evaluation_interval(metric: AnomalyMetric) -> None:
    config = AnomalyConfig()
    detector = Detector(config)
    rng = random.Random(7)
    step = timedelta(seconds=config.interval_s)
    t = START
    while t < START + timedelta(hours=6):
        steady(detector, "w1", rng, QUIET, t, config.interval_s)
        t += step
        assert detector.evaluate(t) == []
    # The burst starts a moment into the next interval; the evaluation at that interval's end catches it.
    steady(detector, "w1", rng, QUIET, t, config.interval_s)
    _burst(detector, metric, at_s=10)
    found = detector.evaluate(t + step)
    assert [f.metric for f in found if f.metric == metric] == [metric]
    hit = next(f for f in found if f.metric == metric)
    assert hit.value > hit.threshold >= hit.median + getattr(config.floors, metric)
    assert hit.bin_end == t + step


def test_no_verdict_before_min_samples_and_an_idle_interval_is_no_sample() -> None:
    config = AnomalyConfig(interval_s=60, min_samples=5, window=10)
    detector = Detector(config)
    for n in range(4):  # four active minutes, then an hour idle, then a burst: still too few samples to judge
        detector.record("w1", "tool_calls_per_min", START + timedelta(minutes=n))
    detector.evaluate(START + timedelta(minutes=70))
    for n in range(500):
        detector.record("w1", "tool_calls_per_min", START + timedelta(minutes=70, seconds=n / 10))
    assert detector.evaluate(START + timedelta(minutes=71)) == []
    assert detector.evaluated_samples == 0


def test_a_record_for_an_evaluated_bin_is_dropped_not_counted_as_a_burst_now() -> None:
    detector = Detector(AnomalyConfig(interval_s=60, min_samples=3, window=10))
    for minute in range(10):
        detector.record("w1", "tool_calls_per_min", START + timedelta(minutes=minute))
        detector.evaluate(START + timedelta(minutes=minute + 1))
    for n in range(1000):  # a body shipping an old backlog late
        detector.record("w1", "tool_calls_per_min", START + timedelta(minutes=2, seconds=n / 100))
    assert detector.late == 1000
    assert detector.evaluate(START + timedelta(minutes=12)) == []


def test_the_anomaly_section_names_a_bad_key_or_value() -> None:
    for bad, key in [
        ({"sigmaa": 3}, "anomaly.sigmaa"),
        ({"sigma": 0}, "anomaly.sigma"),
        ({"interval_s": "often"}, "anomaly.interval_s"),
        ({"floors": {"tool_calls": 1}}, "anomaly.floors.tool_calls"),
        ({"floors": {"task_failure_rate": 2}}, "anomaly.floors.task_failure_rate"),
        ({"window": 5, "min_samples": 6}, "anomaly"),
    ]:
        with pytest.raises(ConfigInvalid, match=f"'{key}'"):
            parse_config({"anomaly": bad})
    assert parse_config({"anomaly": {"sigma": 4, "floors": {"spend_usd_per_hour": 2}}}).anomaly.sigma == 4


# -- the statistics ----------------------------------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
window = st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=3, max_size=60)


@settings(max_examples=300, deadline=None)
@given(clean=window, outlier=finite)
def test_one_outlier_moves_the_median_by_one_order_statistic_at_most(clean: list[float], outlier: float) -> None:
    s = sorted(clean)
    n = len(s)
    moved = baseline([*clean, outlier]).median
    assert s[n // 2 - 1] <= moved <= s[min(n - 1, n // 2 + 1)]


@settings(max_examples=300, deadline=None)
@given(clean=window, outlier=finite, sigma=st.floats(min_value=0.5, max_value=10), floor=st.floats(0.01, 100))
def test_one_outlier_never_moves_the_threshold_past_what_the_clean_samples_allow(
    clean: list[float], outlier: float, sigma: float, floor: float
) -> None:
    spread = max(clean) - min(clean)
    base = baseline([*clean, outlier])
    assert base.scale <= MAD_TO_SIGMA * spread + 1e-9
    limit = threshold(base, sigma=sigma, floor=floor)
    assert min(clean) + floor <= limit + 1e-9
    assert limit <= max(clean) + max(sigma * MAD_TO_SIGMA * spread, floor) + 1e-9


@settings(max_examples=100, deadline=None)
@given(
    level=st.floats(min_value=0, max_value=1000), noise=st.floats(min_value=0, max_value=10), spike=st.floats(1e3, 1e9)
)
def test_after_one_spike_a_second_spike_is_still_caught(level: float, noise: float, spike: float) -> None:
    config = AnomalyConfig(interval_s=60, window=20, min_samples=10, floors={"spend_usd_per_hour": 1.0})
    detector = Detector(config)
    rng = random.Random(0)
    minutes = 0

    def minute(usd: float) -> list[str]:
        nonlocal minutes
        at = START + timedelta(minutes=minutes, seconds=30)
        detector.record("w1", "spend_usd_per_hour", at, usd / 60)  # usd an hour, for one minute
        minutes += 1
        return [f.metric for f in detector.evaluate(START + timedelta(minutes=minutes))]

    for _ in range(15):
        minute(level + rng.uniform(0, noise))
    assert "spend_usd_per_hour" in minute(level + noise + spike)
    for _ in range(3):
        minute(level + rng.uniform(0, noise))
    assert "spend_usd_per_hour" in minute(level + noise + spike)
