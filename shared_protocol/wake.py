"""The wake-up sections of `swarm.toml`: the escalation ladder and one section per channel.

Secrets never appear in the file. A secret key holds a *reference* (`SecretRef`, see `secrets`):
`env:NAME` (read from the brain's environment) or `file:/absolute/path` (the file's content,
stripped); empty means "not configured". A literal value in a secret key is an error naming the
key, so a token pasted by mistake is refused before it is ever used (or committed).

    [escalation]
    levels = [
      {after_s = 0, targets = ["discord"]},
      {after_s = 300, targets = ["sms"]},
      {after_s = 600, targets = ["call"]},
    ]

A target is a channel name, optionally with an address: `sms:+15551234567`, `ntfy:ops`,
`email:oncall@example.com`; without one, the channel section's default recipients. Only the
shape is checked here: which names exist is the brain's channel registry's to say (it refuses
an unknown one, naming `[escalation] levels`, before it starts), so a channel is added in one
place.
"""

from __future__ import annotations

import itertools
import re
from typing import Literal

from pydantic import Field, field_validator

from ._base import ProtocolModel
from .secrets import SecretRef

_TARGET = re.compile(r"[a-z][a-z0-9_-]*(:.*)?", re.DOTALL)


def parse_target(target: str) -> tuple[str, str]:
    """`"sms:+1555…"` → `("sms", "+1555…")`; `"discord"` → `("discord", "")`. ValueError if it is not a channel
    name (lowercase letters, digits, `-`, `_`), optionally followed by `:address`."""
    if not _TARGET.fullmatch(target):
        raise ValueError("a target is a channel name (lowercase letters, digits, '-', '_'), optionally with ':address'")
    channel, _, address = target.partition(":")
    return channel, address


class EscalationLevel(ProtocolModel):
    after_s: int = Field(ge=0, description="Seconds after the first page (the page's creation) this level is paged.")
    targets: list[str] = Field(min_length=1, description="Channels, each optionally with an address.")

    @field_validator("targets")
    @classmethod
    def _shaped_like_targets(cls, targets: list[str]) -> list[str]:
        for target in targets:
            parse_target(target)
        return targets


def _default_levels() -> list[EscalationLevel]:
    return [
        EscalationLevel(after_s=0, targets=["discord"]),
        EscalationLevel(after_s=300, targets=["sms"]),
        EscalationLevel(after_s=600, targets=["call"]),
    ]


class EscalationConfig(ProtocolModel):
    levels: list[EscalationLevel] = Field(
        default_factory=_default_levels,
        min_length=1,
        description="The wake-up ladder, climbed until someone acknowledges or answers (after_s must rise).",
    )
    repeat: int = Field(default=2, ge=0, description="How many more times the last level is paged, unanswered.")
    repeat_interval_s: int = Field(default=300, ge=1, description="Seconds between those repeats.")
    dedup_window_s: int = Field(
        default=900, ge=0, description="An alert like an open one (same kind, same body) within this joins it."
    )

    @field_validator("levels")
    @classmethod
    def _rising(cls, levels: list[EscalationLevel]) -> list[EscalationLevel]:
        for before, after in itertools.pairwise(levels):
            if after.after_s < before.after_s:
                raise ValueError("each level's after_s must be at least the one before it")
        return levels


class DiscordConfig(ProtocolModel):
    webhook_url: SecretRef = Field(
        default="", description="An application-owned webhook (its URL holds a token, so: env:/file:)."
    )
    public_key: str = Field(default="", description="The application's Ed25519 public key (hex) for interactions.")
    application_id: str = Field(default="", description="For `swarm discord register`.")
    bot_token: SecretRef = Field(default="", description="For `swarm discord register` (env:/file:).")
    guild_id: str = Field(default="", description="Register commands in this server only (instant); empty: global.")
    captain_ids: list[str] = Field(default_factory=list[str], description="Discord user ids allowed captain commands.")
    user_ids: list[str] = Field(default_factory=list[str], description="Discord user ids allowed to approve/deny.")
    role_ids: list[str] = Field(default_factory=list[str], description="Discord role ids allowed to approve/deny.")
    api_base: str = Field(default="https://discord.com/api/v10")


class TwilioConfig(ProtocolModel):
    account_sid: str = Field(default="", description="AC…")
    auth_token: SecretRef = Field(default="", description="Basic-auth password and callback signing key (env:/file:).")
    from_number: str = Field(default="", description="The Twilio number pages come from (E.164).")
    to: list[str] = Field(default_factory=list[str], description="Numbers paged by 'sms' and 'call' targets (E.164).")
    api_base: str = Field(default="https://api.twilio.com")


class NtfyConfig(ProtocolModel):
    server: str = Field(default="https://ntfy.sh")
    topic: SecretRef = Field(default="", description="On a public server the topic name is the secret (env:/file:).")
    token: SecretRef = Field(default="", description="An access token, if the server needs one (env:/file:).")
    priority: int = Field(default=5, ge=1, le=5, description="1 (min) to 5 (max, wakes the phone).")


class EmailConfig(ProtocolModel):
    host: str = Field(default="", description="SMTP server; empty: no email.")
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password: SecretRef = Field(default="", description="env:/file:")
    from_addr: str = ""
    to: list[str] = Field(default_factory=list[str], description="Addresses paged by 'email' targets.")
    timeout_s: float = Field(default=20.0, gt=0)
