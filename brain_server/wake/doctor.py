"""`swarm doctor`'s wake-up checks: would a page reach someone, and could they answer it?

Checks what can be checked from here without paging anyone: every ladder target names a
channel of the registry, every secret the config names can be read, every ladder level has a
configured channel and a recipient, each channel's own problems (its factory's `problems`),
the brain has a `public_url` for answer links, and the Discord webhook belongs to the
application (a webhook a user created in Discord's channel settings accepts the message but
silently drops its Approve / Deny buttons).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from shared_protocol.config import SwarmConfig
from shared_protocol.secrets import Secret, SecretResolver

from ..exceptions import ConfigError
from .base import ChannelError, read_secret
from .configure import build_wake, prepare_wake, wake_problems
from .discord import inspect_webhook
from .registry import CHANNELS, ChannelRegistry


@dataclass(kw_only=True, frozen=True)
class WakeFinding:
    ok: bool
    subject: str
    message: str
    fix: str | None = None


async def check_wake(
    config: SwarmConfig, secrets: SecretResolver, http: httpx.AsyncClient, *, registry: ChannelRegistry = CHANNELS
) -> list[WakeFinding]:
    try:
        registry.check_targets(config.escalation)
    except ConfigError as exc:
        return [WakeFinding(ok=False, subject="wake-up", message=str(exc), fix="name a channel listed there")]
    if not any(factory.filled_in(config) for factory in registry.factories.values()):
        return [
            WakeFinding(
                ok=True,
                subject="wake-up",
                message="no wake-up channel is configured: a brain pages nobody (decisions still expire to denials)",
            )
        ]
    try:
        setup = build_wake(config, http, prepare_wake(config, secrets, registry=registry))
        webhook = read_secret(secrets, config.discord.webhook_url)
    except ConfigError as exc:
        return [WakeFinding(ok=False, subject="wake-up", message=str(exc), fix="set the secret it names, or the key")]
    findings = [
        WakeFinding(ok=False, subject="wake-up", message=problem, fix="fill in that section of swarm.toml")
        for problem in wake_problems(config, setup)
    ]
    if webhook is not None:
        findings.append(await _check_webhook(config, webhook, http))
    if not findings:
        channels = ", ".join(sorted(setup.channels))
        findings.append(WakeFinding(ok=True, subject="wake-up", message=f"every ladder level can page ({channels})"))
    return findings


async def _check_webhook(config: SwarmConfig, webhook: Secret, http: httpx.AsyncClient) -> WakeFinding:
    try:
        info = await inspect_webhook(http, webhook)
    except (ChannelError, ConfigError) as exc:
        return WakeFinding(ok=False, subject="discord webhook", message=f"could not check the webhook: {exc}")
    configured = config.discord.application_id
    if info.app_owned and configured and info.application_id != configured:
        return WakeFinding(
            ok=False,
            subject="discord webhook",
            message=f"webhook '{info.name}' belongs to application {info.application_id}, not to [discord] "
            f"application_id {configured}: presses of its buttons would go to that other application",
            fix="create the webhook with this application's bot token, or correct discord.application_id",
        )
    if info.app_owned:
        return WakeFinding(
            ok=True,
            subject="discord webhook",
            message=f"webhook '{info.name}' belongs to application {info.application_id}: buttons will show",
        )
    return WakeFinding(
        ok=False,
        subject="discord webhook",
        message=f"webhook '{info.name}' was created by a user, not the application: Discord drops its "
        "Approve / Deny buttons without an error",
        fix="create the webhook with the bot (POST /channels/{channel_id}/webhooks with the bot token) "
        "and put its URL in discord.webhook_url",
    )
