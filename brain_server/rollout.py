"""What autonomous agents may do, decided from what the brain stores: the live gate, and usage totals.

Pure functions: the brain reads the latest readiness report, the overrides in force and the usage
records, and asks these.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from shared_protocol.brain import ReadinessOverride, ReadinessReport, UsageRecord, UsageTotal, UsageTotals


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


def _add(total: UsageTotal, record: UsageRecord) -> UsageTotal:
    return UsageTotal(
        calls=total.calls + 1,
        usd=total.usd + record.usd,
        input_tokens=total.input_tokens + record.input_tokens,
        output_tokens=total.output_tokens + record.output_tokens,
        cache_read_tokens=total.cache_read_tokens + record.cache_read_tokens,
        cache_write_tokens=total.cache_write_tokens + record.cache_write_tokens,
    )


def usage_totals(records: Iterable[UsageRecord]) -> UsageTotals:
    """Totals over `records`: all of them, by agent, by task (calls outside a task: in the others only), by model."""
    total = UsageTotal()
    by_agent: dict[str, UsageTotal] = {}
    by_task: dict[str, UsageTotal] = {}
    by_model: dict[str, UsageTotal] = {}
    for record in records:
        total = _add(total, record)
        by_agent[record.agent] = _add(by_agent.get(record.agent, UsageTotal()), record)
        if record.task_id is not None:
            by_task[record.task_id] = _add(by_task.get(record.task_id, UsageTotal()), record)
        by_model[record.model] = _add(by_model.get(record.model, UsageTotal()), record)
    return UsageTotals(total=total, by_agent=by_agent, by_task=by_task, by_model=by_model)
