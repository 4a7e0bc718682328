"""`WakeSetup`: everything about waking humans that comes from configuration, resolved and ready to use."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio

from shared_protocol.secrets import Secret
from shared_protocol.wake import EscalationConfig, EscalationLevel

from .base import Channel
from .interactions import DiscordAccess
from .registry import CHANNELS, ChannelRegistry


@dataclass(kw_only=True)
class WakeSetup:
    """The ladder, the channels that are configured, who to page, and who may answer from where."""

    escalation: EscalationConfig = field(default_factory=EscalationConfig)
    channels: Mapping[str, Channel] = field(default_factory=dict[str, Channel])
    recipients: Mapping[str, Sequence[str]] = field(default_factory=dict[str, Sequence[str]])
    """Default addresses per channel for targets without one (discord: [""], sms/call: numbers, …)."""
    registry: ChannelRegistry = CHANNELS
    """What each channel name is: how its pages are answered, whether its addresses are secrets, its section."""
    public_url: str = ""
    """The brain's outside address: answer links and Twilio callbacks; empty: pages carry no links."""
    discord: DiscordAccess | None = None
    """None: `POST /discord/interactions` answers 404."""
    twilio_auth_token: Secret | None = None
    """Checks `X-Twilio-Signature` on `POST /twilio/gather`; None: that endpoint answers 404."""
    retry_attempts: int = 3
    retry_wait_s: float = 0.5
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    """How a retry waits (tests record it)."""

    @classmethod
    def paging(cls, channel: Channel) -> WakeSetup:
        """A setup that pages `channel` alone, once and at once, about each decision or alert (tests, the demo)."""
        return cls(
            escalation=EscalationConfig(levels=[EscalationLevel(after_s=0, targets=[channel.name])], repeat=0),
            channels={channel.name: channel},
            recipients={channel.name: [""]},
        )
