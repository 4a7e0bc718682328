"""Anomaly detection: a rolling, robust baseline per agent and per metric, and the samples that leave it.

Pure: it is fed what happened (`record`, `record_task`) with the time it happened, and asked at a time of the
caller's choosing (`evaluate(now)`); `anomaly_watch.py` feeds it from the brain's state and acts on its findings.

Time is cut into bins of `[anomaly] interval_s`. A bin in which an agent did anything (a tool call, a model call, a
finished task) is one sample of each of its metrics, in the metric's unit (per minute, per hour, a share); a bin in
which it did nothing is no sample, so a night of idling does not make a day's work look anomalous. A sample is
compared with the baseline of the agent's previous `window` samples of that metric, once there are `min_samples`:

    median m, MAD = median |x - m|, robust sigma s = 1.4826 * MAD   (s equals the standard deviation for normal data)
    anomalous when  x > m + max(sigma * s, floor)

The median and the MAD ignore up to half the window, so one spike (kept in the window like any sample) moves neither
by more than one order statistic; `floor` (`[anomaly.floors]`) keeps a flat baseline (s near 0) from paging on noise.
Only a rise is anomalous: an agent doing less than usual is not stopped for it. Something recorded for a bin already
evaluated (a body shipping its audit late) is dropped (`late`): it can neither page about the past nor be a burst now.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import get_args

from shared_protocol.config import AnomalyConfig, AnomalyMetric

MAD_TO_SIGMA = 1.4826
"""1 / Φ⁻¹(3/4): the MAD times this estimates the standard deviation of normally distributed data."""

METRICS: tuple[AnomalyMetric, ...] = get_args(AnomalyMetric)
_ADDITIVE: dict[AnomalyMetric, float] = {
    "tool_calls_per_min": 60.0,
    "refusals_per_min": 60.0,
    "file_changes_per_min": 60.0,
    "spend_usd_per_hour": 3600.0,
    "llm_errors_per_min": 60.0,
}
"""The metrics summed over a bin, and the seconds of their unit (a count per bin → a rate per minute or hour)."""


@dataclass(kw_only=True, frozen=True)
class Baseline:
    median: float
    scale: float
    """The robust standard deviation, `MAD_TO_SIGMA` times the median absolute deviation."""
    samples: int


def baseline(samples: Iterable[float]) -> Baseline:
    """The median and robust spread of `samples` (at least one)."""
    values = list(samples)
    middle = statistics.median(values)
    mad = statistics.median(abs(v - middle) for v in values)
    return Baseline(median=middle, scale=MAD_TO_SIGMA * mad, samples=len(values))


def threshold(base: Baseline, *, sigma: float, floor: float) -> float:
    """The value above which a sample is anomalous."""
    return base.median + max(sigma * base.scale, floor)


@dataclass(kw_only=True, frozen=True)
class Finding:
    """One sample beyond its threshold: the numbers a human is woken with."""

    agent: str
    metric: AnomalyMetric
    value: float
    median: float
    scale: float
    threshold: float
    samples: int
    bin_start: datetime
    bin_end: datetime

    def describe(self) -> str:
        return (
            f"{self.metric} = {self.value:.4g} (baseline median {self.median:.4g}, robust sigma {self.scale:.4g}, "
            f"threshold {self.threshold:.4g}, over {self.samples} samples) "
            f"in {self.bin_start:%H:%M}-{self.bin_end:%H:%M} UTC"
        )


@dataclass(kw_only=True)
class _Bin:
    sums: dict[AnomalyMetric, float] = field(default_factory=dict[AnomalyMetric, float])
    tasks: list[bool] = field(default_factory=list[bool])
    """Finished tasks in the bin, True for a failure, in the order recorded."""


class Detector:
    """Bins, baselines and verdicts for every agent; `evaluate` closes the bins that ended."""

    def __init__(self, config: AnomalyConfig) -> None:
        self.config = config
        self._bins: dict[tuple[str, int], _Bin] = {}
        self._closed_through: int | None = None
        self._history: dict[tuple[str, AnomalyMetric], deque[float]] = {}
        self._outcomes: dict[str, deque[bool]] = {}
        self.late = 0
        """Records dropped because their bin had been evaluated already."""
        self.evaluated_samples = 0
        """Samples judged against a baseline (those with `min_samples` before them), for the false-alarm rate."""

    def _bin_of(self, at: datetime) -> int:
        return math.floor(at.timestamp() / self.config.interval_s)

    def _open(self, agent: str, at: datetime) -> _Bin | None:
        index = self._bin_of(at)
        if self._closed_through is not None and index <= self._closed_through:
            self.late += 1
            return None
        return self._bins.setdefault((agent, index), _Bin())

    def record(self, agent: str, metric: AnomalyMetric, at: datetime, amount: float = 1.0) -> None:
        """`amount` of an additive metric (a call, a refusal, files changed, dollars) at `at`; 0 marks the agent
        active in that bin."""
        if metric not in _ADDITIVE:
            raise ValueError(f"{metric} is not summed: use record_task")
        found = self._open(agent, at)
        if found is not None:
            found.sums[metric] = found.sums.get(metric, 0.0) + amount

    def record_task(self, agent: str, at: datetime, *, failed: bool) -> None:
        """A task the agent finished at `at`: the failure rate is over its last `failure_rate_tasks`."""
        found = self._open(agent, at)
        if found is not None:
            found.tasks.append(failed)

    def evaluate(self, now: datetime) -> list[Finding]:
        """Close every bin that ended by `now`, oldest first; the samples beyond their threshold."""
        current = self._bin_of(now)
        closing = sorted((key for key in self._bins if key[1] < current), key=lambda key: (key[1], key[0]))
        findings: list[Finding] = []
        for agent, index in closing:
            findings += self._judge(agent, index, self._bins.pop((agent, index)))
        self._closed_through = current - 1
        return findings

    def _judge(self, agent: str, index: int, found: _Bin) -> list[Finding]:
        interval = self.config.interval_s
        start = datetime.fromtimestamp(index * interval, UTC)
        samples: dict[AnomalyMetric, float] = {
            metric: found.sums.get(metric, 0.0) * unit / interval for metric, unit in _ADDITIVE.items()
        }
        if found.tasks:
            outcomes = self._outcomes.setdefault(agent, deque(maxlen=self.config.failure_rate_tasks))
            outcomes.extend(found.tasks)
            if len(outcomes) == outcomes.maxlen:
                samples["task_failure_rate"] = sum(outcomes) / len(outcomes)
        findings: list[Finding] = []
        for metric, value in samples.items():
            history = self._history.setdefault((agent, metric), deque(maxlen=self.config.window))
            if len(history) >= self.config.min_samples:
                self.evaluated_samples += 1
                base = baseline(history)
                limit = threshold(base, sigma=self.config.sigma, floor=getattr(self.config.floors, metric))
                if value > limit:
                    findings.append(
                        Finding(
                            agent=agent,
                            metric=metric,
                            value=value,
                            median=base.median,
                            scale=base.scale,
                            threshold=limit,
                            samples=base.samples,
                            bin_start=start,
                            bin_end=start + timedelta(seconds=interval),
                        )
                    )
            history.append(value)
        return findings
