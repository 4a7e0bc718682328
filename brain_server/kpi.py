"""The KPIs, as pure functions of what the brain stores (no I/O: `telemetry.Telemetry.kpi` gathers the inputs).

Over the window [since, until] (the README's "KPIs" section says the same):

- uptime (brain, and each body): minutes seen up / minutes observed. A minute is "up" when the brain's sweep ran
  in it (the brain) or the body was connected then (streaming events, or a heartbeat within the failsafe time).
  Observed: from the window's start, or the subject's first minute kept if later, to `until` (a body that left
  cleanly: to when it left: a stop is not an outage). `agent_uptime` is the mean of the bodies' ratios.
- task success rate: tasks verified succeeded / tasks finished (outcome succeeded, failed or abandoned, finished in
  the window; cancelled tasks are not counted: nobody worked them to an end).
- decision accuracy: of the approved decisions asked in the window that are linked to a finished task (the task
  parked on it, or an update made under it), those whose every linked task succeeded verified, was never reversed,
  and whose own updates were never undone.
- ROI: value_usd of the tasks verified succeeded / LLM money spent in the window (all usage, shadow work included).
- cost per task, tokens per task: usage billed to the window's finished tasks (whenever spent) / those tasks;
  tokens are input + output.
- cost per decision: money spent in the window / decisions asked in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from shared_protocol.brain import Decision, Task, UsageRecord
from shared_protocol.telemetry import KpiReport, Uptime

from .state import Presence

BRAIN = "brain"
"""The brain's presence subject; a body's is `body:<id>` (`body_subject`)."""
FINISHED = frozenset({"succeeded", "failed", "abandoned"})


def body_subject(body_id: str) -> str:
    return f"body:{body_id}"


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def ratio(part: float, whole: float) -> float | None:
    return None if whole == 0 else part / whole


def uptime(
    subject: str,
    presence: Presence | None,
    *,
    since: datetime,
    until: datetime,
    agents: Sequence[str] = (),
    registered: datetime | None = None,
) -> Uptime:
    """Minutes up / minutes observed, counted in whole minutes (both ends included). A subject not seen in the
    window is observed from its `registered` time (or the window's start, if later) and up in none of it: a body
    that died without leaving counts as down; without `registered` (the brain, never seen) there is nothing to
    observe."""
    name = subject.removeprefix("body:")
    if presence is None:
        if registered is None:
            return Uptime(subject=name, agents=list(agents), up_minutes=0, observed_minutes=0, ratio=None)
        presence = Presence(subject=subject, minutes=0, first=minute_of(registered))
    start = max(minute_of(since), presence.first)
    end = minute_of(until)
    observed = max(0, int((end - start) / timedelta(minutes=1)) + 1)
    up = min(presence.minutes, observed)
    return Uptime(
        subject=name, agents=list(agents), up_minutes=up, observed_minutes=observed, ratio=ratio(up, observed)
    )


def _within(at: datetime | None, since: datetime, until: datetime) -> bool:
    return at is not None and since <= at <= until


def _reversed(task: Task) -> bool:
    return any(event.kind == "reversed" for event in task.history)


def decision_tasks(tasks: Iterable[Task], updated: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """Each decision's tasks: those parked on it, and those `updated` under it (its compensating records)."""
    linked: dict[str, set[str]] = {d: set(ids) for d, ids in updated.items()}
    for task in tasks:
        for event in task.history:
            decision_id = event.detail.get("decision_id")
            if event.kind == "parked" and isinstance(decision_id, str):
                linked.setdefault(decision_id, set()).add(task.id)
    return linked


def compute(
    *,
    since: datetime,
    until: datetime,
    tasks: Sequence[Task],
    usage: Sequence[UsageRecord],
    decisions: Sequence[Decision],
    presence: Sequence[Presence],
    body_left: Mapping[str, datetime | None],
    body_registered: Mapping[str, datetime] | None = None,
    decision_updates: Mapping[str, Iterable[str]],
    undone_decisions: Iterable[str],
) -> KpiReport:
    """The KPIs of [since, until] (see the module docstring).

    `body_left`: every registered body, with when it left cleanly (None: registered). `decision_updates`: the tasks
    each decision's compensating records updated;
    `body_registered`: when each body registered; `undone_decisions`: decisions whose updates were reversed.
    """
    by_subject = {p.subject: p for p in presence}
    agents_of: dict[str, set[str]] = {}
    for task in tasks:
        for event in task.history:
            body_id = event.detail.get("body_id")
            if event.kind == "claimed" and isinstance(body_id, str) and event.agent:
                agents_of.setdefault(body_id, set()).add(event.agent)
    bodies: list[Uptime] = []
    for body_id in sorted(set(body_left) | {s.removeprefix("body:") for s in by_subject if s.startswith("body:")}):
        left = body_left.get(body_id)
        end = until if left is None or left > until else left
        found = uptime(
            body_subject(body_id),
            by_subject.get(body_subject(body_id)),
            since=since,
            until=end,
            agents=sorted(agents_of.get(body_id, ())),
            registered=(body_registered or {}).get(body_id),
        )
        bodies.append(found)
    body_ratios = [b.ratio for b in bodies if b.ratio is not None]

    finished = [t for t in tasks if t.state in FINISHED and _within(t.finished_at, since, until)]
    verified = [t for t in finished if t.state == "succeeded" and t.verified]
    finished_ids = {t.id for t in finished}
    by_id = {t.id: t for t in tasks}

    spent = [r for r in usage if since <= r.at <= until]
    spend = sum(r.usd for r in spent)
    billed = [r for r in usage if r.task_id in finished_ids]
    task_spend = sum(r.usd for r in billed)
    task_tokens = sum(r.input_tokens + r.output_tokens for r in billed)
    value = sum(t.value_usd for t in verified)

    asked = [d for d in decisions if since <= d.created_at <= until]
    linked = decision_tasks(tasks, decision_updates)
    undone = set(undone_decisions)
    judged = accurate = 0
    for decision in asked:
        if decision.state != "approved":
            continue
        outcomes = [by_id[i] for i in linked.get(decision.id, ()) if i in by_id and by_id[i].state in FINISHED]
        if not outcomes:
            continue
        judged += 1
        if decision.id not in undone and all(
            t.state == "succeeded" and t.verified and not _reversed(t) for t in outcomes
        ):
            accurate += 1

    return KpiReport(
        since=since,
        until=until,
        brain_uptime=uptime(BRAIN, by_subject.get(BRAIN), since=since, until=until),
        body_uptime=bodies,
        agent_uptime=ratio(sum(body_ratios), len(body_ratios)),
        tasks_finished=len(finished),
        tasks_verified_succeeded=len(verified),
        task_success_rate=ratio(len(verified), len(finished)),
        decisions=len(asked),
        decisions_approved_judged=judged,
        decisions_approved_accurate=accurate,
        decision_accuracy=ratio(accurate, judged),
        spend_usd=spend,
        value_delivered_usd=value,
        roi=ratio(value, spend),
        task_spend_usd=task_spend,
        task_tokens=task_tokens,
        cost_per_task_usd=ratio(task_spend, len(finished)),
        tokens_per_task=ratio(task_tokens, len(finished)),
        cost_per_decision_usd=ratio(spend, len(asked)),
        llm_calls=len(spent),
    )
