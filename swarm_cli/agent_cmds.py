"""`swarm agent run` (one agent) and `swarm agents up` (every configured agent, supervised).

This is where the runner is wired to the rest: the agent's body identity (`swarm body --agent NAME` keeps one per
agent), its wallet on that body's limits file (the same `[limits]` money windows the body enforces), the brain
client with the agent's own body token, the command that starts its body for each task, and the body's privacy
protector over its subject key store, which protects what the runner writes under its work dir (so `swarm privacy
erase --agent NAME` reaches it). The runner's progress lines (stderr: a service's journal) are redacted.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from body_mcp import UserError
from body_mcp.brain_client import BrainClient
from body_mcp.state import StatePaths, load_or_create_identity, resolve_home
from shared_protocol.agents import LOGIC_VERSION_ENV, UnknownAgent, agent_logic_version, find_agent, logic_version
from shared_protocol.config import AgentConfig, SwarmConfig
from shared_protocol.privacy import KEY_STORE_FILE, MemorySubjectKeys, Protector
from shared_protocol.secrets import SecretResolver, Secrets, SecretUnavailable

from . import _context

if TYPE_CHECKING:
    from agent_runner.loop import AgentProfile
    from agent_runner.providers import Provider
    from agent_runner.runner import UsageQueue
    from agent_runner.wallet import Wallet

# `agent_runner` (with the openai and anthropic SDKs, seconds of imports) is imported by the commands that run an
# agent, not here: every `swarm` command builds this parser, the `swarm body` an agent starts per task included.
EXIT_ERROR = 1


def _say(line: str) -> None:
    print(f"swarm agent: {line}", file=sys.stderr, flush=True)


def redacting(protector: Protector) -> Callable[[str], None]:
    """`_say` with personal data redacted (a task's title, a decision's summary): progress lines end up in a
    service's journal, which nothing erases."""
    return lambda line: _say(protector.redact(line))


def runner_privacy(config: SwarmConfig, paths: StatePaths) -> Protector | None:
    """The protector of what an agent's runner writes: its body's (`body_mcp.privacy.open_protector`, the same key
    store, so an erasure on the body reaches the runner's files). With `[privacy] redaction` off it protects nothing
    and only reads back what was protected before (None when there is no key store to read from)."""
    from body_mcp.privacy import open_protector

    if not config.privacy.redaction and not (paths.dir / KEY_STORE_FILE).exists():
        return None
    return open_protector(paths, config.privacy)


def work_root(home: Path) -> Path:
    """Where agents keep shadow copies and transcripts: beside `$SWARM_HOME`, never inside it (a workspace may not
    be inside it)."""
    return home.with_name(f"{home.name}-work")


def agent_token(agent: AgentConfig, flag: str | None, secrets: SecretResolver) -> str:
    """The agent's body token: `[[agents]] token` (env:/file:), else `--token`/`$SWARM_TOKEN`."""
    from agent_runner import RunnerUserError

    if agent.token:
        try:
            return secrets.resolve(agent.token).reveal()
        except SecretUnavailable as exc:
            raise RunnerUserError(f"agent '{agent.name}' token: {exc}") from None
    return _context.token(flag)


def agent_pairing(agent: AgentConfig, secrets: SecretResolver) -> str | None:
    """The pairing secret of the agent's paired token: `[[agents]] pairing` (env:/file:), else `$SWARM_PAIRING`
    (None: the token is not paired)."""
    from agent_runner import RunnerUserError

    if agent.pairing:
        try:
            return secrets.resolve(agent.pairing).reveal()
        except SecretUnavailable as exc:
            raise RunnerUserError(f"agent '{agent.name}' pairing: {exc}") from None
    return os.environ.get("SWARM_PAIRING") or None


def profile_for(config: SwarmConfig, agent: AgentConfig) -> AgentProfile:
    from agent_runner.loop import AgentProfile

    model = config.models[agent.model]
    return AgentProfile(
        name=agent.name,
        logic_version=logic_version(agent, model),
        system_prompt=agent.prompt,
        tools=tuple(agent.tools),
        max_steps=agent.max_steps,
        max_usd_per_task=agent.max_usd_per_task,
        max_output_tokens=model.max_output_tokens,
        task_timeout_s=agent.max_task_s,
    )


def cmd_agent_run(args: argparse.Namespace) -> int:
    from agent_runner import RunnerError

    try:
        return _agent_run(args)
    except RunnerError as exc:  # the runner's own errors are the CLI's one-line errors
        raise UserError(str(exc)) from None


@asynccontextmanager
async def _agent_wallet(
    config: SwarmConfig,
    agent: AgentConfig,
    profile: AgentProfile,
    provider: Provider,
    *,
    paths: StatePaths,
    url: str,
    token: str,
    body_id: str | None,
) -> AsyncGenerator[tuple[BrainClient, UsageQueue, Wallet]]:
    """What a worker and a reviewer both spend through: the brain's client, the usage queue that ships the wallet's
    records to it (`body_id` None: a reviewer's, billed to the proposing task) and the wallet on the agent's own
    limits file; closed with the provider on the way out."""
    from agent_runner import pricing_for
    from agent_runner.runner import UsageQueue
    from agent_runner.wallet import Wallet

    from ._wallet import LimitsLedger

    model_cfg = config.models[agent.model]
    brain = BrainClient(url, token)
    ledger = LimitsLedger(paths.limits, config.limits)
    try:
        usage = UsageQueue(brain, body_id)
        wallet = Wallet(
            ledger,
            pricing_for(model_cfg),
            agent=agent.name,
            logic_version=profile.logic_version,
            provider=model_cfg.provider,
            max_usd_per_task=agent.max_usd_per_task,
            sink=usage.put,
        )
        yield brain, usage, wallet
    finally:
        ledger.close()
        await provider.aclose()
        await brain.aclose()


def _agent_run(args: argparse.Namespace) -> int:
    from agent_runner import RunnerUserError, make_provider, model_settings
    from agent_runner.body import BodyLaunch
    from agent_runner.runner import AgentRunner, Mode

    home = resolve_home()
    config_file = _context.config_path(args.config, home)
    config = _context.load(args.config, home)
    try:
        agent = find_agent(config, args.agent)
    except UnknownAgent as exc:  # (a typo in --agent is the user's, not a bug: name the agents there are)
        raise RunnerUserError(f"--agent: {exc}") from None
    url = _context.brain_url(args.brain)
    if url is None:
        raise RunnerUserError("an agent takes its tasks from a brain: pass --brain URL or set SWARM_BRAIN_URL")
    secrets = Secrets.from_environ(os.environ, config=config.secrets)
    token = agent_token(agent, args.token, secrets)
    pairing = agent_pairing(agent, secrets)
    model_cfg = config.models[agent.model]
    base_dir = config_file.parent if config_file is not None else Path.cwd()
    if agent.role != "worker":
        if args.live:
            raise RunnerUserError(
                f"agent '{agent.name}' is a {agent.role}: it reviews decisions, so --live means nothing"
            )
        return _review_run(args, config, agent, url=url, token=token, secrets=secrets, base_dir=base_dir)
    provider = make_provider(model_settings(agent.model, model_cfg, secrets=secrets, base_dir=base_dir))
    profile = profile_for(config, agent)
    mode: Mode | None = "live" if args.live else "shadow" if args.shadow else None  # (None: the rollout decides)
    paths = StatePaths.for_agent(home, agent.name)
    paths.ensure()
    body_id = load_or_create_identity(paths).body_id
    workdir = work_root(home) / agent.name
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def launch(workspace: Path, shadow: bool, protect: Sequence[str]) -> BodyLaunch:
        # The body reads the config afresh: one edited since this runner started would enforce and audit another
        # logic version than the one the runner claims, works and reports under. The runner stops instead (its task
        # is requeued when its lease runs out; `swarm agents up` restarts it with the config as it is now).
        now = agent_logic_version(_context.load(args.config, home), agent.name)
        if now != profile.logic_version:
            raise RunnerUserError(
                f"the config of agent '{agent.name}' changed since its runner started: its logic version is now "
                f"{now}, the runner works as {profile.logic_version}; restart the runner (swarm agents up does)"
            )
        argv = [sys.executable, "-m", "swarm_cli", "body", "--workspace", str(workspace), "--agent", agent.name]
        argv += ["--brain", url]
        for pattern in protect:
            argv += ["--protect", pattern]
        if config_file is not None:
            argv += ["--config", str(config_file)]
        if shadow:
            argv.append("--no-network")
        env = {**os.environ, "SWARM_HOME": str(home), "SWARM_TOKEN": token, "SWARM_AGENT": agent.name}
        env[LOGIC_VERSION_ENV] = profile.logic_version  # (the body refuses to start as any other)
        env.pop("SWARM_PAIRING", None)
        if pairing is not None:
            env["SWARM_PAIRING"] = pairing
        return BodyLaunch(argv=argv, env=env)

    privacy = runner_privacy(config, paths)
    say = redacting(Protector(config.privacy, MemorySubjectKeys()))

    async def run() -> int:
        async with _agent_wallet(
            config, agent, profile, provider, paths=paths, url=url, token=token, body_id=body_id
        ) as (brain, usage, wallet):
            runner = AgentRunner(
                profile=profile,
                provider=provider,
                brain=brain,
                body_id=body_id,
                launch=launch,
                wallet=wallet,
                workdir=workdir,
                privacy=privacy,
                branch_prefix=config.git.branch_prefix,
                usage=usage,
                mode=mode,
                failsafe_s=config.brain.failsafe_s,
                say=say,
            )
            how = mode or "shadow or live as its rollout says"
            say(f"{agent.name} ({profile.logic_version}, {how}) works for {url} as body {body_id}")
            return await runner.run(once=args.once, wait_s=args.wait)

    try:
        return anyio.run(run)
    finally:
        if privacy is not None:
            privacy.close()


def _review_run(
    args: argparse.Namespace,
    config: SwarmConfig,
    agent: AgentConfig,
    *,
    url: str,
    token: str,
    secrets: SecretResolver,
    base_dir: Path,
) -> int:
    """A reviewer (or the captain agent) reviews instead of taking tasks: it waits for the decisions its panel seat
    waits for, asks its model for a vote and casts it with its reviewer token (`agent_runner.reviewer`); the captain
    agent also breaks the deadlocks at the ladder's captain-agent step. Its spend goes through its wallet, on its own
    limits file, and is charged to the proposing task."""
    from agent_runner import make_provider, model_settings
    from agent_runner.reviewer import ReviewerRunner

    home = resolve_home()
    model_cfg = config.models[agent.model]
    provider = make_provider(model_settings(agent.model, model_cfg, secrets=secrets, base_dir=base_dir))
    profile = profile_for(config, agent)
    paths = StatePaths.for_agent(home, agent.name)
    paths.ensure()
    say = redacting(Protector(config.privacy, MemorySubjectKeys()))  # (it writes no file: no key store needed)

    async def run() -> int:
        async with _agent_wallet(config, agent, profile, provider, paths=paths, url=url, token=token, body_id=None) as (
            brain,
            usage,
            wallet,
        ):
            reviewer = ReviewerRunner(
                profile=profile,
                provider=provider,
                brain=brain,
                wallet=wallet,
                usage=usage,
                failsafe_s=config.brain.failsafe_s,
                captain=agent.role == "captain",
                say=say,
            )
            breaks = " and breaks deadlocks" if agent.role == "captain" else ""
            say(f"{agent.name} ({profile.logic_version}, {agent.role}) reviews decisions{breaks} for {url}")
            return await reviewer.run(once=args.once, wait_s=args.wait)

    return anyio.run(run)


def cmd_agents_up(args: argparse.Namespace) -> int:
    from agent_runner import RunnerError

    try:
        return _agents_up(args)
    except RunnerError as exc:
        raise UserError(str(exc)) from None


def _agents_up(args: argparse.Namespace) -> int:
    """Run every configured agent (workers, reviewers and captain agents) as its own `swarm agent run` process;
    restart any that dies (with a growing pause), until SIGTERM or Ctrl-C stops them all. `--live` is passed to the
    workers only (a reviewer's runner has no mode)."""
    from agent_runner import RunnerUserError

    home = resolve_home()
    config = _context.load(args.config, home)
    agents = list(config.agents)
    if not agents:
        raise RunnerUserError("no [[agents]] in the config: nothing to run")
    if _context.brain_url(args.brain) is None:  # (said once here, not by every child restarted for ever)
        raise RunnerUserError("agents take their tasks from a brain: pass --brain URL or set SWARM_BRAIN_URL")
    base = [sys.executable, "-m", "swarm_cli", "agent", "run"]
    extra: list[str] = []
    if args.config:
        extra += ["--config", args.config]
    if args.brain:
        extra += ["--brain", args.brain]
    live = ["--live"] if args.live else []
    children: dict[str, subprocess.Popen[bytes]] = {}
    if not 0 < args.restart_pause < float("inf"):
        raise RunnerUserError(f"--restart-pause must be a positive number of seconds, not {args.restart_pause:g}")
    pause: dict[str, float] = {a.name: args.restart_pause for a in agents}
    next_start: dict[str, float] = {a.name: 0.0 for a in agents}
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            now = time.monotonic()
            for agent in agents:
                child = children.get(agent.name)
                if child is not None and child.poll() is None:
                    continue
                if child is not None:
                    _say(f"{agent.name} exited with {child.returncode}; restarting in {pause[agent.name]:g} s")
                    next_start[agent.name] = now + pause[agent.name]
                    pause[agent.name] = max(min(pause[agent.name] * 2, 60.0), pause[agent.name])
                    del children[agent.name]
                    continue
                if now >= next_start[agent.name]:
                    mode = live if agent.role == "worker" else []
                    children[agent.name] = subprocess.Popen([*base, "--agent", agent.name, *extra, *mode])
                    _say(f"started {agent.name} (pid {children[agent.name].pid}, {agent.role})")
            time.sleep(0.2)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 10
        for child in children.values():
            try:
                child.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # pyright: ignore[reportPrivateUsage]
    agent = sub.add_parser("agent", help="run one autonomous agent")
    agent_sub = agent.add_subparsers(dest="agent_command", required=True, metavar="SUBCOMMAND")
    p = agent_sub.add_parser(
        "run",
        help="take tasks from the brain and work them through the agent's body (shadow or live as its rollout says)",
        description="Run one agent: it takes a task from the brain, works it with its model through its own body, "
        "reports a verified outcome, and takes the next. Without --shadow or --live it claims as the agent's rollout "
        "says, asked of the brain each time it wakes for work: live as the live version or a candidate at a canary "
        "step, shadow otherwise (a live claim the brain refuses as not ready is taken in shadow). "
        "--once: one task, then exit 0 (3: none came within --wait). "
        "An agent whose role is reviewer (or captain) reviews instead: it waits for the decisions its panel seat "
        "waits for, asks its model for a vote and casts it with its reviewer token (--once: one decision).",
    )
    p.set_defaults(func=cmd_agent_run)
    p.add_argument("--agent", required=True, metavar="NAME", help="an [[agents]] name from swarm.toml")
    p.add_argument("--once", action="store_true", help="work one task to an outcome, then exit")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="with --once: wait this long for a task")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--shadow", action="store_true", help="always work in throwaway copies, apply nothing (whatever the rollout)"
    )
    mode.add_argument(
        "--live",
        action="store_true",
        help="always claim live: the brain refuses it until readiness passes and where the rollout does not allow it",
    )
    p.add_argument("--brain", metavar="URL", help="the brain (default: $SWARM_BRAIN_URL)")
    p.add_argument("--token", help="the agent's body token, if its [[agents]] entry names none (default: $SWARM_TOKEN)")
    p.add_argument("--config", metavar="FILE", help="swarm.toml (default: $SWARM_CONFIG, $SWARM_HOME/swarm.toml)")

    up = sub.add_parser("agents", help="run every configured agent")
    up_sub = up.add_subparsers(dest="agents_command", required=True, metavar="SUBCOMMAND")
    p = up_sub.add_parser(
        "up",
        help="run every [[agents]] entry (workers, reviewers, captain agents), restarting any that dies, until stopped",
    )
    p.set_defaults(func=cmd_agents_up)
    p.add_argument(
        "--live",
        action="store_true",
        help="the workers always claim live (default: as each one's rollout says); reviewers are unaffected",
    )
    p.add_argument("--brain", metavar="URL", help="the brain (default: $SWARM_BRAIN_URL)")
    p.add_argument("--config", metavar="FILE", help="swarm.toml (default: $SWARM_CONFIG, $SWARM_HOME/swarm.toml)")
    p.add_argument(
        "--restart-pause",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="the pause before a dead agent's first restart (default 1); it doubles with each restart, up to 60",
    )


__all__ = ["EXIT_ERROR", "add_parsers", "cmd_agent_run", "cmd_agents_up", "work_root"]
