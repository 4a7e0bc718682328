"""ntfy pages against a fake ntfy server over real HTTP: the JSON published, the receipt, the errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpx
import pytest

from brain_server.wake.base import ChannelError, Page, PageLinks
from brain_server.wake.ntfy import MESSAGE_MAX_BYTES, NtfyChannel
from shared_protocol.secrets import Secret
from shared_protocol.wake import NtfyConfig
from tests.fakes.ntfy import FakeNtfy
from tests.fakes.serve import serve_app

pytestmark = pytest.mark.anyio

TOKEN = "tk_0123456789abcdefghijklmnopqrs"
TOPIC = "swarm-pages-Vq3xT9kLm2"
BRAIN = "https://brain.example.com"
LINKS = PageLinks(
    approve=f"{BRAIN}/answer/approve-tok",
    deny=f"{BRAIN}/answer/deny-tok",
    acknowledge=f"{BRAIN}/answer/ack-tok",
    gather=f"{BRAIN}/twilio/gather?t=gather-tok",
)
DECISION = Page(
    page_id="pg_1",
    kind="decision",
    subject_id="dec_1",
    title="Decision needs a human: rewrite billing",
    summary="The agent wants to drop the invoices table.",
    facts={"agent": "claude", "confidence": "0.41"},
    deadline=datetime(2030, 1, 2, 3, 4, tzinfo=UTC),
    target=TOPIC,
    links=LINKS,
)
ALERT = replace(
    DECISION, kind="alert", subject_id="alr_1", deadline=None, links=replace(LINKS, approve=None, deny=None)
)


@dataclass
class Ntfy:
    fake: FakeNtfy
    config: NtfyConfig
    http: httpx.AsyncClient

    def channel(self, *, token: str | None = TOKEN, topic: str | None = None) -> NtfyChannel:
        return NtfyChannel(
            self.http,
            self.config,
            token=Secret(token, source="env:NTFY_TOKEN") if token is not None else None,
            topic=Secret(topic, source="env:NTFY_TOPIC") if topic is not None else None,
        )


@pytest.fixture
async def ntfy() -> AsyncIterator[Ntfy]:
    fake = FakeNtfy(token=TOKEN)
    async with serve_app(fake) as base_url, httpx.AsyncClient() as http:
        yield Ntfy(fake, NtfyConfig(server=base_url + "/"), http)


async def test_a_decision_is_published_as_json_with_three_http_buttons(ntfy: Ntfy) -> None:
    delivery = await ntfy.channel().send(DECISION)

    [request] = ntfy.fake.requests
    assert request.authorization == f"Bearer {TOKEN}"
    assert request.content_type == "application/json"
    body = request.body
    assert body["topic"] == TOPIC
    assert body["title"] == DECISION.title
    assert body["priority"] == 5
    assert body["tags"] == ["warning"]
    assert body["click"] == LINKS.acknowledge
    assert body["actions"] == [
        {"action": "http", "label": "Approve", "url": LINKS.approve, "method": "POST", "clear": True},
        {"action": "http", "label": "Deny", "url": LINKS.deny, "method": "POST", "clear": True},
        {"action": "http", "label": "Acknowledge", "url": LINKS.acknowledge, "method": "POST", "clear": True},
    ]
    assert body["message"].startswith(DECISION.summary)
    assert "agent: claude" in body["message"]
    assert "2030-01-02 03:04 UTC" in body["message"]
    [published] = ntfy.fake.published
    assert len(published["actions"]) == 3
    assert delivery.channel == "ntfy"
    assert delivery.target == TOPIC
    assert delivery.provider_id == published["id"]


async def test_an_alert_has_only_the_acknowledge_button(ntfy: Ntfy) -> None:
    await ntfy.channel().send(ALERT)

    body = ntfy.fake.requests[0].body
    assert [action["label"] for action in body["actions"]] == ["Acknowledge"]
    assert body["tags"] == ["rotating_light"]


async def test_a_page_without_links_has_no_buttons_and_no_click(ntfy: Ntfy) -> None:
    await ntfy.channel().send(replace(DECISION, links=None))

    body = ntfy.fake.requests[0].body
    assert "actions" not in body
    assert "click" not in body
    assert len(ntfy.fake.published) == 1


async def test_the_priority_comes_from_the_configuration(ntfy: Ntfy) -> None:
    ntfy.config = NtfyConfig(server=ntfy.config.server, priority=3)

    await ntfy.channel().send(DECISION)

    assert ntfy.fake.published[0]["priority"] == 3


async def test_an_empty_target_uses_the_configured_topic_and_the_receipt_does_not_show_it(ntfy: Ntfy) -> None:
    delivery = await ntfy.channel(topic=TOPIC).send(replace(DECISION, target=""))

    assert ntfy.fake.published[0]["topic"] == TOPIC
    assert delivery.target == ""


async def test_no_topic_at_all_is_refused_before_any_request(ntfy: Ntfy) -> None:
    with pytest.raises(ChannelError) as caught:
        await ntfy.channel().send(replace(DECISION, target=""))

    assert not caught.value.retryable
    assert ntfy.fake.requests == []


async def test_a_long_message_is_shortened_to_stay_a_notification(ntfy: Ntfy) -> None:
    await ntfy.channel().send(replace(DECISION, summary="é" * 10_000))

    message = ntfy.fake.published[0]["message"]
    assert len(message.encode()) <= MESSAGE_MAX_BYTES
    assert message.endswith("…")


@pytest.mark.parametrize(
    ("token", "status", "code"), [("tk_wrong_token_must_not_leak", 401, 40101), (None, 403, 40301)]
)
async def test_a_refused_token_is_a_final_error_that_never_shows_the_token_or_topic(
    ntfy: Ntfy, caplog: pytest.LogCaptureFixture, token: str | None, status: int, code: int
) -> None:
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ChannelError) as caught:
        await ntfy.channel(token=token).send(DECISION)

    error = caught.value
    assert (error.channel, error.status, error.retryable) == ("ntfy", status, False)
    assert str(code) in str(error)
    for secret in (token, TOKEN, TOPIC):
        if secret:
            assert secret not in str(error)
            assert secret not in caplog.text


@pytest.mark.parametrize(("status", "code"), [(429, 42901), (500, 50001), (503, 50301)])
async def test_rate_limits_and_server_errors_are_retryable(ntfy: Ntfy, status: int, code: int) -> None:
    ntfy.fake.fail_next(status)

    with pytest.raises(ChannelError) as caught:
        await ntfy.channel().send(DECISION)

    assert (caught.value.status, caught.value.retryable) == (status, True)
    assert str(code) in str(caught.value)
    await ntfy.channel().send(DECISION)  # the next attempt goes through
    assert len(ntfy.fake.published) == 1


async def test_a_topic_ntfy_refuses_is_a_final_error_without_the_topic(ntfy: Ntfy) -> None:
    bad_topic = "no spaces/or slashes allowed"

    with pytest.raises(ChannelError) as caught:
        await ntfy.channel().send(replace(DECISION, target=bad_topic))

    assert (caught.value.status, caught.value.retryable) == (400, False)
    assert "40009" in str(caught.value)
    assert bad_topic not in str(caught.value)


async def test_an_unreachable_server_is_retryable() -> None:
    async with httpx.AsyncClient() as http:
        channel = NtfyChannel(http, NtfyConfig(server="http://127.0.0.1:9"), token=Secret(TOKEN))
        with pytest.raises(ChannelError) as caught:
            await channel.send(DECISION)

    assert (caught.value.status, caught.value.retryable) == (None, True)
    assert TOPIC not in str(caught.value)


async def test_a_rate_limit_carries_the_servers_retry_after(ntfy: Ntfy) -> None:
    ntfy.fake.fail_next(429, retry_after="12")

    with pytest.raises(ChannelError) as caught:
        await ntfy.channel().send(DECISION)

    assert (caught.value.status, caught.value.retryable, caught.value.retry_after) == (429, True, 12.0)
