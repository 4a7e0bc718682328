"""ntfy: pages as push notifications, published as JSON, with buttons that answer in one tap.

The buttons are ntfy `http` actions: the phone POSTs straight to the page's single-use links, so
approving needs no browser. On a public server the topic name is all that keeps others from
reading the pages, so it is a secret like the access token: neither appears in an error or a log.
"""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any, cast

import httpx

from shared_protocol.config import SwarmConfig
from shared_protocol.secrets import Secret, SecretResolver
from shared_protocol.wake import NtfyConfig

from .base import BuildChannels, ChannelError, ChannelKind, ChannelSet, Delivery, Page, read_secret, retry_after_s

logger = logging.getLogger(__name__)

MESSAGE_MAX_BYTES = 4000
"""ntfy turns a message over 4096 bytes into an attachment, which a phone does not show in the notification."""


class NtfyChannel:
    """Publishes each page to an ntfy topic: `page.target`, or the configured topic when the target is empty."""

    name = "ntfy"

    def __init__(
        self, http: httpx.AsyncClient, config: NtfyConfig, *, topic: Secret | None = None, token: Secret | None = None
    ) -> None:
        self._config = config
        self._http = http
        self._topic = topic
        self._token = token
        self._url = f"{config.server.rstrip('/')}/"

    async def send(self, page: Page) -> Delivery:
        """The receipt's target is the page's own: empty when the configured topic was used, so it never holds it."""
        topic = page.target or (self._topic.reveal() if self._topic else "")
        if not topic:
            raise ChannelError("the page has no topic, and no default topic is configured", channel=self.name)
        headers = {"Authorization": f"Bearer {self._token.reveal()}"} if self._token else {}
        message = ntfy_message(page, topic=topic, priority=self._config.priority)
        try:
            response = await self._http.post(self._url, json=message, headers=headers)
        except httpx.TransportError as exc:
            reason = self._redact(str(exc), topic) or type(exc).__name__
            raise ChannelError(f"cannot reach the ntfy server: {reason}", channel=self.name, retryable=True) from exc
        body = _json_object(response)
        if not response.is_success:
            raise self._error(response.status_code, body, topic, retry_after=retry_after_s(response.headers))
        message_id = body.get("id")
        provider_id = message_id if isinstance(message_id, str) else None
        logger.debug("ntfy: published page %s as message %s", page.page_id, provider_id)
        return Delivery(channel=self.name, target=page.target, provider_id=provider_id)

    def _error(
        self, status: int, body: dict[str, Any], topic: str, *, retry_after: float | None = None
    ) -> ChannelError:
        # ntfy's errors are `{"code": 40101, "http": 401, "error": "unauthorized", "link": "..."}`.
        code, error = body.get("code"), body.get("error")
        text = f"ntfy answered {status}"
        if isinstance(code, int):
            text += f" (error {code})"
        if isinstance(error, str) and error:
            text += f": {self._redact(error, topic)}"
        retryable = status == 429 or status >= 500
        return ChannelError(
            text, channel=self.name, retryable=retryable, status=status, retry_after=retry_after if retryable else None
        )

    def _redact(self, text: str, topic: str) -> str:
        for secret in (self._token.reveal() if self._token else "", topic):
            if secret:
                text = text.replace(secret, "…")
        return text


class NtfyFactory:
    """`[ntfy]` → the `ntfy` channel, publishing to `topic` by default. The topic is a secret on a public server,
    so the log shows a target's topic as `(topic)`."""

    kinds = (ChannelKind(name="ntfy", hide_address_as="(topic)"),)

    def filled_in(self, config: SwarmConfig) -> bool:
        return bool(config.ntfy.topic)

    def prepare(self, config: SwarmConfig, secrets: SecretResolver) -> BuildChannels | None:
        ntfy = config.ntfy
        topic, token = read_secret(secrets, ntfy.topic), read_secret(secrets, ntfy.token)
        if topic is None:
            return None

        def build(http: httpx.AsyncClient) -> ChannelSet:
            return ChannelSet(
                channels={"ntfy": NtfyChannel(http, ntfy, topic=topic, token=token)}, recipients={"ntfy": [""]}
            )

        return build

    def problems(self, config: SwarmConfig) -> list[str]:
        return []


def ntfy_message(page: Page, *, topic: str, priority: int) -> dict[str, Any]:
    """The JSON ntfy publishes: a button per answer link (at most three, ntfy's limit) and a tap that opens
    the acknowledge confirmation page."""
    message: dict[str, Any] = {
        "topic": topic,
        "title": page.title,
        "message": _clip_bytes(_text(page), MESSAGE_MAX_BYTES),
        "priority": priority,
        "tags": ["warning"] if page.kind == "decision" else ["rotating_light"],
    }
    links = page.links
    if links is not None:
        answers = (("Approve", links.approve), ("Deny", links.deny), ("Acknowledge", links.acknowledge))
        message["actions"] = [
            {"action": "http", "label": label, "url": url, "method": "POST", "clear": True}
            for label, url in answers
            if url
        ]
        message["click"] = links.acknowledge
    return message


def _text(page: Page) -> str:
    lines = [page.summary]
    facts = [f"{label}: {value}" for label, value in page.facts.items()]
    if page.deadline is not None:
        facts.append(f"Denied if unanswered by {page.deadline.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
    if facts:
        lines += ["", *facts]
    return "\n".join(lines).strip()


def _clip_bytes(text: str, limit: int) -> str:
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    # Cut on a character boundary, leaving room for the ellipsis (3 bytes in UTF-8).
    return encoded[: limit - 3].decode(errors="ignore").rstrip() + "…"


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:  # not JSON (a proxy's HTML error page, an empty body)
        return {}
    return cast(dict[str, Any], body) if isinstance(body, dict) else {}
