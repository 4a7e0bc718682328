"""Comparing a candidate logic version with the live one: pure functions, no clock, no store.

A version's record on the compared tasks is a `Sample`; `compare` says, metric by metric, whether the candidate
holds against the live version. The test, stated once (README "Rollout"):

    verified_success   one-sided Fisher exact test on verified successes / tasks: the candidate fails when
                       P(a rate this low or lower | both rates equal) < ALPHA (self-reported successes never count)
    approval_rate      the same test on approved / decided decisions its tasks waited on
    refusals           one-sided exact test of two Poisson rates (refused calls per task), conditional on the total:
                       X ~ Binomial(k_c + k_l, n_c / (n_c + n_l)); fails when P(X >= k_c) < ALPHA
    cost_per_task      the ratio of mean spend per task, candidate / live; fails when it exceeds MAX_COST_RATIO,
                       judged only once the candidate has the step's minimum of tasks (one costly task is noise)

A reviewer or captain agent's version votes rather than works (`compare_votes`):

    vote_agreement     its votes that agree with the panel's counted votes / its compared votes; the same one-sided
                       Fisher exact test fails it (rolled back); promoted only at a rate at least the live one's

A side with no tasks gives no evidence (p = 1): nothing fails on it. Exact arithmetic (`Fraction`), so hand-computed
examples hold to the last digit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from math import comb
from typing import Literal

ALPHA = 0.05
"""A one-sided p-value under this fails a metric: the candidate is worse than chance would explain."""
MAX_COST_RATIO = 1.5
"""The candidate may cost up to this many times the live version's mean per task."""

MetricName = Literal["verified_success", "approval_rate", "refusals", "cost_per_task", "vote_agreement"]


def bucket(task_id: str) -> int:
    """The task's canary bucket, 0-99: deterministic by task id (SHA-256), the same on every brain and engine.
    At a step of P percent the candidate takes the tasks whose bucket is under P, the live version the others."""
    return int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:8], "big") % 100


def fisher_worse(k_c: int, n_c: int, k_l: int, n_l: int) -> float:
    """One-sided Fisher exact p-value that the candidate's rate `k_c/n_c` is below the live `k_l/n_l`:
    P(X <= k_c), X hypergeometric (draw n_c of n_c + n_l, of which k_c + k_l are successes). 1.0 without data."""
    _check_counts(k_c, n_c, k_l, n_l)
    if n_c == 0 or n_l == 0:
        return 1.0
    total, successes = n_c + n_l, k_c + k_l
    low = max(0, n_c - (total - successes))
    tail = sum(comb(successes, x) * comb(total - successes, n_c - x) for x in range(low, k_c + 1))
    return float(Fraction(tail, comb(total, n_c)))


def rate_higher(k_c: int, n_c: int, k_l: int, n_l: int) -> float:
    """One-sided exact p-value that the candidate's count per task `k_c/n_c` is above the live `k_l/n_l` (counts
    of events, e.g. refusals, over tasks): P(X >= k_c), X ~ Binomial(k_c + k_l, n_c / (n_c + n_l)). 1.0 without
    data (no tasks on a side, or no events at all)."""
    if min(k_c, n_c, k_l, n_l) < 0:
        raise ValueError("counts are never negative")
    k = k_c + k_l
    if n_c == 0 or n_l == 0 or k == 0:
        return 1.0
    p = Fraction(n_c, n_c + n_l)
    tail = sum(comb(k, x) * p**x * (1 - p) ** (k - x) for x in range(k_c, k + 1))
    return float(tail)


def _check_counts(k_c: int, n_c: int, k_l: int, n_l: int) -> None:
    if min(k_c, n_c, k_l, n_l) < 0 or k_c > n_c or k_l > n_l:
        raise ValueError(f"successes must be between 0 and the trials ({k_c}/{n_c}, {k_l}/{n_l})")


@dataclass(kw_only=True, frozen=True)
class Sample:
    """One version's record on the compared tasks."""

    tasks: int = 0
    verified: int = 0
    """Tasks that succeeded with a confirmed re-run of their acceptance command (never a self-report)."""
    decided: int = 0
    """Decisions its tasks waited on that were answered (approved, denied, expired, overridden)."""
    approved: int = 0
    refusals: int = 0
    """Calls its bodies refused."""
    refusal_tasks: int | None = None
    """The tasks those refusals were counted over (a refused call names no kind of task); None: `tasks`."""
    usd: float = 0.0
    """Spend on those tasks."""

    def __post_init__(self) -> None:
        _check_counts(self.verified, self.tasks, self.approved, self.decided)
        if self.refusals < 0 or self.usd < 0 or (self.refusal_tasks or 0) < 0:
            raise ValueError("refusals and spend are never negative")

    @property
    def exposure(self) -> int:
        """The tasks the refusals are per."""
        return self.tasks if self.refusal_tasks is None else self.refusal_tasks

    @property
    def cost_per_task(self) -> float | None:
        return None if self.tasks == 0 else self.usd / self.tasks


@dataclass(kw_only=True, frozen=True)
class MetricResult:
    """One metric, side by side, with its test."""

    name: MetricName
    candidate: str
    live: str
    test: str
    """The statistic: `p=…` for the exact tests, `ratio=…` for cost."""
    holds: bool


@dataclass(kw_only=True, frozen=True)
class Comparison:
    metrics: tuple[MetricResult, ...]

    @property
    def holds(self) -> bool:
        return all(m.holds for m in self.metrics)

    @property
    def failing(self) -> list[MetricName]:
        return [m.name for m in self.metrics if not m.holds]


def _rate(k: int, n: int) -> str:
    return "n/a (0)" if n == 0 else f"{k}/{n} = {k / n:.0%}"


def _per_task(count: int, tasks: int) -> str:
    return "n/a (0)" if tasks == 0 else f"{count}/{tasks} = {count / tasks:.2f}/task"


def _usd(value: float | None) -> str:
    return "n/a (0 tasks)" if value is None else f"${value:.4f}"


def cost_ratio(candidate: Sample, live: Sample) -> float | None:
    """Candidate's mean spend per task over the live version's; None when either has no tasks. A live mean of 0:
    1.0 if the candidate's is 0 too, else infinity."""
    mine, theirs = candidate.cost_per_task, live.cost_per_task
    if mine is None or theirs is None:
        return None
    if theirs == 0:
        return 1.0 if mine == 0 else float("inf")
    return mine / theirs


def compare(candidate: Sample, live: Sample, *, min_tasks: int) -> Comparison:
    """Each metric of `candidate` against `live` (see the module docstring for the tests)."""
    if min_tasks < 1:
        raise ValueError("min_tasks is at least 1")
    success_p = fisher_worse(candidate.verified, candidate.tasks, live.verified, live.tasks)
    approval_p = fisher_worse(candidate.approved, candidate.decided, live.approved, live.decided)
    refusal_p = rate_higher(candidate.refusals, candidate.exposure, live.refusals, live.exposure)
    ratio = cost_ratio(candidate, live)
    cost_judged = ratio is not None and candidate.tasks >= min_tasks
    c_ref = _per_task(candidate.refusals, candidate.exposure)
    l_ref = _per_task(live.refusals, live.exposure)
    return Comparison(
        metrics=(
            MetricResult(
                name="verified_success",
                candidate=_rate(candidate.verified, candidate.tasks),
                live=_rate(live.verified, live.tasks),
                test=f"p={success_p:.4f}",
                holds=success_p >= ALPHA,
            ),
            MetricResult(
                name="approval_rate",
                candidate=_rate(candidate.approved, candidate.decided),
                live=_rate(live.approved, live.decided),
                test=f"p={approval_p:.4f}",
                holds=approval_p >= ALPHA,
            ),
            MetricResult(
                name="refusals",
                candidate=c_ref,
                live=l_ref,
                test=f"p={refusal_p:.4f}",
                holds=refusal_p >= ALPHA,
            ),
            MetricResult(
                name="cost_per_task",
                candidate=_usd(candidate.cost_per_task),
                live=_usd(live.cost_per_task),
                test=("ratio=n/a" if ratio is None else f"ratio={ratio:.2f}")
                + ("" if cost_judged else f" (judged from {min_tasks} tasks)"),
                holds=not cost_judged or ratio is None or ratio <= MAX_COST_RATIO,
            ),
        )
    )


def compare_votes(candidate: tuple[int, int], live: tuple[int, int]) -> Comparison:
    """A reviewer agent's candidate against its live version: (agreeing, compared) votes each (`rollout.agreement`).
    The metric fails (a rollback) when the candidate agrees less often than chance would explain (one-sided Fisher
    exact test, p < ALPHA); whether its rate is at least the live one's (a promotion) is the caller's rule."""
    (k_c, n_c), (k_l, n_l) = candidate, live
    p = fisher_worse(k_c, n_c, k_l, n_l)
    return Comparison(
        metrics=(
            MetricResult(
                name="vote_agreement",
                candidate=_rate(k_c, n_c),
                live=_rate(k_l, n_l),
                test=f"p={p:.4f}",
                holds=p >= ALPHA,
            ),
        )
    )
