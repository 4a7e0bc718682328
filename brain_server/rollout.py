"""What autonomous agents may do, decided from what the brain stores: the live gate, the rollout of a new logic
version (shadow, then canary steps, then live), and usage totals.

Pure functions: the brain reads the latest readiness report, the overrides in force, the rollout states, tasks,
decisions and refusals, and asks these (`rollouts.py` does the reading, writing and paging).

A rollout, per agent (`RolloutState`): the live logic version, and at most one candidate.

    a version the brain has not seen claims           → the candidate, in shadow (its work recorded, not applied)
    shadow done ([rollout] shadow_days since its first
    shadow run, and min_shadow_tasks shadow runs, on
    kinds of task the live version worked) and its
    metrics hold against the live version's            → canary, step 0 (`[rollout] steps`, 1% by default)
    min_tasks_per_step live tasks at a step (of kinds
    the live version worked) and the metrics hold      → the next step; past the last (100%), the live version
    a metric fails (shadow or canary)                  → rolled back at once (never a candidate again), paged
    no live version yet                                → the first version readiness lets work live becomes it

A reviewer or captain agent's rollout (`RolloutState.voter`) is the same machine over its votes (`evaluate_votes`):
a version not voting live has its vote kept on the decision as a shadow vote (never counted); "tasks" are the
decisions it voted on, and its one metric is how often its votes agree with the panel's counted ones
(`agreement`): promoted out of shadow after min_shadow_tasks compared decisions over shadow_days and out of each
canary step after min_tasks_per_step, each time only at an agreement rate at least the live version's; rolled back
when the one-sided Fisher exact test says it agrees less (p < ALPHA). At a canary step of P percent its votes count
on the decisions whose bucket (`canary.bucket`, by decision id) is under P, the live version's on the others. Its
first version votes live once it has its shadow period (min_shadow_tasks decisions over shadow_days) or a human
captain's readiness override names it.

At a canary step of P percent a live task goes to the candidate when its bucket (`canary.bucket`, by task id) is
under P, to the live version otherwise: decided at claim time, the other version's claims do not see it.
Compared: the candidate's work (shadow runs in shadow; its live tasks since the canary began) against the live
version's live tasks, on the kinds of task (repository and acceptance command) both have worked; a run whose
verification the brain has not settled yet (the body's audit event not in) is neither, until it is or until
UNSETTLED_GRACE_S have passed (then a failure).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from shared_protocol.brain import (
    Decision,
    ReadinessOverride,
    ReadinessReport,
    RolloutState,
    Task,
    TaskEvent,
    TaskSpend,
    UsageRecord,
    UsageTotal,
    UsageTotals,
    Verification,
)
from shared_protocol.config import RolloutConfig
from shared_protocol.consensus import latest
from shared_protocol.decisions import VoteValue

from .canary import ALPHA, MAX_COST_RATIO, Comparison, Sample, compare, compare_votes
from .state import UsageSummary


def live_ready(report: ReadinessReport | None, *, now: datetime, max_age_s: int) -> bool:
    """The latest report lets live work through: it is ready and younger than `max_age_s`."""
    return report is not None and report.ready and now - report.at < timedelta(seconds=max_age_s)


def live_refusal(
    report: ReadinessReport | None,
    overrides: Sequence[ReadinessOverride],
    *,
    agent: str,
    logic_version: str,
    now: datetime,
    max_age_s: int,
) -> str | None:
    """Why a live claim by `agent` at `logic_version` is refused now, with what to do about it; None: allowed."""
    if live_ready(report, now=now, max_age_s=max_age_s):
        return None
    if any(o.agent == agent and o.logic_version == logic_version and o.expires_at > now for o in overrides):
        return None
    if report is None:
        why = "no readiness report has been recorded"
    elif not report.ready:
        failing = ", ".join(item.name for item in report.items if not item.ok)
        why = f"the latest readiness report ({report.at.isoformat(timespec='seconds')}) fails: {failing}"
    else:
        age = int((now - report.at).total_seconds())
        why = f"the latest ready readiness report is {age} s old (older than [rollout] readiness_max_age_s={max_age_s})"
    return (
        f"live work for agent '{agent}' (logic version {logic_version}) is refused: {why}, and no override is in "
        f"force. Run `swarm readiness` until every item holds, or have a human captain run "
        f"`swarm readiness override --agent {agent} --reason ...`"
    )


class _Sum:
    """A running `UsageTotal`, added to in place (a model per record and per sum cost the dashboard's every poll of
    `GET /v1/usage` a model construction four times a record)."""

    __slots__ = ("cache_read_tokens", "cache_write_tokens", "calls", "input_tokens", "output_tokens", "usd")

    def __init__(self) -> None:
        self.calls = self.input_tokens = self.output_tokens = self.cache_read_tokens = self.cache_write_tokens = 0
        self.usd = 0.0

    def add(self, record: UsageRecord) -> None:
        self.calls += 1
        self.usd += record.usd
        self.input_tokens += record.input_tokens
        self.output_tokens += record.output_tokens
        self.cache_read_tokens += record.cache_read_tokens
        self.cache_write_tokens += record.cache_write_tokens

    def total(self) -> UsageTotal:
        return UsageTotal(
            calls=self.calls,
            usd=self.usd,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
        )


def running_totals(summaries: Iterable[UsageSummary], *, agent: str | None = None) -> UsageTotals:
    """`usage_totals` of every record (of `agent`'s), from the store's running totals by agent, model and outcome
    (`TelemetryStore.usage_summary`), `by_task` left empty. The sums are the same; a sum of many `usd` may differ in
    its last bits, as floating-point sums in another order do."""
    total = UsageTotal()
    by_agent: dict[str, UsageTotal] = {}
    by_model: dict[str, UsageTotal] = {}
    for row in summaries:
        if agent is not None and row.agent != agent:
            continue
        part = UsageTotal(
            calls=row.calls,
            usd=row.usd,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cache_read_tokens=row.cache_read_tokens,
            cache_write_tokens=row.cache_write_tokens,
        )
        total = _plus(total, part)
        by_agent[row.agent] = _plus(by_agent.get(row.agent, UsageTotal()), part)
        by_model[row.model] = _plus(by_model.get(row.model, UsageTotal()), part)
    return UsageTotals(total=total, by_agent=by_agent, by_task={}, by_model=by_model)


def _plus(a: UsageTotal, b: UsageTotal) -> UsageTotal:
    return UsageTotal(
        calls=a.calls + b.calls,
        usd=a.usd + b.usd,
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        cache_read_tokens=a.cache_read_tokens + b.cache_read_tokens,
        cache_write_tokens=a.cache_write_tokens + b.cache_write_tokens,
    )


def usage_totals(records: Iterable[UsageRecord]) -> UsageTotals:
    """Totals over `records`: all of them, by agent, by task (calls outside a task: in the others only), by model."""
    total = _Sum()
    by_agent: dict[str, _Sum] = {}
    by_task: dict[str, _Sum] = {}
    by_model: dict[str, _Sum] = {}
    for record in records:
        total.add(record)
        by_agent.setdefault(record.agent, _Sum()).add(record)
        if record.task_id is not None:
            by_task.setdefault(record.task_id, _Sum()).add(record)
        by_model.setdefault(record.model, _Sum()).add(record)
    return UsageTotals(
        total=total.total(),
        by_agent={k: v.total() for k, v in by_agent.items()},
        by_task={k: v.total() for k, v in by_task.items()},
        by_model={k: v.total() for k, v in by_model.items()},
    )


# -- rollout ---------------------------------------------------------------------------------

TaskKind = tuple[str, str]
"""A kind of task: its repository and acceptance command."""

TEST_STATEMENT = (
    f"candidate vs live on the kinds of task both worked: verified success and approval rate by one-sided Fisher "
    f"exact test, refusals per task by a one-sided exact Poisson-rate test (fail: p < {ALPHA}); cost per task: "
    f"fail when over {MAX_COST_RATIO}x the live mean (once a step's minimum of tasks is in)"
)

DAY_S = 86_400.0


@dataclass(kw_only=True, frozen=True)
class Run:
    """A finished piece of a version's work, as compared: a live task, or a shadow run."""

    task_id: str
    kind: TaskKind
    at: datetime
    claimed_at: datetime
    """When its claim was granted (a step counts the tasks claimed at it)."""
    verified: bool
    """Succeeded with the body's re-run of the acceptance command confirmed (never a self-report)."""
    usd: float


@dataclass(kw_only=True, frozen=True)
class Refusal:
    """A call a body of `agent` at `logic_version` refused, at `at` (an audit event's time)."""

    agent: str
    logic_version: str
    at: datetime


def kind(task: Task) -> TaskKind:
    return (task.repo, task.acceptance)


UNSETTLED_GRACE_S = 300.0
"""How long a run's claim of `verified` may wait for the body's audit event before it counts as not verified."""


def _unsettled(verification: Verification | None, at: datetime, now: datetime | None) -> bool:
    """A claim of `verified` the brain has not checked against the body's audit event yet (the body ships its chain
    on its own: the event may arrive a moment after the outcome): neither a success nor a failure for
    UNSETTLED_GRACE_S after the outcome at `at`, so the run is not compared or counted yet; past that, a failure
    (evidence never sent does not hide one). `now` None: no grace."""
    pending = verification is not None and verification.status == "pending"
    return pending and now is not None and (now - at).total_seconds() < UNSETTLED_GRACE_S


def ledger_usd(usage: Iterable[UsageRecord], task: Task, agent: str, version: str) -> float:
    """What the brain's usage ledger holds for `task`, but for the calls of another version of `agent`: this version's
    own calls and everyone else's charged to the task (the reviewers' of the decisions it asked for). Not windowed
    by the records' `at`, which is the body's word."""
    return sum(
        record.usd
        for record in usage
        if record.task_id == task.id and not (record.agent == agent and record.logic_version != version)
    )


def _lost_leases(task: Task, agent: str, version: str) -> list[Run]:
    """The live claims of `task` by `agent` at `version` that ended with their lease running out (the runner hung,
    crashed or dropped the task): each a failed run, so a version cannot keep its canary share by losing tasks."""
    runs: list[Run] = []
    claimed: TaskEvent | None = None
    for line in task.history:
        if line.kind == "claimed":
            claimed = line
        elif line.kind == "lease_lost" and claimed is not None and claimed.detail.get("mode") == "live":
            if line.agent == agent and line.logic_version == version:
                runs.append(
                    Run(task_id=task.id, kind=kind(task), at=line.at, claimed_at=claimed.at, verified=False, usd=0.0)
                )
            claimed = None
    return runs


def live_runs(
    tasks: Iterable[Task],
    agent: str,
    version: str,
    *,
    now: datetime | None = None,
    usage: Sequence[UsageRecord] = (),
) -> list[Run]:
    """The live tasks `agent` at `version` finished (succeeded, failed, abandoned), but for those whose verification
    is unsettled at `now` (`_unsettled`). A run's cost is the larger of what its outcome reported and what the
    brain's usage ledger holds for it (`ledger_usd`): a runner under-reporting its spend is not cheaper for it."""
    runs: list[Run] = []
    for task in tasks:
        runs += _lost_leases(task, agent, version)
        holder = task.claimed_by
        if task.claim_mode != "live" or task.logic_version != version or holder is None or holder.agent != agent:
            continue
        if task.state not in ("succeeded", "failed", "abandoned") or task.finished_at is None:
            continue
        if _unsettled(task.verification, task.finished_at, now):
            continue
        claimed_at = task.claimed_at or task.finished_at
        ledger = ledger_usd(usage, task, agent, version)
        succeeded = task.state == "succeeded"
        runs.append(_run(task, task.finished_at, claimed_at, succeeded, task.verification, task.spend, ledger=ledger))
    return runs


def shadow_runs(tasks: Iterable[Task], agent: str, version: str, *, now: datetime | None = None) -> list[Run]:
    """The shadow runs of `agent` at `version`, but for those whose verification is unsettled at `now`."""
    runs: list[Run] = []
    for task in tasks:
        for run in task.shadow_runs:
            if run.agent != agent or run.logic_version != version or _unsettled(run.verification, run.at, now):
                continue
            runs.append(_run(task, run.at, run.at, run.outcome == "succeeded", run.verification, run.spend))
    return runs


def _run(
    task: Task,
    at: datetime,
    claimed_at: datetime,
    succeeded: bool,
    verification: Verification | None,
    spend: TaskSpend | None,
    *,
    ledger: float = 0.0,
) -> Run:
    """A live task's or a shadow run's result as compared: verified only when it succeeded and the body's re-run
    of the acceptance command confirmed it; its cost at least what the brain's usage ledger holds for it."""
    confirmed = verification is not None and verification.status == "confirmed"
    usd = max(0.0 if spend is None else spend.usd, ledger)
    return Run(
        task_id=task.id, kind=kind(task), at=at, claimed_at=claimed_at, verified=succeeded and confirmed, usd=usd
    )


def answered(
    tasks: Iterable[Task], decisions: Mapping[str, Decision], agent: str, version: str, *, since: datetime | None
) -> tuple[int, int]:
    """(answered, approved): the decisions the tasks of `agent` at `version` waited on (parked) since `since`."""
    seen: set[str] = set()
    approved = 0
    for task in tasks:
        for line in task.history:
            if line.kind != "parked" or line.agent != agent or line.logic_version != version:
                continue
            if since is not None and line.at < since:
                continue
            decision = decisions.get(str(line.detail.get("decision_id", "")))
            if decision is None or decision.state == "pending" or decision.id in seen:
                continue
            seen.add(decision.id)
            approved += decision.state == "approved"
    return len(seen), approved


def _sample(runs: Sequence[Run], decided: tuple[int, int], refusals: int, refusal_tasks: int) -> Sample:
    return Sample(
        tasks=len(runs),
        verified=sum(run.verified for run in runs),
        decided=decided[0],
        approved=decided[1],
        refusals=refusals,
        refusal_tasks=refusal_tasks,
        usd=sum(run.usd for run in runs),
    )


RolloutAction = Literal["hold", "promote", "rollback"]


@dataclass(kw_only=True, frozen=True)
class Evaluation:
    """A candidate against the live version now, and what that means for its rollout."""

    comparison: Comparison
    candidate_tasks: int
    live_tasks: int
    stage_tasks: int
    shadow_tasks: int
    shadow_days: float
    action: RolloutAction
    next: str


def percent(state: RolloutState | None, steps: Sequence[int]) -> int:
    """The share of live tasks the candidate takes now."""
    if state is None or state.candidate is None or state.stage != "canary":
        return 0
    return steps[min(state.step, len(steps) - 1)]


def evaluate(
    state: RolloutState,
    *,
    tasks: Sequence[Task],
    decisions: Mapping[str, Decision],
    refusals: Sequence[Refusal],
    config: RolloutConfig,
    now: datetime,
    usage: Sequence[UsageRecord] = (),
) -> Evaluation | None:
    """The candidate of `state` against its live version (None: no candidate); `usage`: the brain's usage ledger."""
    candidate, live = state.candidate, state.live_version
    if candidate is None:
        return None
    agent = state.agent
    shadow = shadow_runs(tasks, agent, candidate, now=now)
    shadow_tasks = len({run.task_id for run in shadow})
    first = min((run.at for run in shadow), default=None)
    days = 0.0 if first is None else (now - first).total_seconds() / DAY_S
    in_canary = state.stage == "canary"
    since = state.canary_since if in_canary else state.candidate_since
    mine = (
        [r for r in live_runs(tasks, agent, candidate, now=now, usage=usage) if since is None or r.claimed_at >= since]
        if in_canary
        else shadow
    )
    theirs = [] if live is None else live_runs(tasks, agent, live, now=now, usage=usage)
    kinds = {r.kind for r in mine} & {r.kind for r in theirs}
    mine_compared = [r for r in mine if r.kind in kinds]
    theirs_compared = [r for r in theirs if r.kind in kinds]
    c_refusals = sum(
        1 for r in refusals if r.agent == agent and r.logic_version == candidate and (since is None or r.at >= since)
    )
    l_refusals = sum(1 for r in refusals if r.agent == agent and r.logic_version == live)
    # refusals per task: the version's refused calls over all its runs in the same window (calls name no kind)
    c_sample = _sample(mine_compared, answered(tasks, decisions, agent, candidate, since=since), c_refusals, len(mine))
    l_sample = _sample(
        theirs_compared, answered(tasks, decisions, agent, live or "", since=None), l_refusals, len(theirs)
    )
    comparison = compare(c_sample, l_sample, min_tasks=config.min_tasks_per_step)
    stage_since = state.stage_since
    stage_tasks = (
        len([r for r in mine if stage_since is None or r.claimed_at >= stage_since]) if in_canary else shadow_tasks
    )
    # A promotion needs its minimum of tasks on kinds the live version worked too: a metric with nothing to compare
    # it with "holds" without evidence, and work no one can compare never promotes a version.
    stage_compared = (
        len([r for r in mine_compared if stage_since is None or r.claimed_at >= stage_since])
        if in_canary
        else len({r.task_id for r in mine_compared})
    )
    uncompared = stage_tasks - stage_compared
    unmatched = (
        f" ({uncompared} of its tasks are of kinds the live version has not finished: they are not compared "
        "and do not count)"
        if uncompared
        else ""
    )
    action: RolloutAction = "hold"
    if live is not None and not comparison.holds:
        action = "rollback"
        next_step = f"rolled back: {', '.join(comparison.failing)} failed the test"
    elif in_canary:
        steps = config.steps
        step = min(state.step, len(steps) - 1)
        to = "live" if step == len(steps) - 1 else f"{steps[step + 1]}%"
        if stage_compared >= config.min_tasks_per_step:
            action = "promote"
            next_step = f"promoted to {to}: {stage_compared} compared tasks at {steps[step]}% and every metric held"
        else:
            next_step = (
                f"{config.min_tasks_per_step - stage_compared} more live tasks at {steps[step]}%, compared with "
                f"the live version's (min_tasks_per_step={config.min_tasks_per_step}) with every metric holding, "
                f"then {to}{unmatched}"
            )
    else:
        done = (
            shadow_tasks >= config.min_shadow_tasks
            and stage_compared >= config.min_shadow_tasks
            and days >= config.shadow_days
        )
        if live is None:
            next_step = (
                "no live version yet: this one becomes live when readiness lets its first live claim through "
                f"(shadow: {shadow_tasks}/{config.min_shadow_tasks} tasks, {days:.2f}/{config.shadow_days:g} days)"
            )
        elif done:
            action = "promote"
            next_step = f"shadow done ({shadow_tasks} tasks over {days:.2f} days): canary at {config.steps[0]}%"
        else:
            next_step = (
                f"shadow: {max(config.min_shadow_tasks - stage_compared, 0)} more shadow tasks compared with the "
                f"live version's (min_shadow_tasks={config.min_shadow_tasks}) and "
                f"{max(config.shadow_days - days, 0):.2f} more days (shadow_days={config.shadow_days:g}), "
                f"every metric holding; then canary at {config.steps[0]}%"
                f"{unmatched}"
            )
    return Evaluation(
        comparison=comparison,
        candidate_tasks=len(mine_compared),
        live_tasks=len(theirs_compared),
        stage_tasks=stage_tasks,
        shadow_tasks=shadow_tasks,
        shadow_days=days,
        action=action,
        next=next_step,
    )


@dataclass(kw_only=True, frozen=True)
class Ballot:
    """A reviewer agent's vote at a version on one decision (its latest there), as compared."""

    decision_id: str
    at: datetime
    shadow: bool
    agrees: bool | None
    """Whether it agrees with the panel's counted votes (`panel_verdict`); None: not compared."""


def panel_verdict(decision: Decision, agent: str, *, also: str | None = None) -> VoteValue | None:
    """What the panel's counted votes said on a final decision, `agent`'s own seat (and `also`'s) left out: approve
    or deny, by the majority of the other seats' latest counted votes (None: pending, or no majority either way)."""
    if decision.state == "pending":
        return None
    others = [
        v.value for seat, v in latest(decision.votes).items() if seat in decision.panel and seat not in (agent, also)
    ]
    approvals, denials = others.count("approve"), others.count("deny")
    if approvals == denials:
        return None
    return "approve" if approvals > denials else "deny"


def ballots(decisions: Iterable[Decision], agent: str, version: str) -> list[Ballot]:
    """The votes of reviewer agent `agent` at `version`, its latest per decision; an abstention never agrees."""
    found: list[Ballot] = []
    for decision in decisions:
        mine = [v for v in decision.votes if v.agent == agent and v.logic_version == version]
        if not mine:
            continue
        vote, verdict = mine[-1], panel_verdict(decision, agent)
        agrees = None if verdict is None else vote.value == verdict
        found.append(Ballot(decision_id=decision.id, at=vote.at, shadow=vote.shadow, agrees=agrees))
    return found


def seats_agreement(decisions: Iterable[Decision], agent: str, ids: Iterable[str]) -> tuple[int, int]:
    """(agreeing, compared) of the panel's other counted seats on decisions `ids`: each seat's latest counted vote
    against the majority of the seats left when it and `agent` are left out, as a candidate's is judged — the
    baseline of a reviewer agent's first version, which has no live version to be compared with."""
    wanted, k, n = set(ids), 0, 0
    for decision in decisions:
        if decision.id not in wanted:
            continue
        for seat, vote in latest(decision.votes).items():
            verdict = panel_verdict(decision, agent, also=seat)
            if seat == agent or seat not in decision.panel or verdict is None:
                continue
            k, n = k + (vote.value == verdict), n + 1
    return k, n


def agreement(found: Iterable[Ballot]) -> tuple[int, int]:
    """(agreeing, compared) of `found`."""
    compared = [b for b in found if b.agrees is not None]
    return sum(1 for b in compared if b.agrees), len(compared)


def shadow_period(found: Sequence[Ballot], now: datetime) -> tuple[int, float]:
    """(decisions voted on in shadow, days since the first of those votes)."""
    shadow = [b for b in found if b.shadow]
    first = min((b.at for b in shadow), default=None)
    return len(shadow), 0.0 if first is None else (now - first).total_seconds() / DAY_S


def evaluate_votes(
    state: RolloutState, *, decisions: Sequence[Decision], config: RolloutConfig, now: datetime
) -> Evaluation | None:
    """A reviewer or captain agent's candidate against its live version, by their votes (None: no candidate). With no
    live version yet, against the panel's other counted seats on the decisions it voted on (`seats_agreement`)."""
    candidate, live = state.candidate, state.live_version
    if candidate is None:
        return None
    agent = state.agent
    found = ballots(decisions, agent, candidate)
    reviewed, days = shadow_period(found, now)
    in_canary = state.stage == "canary"
    since = state.canary_since if in_canary else None
    mine = [b for b in found if (since is None or b.at >= since) and (in_canary or b.shadow)]
    k_c, n_c = agreement(mine)
    if live is None:  # (no live version: the baseline is the panel's other counted seats on the same decisions)
        k_l, n_l = seats_agreement(decisions, agent, (b.decision_id for b in mine if b.agrees is not None))
    else:
        k_l, n_l = agreement(ballots(decisions, agent, live))
    comparison = compare_votes((k_c, n_c), (k_l, n_l))
    stage_since = state.stage_since if in_canary else None
    stage_compared = agreement(b for b in mine if stage_since is None or b.at >= stage_since)[1]
    as_often = n_l > 0 and k_c * n_l >= k_l * n_c
    baseline = "the live version" if live is not None else "the panel's other seats"
    rates = f"agrees {k_c}/{n_c}, {baseline} {k_l}/{n_l}"
    action: RolloutAction = "hold"
    if not comparison.holds:
        action = "rollback"
        next_step = f"rolled back: its votes agree with the panel's counted votes less often ({rates}; p < {ALPHA})"
    elif live is None:
        if n_c >= config.min_shadow_tasks and days >= config.shadow_days and as_often:
            action = "promote"
            next_step = f"shadow done ({reviewed} decisions over {days:.2f} days, {rates}): its votes count from now on"
        else:
            next_step = (
                f"no live version yet: its votes count once it voted in shadow on {config.min_shadow_tasks} decisions "
                f"since settled over {config.shadow_days:g} days ({n_c} compared, {reviewed} over {days:.2f} so far), "
                f"agreeing with the panel's counted votes at least as often as the panel's other seats do ({rates}); "
                f"or a human captain's `swarm readiness override --agent {agent}` names this version, or "
                f"`swarm rollout promote {agent}`"
            )
    elif in_canary:
        steps = config.steps
        step = min(state.step, len(steps) - 1)
        to = "live" if step == len(steps) - 1 else f"{steps[step + 1]}%"
        if stage_compared >= config.min_tasks_per_step and as_often:
            action = "promote"
            next_step = f"promoted to {to}: {stage_compared} compared decisions at {steps[step]}% ({rates})"
        else:
            next_step = (
                f"{max(config.min_tasks_per_step - stage_compared, 0)} more compared decisions at {steps[step]}% "
                f"(min_tasks_per_step={config.min_tasks_per_step}) with its votes agreeing with the panel's counted "
                f"ones at least as often as the live version's ({rates}), then {to}"
            )
    elif n_c >= config.min_shadow_tasks and days >= config.shadow_days and as_often:
        action = "promote"
        next_step = f"shadow done ({reviewed} decisions over {days:.2f} days, {rates}): canary at {config.steps[0]}%"
    else:
        next_step = (
            f"shadow: {max(config.min_shadow_tasks - n_c, 0)} more compared decisions "
            f"(min_shadow_tasks={config.min_shadow_tasks}) and {max(config.shadow_days - days, 0):.2f} more days "
            f"(shadow_days={config.shadow_days:g}), its votes agreeing with the panel's counted ones at least as often "
            f"as the live version's ({rates}); then canary at {config.steps[0]}%"
        )
    return Evaluation(
        comparison=comparison,
        candidate_tasks=n_c,
        live_tasks=n_l,
        stage_tasks=stage_compared,
        shadow_tasks=reviewed,
        shadow_days=days,
        action=action,
        next=next_step,
    )


def promoted(state: RolloutState, *, steps: Sequence[int], now: datetime) -> RolloutState:
    """`state` one stage on: shadow → the first canary step (straight to live without a live version), a step →
    the next, the last step → live."""
    assert state.candidate is not None, "only a candidate is promoted"
    if state.stage == "shadow" and state.live_version is not None:
        return state.model_copy(update={"stage": "canary", "step": 0, "stage_since": now, "canary_since": now})
    if state.stage == "canary" and state.step + 1 < len(steps):
        return state.model_copy(update={"step": state.step + 1, "stage_since": now})
    return state.model_copy(
        update={
            "live_version": state.candidate,
            "live_since": now,
            "candidate": None,
            "stage": None,
            "step": 0,
            "candidate_since": None,
            "stage_since": None,
            "canary_since": None,
        }
    )


def rolled_back(state: RolloutState) -> RolloutState:
    """`state` without its candidate, which is never a candidate again."""
    assert state.candidate is not None, "only a candidate is rolled back"
    return state.model_copy(
        update={
            "candidate": None,
            "stage": None,
            "step": 0,
            "candidate_since": None,
            "stage_since": None,
            "canary_since": None,
            "rolled_back": [*state.rolled_back, state.candidate],
        }
    )


def with_candidate(state: RolloutState, version: str, *, now: datetime) -> RolloutState:
    """`state` with `version` as its candidate, in shadow (replacing any other candidate)."""
    return state.model_copy(
        update={
            "candidate": version,
            "stage": "shadow",
            "step": 0,
            "candidate_since": now,
            "stage_since": now,
            "canary_since": None,
        }
    )
