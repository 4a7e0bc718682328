"""What every wake-up channel shares: the page it sends, the receipt it returns, its errors, and the
`ChannelFactory` that makes it from its section of `swarm.toml` (see `registry` for adding one).

A `Page` is one message to one target on one channel, made by the escalation engine; the
channel turns it into its service's request (a Discord webhook message, a Twilio SMS or
call, an ntfy push, an email). Channels know nothing of decisions or ladders.

Secrets (tokens, passwords, webhook URLs) travel as `shared_protocol.secrets.Secret`, whose
`repr`/`str` never show the value; a channel reveals it only to build the request, and its
errors never include it (nor a URL that contains it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol

import httpx

from shared_protocol.config import SwarmConfig
from shared_protocol.secrets import Secret, SecretResolver, SecretUnavailable

from ..exceptions import BrainError, ConfigError

PageKind = Literal["decision", "alert"]


@dataclass(kw_only=True, frozen=True)
class PageLinks:
    """Single-use URLs on the brain for answering this page (present only when the brain has a `public_url`).

    `approve`, `deny` and `acknowledge` answer on GET with a confirmation form and act on POST (so a
    mail scanner following links changes nothing; ntfy's `http` actions POST directly). `gather` is the
    Twilio `<Gather action>` for a call.
    """

    approve: str | None
    """None for an alert (nothing to approve)."""
    deny: str | None
    acknowledge: str
    gather: str | None = None
    """Only on pages of the `call` channel."""


@dataclass(kw_only=True, frozen=True)
class Page:
    """One message to one target on one channel."""

    page_id: str
    """Unique per message; channels may use it as an idempotency key or correlation id."""
    kind: PageKind
    subject_id: str
    """The decision id (kind `decision`) or alert id (kind `alert`)."""
    title: str
    """One line, e.g. "Decision needs a human: rewrite billing"."""
    summary: str
    """A few sentences a human can act on; no secrets."""
    facts: dict[str, str] = field(default_factory=dict[str, str])
    """Short labelled facts (agent, body, confidence, impact, deadline), in display order."""
    level: int = 0
    """0-based rung of the escalation ladder."""
    attempt: int = 1
    """1 for the first page at this level, more for repeats."""
    deadline: datetime | None = None
    """When an unanswered decision is denied; None for alerts."""
    target: str = ""
    """The channel's address: a phone number, ntfy topic, email address; empty for the Discord webhook."""
    links: PageLinks | None = None


@dataclass(kw_only=True, frozen=True)
class Delivery:
    """What the service said when it accepted a page."""

    channel: str
    target: str
    provider_id: str | None = None
    """Discord message id, Twilio SID, ntfy message id, email Message-ID."""


class ChannelError(BrainError):
    """A page was not delivered. The message never contains a secret (nor a URL holding one)."""

    def __init__(
        self,
        message: str,
        *,
        channel: str,
        retryable: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{channel}: {message}")
        self.channel = channel
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        """Seconds the service asked us to wait before trying again (its `Retry-After`), if it said."""


_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


def retry_after_s(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """A `Retry-After` header (RFC 9110: delay-seconds or an HTTP-date) as seconds from now; None if absent or
    unreadable. A date in the past is 0."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    if _SECONDS.fullmatch(value):  # (decimals too, from services that send them)
        return float(value)
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:  # (an HTTP-date is GMT; a parser that found no zone means the same)
        at = at.replace(tzinfo=UTC)
    return max((at - (now or datetime.now(UTC))).total_seconds(), 0.0)


class Channel(Protocol):
    """A way to reach a human. `name` is the target prefix in `[escalation]` (discord, sms, call, ntfy, email)."""

    @property
    def name(self) -> str: ...

    async def send(self, page: Page) -> Delivery:
        """Deliver the page or raise `ChannelError`."""
        ...


# --- making channels from swarm.toml ---------------------------------------------------------

AnswerMode = Literal["links", "buttons", "keypad"]


@dataclass(kw_only=True, frozen=True)
class ChannelKind:
    """A ladder target name a factory provides, and what the escalation engine puts in its pages."""

    name: str
    """The target's name in `[escalation] levels` (`sms` in `sms:+1555…`)."""
    answers: AnswerMode = "links"
    """`links`: single-use answer links in the page; `buttons`: the service's own buttons answer (no links);
    `keypad`: a call that takes a digit (an acknowledge link and a Twilio gather link)."""
    hide_address_as: str | None = None
    """For an address that is itself a secret (an ntfy topic on a public server): what the log shows instead."""


@dataclass(kw_only=True, frozen=True)
class ChannelSet:
    """What a factory made of its section: channels by target name, and the addresses a bare target pages."""

    channels: Mapping[str, Channel]
    recipients: Mapping[str, Sequence[str]]
    """Default addresses per channel (`[""]` for a channel with one destination, like a webhook)."""


BuildChannels = Callable[[httpx.AsyncClient], ChannelSet]
"""The second half of making channels: given the daemon's HTTP client (its connection pool), the channels."""


class ChannelFactory(Protocol):
    """One section of `swarm.toml` → channels and recipients. Registered in `registry.CHANNELS` by section name."""

    @property
    def kinds(self) -> Sequence[ChannelKind]:
        """The target names this factory provides (Twilio: `sms` and `call`)."""
        ...

    def filled_in(self, config: SwarmConfig) -> bool:
        """Whether any key of its section is set (`swarm doctor` checks only what someone started to set up)."""
        ...

    def prepare(self, config: SwarmConfig, secrets: SecretResolver) -> BuildChannels | None:
        """Read every secret the section names (`read_secret`: a `ConfigError` naming the reference) and check what
        needs no network; None when the section does not configure a channel. Runs before the brain opens its
        database, so a bad setting stops it before it starts."""
        ...

    def problems(self, config: SwarmConfig) -> list[str]:
        """What in its section would stop a page, in words (half a Twilio account), for the log and `swarm doctor`."""
        ...


def read_secret(secrets: SecretResolver, ref: str) -> Secret | None:
    """The secret `ref` names; None when `ref` is empty (not configured). `ConfigError` naming the reference (never
    the value) when it cannot be read."""
    if not ref:
        return None
    try:
        return secrets.resolve(ref)
    except SecretUnavailable as exc:
        raise ConfigError(str(exc)) from None
