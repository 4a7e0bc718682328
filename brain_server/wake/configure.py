"""From `swarm.toml` to a `WakeSetup`: channels built from the sections that are filled in, secrets resolved.

A channel whose section is empty is simply absent: a ladder level naming it is skipped at
once (and logged) rather than waited on. A secret that is named but cannot be read is an
error at start, naming the reference (never the value), so a brain never runs believing it
can wake someone when it cannot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from shared_protocol.config import SwarmConfig
from shared_protocol.secrets import Secret, SecretResolver
from shared_protocol.wake import parse_target

from .base import Channel, read_secret
from .discord import DiscordWebhookChannel
from .email import EmailChannel
from .interactions import DiscordAccess
from .ntfy import NtfyChannel
from .setup import WakeSetup
from .twilio import TwilioCallChannel, TwilioSmsChannel

logger = logging.getLogger(__name__)


@dataclass(kw_only=True, frozen=True)
class WakeParts:
    """Everything of a `WakeSetup` that needs no HTTP client: the secrets read, the Discord key parsed.

    Made before the brain opens its database, so a bad setting stops it before it starts.
    """

    discord_webhook: Secret | None
    discord: DiscordAccess | None
    twilio_auth_token: Secret | None
    ntfy_topic: Secret | None
    ntfy_token: Secret | None
    email_password: Secret | None


def prepare_wake(config: SwarmConfig, secrets: SecretResolver) -> WakeParts:
    """Read every secret `config` names and parse the Discord key. `ConfigError` naming the reference or key."""
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
    return WakeParts(
        discord_webhook=read_secret(secrets, discord.webhook_url),
        discord=access,
        twilio_auth_token=read_secret(secrets, config.twilio.auth_token),
        ntfy_topic=read_secret(secrets, config.ntfy.topic),
        ntfy_token=read_secret(secrets, config.ntfy.token),
        email_password=read_secret(secrets, config.email.password),
    )


def build_wake(config: SwarmConfig, http: httpx.AsyncClient, parts: WakeParts) -> WakeSetup:
    """The channels, recipients and answer endpoints that `config` fills in, from `prepare_wake`'s parts."""
    channels: dict[str, Channel] = {}
    recipients: dict[str, list[str]] = {}
    twilio, ntfy, email = config.twilio, config.ntfy, config.email

    if parts.discord_webhook is not None:
        channels["discord"] = DiscordWebhookChannel(http, parts.discord_webhook)
        recipients["discord"] = [""]

    twilio_token = parts.twilio_auth_token
    if twilio.account_sid and twilio_token is not None:
        channels["sms"] = TwilioSmsChannel(http, twilio, twilio_token)
        channels["call"] = TwilioCallChannel(http, twilio, twilio_token)
        recipients["sms"] = recipients["call"] = list(twilio.to)

    if parts.ntfy_topic is not None:
        channels["ntfy"] = NtfyChannel(http, ntfy, topic=parts.ntfy_topic, token=parts.ntfy_token)
        recipients["ntfy"] = [""]

    if email.host:
        channels["email"] = EmailChannel(email, password=parts.email_password)
        recipients["email"] = list(email.to)

    return WakeSetup(
        escalation=config.escalation,
        channels=channels,
        recipients=recipients,
        public_url=config.brain.public_url,
        discord=parts.discord,
        twilio_auth_token=twilio_token,
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
    for number, level in enumerate(setup.escalation.levels):
        for target in level.targets:
            channel, address = parse_target(target)
            if channel not in setup.channels:
                problems.append(f"level {number} names '{target}', but [{_section(channel)}] is not configured")
            elif not address and not setup.recipients.get(channel):
                problems.append(f"level {number} names '{target}' with no address, and [{_section(channel)}] has none")
    twilio = config.twilio
    if bool(twilio.account_sid) != bool(twilio.auth_token):
        missing = "auth_token" if twilio.account_sid else "account_sid"
        problems.append(f"[twilio] {missing} is empty (the other is set): no SMS and no calls")
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


def _section(channel: str) -> str:
    return "twilio" if channel in ("sms", "call") else channel
