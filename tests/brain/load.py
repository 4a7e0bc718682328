"""Synthetic agent load for the anomaly detector: Poisson arrivals of every metric's events, steady or with a burst."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from brain_server.anomaly import Detector, Finding

START = datetime.fromisoformat("2026-03-02T00:00:00+00:00")


@dataclass(kw_only=True, frozen=True)
class Profile:
    """Mean rates of one agent's steady work."""

    tool_calls_per_min: float = 4.0
    refused_share: float = 0.05
    files_per_ok_call: float = 0.3
    llm_calls_per_min: float = 1.0
    usd_per_llm_call: float = 0.03
    rejected_share: float = 0.03
    tasks_per_hour: float = 6.0
    failed_share: float = 0.2


QUIET = Profile()
BUSY = Profile(tool_calls_per_min=60.0, llm_calls_per_min=10.0, usd_per_llm_call=0.02, tasks_per_hour=20.0)


def _arrivals(rng: random.Random, per_s: float, start: datetime, seconds: float) -> list[datetime]:
    """Poisson arrivals: exponential gaps."""
    times: list[datetime] = []
    t = rng.expovariate(per_s)
    while t < seconds:
        times.append(start + timedelta(seconds=t))
        t += rng.expovariate(per_s)
    return times


def steady(
    detector: Detector, agent: str, rng: random.Random, profile: Profile, start: datetime, seconds: float
) -> None:
    """Record `seconds` of steady work from `start`."""
    for at in _arrivals(rng, profile.tool_calls_per_min / 60, start, seconds):
        detector.record(agent, "tool_calls_per_min", at)
        if rng.random() < profile.refused_share:
            detector.record(agent, "refusals_per_min", at)
        else:
            files = sum(1 for _ in range(3) if rng.random() < profile.files_per_ok_call / 3)
            detector.record(agent, "file_changes_per_min", at, float(files))
    for at in _arrivals(rng, profile.llm_calls_per_min / 60, start, seconds):
        rejected = rng.random() < profile.rejected_share
        detector.record(
            agent, "spend_usd_per_hour", at, 0.0 if rejected else rng.uniform(0.5, 1.5) * profile.usd_per_llm_call
        )
        detector.record(agent, "llm_errors_per_min", at, float(rejected))
    for at in _arrivals(rng, profile.tasks_per_hour / 3600, start, seconds):
        detector.record_task(agent, at, failed=rng.random() < profile.failed_share)


def simulate_day(detector: Detector, rng: random.Random, profile: Profile, agent: str = "w1") -> list[Finding]:
    """A day of steady work, evaluated every interval as the brain does; every finding."""
    step = detector.config.interval_s
    findings: list[Finding] = []
    t = START
    while t < START + timedelta(days=1):
        steady(detector, agent, rng, profile, t, step)
        t += timedelta(seconds=step)
        findings += detector.evaluate(t)
    return findings
