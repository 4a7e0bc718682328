"""Usage as each provider reports it, read with genai-prices' own extractors (which know every cache field)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from .._price_data import bundled_snapshot
from ..conversation import TokenUsage

UsageFlavor = Literal["openai-chat", "anthropic"]

_EXTRACTORS: Mapping[UsageFlavor, tuple[str, str]] = {
    "openai-chat": ("openai", "chat"),
    "anthropic": ("anthropic", "default"),
}


def token_usage(raw: Mapping[str, Any], *, flavor: UsageFlavor) -> TokenUsage:
    """`raw` (a response's `usage` object) as `TokenUsage`; ValueError when it lacks a required count or holds
    something that is not one."""
    provider_id, api_flavor = _EXTRACTORS[flavor]
    usage = bundled_snapshot().extract_usage({"usage": raw}, provider_id, None, api_flavor).usage
    return TokenUsage(
        input_tokens=_count(usage.reported_value("input_tokens")),
        output_tokens=_count(usage.reported_value("output_tokens")),
        cache_read_tokens=_count(usage.reported_value("cache_read_tokens")),
        cache_write_tokens=_count(usage.reported_value("cache_write_tokens")),
    )


def _count(value: object) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"a token count is a whole number, not {value!r}")
