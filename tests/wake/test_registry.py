"""The channel registry: a channel is one module and one registry line, shown with the in-memory channel; the ladder's
names are checked against the registry before the brain starts."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from brain_server import Brain, BrainSettings, ConfigError, SqliteStateEngine, UserError
from brain_server.auth import Principal
from brain_server.wake.configure import build_wake, prepare_wake, wake_problems
from brain_server.wake.escalator import redact
from brain_server.wake.memory import MemoryChannel, MemoryChannelFactory
from brain_server.wake.registry import CHANNELS, ChannelRegistry
from shared_protocol.brain import DecisionRequest
from shared_protocol.config import ConfigInvalid, SwarmConfig, parse_config
from shared_protocol.secrets import MemorySecrets, Secrets
from shared_protocol.wake import parse_target
from tests.brain.helpers import Clock

pytestmark = pytest.mark.anyio

BODY = Principal(token_id="tok_b", role="body", label="body-1")
NO_SECRETS = Secrets({"env": MemorySecrets()})


def memory_ladder() -> SwarmConfig:
    """A `swarm.toml` whose ladder pages the in-memory channel: its default recipients, then an address of its own."""
    return parse_config(
        {
            "brain": {"public_url": "https://brain.example.com"},
            "escalation": {
                "levels": [{"after_s": 0, "targets": ["memory"]}, {"after_s": 300, "targets": ["memory:bob"]}],
                "repeat": 0,
            },
        }
    )


async def test_a_channel_added_with_one_registry_line_is_configured_and_paged_up_the_ladder(tmp_path: Path) -> None:
    channel = MemoryChannel()
    registry = ChannelRegistry(
        {**CHANNELS.factories, "memory": MemoryChannelFactory(channel=channel, recipients=["alice"])}
    )
    config = memory_ladder()
    clock = Clock()
    start = clock.now
    state = await SqliteStateEngine.open(tmp_path / "brain.db")
    try:
        async with httpx.AsyncClient() as http:
            setup = build_wake(config, http, prepare_wake(config, NO_SECRETS, registry=registry))
        assert setup.channels == {"memory": channel}
        assert not [p for p in wake_problems(config, setup) if "level" in p], "every level can page"
        brain = Brain(BrainSettings(), state=state, clock=clock, wake=setup)
        async with brain.running():
            request = DecisionRequest(
                summary="drop a table", rationale="unused", confidence=0.4, agent="claude", body_id="body-a"
            )
            decision = await brain.request_decision(BODY, request)
            await brain.escalator.tick()
            clock.now = start + 300
            await brain.escalator.tick()
        assert [(p.subject_id, p.target, p.level) for p in channel.pages] == [
            (decision.id, "alice", 0),
            (decision.id, "bob", 1),
        ]
        links = channel.pages[0].links
        assert links is not None and links.approve and links.deny and links.gather is None, "a new channel gets links"
        logged = [e.detail["channel"] for e in await state.log_entries() if e.action == "page"]
        assert logged == ["memory", "memory"]
    finally:
        await state.close()


def test_a_ladder_naming_a_channel_no_factory_provides_is_refused_before_start_naming_the_key() -> None:
    config = memory_ladder()
    with pytest.raises(ConfigError, match=r"\[escalation\] levels"):
        prepare_wake(config, NO_SECRETS)
    registry = ChannelRegistry({**CHANNELS.factories, "memory": MemoryChannelFactory(channel=MemoryChannel())})
    assert prepare_wake(config, NO_SECRETS, registry=registry).channels


def test_the_default_registry_provides_the_documented_channels_by_section() -> None:
    assert CHANNELS.names == ["discord", "sms", "call", "ntfy", "email"]
    assert [CHANNELS.section(name) for name in ("discord", "sms", "call", "ntfy", "email")] == [
        "discord",
        "twilio",
        "twilio",
        "ntfy",
        "email",
    ]
    assert [CHANNELS.kind(name).answers for name in ("discord", "sms", "call")] == ["buttons", "links", "keypad"]


def test_two_factories_providing_one_channel_name_are_refused() -> None:
    with pytest.raises(UserError):
        ChannelRegistry({**CHANNELS.factories, "pager": MemoryChannelFactory(channel=MemoryChannel("sms"))})


def test_a_secret_address_is_hidden_in_the_log_by_what_the_registry_says() -> None:
    registry = ChannelRegistry({"memory": MemoryChannelFactory(channel=MemoryChannel())})
    assert redact("memory", "+15550001111", registry=registry) == "memory:…1111"
    assert redact("ntfy", "secret-topic", registry=registry) == "ntfy:…opic", "not in this registry: not a secret"
    assert redact("ntfy", "secret-topic") == "ntfy:(topic)"


@pytest.mark.parametrize(
    ("target", "parsed"),
    [
        ("sms", ("sms", "")),
        ("sms:+15551234567", ("sms", "+15551234567")),
        ("email:oncall@example.com", ("email", "oncall@example.com")),
        ("my-pager_2:a:b", ("my-pager_2", "a:b")),
    ],
)
def test_a_target_is_a_channel_name_with_an_optional_address(target: str, parsed: tuple[str, str]) -> None:
    assert parse_target(target) == parsed


@pytest.mark.parametrize("target", ["", "SMS", ":+1555", "2fa", "sms +1555"])
def test_a_target_that_is_not_a_channel_name_is_refused_when_the_file_is_read(target: str) -> None:
    with pytest.raises(ConfigInvalid):
        parse_config({"escalation": {"levels": [{"after_s": 0, "targets": [target]}]}})
