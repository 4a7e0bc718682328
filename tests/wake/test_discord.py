"""The Discord channel, webhook inspection and command registration, over real HTTP against a fake Discord."""

from __future__ import annotations

import socket
import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from brain_server.exceptions import ConfigError
from brain_server.wake.base import Page
from brain_server.wake.discord import (
    COMMANDS,
    DiscordError,
    DiscordWebhookChannel,
    SlashCommand,
    inspect_webhook,
    page_message,
    parse_custom_id,
    register_commands,
)
from shared_protocol.secrets import Secret
from tests.fakes.discord import APP_ID, BOT_TOKEN, GUILD_ID, WEBHOOK_TOKEN, FakeDiscord
from tests.fakes.serve import serve_app

pytestmark = pytest.mark.anyio

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(hours=1)


class RecordingSleep:
    """Stands in for `anyio.sleep`: remembers each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def fake() -> FakeDiscord:
    return FakeDiscord()


@pytest.fixture
async def base(fake: FakeDiscord) -> AsyncIterator[str]:
    async with serve_app(fake) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


def webhook(url: str) -> Secret:
    return Secret(url, source="env:SWARM_DISCORD_WEBHOOK")


def bot(token: str = BOT_TOKEN) -> Secret:
    return Secret(token, source="env:SWARM_DISCORD_BOT_TOKEN")


@pytest.fixture
def channel(http: httpx.AsyncClient, base: str, sleep: RecordingSleep) -> DiscordWebhookChannel:
    return DiscordWebhookChannel(http, webhook(FakeDiscord.webhook_url(base)), sleep=sleep, clock=lambda: NOW)


def decision_page(**changes: object) -> Page:
    values: dict[str, object] = {
        "page_id": "pg_1",
        "kind": "decision",
        "subject_id": "dec_18c2f3a4b5c6d7e8a1b2c3d4",
        "title": "Decision needs a human: rewrite billing",
        "summary": "The agent wants to rewrite the billing module (12 files).",
        "facts": {"Agent": "coder-1", "Body": "laptop", "Confidence": "0.62"},
        "level": 0,
        "attempt": 1,
        "deadline": DEADLINE,
    }
    values.update(changes)
    return Page(**values)  # type: ignore[arg-type]  # the test's own keyword arguments


def alert_page(**changes: object) -> Page:
    values: dict[str, object] = {
        "page_id": "pg_2",
        "kind": "alert",
        "subject_id": "alt_42",
        "title": "Body laptop stopped heartbeating",
        "summary": "No heartbeat for 60 seconds; it behaves as killed.",
        "facts": {"Body": "laptop"},
        "level": 2,
        "attempt": 3,
    }
    values.update(changes)
    return Page(**values)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- sending a page ----------------------------------------------------------------------------


async def test_a_decision_page_becomes_an_embed_with_approve_deny_and_acknowledge_buttons(
    channel: DiscordWebhookChannel, fake: FakeDiscord
) -> None:
    delivery = await channel.send(decision_page())

    [request] = fake.requests
    assert request.method == "POST"
    assert request.query == {"wait": "true"}
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("DiscordBot (")
    assert request.body == {
        "content": "Decision needs a human: rewrite billing",
        "embeds": [
            {
                "title": "Decision needs a human: rewrite billing",
                "description": "The agent wants to rewrite the billing module (12 files).",
                "color": 0xF1C40F,
                "timestamp": "2025-03-01T13:00:00+00:00",
                "footer": {
                    "text": "decision dec_18c2f3a4b5c6d7e8a1b2c3d4 · level 1, attempt 1 · denied if unanswered by"
                },
                "fields": [
                    {"name": "Agent", "value": "coder-1", "inline": True},
                    {"name": "Body", "value": "laptop", "inline": True},
                    {"name": "Confidence", "value": "0.62", "inline": True},
                ],
            }
        ],
        "allowed_mentions": {"parse": []},
        "components": [
            {
                "type": 1,
                "components": [
                    {"type": 2, "style": 3, "label": "Approve", "custom_id": "approve:dec_18c2f3a4b5c6d7e8a1b2c3d4"},
                    {"type": 2, "style": 4, "label": "Deny", "custom_id": "deny:dec_18c2f3a4b5c6d7e8a1b2c3d4"},
                    {"type": 2, "style": 2, "label": "Acknowledge", "custom_id": "ack:dec_18c2f3a4b5c6d7e8a1b2c3d4"},
                ],
            }
        ],
    }
    [message] = fake.messages
    assert delivery.channel == channel.name == "discord"
    assert delivery.target == ""
    assert delivery.provider_id == message["id"]
    assert message["components"] == request.body["components"]  # an app-owned webhook keeps its buttons


async def test_an_alert_page_has_only_an_acknowledge_button_and_is_stamped_now(
    channel: DiscordWebhookChannel, fake: FakeDiscord
) -> None:
    await channel.send(alert_page())

    body = fake.requests[0].body
    assert body["components"] == [
        {"type": 1, "components": [{"type": 2, "style": 2, "label": "Acknowledge", "custom_id": "ack:alt_42"}]}
    ]
    [embed] = body["embeds"]
    assert embed["color"] == 0xE74C3C
    assert embed["timestamp"] == NOW.isoformat()
    assert embed["footer"] == {"text": "alert alt_42 · level 3, attempt 3"}


async def test_long_text_is_clipped_to_discords_limits_with_an_ellipsis(
    channel: DiscordWebhookChannel, fake: FakeDiscord
) -> None:
    facts = {f"fact {i} " + "n" * 300: "v" * 2000 for i in range(30)}
    await channel.send(decision_page(title="T" * 3000, summary="S" * 5000, facts=facts))

    body = fake.requests[0].body
    [embed] = body["embeds"]
    assert len(body["content"]) == 2000 and body["content"].endswith("…")
    assert len(embed["title"]) == 256 and embed["title"].endswith("…")
    assert len(embed["description"]) == 4096 and embed["description"].endswith("…")
    assert embed["fields"], "as many facts as fit are kept"
    for item in embed["fields"]:
        assert len(item["name"]) == 256 and item["name"].endswith("…")
        assert len(item["value"]) == 1024 and item["value"].endswith("…")
    total = len(embed["title"]) + len(embed["description"]) + len(embed["footer"]["text"])
    total += sum(len(item["name"]) + len(item["value"]) for item in embed["fields"])
    assert total <= 6000
    assert len(fake.messages) == 1  # and the fake, which checks every limit, saved it


def test_at_most_25_fields_and_never_an_empty_one() -> None:
    facts = {f"f{i}": str(i) for i in range(40)} | {"Empty": "  "}
    embed = page_message(decision_page(facts=facts), now=NOW)["embeds"][0]  # type: ignore[index]

    assert len(embed["fields"]) == 25
    assert page_message(decision_page(facts={"Empty": " "}), now=NOW)["embeds"][0]["fields"] == [  # type: ignore[index]
        {"name": "Empty", "value": "—", "inline": True}
    ]


async def test_the_webhook_urls_own_query_string_is_kept(
    http: httpx.AsyncClient, base: str, fake: FakeDiscord, sleep: RecordingSleep
) -> None:
    url = FakeDiscord.webhook_url(base) + "?thread_id=1190000000000000009"
    await DiscordWebhookChannel(http, webhook(url), sleep=sleep).send(alert_page())

    assert fake.requests[0].query == {"thread_id": "1190000000000000009", "wait": "true"}


def test_button_custom_ids_parse_back_to_the_action_and_the_subject() -> None:
    assert parse_custom_id("approve:dec_1") == ("approve", "dec_1")
    assert parse_custom_id("ack:alt:with:colons") == ("ack", "alt:with:colons")
    assert parse_custom_id("launch:dec_1") is None
    assert parse_custom_id("deny:") is None


async def test_a_subject_id_too_long_for_a_button_is_refused_before_anything_is_sent(
    channel: DiscordWebhookChannel, fake: FakeDiscord
) -> None:
    with pytest.raises(DiscordError) as caught:
        await channel.send(decision_page(subject_id="d" * 95))

    assert caught.value.retryable is False
    assert fake.requests == []


# --- rate limits and failures ------------------------------------------------------------------


async def test_a_429_is_waited_out_for_retry_after_then_the_page_is_sent(
    channel: DiscordWebhookChannel, fake: FakeDiscord, sleep: RecordingSleep
) -> None:
    fake.rate_limit(times=2, retry_after=0.25)

    delivery = await channel.send(decision_page())

    assert sleep.delays == [0.25, 0.25]
    assert len(fake.requests) == 3
    assert delivery.provider_id == fake.messages[0]["id"]


async def test_without_a_json_body_the_retry_after_header_is_used(
    channel: DiscordWebhookChannel, fake: FakeDiscord, sleep: RecordingSleep
) -> None:
    fake.rate_limit(retry_after=2, body=False)

    await channel.send(alert_page())

    assert sleep.delays == [2.0]


async def test_a_rate_limit_that_does_not_end_is_a_retryable_error(
    channel: DiscordWebhookChannel, fake: FakeDiscord, sleep: RecordingSleep
) -> None:
    fake.rate_limit(times=10, retry_after=0.25)

    with pytest.raises(DiscordError) as caught:
        await channel.send(decision_page())

    assert (caught.value.retryable, caught.value.status) == (True, 429)
    assert sleep.delays == [0.25, 0.25, 0.25]  # the default three retries
    assert len(fake.requests) == 4
    assert fake.messages == []


async def test_a_retry_after_past_the_wait_budget_is_not_slept(
    channel: DiscordWebhookChannel, fake: FakeDiscord, sleep: RecordingSleep
) -> None:
    fake.rate_limit(retry_after=3600)

    with pytest.raises(DiscordError) as caught:
        await channel.send(decision_page())

    assert (caught.value.retryable, caught.value.status) == (True, 429)
    assert caught.value.retry_after == 3600  # for the ladder: it does not retry into the rate limit either
    assert sleep.delays == []


async def test_a_server_error_is_retryable_by_the_ladder(channel: DiscordWebhookChannel, fake: FakeDiscord) -> None:
    fake.server_error(status=502)

    with pytest.raises(DiscordError) as caught:
        await channel.send(decision_page())

    assert (caught.value.retryable, caught.value.status) == (True, 502)
    assert len(fake.requests) == 1


async def test_an_invalid_form_body_is_not_retryable_and_carries_discords_code(
    channel: DiscordWebhookChannel, fake: FakeDiscord
) -> None:
    errors = {"embeds": {"0": {"title": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Too long."}]}}}}
    fake.fail_next(400, {"code": 50035, "message": "Invalid Form Body", "errors": errors})

    with pytest.raises(DiscordError) as caught:
        await channel.send(decision_page())

    assert (caught.value.retryable, caught.value.status, caught.value.code) == (False, 400, 50035)
    assert "Invalid Form Body" in str(caught.value)


async def test_a_wrong_webhook_token_is_not_retryable(
    http: httpx.AsyncClient, base: str, sleep: RecordingSleep
) -> None:
    url = FakeDiscord.webhook_url(base).replace(WEBHOOK_TOKEN, "revoked-token-0123456789")

    with pytest.raises(DiscordError) as caught:
        await DiscordWebhookChannel(http, webhook(url), sleep=sleep).send(alert_page())

    assert (caught.value.retryable, caught.value.status, caught.value.code) == (False, 401, 50027)
    assert "revoked-token-0123456789" not in str(caught.value)


async def test_an_unreachable_discord_is_retryable(http: httpx.AsyncClient, sleep: RecordingSleep) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/webhooks/1190000000000000001/{WEBHOOK_TOKEN}"

    with pytest.raises(DiscordError) as caught:
        await DiscordWebhookChannel(http, webhook(url), sleep=sleep).send(alert_page())

    assert (caught.value.retryable, caught.value.status) == (True, None)


async def test_errors_never_show_the_webhook_url_or_its_token(
    channel: DiscordWebhookChannel, fake: FakeDiscord, http: httpx.AsyncClient, base: str, sleep: RecordingSleep
) -> None:
    url = FakeDiscord.webhook_url(base)
    # A proxy (or Discord) that quotes the request in its error, a rate limit that does not end, an outage.
    fake.fail_next(400, {"code": 50035, "message": f"Invalid Form Body for POST {url}?wait=true"})
    fake.rate_limit(times=4)
    fake.server_error(status=503)
    unreachable = f"http://127.0.0.1:{free_port()}/api/webhooks/1190000000000000001/{WEBHOOK_TOKEN}"
    dead = DiscordWebhookChannel(http, webhook(unreachable), sleep=sleep)

    failures: list[DiscordError] = []
    for sender in (channel, channel, channel, dead):
        with pytest.raises(DiscordError) as caught:
            await sender.send(decision_page())
        failures.append(caught.value)

    assert [failure.status for failure in failures] == [400, 429, 503, None]
    for failure in failures:
        # Nor in a logged traceback, which would show a chained httpx error (its request holds the URL).
        shown = f"{failure!r} {''.join(traceback.format_exception(failure))}"
        assert WEBHOOK_TOKEN not in shown
    assert "…" in str(failures[0])


async def test_a_webhook_url_that_is_not_http_is_a_config_error_that_does_not_quote_it(
    http: httpx.AsyncClient,
) -> None:
    with pytest.raises(ConfigError) as caught:
        DiscordWebhookChannel(http, webhook(f"discord.com/api/webhooks/1/{WEBHOOK_TOKEN}"))

    assert WEBHOOK_TOKEN not in str(caught.value)
    assert "env:SWARM_DISCORD_WEBHOOK" in str(caught.value)


# --- inspecting the webhook --------------------------------------------------------------------


async def test_an_application_owned_webhook_is_told_from_a_user_created_one(
    http: httpx.AsyncClient, base: str, fake: FakeDiscord, channel: DiscordWebhookChannel
) -> None:
    owned = await inspect_webhook(http, webhook(FakeDiscord.webhook_url(base)))
    fake.webhook_application_id = None
    made_by_a_user = await inspect_webhook(http, webhook(FakeDiscord.webhook_url(base)))

    assert (owned.app_owned, owned.application_id, owned.type) == (True, APP_ID, 3)
    assert (made_by_a_user.app_owned, made_by_a_user.application_id, made_by_a_user.type) == (False, None, 1)
    assert owned.channel_id == made_by_a_user.channel_id is not None
    assert WEBHOOK_TOKEN not in repr(owned)  # Discord sends the token back; it is not kept
    assert [request.method for request in fake.requests] == ["GET", "GET"]
    # Why it matters: through a user's webhook the page arrives without its buttons, and Discord says 200.
    await channel.send(decision_page())
    assert fake.messages[0]["components"] == []


async def test_inspecting_a_deleted_webhook_is_an_error(http: httpx.AsyncClient, base: str) -> None:
    url = FakeDiscord.webhook_url(base).replace("1190000000000000001", "1190000000000000099")

    with pytest.raises(DiscordError) as caught:
        await inspect_webhook(http, webhook(url))

    assert (caught.value.status, caught.value.code, caught.value.retryable) == (404, 10015, False)


# --- slash commands ----------------------------------------------------------------------------


def test_the_commands_are_the_six_swarm_answers_to() -> None:
    assert [command.name for command in COMMANDS] == [
        "kill-autonomous",
        "resume",
        "captain-override",
        "approve",
        "deny",
        "status",
    ]
    options = {command.name: [(o.name, o.required) for o in command.options] for command in COMMANDS}
    assert options["captain-override"] == [("decision_id", True), ("action", True), ("reason", True)]
    override = next(c for c in COMMANDS if c.name == "captain-override").to_json()
    assert override["options"][1]["choices"] == [  # type: ignore[index]
        {"name": "veto", "value": "veto"},
        {"name": "force", "value": "force"},
    ]
    assert options["approve"][0] == ("id", True)
    assert options["deny"] == [("id", True), ("reason", False)]
    assert options["kill-autonomous"] == options["resume"] == [("reason", False)]
    assert options["status"] == []
    assert all(1 <= len(command.description) <= 100 for command in COMMANDS)


async def test_register_commands_overwrites_the_global_commands_with_the_bot_token(
    http: httpx.AsyncClient, base: str, fake: FakeDiscord
) -> None:
    registered = await register_commands(
        http, api_base=FakeDiscord.api_base(base), application_id=APP_ID, bot_token=bot()
    )

    [request] = fake.requests
    assert (request.method, request.path) == ("PUT", f"/api/v10/applications/{APP_ID}/commands")
    assert request.headers["authorization"] == f"Bot {BOT_TOKEN}"
    assert request.body == [command.to_json() for command in COMMANDS]
    assert [command.name for command in registered] == [command.name for command in COMMANDS]
    assert [command.id for command in registered] == [command["id"] for command in fake.commands["global"]]
    assert all(command.application_id == APP_ID and command.guild_id is None for command in registered)
    assert len({command.id for command in registered}) == len(COMMANDS)


async def test_register_commands_in_one_server_uses_the_guild_path(
    http: httpx.AsyncClient, base: str, fake: FakeDiscord
) -> None:
    registered = await register_commands(
        http, api_base=FakeDiscord.api_base(base) + "/", application_id=APP_ID, bot_token=bot(), guild_id=GUILD_ID
    )

    assert fake.requests[0].path == f"/api/v10/applications/{APP_ID}/guilds/{GUILD_ID}/commands"
    assert {command.guild_id for command in registered} == {GUILD_ID}
    assert "global" not in fake.commands


async def test_a_wrong_bot_token_is_a_clear_error_that_does_not_show_either_token(
    http: httpx.AsyncClient, base: str
) -> None:
    wrong = "MTE4NzY1NDMyMTA5ODc2NTQzMg.GfakeB.a-wrong-token-0123456789"

    with pytest.raises(DiscordError) as caught:
        await register_commands(http, api_base=FakeDiscord.api_base(base), application_id=APP_ID, bot_token=bot(wrong))

    assert (caught.value.status, caught.value.code, caught.value.retryable) == (401, 0, False)
    assert "bot_token" in str(caught.value)  # says what to fix
    assert wrong not in str(caught.value) and BOT_TOKEN not in str(caught.value)


async def test_registering_in_a_server_the_app_was_not_added_to_is_refused(http: httpx.AsyncClient, base: str) -> None:
    with pytest.raises(DiscordError) as caught:
        await register_commands(
            http, api_base=FakeDiscord.api_base(base), application_id=APP_ID, bot_token=bot(), guild_id="42"
        )

    assert (caught.value.status, caught.value.code) == (403, 50001)


async def test_register_commands_waits_out_a_429_like_the_webhook(
    http: httpx.AsyncClient, base: str, fake: FakeDiscord, sleep: RecordingSleep
) -> None:
    fake.rate_limit(retry_after=0.5)

    registered = await register_commands(
        http, api_base=FakeDiscord.api_base(base), application_id=APP_ID, bot_token=bot(), sleep=sleep
    )

    assert sleep.delays == [0.5]
    assert len(registered) == len(COMMANDS)


async def test_a_command_discord_would_refuse_is_a_non_retryable_invalid_form_body(
    http: httpx.AsyncClient, base: str, fake: FakeDiscord
) -> None:
    bad = SlashCommand(name="status", description="")

    with pytest.raises(DiscordError) as caught:
        await register_commands(
            http, api_base=FakeDiscord.api_base(base), application_id=APP_ID, bot_token=bot(), commands=[bad]
        )

    assert (caught.value.status, caught.value.code, caught.value.retryable) == (400, 50035, False)
    assert fake.commands == {}


async def test_register_commands_refuses_ids_that_are_not_discord_ids(http: httpx.AsyncClient) -> None:
    with pytest.raises(ConfigError):
        await register_commands(http, api_base="http://127.0.0.1:1/api/v10", application_id="", bot_token=bot())
    with pytest.raises(ConfigError):
        await register_commands(
            http, api_base="http://127.0.0.1:1/api/v10", application_id=APP_ID, bot_token=bot(), guild_id="../x"
        )
    with pytest.raises(ConfigError):
        await register_commands(http, api_base="http://127.0.0.1:1/api/v10", application_id=APP_ID, bot_token=bot(""))


# --- the fake refuses what Discord refuses ------------------------------------------------------


async def test_the_fake_refuses_messages_and_commands_discord_would_refuse(
    http: httpx.AsyncClient, base: str, fake: FakeDiscord
) -> None:
    """So that the shapes the tests above accept are checked by something that can say no."""
    message = page_message(decision_page(), now=NOW)
    bad_messages = [
        {**message, "components": [{"type": 2, "style": 3, "label": "Approve", "custom_id": "approve:x"}]},
        {**message, "components": [{"type": 1, "components": [{"type": 2, "style": 9, "custom_id": "x"}]}]},
        {**message, "components": [{"type": 1, "components": [{"type": 2, "style": 3, "custom_id": "x" * 101}]}]},
        {**message, "embeds": [{"title": "t" * 257}]},
        {**message, "embeds": [{"fields": [{"name": "n", "value": ""}]}]},
    ]
    for body in bad_messages:
        response = await http.post(FakeDiscord.webhook_url(base), params={"wait": "true"}, json=body)
        assert (response.status_code, response.json()["code"]) == (400, 50035), body
    bad_commands = [
        [{"name": "Approve", "description": "Upper case is not allowed"}],
        [{"name": "approve", "description": "x" * 101}],
        [
            {
                "name": "deny",
                "description": "d",
                "options": [
                    {"type": 3, "name": "a", "description": "a"},
                    {"type": 3, "name": "b", "description": "b", "required": True},
                ],
            }
        ],
    ]
    for body in bad_commands:
        response = await http.put(
            f"{FakeDiscord.api_base(base)}/applications/{APP_ID}/commands",
            headers={"Authorization": f"Bot {BOT_TOKEN}"},
            json=body,
        )
        assert (response.status_code, response.json()["code"]) == (400, 50035), body
    assert fake.messages == [] and fake.commands == {}
