"""`swarm kpi [--json] [--since DURATION]`: the swarm's KPIs over a window, from the brain (approver or captain).

Like `swarm task`, it asks the brain `--brain URL` (or `$SWARM_BRAIN_URL`) names, with `--token` (or
`$SWARM_TOKEN`). The formulas are in the README ("KPIs") and `brain_server.kpi`.
"""

from __future__ import annotations

import argparse
from typing import Any, Protocol

import anyio

from body_mcp import UserError
from body_mcp.brain_client import BrainClient
from body_mcp.explain import printable
from shared_protocol.telemetry import MAX_KPI_WINDOW_S, KpiReport, Uptime

from . import _context
from .readiness_cmds import parse_duration

DEFAULT_SINCE = "7d"


class _Subparsers(Protocol):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _number(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{unit}{value:,.4f}".rstrip("0").rstrip(".")


def _uptime(up: Uptime) -> str:
    agents = f" ({', '.join(up.agents)})" if up.agents else ""
    return f"{up.subject}{agents}: {_percent(up.ratio)} ({up.up_minutes}/{up.observed_minutes} min)"


def describe(report: KpiReport) -> list[str]:
    """The report as lines for a person."""
    since = report.since.isoformat(timespec="seconds")
    until = report.until.isoformat(timespec="seconds")
    lines = [
        f"KPIs from {since} to {until}",
        f"  brain uptime:       {_uptime(report.brain_uptime)}",
        f"  agent uptime:       {_percent(report.agent_uptime)} (mean over {len(report.body_uptime)} bodies)",
    ]
    lines += [f"    {_uptime(up)}" for up in report.body_uptime]
    lines += [
        f"  task success rate:  {_percent(report.task_success_rate)} "
        f"({report.tasks_verified_succeeded} verified of {report.tasks_finished} finished)",
        f"  decision accuracy:  {_percent(report.decision_accuracy)} "
        f"({report.decisions_approved_accurate} of {report.decisions_approved_judged} approved and judged; "
        f"{report.decisions} asked)",
        f"  spend:              ${report.spend_usd:,.4f} over {report.llm_calls} LLM calls",
        f"  value delivered:    ${report.value_delivered_usd:,.2f}",
        f"  ROI:                {_number(report.roi)}",
        f"  cost per task:      {_number(report.cost_per_task_usd, '$')}",
        f"  tokens per task:    {_number(report.tokens_per_task)}",
        f"  cost per decision:  {_number(report.cost_per_decision_usd, '$')}",
    ]
    return lines


def cmd_kpi(args: argparse.Namespace) -> int:
    since_s = parse_duration(args.since, flag="--since", max_s=MAX_KPI_WINDOW_S, what="the window")
    url = _context.brain_url(args.brain)
    if url is None:
        raise UserError("swarm kpi asks a brain: pass --brain URL or set SWARM_BRAIN_URL")
    client = BrainClient(url, _context.token(args.token))

    async def run() -> KpiReport:
        try:
            return await client.kpi(since_s=since_s)
        finally:
            await client.aclose()

    report = anyio.run(run)
    if args.json:
        print(report.model_dump_json(indent=2), flush=True)
        return 0
    for line in describe(report):
        print(printable(line), flush=True)  # (a body id or agent name cannot send escapes)
    return 0


def add_parsers(sub: _Subparsers) -> None:
    """Register `swarm kpi` on the `swarm` subcommands."""
    p = sub.add_parser(
        "kpi",
        help="the swarm's KPIs over a window: uptime, success rate, decision accuracy, ROI, cost and tokens per task",
        description="the swarm's KPIs over a window (formulas: README, 'KPIs')",
    )
    p.set_defaults(func=cmd_kpi)
    p.add_argument("--since", default=DEFAULT_SINCE, metavar="DURATION", help="the window: 30m, 12h, 7d (default 7d)")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    _context.brain_options(p, token_of="an approver's or captain's")
