"""An in-memory wake-up channel, shipped for tests and the demo: pages are kept, not sent.

It is also the smallest complete channel, the example `registry` points to: a channel (`name`,
`send`) and its factory (`kinds`, `filled_in`, `prepare`, `problems`). It is not in
`registry.CHANNELS` (a page kept in a process's memory wakes nobody); a test adds it with one line:

    registry = ChannelRegistry({**CHANNELS.factories, "memory": MemoryChannelFactory(channel=channel)})

or, without `swarm.toml` at all, `WakeSetup.paging(MemoryChannel())`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import httpx

from shared_protocol.config import SwarmConfig
from shared_protocol.secrets import SecretResolver

from .base import BuildChannels, ChannelKind, ChannelSet, Delivery, Page


class MemoryChannel:
    """Keeps every page it is sent, in order: `await wait_for(n)` instead of sleeping."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.pages: list[Page] = []
        self._changed = anyio.Event()

    async def send(self, page: Page) -> Delivery:
        self.pages.append(page)
        self._changed.set()
        self._changed = anyio.Event()
        return Delivery(channel=self.name, target=page.target, provider_id=f"{self.name}-{len(self.pages)}")

    async def wait_for(self, count: int) -> list[Page]:
        """Wait until at least `count` pages were sent; returns them all."""
        while len(self.pages) < count:
            await self._changed.wait()
        return list(self.pages)


@dataclass(kw_only=True, frozen=True)
class MemoryChannelFactory:
    """The registry entry of an in-memory channel: no section of `swarm.toml` and no secret, so always configured."""

    channel: MemoryChannel
    recipients: Sequence[str] = ("",)
    """The addresses a target without one pages."""

    @property
    def kinds(self) -> Sequence[ChannelKind]:
        return (ChannelKind(name=self.channel.name),)

    def filled_in(self, config: SwarmConfig) -> bool:
        return True

    def prepare(self, config: SwarmConfig, secrets: SecretResolver) -> BuildChannels | None:
        def build(_http: httpx.AsyncClient) -> ChannelSet:
            name = self.channel.name
            return ChannelSet(channels={name: self.channel}, recipients={name: list(self.recipients)})

        return build

    def problems(self, config: SwarmConfig) -> list[str]:
        return []
