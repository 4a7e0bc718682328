"""What model calls cost, in USD: usage × a price table. Pure arithmetic, no I/O.

    pricing = resolve_pricing("gpt-4o", provider="openai")        # once, when an agent starts: PriceUnknown here
    estimate_reservation(request, pricing)  # before a call: reserve this (the wallet)
    estimate_input_tokens(request, after=(earlier_request, its_reported_input_tokens))  # tighter, same bound
    cost(turn.usage, pricing)               # after it: settle with this

Prices come from the maintained genai-prices package, the table bundled with the installed version (its
auto-update is never started: see `_price_data`). A `[models.NAME]` entry may override any of the four prices
per million tokens (`input_usd_per_mtok`, `output_usd_per_mtok`, `cache_read_usd_per_mtok`,
`cache_write_usd_per_mtok`); an override wins over the table. A model the table does not know needs at least
the input and output overrides, else `PriceUnknown`. Without a cache price, cached tokens cost the input price.

Amounts are `Decimal` (exact sums over thousands of calls); `float()` them where a limit is a float.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import ModelInfo, ModelPrice, Usage

from shared_protocol.config import ModelConfig, ProviderName

from ._price_data import bundled_snapshot
from .conversation import AssistantMessage, Message, ModelRequest, TokenUsage, ToolResultsMessage, UserMessage
from .exceptions import PriceUnknown

CHARS_PER_TOKEN = 3
"""The request-size estimate of input tokens: one token per 3 characters. Tokenizers average about 4 characters
per token on English and a little under on code and JSON, so this over-reserves a little, as a reservation
should; a call that costs more than its reservation is still settled at what it cost."""

FRAMING_TOKENS = 20
"""Added per message, per tool and per tool result (and once for the request), for what the provider wraps around
them: role markers and separators, or Anthropic's content-block JSON (about 15 tokens around a short message)."""

TOOL_CALL_TOKENS = 20
"""Added per tool call of an assistant message: its id, type and function wrapper take more than a message's."""

Anchor = tuple[ModelRequest, int]
"""An earlier request and the input tokens the provider reported for it."""

PriceKey = Literal["input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"]


@dataclass(kw_only=True, frozen=True)
class PriceOverrides:
    """USD per million tokens, from `[models.NAME]`; None: genai-prices' price."""

    input_usd_per_mtok: Decimal | None = None
    output_usd_per_mtok: Decimal | None = None
    cache_read_usd_per_mtok: Decimal | None = None
    cache_write_usd_per_mtok: Decimal | None = None

    @classmethod
    def from_config(cls, config: ModelConfig) -> PriceOverrides:
        def exact(value: float | None) -> Decimal | None:
            return None if value is None else Decimal(str(value))  # 2.5 stays 2.5, not its binary neighbour

        return cls(
            input_usd_per_mtok=exact(config.input_usd_per_mtok),
            output_usd_per_mtok=exact(config.output_usd_per_mtok),
            cache_read_usd_per_mtok=exact(config.cache_read_usd_per_mtok),
            cache_write_usd_per_mtok=exact(config.cache_write_usd_per_mtok),
        )

    def by_price_key(self) -> dict[PriceKey, Decimal]:
        """The overrides set, under genai-prices' price keys."""
        pairs: tuple[tuple[PriceKey, Decimal | None], ...] = (
            ("input_mtok", self.input_usd_per_mtok),
            ("output_mtok", self.output_usd_per_mtok),
            ("cache_read_mtok", self.cache_read_usd_per_mtok),
            ("cache_write_mtok", self.cache_write_usd_per_mtok),
        )
        return {key: value for key, value in pairs if value is not None}


@dataclass(kw_only=True, frozen=True)
class ModelPricing:
    """The prices of one configured model: genai-prices' entry (if it has one) under the config's overrides."""

    model: str
    source: str
    """Where the prices come from, for `swarm status` and errors: `genai-prices openai/gpt-4o`, `config`, or
    `genai-prices anthropic/claude-sonnet-4-5 + config`."""
    info: ModelInfo | None = field(default=None, repr=False)
    overrides: PriceOverrides = field(default_factory=PriceOverrides)

    def prices(self, *, at: datetime | None = None) -> ModelPrice:
        """The price set in force at `at` (default now): the table's, dated prices included, then overrides."""
        overrides = self.overrides.by_price_key()
        if self.info is None:
            return ModelPrice(**overrides)
        base = self.info.get_prices(at or datetime.now(UTC))
        return ModelPrice(**{**base.__dict__, **overrides})


def resolve_pricing(
    model: str,
    *,
    provider: ProviderName | None = None,
    base_url: str = "",
    overrides: PriceOverrides | None = None,
    snapshot: DataSnapshot | None = None,
) -> ModelPricing:
    """Find `model`'s prices: in genai-prices under the provider at `base_url` (a hosted compatible API prices
    its own models), else under `provider` (`openai`, `anthropic`; any provider for `scripted`), then apply
    `overrides`. `PriceUnknown` if that leaves no input or no output price."""
    overrides = overrides or PriceOverrides()
    found = _lookup(snapshot or bundled_snapshot(), model, provider=provider, base_url=base_url)
    set_keys = overrides.by_price_key()
    if found is None:
        if "input_mtok" not in set_keys or "output_mtok" not in set_keys:
            raise PriceUnknown(
                f"genai-prices has no price for model {model!r}: set input_usd_per_mtok and output_usd_per_mtok "
                f"in its [models.NAME] entry (0 for a model you run yourself)",
                model=model,
            )
        return ModelPricing(model=model, source="config", overrides=overrides)
    provider_id, info = found
    source = f"genai-prices {provider_id}/{info.id}" + (" + config" if set_keys else "")
    return ModelPricing(model=model, source=source, info=info, overrides=overrides)


def pricing_for(config: ModelConfig, *, snapshot: DataSnapshot | None = None) -> ModelPricing:
    """`resolve_pricing` for a `[models.NAME]` entry."""
    return resolve_pricing(
        config.model,
        provider=config.provider,
        base_url=config.base_url,
        overrides=PriceOverrides.from_config(config),
        snapshot=snapshot,
    )


def _lookup(
    snapshot: DataSnapshot, model: str, *, provider: ProviderName | None, base_url: str
) -> tuple[str, ModelInfo] | None:
    places: list[tuple[str | None, str | None]] = []
    if base_url:
        places.append((None, base_url))
    places.append((provider, None) if provider in ("openai", "anthropic") else (None, None))
    for provider_id, api_url in places:
        try:
            found_provider, info = snapshot.find_provider_model(model, None, provider_id, api_url)
        except LookupError:
            continue
        return found_provider.id, info
    return None


def cost(usage: TokenUsage, pricing: ModelPricing, *, at: datetime | None = None) -> Decimal:
    """What `usage` cost in USD at `at` (default now). Cache reads and writes are priced at their own rates and
    the rest of the input at the input rate."""
    return _price(
        Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        ),
        pricing,
        at=at,
    )


def estimate_input_tokens(request: ModelRequest, *, after: Anchor | None = None) -> int:
    """Input tokens `request` will cost at most, from its size: every character of the system prompt, the
    messages (text, tool-call arguments as JSON, tool results) and the tool definitions (name, description,
    schema as JSON) at `CHARS_PER_TOKEN`, plus `FRAMING_TOKENS` per message, tool and tool result and
    `TOOL_CALL_TOKENS` per tool call.

    `after`: an earlier request of the same conversation and the input tokens the provider reported for it. When
    `request` is that request with messages added (same system prompt and tools, its messages first), the
    estimate is those reported tokens plus the added messages' estimate: the provider's own count for all but the
    newest messages, so the bound tightens as a conversation grows instead of drifting with its length."""
    if after is not None:
        earlier, reported = after
        known = len(earlier.messages)
        if (
            earlier.system == request.system
            and tuple(earlier.tools) == tuple(request.tools)
            and tuple(request.messages[:known]) == tuple(earlier.messages)
        ):
            chars, framing = _message_size(request.messages[known:])
            return reported + math.ceil(chars / CHARS_PER_TOKEN) + framing
    chars, framing = _message_size(request.messages)
    chars += len(request.system)
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(_json(tool.input_schema))
    framing += FRAMING_TOKENS * (1 + len(request.tools))
    return math.ceil(chars / CHARS_PER_TOKEN) + framing


def _message_size(messages: Sequence[Message]) -> tuple[int, int]:
    """The characters of `messages` and their framing tokens."""
    chars = 0
    framing = FRAMING_TOKENS * len(messages)
    for message in messages:
        match message:
            case UserMessage(content=content):
                chars += len(content)
            case AssistantMessage(content=content, tool_calls=calls):
                chars += len(content) + sum(len(c.id) + len(c.name) + len(_json(c.arguments)) for c in calls)
                framing += TOOL_CALL_TOKENS * len(calls)
            case ToolResultsMessage(results=results):
                chars += sum(len(result.call_id) + len(result.content) for result in results)
                framing += FRAMING_TOKENS * len(results)
    return chars, framing


def estimate_reservation(
    request: ModelRequest, pricing: ModelPricing, *, at: datetime | None = None, input_tokens: int | None = None
) -> Decimal:
    """What to reserve before sending `request`: its estimated input (`input_tokens`, else
    `estimate_input_tokens(request)`) plus its full `max_output_tokens`, the input priced at the dearer of the
    input and cache-write rates (a call may write its whole prompt to the cache)."""
    tokens = estimate_input_tokens(request) if input_tokens is None else input_tokens
    fresh = Usage(input_tokens=tokens, output_tokens=request.max_output_tokens)
    written = Usage(input_tokens=tokens, cache_write_tokens=tokens, output_tokens=request.max_output_tokens)
    return max(_price(fresh, pricing, at=at), _price(written, pricing, at=at))


def _price(usage: Usage, pricing: ModelPricing, *, at: datetime | None) -> Decimal:
    return pricing.prices(at=at).calc_price(usage)["total_price"]


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
