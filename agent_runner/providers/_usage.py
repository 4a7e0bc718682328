"""Usage as each provider reports it, read with genai-prices' own extractors (which know every cache field)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from shared_protocol.brain import MAX_USAGE_TOKENS

from .._price_data import bundled_snapshot
from ..conversation import TokenUsage

UsageFlavor = Literal["openai-chat", "anthropic"]

_EXTRACTORS: Mapping[UsageFlavor, tuple[str, str]] = {
    "openai-chat": ("openai", "chat"),
    "anthropic": ("anthropic", "default"),
}


def token_usage(raw: Mapping[str, Any], *, flavor: UsageFlavor) -> TokenUsage:
    """`raw` (a response's `usage` object) as `TokenUsage`; ValueError when it lacks a required count, holds
    something that is not one (negative, fractional, past `MAX_USAGE_TOKENS`), or counts more cached input tokens
    than input tokens (OpenAI's `cached_tokens` over its `prompt_tokens`): usage no price can be worked out from,
    which makes the answer garbage (settled as one that reported none) rather than a crash of the wallet."""
    provider_id, api_flavor = _EXTRACTORS[flavor]
    usage = bundled_snapshot().extract_usage({"usage": raw}, provider_id, None, api_flavor).usage
    found = TokenUsage(
        input_tokens=_count(usage.reported_value("input_tokens")),
        output_tokens=_count(usage.reported_value("output_tokens")),
        cache_read_tokens=_count(usage.reported_value("cache_read_tokens")),
        cache_write_tokens=_count(usage.reported_value("cache_write_tokens")),
    )
    if found.cache_read_tokens + found.cache_write_tokens > found.input_tokens:
        raise ValueError(
            f"{found.cache_read_tokens} cache-read and {found.cache_write_tokens} cache-write tokens are more than "
            f"the {found.input_tokens} input tokens they are part of"
        )
    return found


def _count(value: object) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"a token count is a whole number, not {value!r}")
    if not 0 <= value <= MAX_USAGE_TOKENS:
        raise ValueError(f"a token count is between 0 and {MAX_USAGE_TOKENS}, not {value}")
    return value
