"""From `swarm.toml` to a `WakeSetup`: channels built from the sections that are filled in, secrets resolved.

A channel whose section is empty is simply absent: a ladder level naming it is skipped at
once (and logged) rather than waited on. A secret that is named but cannot be read is an
error at start, naming the reference (never the value), so a brain never runs believing it
can wake someone when it cannot.
"""

from __future__ import annotations

import logging

import httpx

from shared_protocol.config import SwarmConfig
from shared_protocol.wake import parse_target

from .base import Channel, Secret, SecretsProvider
from .discord import DiscordWebhookChannel
from .email import EmailChannel
from .interactions import DiscordAccess
from .ntfy import NtfyChannel
from .setup import WakeSetup
from .twilio import TwilioCallChannel, TwilioSmsChannel

logger = logging.getLogger(__name__)


def _secret(secrets: SecretsProvider, ref: str) -> Secret | None:
    return secrets.resolve(ref) if ref else None


def build_wake(config: SwarmConfig, http: httpx.AsyncClient, secrets: SecretsProvider) -> WakeSetup:
    """The channels, recipients and answer endpoints that `config` fills in. `ConfigError` on a bad one."""
    channels: dict[str, Channel] = {}
    recipients: dict[str, list[str]] = {}
    discord, twilio, ntfy, email = config.discord, config.twilio, config.ntfy, config.email

    webhook = _secret(secrets, discord.webhook_url)
    if webhook is not None:
        channels["discord"] = DiscordWebhookChannel(http, webhook)
        recipients["discord"] = [""]
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

    twilio_token = _secret(secrets, twilio.auth_token)
    if twilio.account_sid and twilio_token is not None:
        channels["sms"] = TwilioSmsChannel(http, twilio, twilio_token)
        channels["call"] = TwilioCallChannel(http, twilio, twilio_token)
        recipients["sms"] = recipients["call"] = list(twilio.to)

    topic = _secret(secrets, ntfy.topic)
    if topic is not None:
        channels["ntfy"] = NtfyChannel(http, ntfy, topic=topic, token=_secret(secrets, ntfy.token))
        recipients["ntfy"] = [""]

    if email.host:
        channels["email"] = EmailChannel(email, password=_secret(secrets, email.password))
        recipients["email"] = list(email.to)

    setup = WakeSetup(
        escalation=config.escalation,
        channels=channels,
        recipients=recipients,
        public_url=config.brain.public_url,
        discord=access,
        twilio_auth_token=twilio_token,
    )
    for problem in wake_problems(setup):
        logger.warning("wake-up: %s", problem)
    return setup


def wake_problems(setup: WakeSetup) -> list[str]:
    """What would stop a page from reaching someone, in words (for the log at start and `swarm doctor`)."""
    problems: list[str] = []
    for number, level in enumerate(setup.escalation.levels):
        for target in level.targets:
            channel, address = parse_target(target)
            if channel not in setup.channels:
                problems.append(f"level {number} names '{target}', but [{_section(channel)}] is not configured")
            elif not address and not setup.recipients.get(channel):
                problems.append(f"level {number} names '{target}' with no address, and [{_section(channel)}] has none")
    if not setup.public_url:
        problems.append("[brain] public_url is empty: pages carry no answer links and calls cannot take a digit")
    if setup.discord is None:
        problems.append("[discord] public_key is empty: Discord buttons and slash commands are not accepted")
    return problems


def _section(channel: str) -> str:
    return "twilio" if channel in ("sms", "call") else channel
