"""`swarm readiness [--json] [--drill]` and `swarm readiness override --agent NAME --reason TEXT [--for DURATION]`.

`swarm readiness` checks Phase 0 item by item (`_readiness`), prints what fails and how to fix
it, and exits 0 only when every item holds. With a brain (`--brain URL` or `SWARM_BRAIN_URL`,
and a captain's token) it reads the agents' shadow runs from the brain and posts the report
there (`POST /v1/readiness`): the brain refuses live claims unless its latest report is ready,
or a human captain's override covers that agent's logic version. Without a brain it only prints
(and the shadow items fail: the shadow runs are kept by the brain).

`--drill` first runs the drills (`_drills`: the kill drill on a throwaway brain and drill body,
a test page to the ladder's first level, a restore drill per workspace) and records them with
their time under `$SWARM_HOME/readiness/`, so a later `swarm readiness` reports their age.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import anyio
import httpx

from body_mcp import UserError
from body_mcp.brain_client import BrainClient
from body_mcp.state import resolve_home
from shared_protocol.agents import UnknownAgent, find_agent, logic_version
from shared_protocol.brain import (
    OverrideRequest,
    ReadinessOverride,
    ReadinessRequest,
    ReadinessStatus,
)
from shared_protocol.config import SwarmConfig
from shared_protocol.secrets import Secrets

from . import _context, _drill_records, _drills, _readiness
from .secrets_cmds import check_references


class _Subparsers(Protocol):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def _out(line: str = "") -> None:
    print(line, flush=True)


MAX_OVERRIDE_S = 30 * 86_400
"""`OverrideRequest.for_s`'s bound: an override is a stopgap, never a standing exception."""
DEFAULT_OVERRIDE = "24h"
_DURATION = re.compile(r"([1-9][0-9]{0,6})([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, *, flag: str = "--for", max_s: int = MAX_OVERRIDE_S, what: str = "an override") -> int:
    """`30m`, `12h`, `7d` (also `90s`) in seconds; `UserError` naming `flag` for anything else or over `max_s`."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise UserError(f"{flag} {text!r}: a duration is a whole number and a unit: 30m, 12h or 7d (s, m, h, d)")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds > max_s:
        raise UserError(f"{flag} {text!r}: {what} lasts at most {max_s // 86400}d")
    return seconds


# -- swarm readiness ----------------------------------------------------------------------------


def cmd_readiness(args: argparse.Namespace) -> int:
    home = resolve_home()
    config = _context.load(args.config, home)
    url = _context.brain_url(args.brain)
    token = _context.token(args.token) if url else None
    report = anyio.run(lambda: _check(args, home, config, url, token))
    if args.json:
        _out(json.dumps(report.model_dump(mode="json", include={"ready", "items"}), indent=2))
    else:
        _print_table(report)
    if url is not None and token is not None:
        # Printed first, so a brain that refuses it (a wrong token) still leaves the report to read.
        status = anyio.run(lambda: _post(url, token, report))
        if not args.json:
            _print_status(status)
    failing = [item.name for item in report.items if not item.ok]
    if failing:
        print(
            f"swarm: not ready: {len(failing)} of {len(report.items)} items fail ({', '.join(failing)})",
            file=sys.stderr,
        )
        return 1
    if not args.json:
        _out("ready: every item holds")
    return 0


async def _check(
    args: argparse.Namespace, home: Path, config: SwarmConfig, url: str | None, token: str | None
) -> ReadinessRequest:
    states = _readiness.local_states(home, config)
    open_admin = _context.open_admin
    secrets = Secrets.from_environ(os.environ, config=config.secrets)
    async with httpx.AsyncClient(timeout=20) as http:
        if args.drill:
            await _run_drills(home, config, states, open_admin, http, quiet=args.json)
        records = _drill_records.load_records(home)
        now = datetime.now(UTC)
        max_age = _readiness.DRILL_MAX_AGE_S
        items = [
            _readiness.check_kill_drill(records, now=now, max_age_s=max_age),
            _readiness.check_audit_chains(states, open_admin),
            _readiness.check_snapshots(states, now=now),
            _readiness.check_restore_drill(states, records, now=now, max_age_s=max_age),
            _readiness.check_limits(config),
            _readiness.check_sandbox(config),
            await _readiness.check_escalation(config, secrets, http, records, now=now, max_age_s=max_age),
            _readiness.check_consensus(config),
            _readiness.check_secrets(config, await anyio.to_thread.run_sync(check_references, config, secrets)),
            _readiness.check_robots_gate(config),
            _readiness.check_pii_redaction(config),
        ]
        rollouts: dict[str, _readiness.RolloutFact] = {}
        if url is None or token is None:
            runs: Sequence[_readiness.ShadowFact] | str = (
                "no brain given (--brain URL or SWARM_BRAIN_URL): the shadow runs are kept by the brain"
            )
        else:
            runs = await _readiness.shadow_runs(http, url, token)
            rollouts = await _readiness.rollouts(http, url, token, [agent.name for agent in config.agents])
        items += _readiness.check_shadow_periods(config, runs, now=now, rollouts=rollouts)
    return _readiness.report(items, drill_at=records.kill.at if records.kill is not None else None)


async def _run_drills(
    home: Path,
    config: SwarmConfig,
    states: _readiness.LocalStates,
    open_admin: _readiness.OpenAdmin,
    http: httpx.AsyncClient,
    *,
    quiet: bool,
) -> None:
    def say(line: str) -> None:
        if not quiet:
            _out(line)

    say("drill: kill (a throwaway brain and a drill body on 127.0.0.1; production agents are not stopped)…")
    kill = await _drills.kill_drill()
    _drill_records.record_kill(home, kill)
    say(f"drill: kill {'passed' if kill.ok else 'FAILED'}: {kill.detail}")
    from brain_server.wake.registry import CHANNELS

    if any(factory.filled_in(config) for factory in CHANNELS.factories.values()):
        page = await _drills.send_test_page(config, Secrets.from_environ(os.environ, config=config.secrets), http)
        _drill_records.record_escalation(home, page)
        say(f"drill: test page {'sent' if page.ok else 'FAILED'}: {page.detail}")
    else:
        say("drill: no wake-up channel is configured: no test page sent")
    for state in states.found:
        restore = _drills.restore_drill(state.settings, open_admin)
        _drill_records.record_restore(home, state.workspace, restore)
        timing = f" in {restore.seconds:.2f} s" if restore.seconds is not None else ""
        say(f"drill: restore of {state.workspace} {'passed' if restore.ok else 'FAILED'}{timing}: {restore.detail}")


async def _post(url: str, token: str, report: ReadinessRequest) -> ReadinessStatus:
    client = BrainClient(url, token)
    try:
        return await client.record_readiness(report)
    finally:
        await client.aclose()


def _print_status(status: ReadinessStatus) -> None:
    gate = "allowed" if status.live_ready else "refused (except where an override below is in force)"
    _out(f"brain: report recorded; live work is {gate}")
    for override in status.overrides:
        until = override.expires_at.astimezone(UTC).isoformat(timespec="seconds")
        _out(
            f"brain: override in force for agent {override.agent} ({override.logic_version}) until {until}, "
            f"by {override.by}: {override.reason}"
        )


def _print_table(report: ReadinessRequest) -> None:
    width = max(len(item.name) for item in report.items)
    for item in report.items:
        _out(f"{'ok  ' if item.ok else 'FAIL'}  {item.name:<{width}}  {item.detail}")
        if item.fix:
            _out(f"      {'':<{width}}  fix: {item.fix}")


# -- swarm readiness override -------------------------------------------------------------------


def cmd_override(args: argparse.Namespace) -> int:
    for_s = parse_duration(args.for_)
    home = resolve_home()
    config = _context.load(args.config, home)
    try:
        agent = find_agent(config, args.agent)
    except UnknownAgent as exc:
        raise UserError(f"--agent: {exc}") from None
    url = _context.brain_url(args.brain)
    if url is None:
        raise UserError("an override is kept by the brain, which enforces it: pass --brain URL or set SWARM_BRAIN_URL")
    request = OverrideRequest(
        agent=agent.name,
        logic_version=logic_version(agent, config.models[agent.model]),
        reason=args.reason,
        for_s=for_s,
    )
    client = BrainClient(url, _context.token(args.token))

    async def send() -> ReadinessOverride:
        try:
            return await client.override_readiness(request)
        finally:
            await client.aclose()

    override = anyio.run(send)
    until = override.expires_at.astimezone(UTC).isoformat(timespec="seconds")
    _out(
        f"override recorded by {override.by}: agent {override.agent} ({override.logic_version}) may go live "
        f"while readiness fails, until {until}: {override.reason}"
    )
    return 0


# -- parsers -----------------------------------------------------------------------------------


def _brain_args(parser: argparse.ArgumentParser) -> None:
    _context.brain_options(parser, token_of="a captain's")
    parser.add_argument("--config", metavar="FILE", help="swarm.toml (default: $SWARM_CONFIG, $SWARM_HOME/swarm.toml)")


def add_parsers(sub: _Subparsers) -> None:
    """Register `swarm readiness` and `swarm readiness override` on `swarm`'s subparsers."""
    help_text = "check Phase 0 item by item (exit 0 only when every item holds); with a brain, post the report"
    readiness = sub.add_parser("readiness", help=help_text, description=help_text)
    readiness.set_defaults(func=cmd_readiness)
    readiness.add_argument("--json", action="store_true", help='print {"ready", "items": [{name, ok, detail, fix}]}')
    readiness.add_argument(
        "--drill",
        action="store_true",
        help="first run the drills: kill (throwaway brain and drill body), a test page, restore (recorded)",
    )
    _brain_args(readiness)
    readiness_sub = readiness.add_subparsers(dest="readiness_command", metavar="SUBCOMMAND")
    p = readiness_sub.add_parser(
        "override",
        help="a human captain lets an agent's logic version go live while readiness fails (expiring, audited)",
    )
    p.set_defaults(func=cmd_override)
    p.add_argument("--agent", required=True, help="the agent ([[agents]] name); bound to its current logic version")
    p.add_argument("--reason", required=True, help="why (kept in the brain's log)")
    p.add_argument(
        "--for",
        dest="for_",
        default=DEFAULT_OVERRIDE,
        metavar="DURATION",
        help=f"how long: 30m, 12h, 7d (default {DEFAULT_OVERRIDE}, at most {MAX_OVERRIDE_S // 86400}d)",
    )
    _brain_args(p)
