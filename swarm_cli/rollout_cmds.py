"""`swarm rollout status|promote|rollback AGENT`: an agent's new logic version on its way from shadow to live.

`status` prints the brain's report (`GET /v1/agents/{name}/rollout`: any token): the live and candidate logic
versions, the stage and its share of tasks, the tasks compared per version, each metric side by side with the
test's result, and what the next step needs; for a reviewer or captain agent, its shadow votes against the live
version's (how often each agrees with the panel's counted votes). `promote` and `rollback` are a human captain's
(`POST …/rollout/promote|rollback`, with `--reason`, in the brain's log). The agent must be one of `[[agents]]`.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal, Protocol

import anyio

from body_mcp import UserError
from body_mcp.brain_client import BrainClient
from body_mcp.explain import printable
from body_mcp.state import resolve_home
from shared_protocol.agents import UnknownAgent, find_agent, logic_version
from shared_protocol.brain import RolloutReport

from . import _context


class _Subparsers(Protocol):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def describe(report: RolloutReport, *, configured: str) -> list[str]:
    """The report as lines for a person; `configured` is the agent's logic version in this swarm.toml."""
    state = report.state
    lines = [
        f"agent {state.agent}",
        f"  live version:       {state.live_version or 'none yet'}",
        f"  configured here:    {configured}",
    ]
    if state.candidate is None:
        lines.append("  candidate:          none")
    elif state.voter:  # (a reviewer or captain agent: its versions vote; a shadow vote is kept, not counted)
        where = "shadow (its votes kept, not counted)" if state.stage == "shadow" else f"canary step {state.step + 1}"
        lines += [
            f"  candidate:          {state.candidate}: {where}, its votes count on {report.percent}% of decisions "
            f"(steps {', '.join(f'{s}%' for s in report.steps)})",
            f"  shadow votes:       on {report.shadow_tasks} decisions over {report.shadow_days:.2f} days",
            f"  votes compared:     candidate {report.candidate_tasks}, live {report.live_tasks} (with the panel's "
            f"counted votes on final decisions); {report.stage_tasks} at this stage",
            "  metrics (candidate | live | test):",
        ]
    else:
        where = "shadow (recorded, never applied)" if state.stage == "shadow" else f"canary step {state.step + 1}"
        lines += [
            f"  candidate:          {state.candidate}: {where}, {report.percent}% of live tasks "
            f"(steps {', '.join(f'{s}%' for s in report.steps)})",
            f"  shadow:             {report.shadow_tasks} tasks over {report.shadow_days:.2f} days",
            f"  tasks compared:     candidate {report.candidate_tasks}, live {report.live_tasks}; "
            f"{report.stage_tasks} at this stage",
            "  metrics (candidate | live | test):",
        ]
    if state.candidate is not None:
        lines += [
            f"    {m.name:<17} {m.candidate} | {m.live} | {m.test} {'holds' if m.holds else 'FAILS'}"
            for m in report.metrics
        ]
        lines.append(f"  test:               {report.test}")
    if state.rolled_back:
        lines.append(f"  rolled back:        {', '.join(state.rolled_back)}")
    lines.append(f"  next:               {report.next}")
    return lines


def cmd_rollout(args: argparse.Namespace) -> int:
    config = _context.load(args.config, resolve_home())
    try:
        agent = find_agent(config, args.agent)
    except UnknownAgent as exc:
        raise UserError(f"AGENT: {exc}") from None
    url = _context.brain_url(args.brain)
    if url is None:
        raise UserError("the brain keeps each agent's rollout: pass --brain URL or set SWARM_BRAIN_URL")
    change: Literal["promote", "rollback"] | None = None if args.rollout_command == "status" else args.rollout_command
    reason = (getattr(args, "reason", "") or "").strip()
    if change is not None and not reason:
        raise UserError("--reason must not be empty: it is kept in the brain's log")
    client = BrainClient(url, _context.token(args.token))

    async def run() -> RolloutReport:
        try:
            if change is None:
                return await client.rollout(agent.name)
            return await client.rollout_change(agent.name, change, reason)
        finally:
            await client.aclose()

    report = anyio.run(run)
    if args.json:
        print(report.model_dump_json(indent=2), flush=True)
        return 0
    for line in describe(report, configured=logic_version(agent, config.models[agent.model])):
        print(printable(line), flush=True)
    return 0


def _common(parser: argparse.ArgumentParser, token_of: str) -> None:
    parser.add_argument("agent", metavar="AGENT", help="the agent ([[agents]] name)")
    parser.add_argument("--json", action="store_true", help="the brain's report as JSON")
    _context.brain_options(parser, token_of=token_of)
    parser.add_argument("--config", metavar="FILE", help="swarm.toml (default: $SWARM_CONFIG, $SWARM_HOME/swarm.toml)")


def add_parsers(sub: _Subparsers) -> None:
    """Register `swarm rollout status|promote|rollback AGENT`."""
    help_text = "an agent's new logic version: shadow, canary steps, live (status; promote or roll back: captain)"
    rollout = sub.add_parser("rollout", help=help_text, description=help_text)
    commands = rollout.add_subparsers(dest="rollout_command", metavar="SUBCOMMAND", required=True)
    status = commands.add_parser("status", help="stage, tasks per version, metrics side by side, what's next")
    _common(status, "any")
    for name, what in (
        ("promote", "move the candidate one stage on, whatever its metrics (a human captain)"),
        ("rollback", "drop the candidate: the live version takes every task again (a human captain)"),
    ):
        p = commands.add_parser(name, help=what)
        _common(p, "a human captain's")
        p.add_argument("--reason", required=True, help="why (kept in the brain's log)")
        p.set_defaults(func=cmd_rollout)
    status.set_defaults(func=cmd_rollout)
