"""Measure the anomaly detector's false pauses per agent per day on steady synthetic load (README "Anomaly
detection"): `python -m bench.bench_anomaly_false_pauses [DAYS]`. Each day is a fresh seed; the default `[anomaly]`."""

from __future__ import annotations

import random
import sys
from collections import Counter
from dataclasses import replace

from brain_server.anomaly import Detector
from shared_protocol.config import AnomalyConfig
from tests.brain.load import BUSY, QUIET, Profile, simulate_day

HOT = replace(BUSY, llm_calls_per_min=50.0)
"""$60 an hour: beyond the floor's envelope, where sigma * s is the threshold."""


def measure(profile: Profile, days: int, config: AnomalyConfig) -> tuple[float, Counter[str], int]:
    by_metric: Counter[str] = Counter()
    paused_days = 0
    samples = 0
    for seed in range(days):
        detector = Detector(config)
        findings = simulate_day(detector, random.Random(seed), profile)
        samples += detector.evaluated_samples
        by_metric.update(f.metric for f in findings)
        paused_days += bool(findings)
    return paused_days / days, by_metric, samples


def main() -> None:
    days = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    for name, profile in (("quiet", QUIET), ("busy", BUSY), ("hot", HOT)):
        rate, by_metric, samples = measure(profile, days, AnomalyConfig())
        print(
            f"{name}: {rate:.3f} days with a false pause per agent-day over {days} days, {samples} samples judged; "
            f"findings by metric: {dict(by_metric)}"
        )


if __name__ == "__main__":
    main()
