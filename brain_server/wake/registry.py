"""The channel registry: which sections of `swarm.toml` make which wake-up channels.

    CHANNELS = ChannelRegistry({"discord": DiscordFactory(), "twilio": TwilioFactory(), …})
        section name ──▶ ChannelFactory ──prepare──▶ secrets read ──build(http)──▶ channels + recipients
                                        └─ kinds: the ladder target names it provides, and how each is answered

Everything that differs between channels lives in the channel's own module: its factory says
which target names it provides (`sms` and `call` for `[twilio]`), how their pages are answered
(links, the service's buttons, a keypad), whether an address is itself a secret, which secrets
it reads and what in its section would stop a page. The ladder, `swarm brain serve`, the start-up
log and `swarm doctor` ask the registry; none of them names a channel.

Adding a channel is one new module and one registry line:

1. `brain_server/wake/pager.py`: a class with `name` and `async send(page) -> Delivery` (raise
   `ChannelError`, never showing a secret), and a factory (`kinds`, `filled_in`, `prepare`,
   `problems`; see `ChannelFactory`) that reads its section and its secrets (`read_secret`).
   `memory.py` is the smallest complete example.
2. Here, add `"pager": PagerFactory(),` to `CHANNELS`.

`[escalation] levels` may then name `pager` (the brain refuses a name no factory provides, naming
that key, before it starts). A channel with settings of its own also needs its section in the
`swarm.toml` schema (a model in `shared_protocol/wake.py` and a field of `SwarmConfig`), since
bodies and the brain read the same file and refuse unknown keys; a channel without settings
(like the in-memory one) needs nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared_protocol.wake import EscalationConfig, parse_target

from ..exceptions import ConfigError, UserError
from .base import ChannelFactory, ChannelKind
from .discord import DiscordFactory
from .email import EmailFactory
from .ntfy import NtfyFactory
from .twilio import TwilioFactory


class ChannelRegistry:
    """Channel factories by section name, and the target names they provide (each name from one factory)."""

    def __init__(self, factories: Mapping[str, ChannelFactory]) -> None:
        self.factories: Mapping[str, ChannelFactory] = dict(factories)
        self._kinds: dict[str, tuple[str, ChannelKind]] = {}
        for section, factory in self.factories.items():
            for kind in factory.kinds:
                if kind.name in self._kinds:
                    raise UserError(
                        f"channel '{kind.name}' is provided by both [{self._kinds[kind.name][0]}] and [{section}]"
                    )
                self._kinds[kind.name] = (section, kind)

    @property
    def names(self) -> list[str]:
        """Every target name, in registry order."""
        return list(self._kinds)

    def kind(self, channel: str) -> ChannelKind:
        """What the registry says of `channel`; a name it does not know gets the defaults (answer links)."""
        found = self._kinds.get(channel)
        return found[1] if found is not None else ChannelKind(name=channel)

    def section(self, channel: str) -> str:
        """The `swarm.toml` section that configures `channel` (`twilio` for `sms`); the name itself if unknown."""
        found = self._kinds.get(channel)
        return found[0] if found is not None else channel

    def check_targets(self, escalation: EscalationConfig) -> None:
        """`ConfigError` naming `[escalation] levels` if a target names a channel no factory provides."""
        for number, level in enumerate(escalation.levels):
            for target in level.targets:
                channel, _ = parse_target(target)
                if channel not in self._kinds:
                    # The address is not shown: an ntfy topic is a secret, and a typo in the name may hide one.
                    raise ConfigError(
                        f"[escalation] levels: level {number} names the unknown channel '{channel}' "
                        f"(channels: {', '.join(self.names)})"
                    )


CHANNELS = ChannelRegistry(
    {
        "discord": DiscordFactory(),
        "twilio": TwilioFactory(),
        "ntfy": NtfyFactory(),
        "email": EmailFactory(),
    }
)
"""The channels `swarm brain serve` and `swarm doctor` know, by the section that configures them."""
