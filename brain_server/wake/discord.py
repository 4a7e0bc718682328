"""Discord, the first rung of the wake-up ladder: a webhook message with buttons, and the slash commands.

A page becomes one webhook message: a short `content`, one embed (the summary and the facts) and a row
of buttons whose `custom_id` (`approve:<id>`, `deny:<id>`, `ack:<id>`) comes back to the brain's
interactions endpoint when someone clicks. Only a webhook that the application owns keeps those
buttons: Discord drops interactive components sent through a webhook a user made in the channel's
settings, and still answers 200. `inspect_webhook` tells `swarm doctor` which kind is configured.

`register_commands` installs the slash commands (`/approve`, `/kill-autonomous`, …) in one bulk
overwrite. Every request goes through `_request`, which waits out Discord's 429s (within a bound) and
turns anything else into a `DiscordError` that never shows the webhook URL, its token or the bot token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from shared_protocol.config import SwarmConfig
from shared_protocol.secrets import Secret, SecretResolver

from ..exceptions import ConfigError
from .base import BuildChannels, ChannelError, ChannelKind, ChannelSet, Delivery, Page, read_secret, retry_after_s

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]
ButtonAction = Literal["approve", "deny", "ack"]
CommandName = Literal["kill-autonomous", "resume", "captain-override", "approve", "deny", "status"]

# Discord's limits, in characters (embed limits: resources/message#embed-object-embed-limits).
CONTENT_MAX = 2000
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
EMBED_TOTAL_MAX = 6000
CUSTOM_ID_MAX = 100

_ACTION_ROW, _BUTTON = 1, 2
_SECONDARY, _SUCCESS, _DANGER = 2, 3, 4
_CHAT_INPUT, _STRING_OPTION = 1, 3
_COLORS = {"decision": 0xF1C40F, "alert": 0xE74C3C}
_ACTIONS: dict[str, ButtonAction] = {"approve": "approve", "deny": "deny", "ack": "ack"}


def _user_agent() -> str:
    """Discord asks every API client for `DiscordBot ($url, $version)`."""
    try:
        return f"DiscordBot (swarm, {version('swarm')})"
    except PackageNotFoundError:  # a checkout that was never installed
        return "DiscordBot (swarm, 0)"


_USER_AGENT = _user_agent()


class DiscordError(ChannelError):
    """Discord refused a request or could not be reached. `code` is Discord's JSON error code, if it sent one
    (50035 Invalid Form Body, 10015 Unknown Webhook, 0 for a 401); `status` the HTTP status, if there was one."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        status: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, channel="discord", retryable=retryable, status=status, retry_after=retry_after)
        self.code = code


@dataclass(kw_only=True, frozen=True)
class RetryPolicy:
    """How long a request waits out Discord's 429s before giving up (retryable: the ladder tries again later)."""

    max_retries: int = 3
    max_wait_s: float = 15.0
    """Total seconds slept; a `retry_after` that would go past it is not waited for."""


DEFAULT_RETRY = RetryPolicy()


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- the page message ------------------------------------------------------------------------


def custom_id(action: ButtonAction, subject_id: str) -> str:
    """The button's `custom_id`, which Discord sends back in the interaction when it is clicked."""
    return f"{action}:{subject_id}"


def parse_custom_id(value: str) -> tuple[ButtonAction, str] | None:
    """`"approve:dec_1"` → `("approve", "dec_1")`; None for anything that is not one of our buttons."""
    action, _, subject_id = value.partition(":")
    found = _ACTIONS.get(action)
    return (found, subject_id) if found is not None and subject_id else None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _button(label: str, style: int, action: ButtonAction, subject_id: str) -> dict[str, object]:
    return {"type": _BUTTON, "style": style, "label": label, "custom_id": custom_id(action, subject_id)}


def _buttons(page: Page) -> list[dict[str, object]]:
    if len(custom_id("approve", page.subject_id)) > CUSTOM_ID_MAX:
        # Clipping would send a button that answers nothing (or the wrong thing): refuse instead.
        raise DiscordError(f"{page.kind} id {page.subject_id!r} is too long for a Discord button's custom_id")
    acknowledge = _button("Acknowledge", _SECONDARY, "ack", page.subject_id)
    if page.kind == "alert":
        return [acknowledge]
    return [
        _button("Approve", _SUCCESS, "approve", page.subject_id),
        _button("Deny", _DANGER, "deny", page.subject_id),
        acknowledge,
    ]


def _fields(facts: dict[str, str], budget: int) -> list[dict[str, object]]:
    """Inline fields in the facts' order, as many as fit in the embed's remaining characters."""
    fields: list[dict[str, object]] = []
    for name, value in list(facts.items())[:FIELDS_MAX]:
        # Discord refuses an empty (or blank) field name or value.
        name = _clip(name.strip(), FIELD_NAME_MAX) or "—"
        value = _clip(value.strip(), FIELD_VALUE_MAX) or "—"
        budget -= len(name) + len(value)
        if budget < 0:
            break
        fields.append({"name": name, "value": value, "inline": True})
    return fields


def page_message(page: Page, *, now: datetime) -> dict[str, object]:
    """The webhook message (Discord's JSON) for `page`, clipped to Discord's limits with an ellipsis.

    A decision's embed timestamp is its deadline (Discord shows it in each reader's time zone, after
    the footer); an alert's is `now`. `allowed_mentions` is empty so no text in a page can ping anyone.
    """
    title = _clip(page.title, TITLE_MAX)
    description = _clip(page.summary, DESCRIPTION_MAX)
    footer = f"{page.kind} {page.subject_id} · level {page.level + 1}, attempt {page.attempt}"
    stamp = now
    if page.kind == "decision" and page.deadline is not None:
        footer += " · denied if unanswered by"
        stamp = page.deadline
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    footer = _clip(footer, FOOTER_MAX)
    embed: dict[str, object] = {
        "title": title,
        "description": description,
        "color": _COLORS[page.kind],
        "timestamp": stamp.astimezone(UTC).isoformat(),
        "footer": {"text": footer},
    }
    fields = _fields(page.facts, EMBED_TOTAL_MAX - len(title) - len(description) - len(footer))
    if fields:
        embed["fields"] = fields
    message: dict[str, object] = {
        "embeds": [{key: value for key, value in embed.items() if value != ""}],
        "allowed_mentions": {"parse": []},
        "components": [{"type": _ACTION_ROW, "components": _buttons(page)}],
    }
    if page.title:
        message["content"] = _clip(page.title, CONTENT_MAX)
    return message


# --- requests --------------------------------------------------------------------------------


class _ErrorBody(BaseModel):
    """Discord's error JSON: `{"code": 50035, "message": "Invalid Form Body", "errors": {…}}`; a 429 adds
    `retry_after` (seconds) and `global`."""

    model_config = ConfigDict(extra="ignore")
    message: str = ""
    code: int | None = None
    retry_after: float | None = None


def _error_body(response: httpx.Response) -> _ErrorBody | None:
    try:
        return _ErrorBody.model_validate_json(response.content)
    except ValidationError:
        return None


def _retry_after(response: httpx.Response) -> float:
    """Seconds Discord asks us to wait: the body's `retry_after`, else the `Retry-After` header, else 1."""
    body = _error_body(response)
    if body is not None and body.retry_after is not None:
        return max(body.retry_after, 0.0)
    header = retry_after_s(response.headers)
    return 1.0 if header is None else header


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "…")
    return text


async def _request(
    http: httpx.AsyncClient,
    method: str,
    url: httpx.URL | str,
    *,
    what: str,
    secrets: Sequence[str],
    refused: str,
    sleep: Sleep,
    retry: RetryPolicy,
    headers: dict[str, str] | None = None,
    json: object = None,
) -> httpx.Response:
    """One Discord request: a 2xx response, after waiting out 429s within `retry`, or a `DiscordError`.

    `what` names the call in errors; `refused` says what to check when Discord answers 401, 403 or 404;
    `secrets` are removed from any text that reaches an error (and the httpx exception is not chained,
    since its request holds the URL and headers).
    """
    headers = {"User-Agent": _USER_AGENT, **(headers or {})}
    waited, retries = 0.0, 0
    while True:
        try:
            response = await http.request(method, url, headers=headers, json=json)
        except httpx.RequestError as exc:
            detail = _scrub(f"{type(exc).__name__}: {exc}", secrets)
            raise DiscordError(f"{what}: Discord could not be reached ({detail})", retryable=True) from None
        if response.status_code != 429:
            break
        delay = _retry_after(response)
        if retries >= retry.max_retries or waited + delay > retry.max_wait_s:
            raise DiscordError(
                f"{what}: rate limited by Discord (retry after {delay:.2f}s; waited {waited:.2f}s, {retries} retries)",
                retryable=True,
                status=429,
                retry_after=delay,
            )
        await sleep(delay)
        waited, retries = waited + delay, retries + 1
    if response.is_success:
        return response
    status = response.status_code
    body = _error_body(response)
    detail = f"{body.message} (code {body.code})" if body is not None and body.message else response.reason_phrase
    hint = f": {refused}" if status in (401, 403, 404) else ""
    raise DiscordError(
        _scrub(f"{what}: Discord answered {status} {detail}{hint}", secrets),
        retryable=status >= 500,
        status=status,
        code=body.code if body is not None else None,
    )


# --- the webhook -----------------------------------------------------------------------------


def _webhook(url: Secret) -> tuple[httpx.URL, tuple[str, ...]]:
    """The webhook URL, checked, and what to scrub from errors (the URL and its token, the last path segment)."""
    where = f" ({url.source})" if url.source else ""
    try:
        parsed = httpx.URL(url.reveal())
    except httpx.InvalidURL:
        raise ConfigError(f"discord webhook_url{where} is not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"discord webhook_url{where} is not an http(s) URL")
    token = parsed.path.rstrip("/").rpartition("/")[2]
    return parsed, (url.reveal(), str(parsed), token)


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str


class DiscordWebhookChannel:
    """Pages a Discord channel through a webhook: an embed, and Approve / Deny / Acknowledge buttons.

    The webhook must be application-owned for the buttons to appear (see `inspect_webhook`). Sent with
    `?wait=true`, so Discord answers with the message (its id is the delivery's `provider_id`) and a
    message it did not save is an error rather than a silent 204. Not with `with_components`: an
    app-owned webhook sends components without it, and a user's webhook would still drop the buttons.
    """

    name = "discord"

    def __init__(
        self,
        http: httpx.AsyncClient,
        webhook_url: Secret,
        *,
        sleep: Sleep = anyio.sleep,
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Clock = _utcnow,
    ) -> None:
        url, self._secrets = _webhook(webhook_url)
        self._execute_url = url.copy_merge_params({"wait": "true"})
        self._http = http
        self._sleep = sleep
        self._retry = retry
        self._clock = clock

    async def send(self, page: Page) -> Delivery:
        response = await _request(
            self._http,
            "POST",
            self._execute_url,
            what="execute webhook",
            secrets=self._secrets,
            refused="check webhook_url: the webhook may have been deleted",
            sleep=self._sleep,
            retry=self._retry,
            json=page_message(page, now=self._clock()),
        )
        try:
            provider_id: str | None = _Message.model_validate_json(response.content).id
        except ValidationError:  # delivered all the same: never page twice for a receipt we cannot read
            provider_id = None
        return Delivery(channel=self.name, target="", provider_id=provider_id)


class DiscordFactory:
    """`[discord] webhook_url` → the `discord` channel, answered with its buttons. (The section's other keys set up
    the interactions endpoint and `swarm discord register`, not a channel.)"""

    kinds = (ChannelKind(name="discord", answers="buttons"),)

    def filled_in(self, config: SwarmConfig) -> bool:
        return bool(config.discord.webhook_url or config.discord.public_key)

    def prepare(self, config: SwarmConfig, secrets: SecretResolver) -> BuildChannels | None:
        webhook = read_secret(secrets, config.discord.webhook_url)
        if webhook is None:
            return None

        def build(http: httpx.AsyncClient) -> ChannelSet:
            return ChannelSet(channels={"discord": DiscordWebhookChannel(http, webhook)}, recipients={"discord": [""]})

        return build

    def problems(self, config: SwarmConfig) -> list[str]:
        return []


class WebhookInfo(BaseModel):
    """A webhook as Discord describes it to whoever holds its URL (the token itself is not kept)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str
    type: int
    """1 incoming, 2 channel follower, 3 application."""
    name: str | None = None
    channel_id: str | None = None
    guild_id: str | None = None
    application_id: str | None = None
    """The application that created the webhook; None when a user created it."""

    @property
    def app_owned(self) -> bool:
        """Whether buttons sent through this webhook reach the channel (see `inspect_webhook`)."""
        return self.application_id is not None


async def inspect_webhook(
    http: httpx.AsyncClient, webhook_url: Secret, *, sleep: Sleep = anyio.sleep, retry: RetryPolicy = DEFAULT_RETRY
) -> WebhookInfo:
    """Who owns the configured webhook (`GET` on its URL, which needs no other credential).

    A webhook a user creates in the channel's settings (Integrations → Webhooks) has no
    `application_id`, and Discord *silently drops* the buttons of every message sent through it: the
    page arrives, but nobody can answer it from Discord. The webhook must be created by the application
    instead, so its `application_id` is the app's: with the bot's token, `POST
    /channels/{channel_id}/webhooks` with `{"name": "Swarm"}` (the bot needs Manage Webhooks in that
    channel), and configure the `url` of the webhook it returns (or `https://discord.com/api/webhooks/
    {id}/{token}`). `swarm doctor` warns when `app_owned` is false or the owner is not the configured
    `application_id`.
    """
    url, secrets = _webhook(webhook_url)
    response = await _request(
        http,
        "GET",
        url,
        what="get webhook",
        secrets=secrets,
        refused="check webhook_url: the webhook may have been deleted",
        sleep=sleep,
        retry=retry,
    )
    try:
        return WebhookInfo.model_validate_json(response.content)
    except ValidationError:  # its text would quote the body: keep it out
        raise DiscordError("get webhook: Discord answered something that is not a webhook") from None


# --- slash commands --------------------------------------------------------------------------


@dataclass(kw_only=True, frozen=True)
class CommandOption:
    """A string option of a slash command (every option Swarm's commands take is a string)."""

    name: str
    description: str
    required: bool = False
    choices: tuple[str, ...] = ()
    """The only values Discord lets the user pick (none: free text)."""

    def to_json(self) -> dict[str, object]:
        option: dict[str, object] = {
            "type": _STRING_OPTION,
            "name": self.name,
            "description": self.description,
            "required": self.required,
        }
        if self.choices:
            option["choices"] = [{"name": choice, "value": choice} for choice in self.choices]
        return option


@dataclass(kw_only=True, frozen=True)
class SlashCommand:
    """A CHAT_INPUT application command; required options come first, as Discord demands."""

    name: CommandName
    description: str
    options: tuple[CommandOption, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        command: dict[str, object] = {"type": _CHAT_INPUT, "name": self.name, "description": self.description}
        if self.options:
            command["options"] = [option.to_json() for option in self.options]
        return command


_REASON = CommandOption(name="reason", description="Why (recorded in the audit log)")

COMMANDS: tuple[SlashCommand, ...] = (
    SlashCommand(
        name="kill-autonomous",
        description="Stop every autonomous agent now (the brain's kill switch)",
        options=(_REASON,),
    ),
    SlashCommand(
        name="resume", description="Release the kill switch: autonomous agents may run again", options=(_REASON,)
    ),
    SlashCommand(
        name="captain-override",
        description="Veto or force a decision at once, as `swarm override` (human captains only)",
        options=(
            CommandOption(name="decision_id", description="The decision's id (dec_…)", required=True),
            CommandOption(
                name="action",
                description="veto (overridden) or force (approved)",
                required=True,
                choices=("veto", "force"),
            ),
            CommandOption(name="reason", description="Why (recorded in the audit log)", required=True),
        ),
    ),
    SlashCommand(
        name="approve",
        description="Approve a pending decision",
        options=(CommandOption(name="id", description="The decision's id (dec_…)", required=True), _REASON),
    ),
    SlashCommand(
        name="deny",
        description="Deny a pending decision",
        options=(CommandOption(name="id", description="The decision's id (dec_…)", required=True), _REASON),
    ),
    SlashCommand(name="status", description="The kill switch, the bodies and the decisions waiting for a human"),
)
"""Swarm's slash commands, as `register_commands` installs them."""


class RegisteredCommand(BaseModel):
    """A command as Discord stored it."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str
    name: str
    application_id: str
    version: str
    guild_id: str | None = None


_REGISTERED = TypeAdapter(list[RegisteredCommand])


async def register_commands(
    http: httpx.AsyncClient,
    *,
    api_base: str,
    application_id: str,
    bot_token: Secret,
    guild_id: str = "",
    commands: Sequence[SlashCommand] = COMMANDS,
    sleep: Sleep = anyio.sleep,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> list[RegisteredCommand]:
    """Install `commands` as the application's whole command list (a bulk overwrite: others are removed).

    In one server when `guild_id` is set (effective at once), else globally. Returns them with the ids
    Discord gave them.
    """
    for key, value in (("application_id", application_id), ("guild_id", guild_id or "0")):
        if not value.isdigit():
            raise ConfigError(f"discord {key} must be a Discord id (digits), got {value!r}")
    if not bot_token:
        raise ConfigError("discord bot_token is not configured: it is needed to register commands")
    scope = f"/guilds/{guild_id}" if guild_id else ""
    response = await _request(
        http,
        "PUT",
        f"{api_base.rstrip('/')}/applications/{application_id}{scope}/commands",
        what="register commands",
        secrets=(bot_token.reveal(),),
        refused="check bot_token, application_id (the bot's own) and that the app was added to the server",
        sleep=sleep,
        retry=retry,
        headers={"Authorization": f"Bot {bot_token.reveal()}"},
        json=[command.to_json() for command in commands],
    )
    try:
        return _REGISTERED.validate_json(response.content)
    except ValidationError:
        raise DiscordError("register commands: Discord answered something that is not a command list") from None
