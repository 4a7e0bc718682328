"""Reading flags, the environment and `swarm.toml` — only here, at the entry point."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sqlite3
from collections.abc import Awaitable, Callable, Generator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import anyio

from body_mcp import Admin, BodySettings, UserError
from body_mcp.brain_client import BrainClient
from body_mcp.exceptions import ConfigError, StateUnusable
from body_mcp.settings import AgentProfile
from body_mcp.snapshots import SnapshotSettings, Snapshotter
from body_mcp.state import StatePaths, resolve_home, validate_workspace
from shared_protocol.agents import UnknownAgent, find_agent, logic_version
from shared_protocol.config import ConfigInvalid, SwarmConfig, load_config


def config_path(flag: str | None, home: Path) -> Path | None:
    """`--config`, else `$SWARM_CONFIG`, else `$SWARM_HOME/swarm.toml` if it exists."""
    if flag:
        return Path(flag).expanduser()
    if env := os.environ.get("SWARM_CONFIG"):
        return Path(env).expanduser()
    default = home / "swarm.toml"
    return default if default.exists() else None


def load(flag: str | None, home: Path) -> SwarmConfig:
    try:
        return load_config(config_path(flag, home))
    except ConfigInvalid as exc:
        raise ConfigError(str(exc)) from None


def current_directory() -> str:
    """The workspace by default; `UserError` when this shell's directory is gone, as it is after a `swarm snapshot
    restore` run from inside the workspace (the restore swaps the directory: the shell keeps the old one, deleted)."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        where = os.environ.get("PWD")
        again = f" (`cd {where}`)" if where else ""
        raise UserError(
            "the current directory no longer exists (a `swarm snapshot restore` swaps the workspace's directory): "
            f"cd into the workspace again{again}, or pass --workspace DIR"
        ) from None


def brain_url(flag: str | None) -> str | None:
    """`--brain URL`, else `$SWARM_BRAIN_URL`; `UserError` naming where it came from if it is not an http(s) URL
    with a host (`127.0.0.1:8765` without its scheme would otherwise fail later as "unsupported protocol")."""
    url = flag or os.environ.get("SWARM_BRAIN_URL") or None
    if url is None:
        return None
    source = "--brain" if flag else "SWARM_BRAIN_URL"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (read for its check: a port that is not a number raises)
    except ValueError as exc:
        raise UserError(f"{source} {url!r} is not a brain URL ({exc}): give http://HOST:PORT") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{source} {url!r} is not a brain URL: give http://HOST:PORT (or https://)")
    return url


def brain_options(parser: argparse.ArgumentParser, *, token_of: str) -> None:
    """`--brain URL` and `--token` for a command that asks the brain over HTTP; `token_of`: whose token it takes."""
    parser.add_argument("--brain", metavar="URL", help="the brain (default: $SWARM_BRAIN_URL)")
    parser.add_argument("--token", help=f"{token_of} bearer token (default: $SWARM_TOKEN)")


T = TypeVar("T")


def on_brain(args: argparse.Namespace, call: Callable[[BrainClient], Awaitable[T]], *, command: str) -> T:
    """Run `call` with a client of the brain `--brain`/`--token` name (or their environment variables), closed
    after; `command` (e.g. "task") names what needs the brain in the error when none is given."""
    url = brain_url(args.brain)
    if url is None:
        raise UserError(f"swarm {command} works on a brain: pass --brain URL or set SWARM_BRAIN_URL")
    client = BrainClient(url, token(args.token))

    async def run() -> T:
        try:
            return await call(client)
        finally:
            await client.aclose()

    return anyio.run(run)


def human() -> str:
    """Who is acting, for the audit trail: `human:<login name>`, resolved once here."""
    import getpass

    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # (no login name and no passwd entry: a container's arbitrary uid)
        name = f"uid{os.getuid()}"
    return f"human:{name}"


def token(flag: str | None) -> str:
    found = flag or os.environ.get("SWARM_TOKEN")
    if not found:
        raise ConfigError("a brain token is needed: set SWARM_TOKEN (or pass --token); see `swarm brain token create`")
    if not (found.isascii() and found.isprintable()) or " " in found:
        # (an HTTP header carries only printable ASCII; the token itself is never shown)
        source = "--token" if flag else "SWARM_TOKEN"
        raise ConfigError(f"the brain token from {source} is not a token: Swarm's are printable ASCII, without spaces")
    return found


def agent_profile(config: SwarmConfig, name: str) -> AgentProfile:
    """The `[[agents]]` entry `name` as a body serves it (`ConfigError` naming the configured agents if none)."""
    try:
        agent = find_agent(config, name)
    except UnknownAgent as exc:
        raise ConfigError(str(exc)) from None
    return AgentProfile(
        name=agent.name, logic_version=logic_version(agent, config.models[agent.model]), tools=frozenset(agent.tools)
    )


def body_settings(
    *,
    workspace: str | None,
    config: str | None,
    brain: str | None = None,
    brain_token: str | None = None,
    agent: str | None = None,
    agent_state_only: bool = False,
    loaded: SwarmConfig | None = None,
) -> BodySettings:
    """What a body (or the admin API) is given. `agent`: the agent's state (`--agent NAME`); with
    `agent_state_only` (the CLI reading an agent's state, `--agent` instead of `--workspace`) there is no workspace.
    `loaded`: the config `config` names, read already by the caller (the hook: once per call)."""
    home = resolve_home()
    cfg = loaded if loaded is not None else load(config, home)
    source = config_path(config, home)
    profile = agent_profile(cfg, agent) if agent is not None else None
    settings = BodySettings(
        workspace=None,
        home=home,
        config=cfg,
        agent=profile.name if profile is not None else os.environ.get("SWARM_AGENT") or None,
        agent_profile=profile,
        brain_url=brain,
        brain_token=brain_token,
        brain_pairing=(os.environ.get("SWARM_PAIRING") or None) if brain_token else None,
        config_file=source.resolve() if source is not None else None,
    )
    if profile is not None and agent_state_only:
        return settings
    raw = workspace or cfg.workspace.path or current_directory()
    candidate = Path(raw).expanduser().resolve()
    if not candidate.exists():
        # A restore killed between its two renames leaves nothing at the workspace path: put its tree there.
        paths = (
            StatePaths.for_agent(home, profile.name, candidate)
            if profile is not None
            else StatePaths(home=home, workspace=candidate)
        )
        Snapshotter(SnapshotSettings.for_workspace(paths)).reinstate_workspace()
    return dataclasses.replace(settings, workspace=validate_workspace(raw, home=home))


@contextmanager
def open_admin(settings: BodySettings) -> Generator[Admin]:
    """`Admin.open` for the human running this command; a database error while it is open names the database."""
    db = settings.paths.db
    try:
        with Admin.open(settings, by=human()) as admin:
            yield admin
    except sqlite3.DatabaseError as exc:
        raise StateUnusable.from_sqlite(db, exc) from None
