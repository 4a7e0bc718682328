"""From `swarm.toml` to a `WakeSetup`: channels built by the registry's factories, secrets resolved.

A channel whose section is empty is simply absent: a ladder level naming it is skipped at
once (and logged) rather than waited on. A ladder target naming a channel no factory provides,
or a secret that is named but cannot be read, is an error at start naming the key or the
reference (never the value), so a brain never runs believing it can wake someone when it cannot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from shared_protocol.config import SwarmConfig
from shared_protocol.secrets import Secret, SecretResolver
from shared_protocol.wake import parse_target

from .base import BuildChannels, Channel, read_secret
from .interactions import DiscordAccess
from .registry import CHANNELS, ChannelRegistry
from .setup import WakeSetup

logger = logging.getLogger(__name__)


@dataclass(kw_only=True, frozen=True)
class WakeParts:
    """Everything of a `WakeSetup` that needs no HTTP client: the ladder checked, the secrets read, the Discord key
    parsed.

    Made before the brain opens its database, so a bad setting stops it before it starts.
    """

    registry: ChannelRegistry
    channels: Sequence[BuildChannels]
    """One per section that configures channels, in registry order."""
    discord: DiscordAccess | None
    twilio_auth_token: Secret | None
    """For `POST /twilio/gather`'s signature check (the Twilio channels read it for themselves)."""


def prepare_wake(config: SwarmConfig, secrets: SecretResolver, *, registry: ChannelRegistry = CHANNELS) -> WakeParts:
    """Check the ladder's channel names, read every secret `config` names and parse the Discord key. `ConfigError`
    naming the key or the reference."""
    registry.check_targets(config.escalation)
    discord = config.discord
    access = None
    if discord.public_key:
        access = DiscordAccess.from_hex(
            discord.public_key,
            captain_ids=frozenset(discord.captain_ids),
            user_ids=frozenset(discord.user_ids),
            role_ids=frozenset(discord.role_ids),
            application_id=discord.application_id,
            api_base=discord.api_base,
        )
    builds = [factory.prepare(config, secrets) for factory in registry.factories.values()]
    return WakeParts(
        registry=registry,
        channels=[build for build in builds if build is not None],
        discord=access,
        twilio_auth_token=read_secret(secrets, config.twilio.auth_token),
    )


def build_wake(config: SwarmConfig, http: httpx.AsyncClient, parts: WakeParts) -> WakeSetup:
    """The channels, recipients and answer endpoints that `config` fills in, from `prepare_wake`'s parts."""
    channels: dict[str, Channel] = {}
    recipients: dict[str, list[str]] = {}
    for build in parts.channels:
        made = build(http)
        channels.update(made.channels)
        recipients.update({name: list(addresses) for name, addresses in made.recipients.items()})
    return WakeSetup(
        escalation=config.escalation,
        channels=channels,
        recipients=recipients,
        registry=parts.registry,
        public_url=config.brain.public_url,
        discord=parts.discord,
        twilio_auth_token=parts.twilio_auth_token,
    )


def log_wake_problems(config: SwarmConfig, setup: WakeSetup) -> WakeSetup:
    """Log `wake_problems` (the brain does at start); returns `setup`."""
    for problem in wake_problems(config, setup):
        logger.warning("wake-up: %s", problem)
    return setup


def wake_problems(config: SwarmConfig, setup: WakeSetup) -> list[str]:
    """What would stop a page from reaching someone, or an answer from coming back, in words (for the log at
    start and `swarm doctor`)."""
    problems: list[str] = []
    registry = setup.registry
    for number, level in enumerate(setup.escalation.levels):
        for target in level.targets:
            channel, address = parse_target(target)
            section = registry.section(channel)
            if channel not in setup.channels:
                problems.append(f"level {number} names '{target}', but [{section}] is not configured")
            elif not address and not setup.recipients.get(channel):
                problems.append(f"level {number} names '{target}' with no address, and [{section}] has none")
    for factory in registry.factories.values():
        problems.extend(factory.problems(config))
    if not setup.public_url:
        problems.append("[brain] public_url is empty: pages carry no answer links and calls cannot take a digit")
    discord = config.discord
    if setup.discord is None:
        problems.append("[discord] public_key is empty: Discord buttons and slash commands are not accepted")
    else:
        if not (discord.captain_ids or discord.user_ids or discord.role_ids):
            problems.append(
                "[discord] captain_ids, user_ids and role_ids are all empty: nobody may press a button or use a command"
            )
        if not discord.application_id:
            problems.append(
                "[discord] application_id is empty: a slow command's deferred answer is never filled in, and "
                "`swarm discord register` cannot run"
            )
    return problems
