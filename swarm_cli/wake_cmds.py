"""`swarm discord register`: the wake-up side of the CLI (the brain's channels are configured in swarm.toml)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Protocol

import anyio
import httpx

from body_mcp.state import resolve_home
from shared_protocol.secrets import Secrets

from . import _context


class _Subparsers(Protocol):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


# `brain_server` is imported by the command, not with this module (which every `swarm` command loads).


def cmd_discord_register(args: argparse.Namespace) -> int:
    from brain_server.exceptions import ConfigError
    from brain_server.wake.base import ChannelError, read_secret
    from brain_server.wake.discord import register_commands

    config = _context.load(args.config, resolve_home())
    discord = config.discord
    if not discord.application_id or not discord.bot_token:
        raise ConfigError("set [discord] application_id and bot_token (env:NAME or file:/path) to register commands")
    token = read_secret(Secrets.from_environ(os.environ, config=config.secrets), discord.bot_token)
    assert token is not None  # (bot_token is set: checked just above)

    async def register() -> list[str]:
        async with httpx.AsyncClient(timeout=20) as http:
            registered = await register_commands(
                http,
                api_base=discord.api_base,
                application_id=discord.application_id,
                bot_token=token,
                guild_id=discord.guild_id,
            )
        return [command.name for command in registered]

    try:
        names = anyio.run(register)
    except ChannelError as exc:
        print(f"swarm: {exc}", file=sys.stderr)
        return 1
    where = f"server {discord.guild_id}" if discord.guild_id else "every server (global: may take up to an hour)"
    print(f"registered {len(names)} commands in {where}: " + ", ".join(f"/{name}" for name in names))
    print("Set the application's Interactions Endpoint URL to <public_url>/discord/interactions.")
    return 0


def _guarded(args: argparse.Namespace) -> int:
    from brain_server import UserError

    try:
        return cmd_discord_register(args)
    except UserError as exc:
        print(f"swarm: {exc}", file=sys.stderr)
        return 1


def add_parsers(sub: _Subparsers) -> None:
    discord = sub.add_parser("discord", help="Discord: register the slash commands", description="Discord setup.")
    discord_sub = discord.add_subparsers(dest="discord_command", required=True, metavar="SUBCOMMAND")
    p = discord_sub.add_parser(
        "register",
        help="register /kill-autonomous, /resume, /captain-override, /approve, /deny, /status with Discord",
    )
    p.set_defaults(func=_guarded)
    p.add_argument("--config", metavar="FILE", help="swarm.toml (default: $SWARM_CONFIG, $SWARM_HOME/swarm.toml)")
