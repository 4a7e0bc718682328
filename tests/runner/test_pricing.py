"""Price arithmetic: usage × genai-prices' table (or the config's overrides) → USD, checked against figures
worked out by hand from the published prices."""

from __future__ import annotations

from decimal import Decimal

import anyio
import pytest
from genai_prices import data_snapshot

from agent_runner import (
    ModelRequest,
    OpenAIProvider,
    PriceOverrides,
    PriceUnknown,
    TokenUsage,
    UserMessage,
    cost,
    estimate_input_tokens,
    estimate_reservation,
    pricing_for,
    resolve_pricing,
)
from shared_protocol.config import ModelConfig
from tests.fakes.llm import Rates
from tests.fakes.openai_api import FakeOpenAI

from .conftest import after_two_calls, ask

GPT_4O = resolve_pricing("gpt-4o", provider="openai")  # $2.50 in, $10 out, $1.25 cached in, per million tokens
SONNET = resolve_pricing("claude-sonnet-4-6", provider="anthropic")  # $3 in, $15 out, $0.30 read, $3.75 write


def test_openai_usage_prices_cached_input_at_the_cache_rate() -> None:
    usage = TokenUsage(input_tokens=10_000, output_tokens=1_000, cache_read_tokens=4_000)
    # 6,000 × 2.50 + 4,000 × 1.25 + 1,000 × 10 = 30,000 µ$
    assert cost(usage, GPT_4O) == Decimal("0.03")
    assert GPT_4O.source == "genai-prices openai/gpt-4o"


def test_anthropic_usage_prices_cache_reads_and_writes_at_their_rates() -> None:
    usage = TokenUsage(input_tokens=20_000, output_tokens=2_000, cache_read_tokens=12_000, cache_write_tokens=5_000)
    # 3,000 × 3 + 12,000 × 0.30 + 5,000 × 3.75 + 2,000 × 15 = 61,350 µ$
    assert cost(usage, SONNET) == Decimal("0.06135")


def test_an_override_in_config_wins_over_the_table() -> None:
    pricing = resolve_pricing("gpt-4o", provider="openai", overrides=PriceOverrides(input_usd_per_mtok=Decimal(5)))
    usage = TokenUsage(input_tokens=10_000, output_tokens=1_000, cache_read_tokens=4_000)
    # 6,000 × 5 + 4,000 × 1.25 + 1,000 × 10 = 45,000 µ$
    assert cost(usage, pricing) == Decimal("0.045") and pricing.source.endswith("+ config")


def test_a_model_unknown_to_the_table_needs_input_and_output_overrides() -> None:
    config = ModelConfig(provider="openai", model="qwen2.5-coder", base_url="http://127.0.0.1:11434/v1")
    with pytest.raises(PriceUnknown) as unknown:
        pricing_for(config)
    assert unknown.value.model == "qwen2.5-coder" and "input_usd_per_mtok" in str(unknown.value)
    with pytest.raises(PriceUnknown):
        pricing_for(config.model_copy(update={"input_usd_per_mtok": 0.2}))
    pricing = pricing_for(config.model_copy(update={"input_usd_per_mtok": 0.2, "output_usd_per_mtok": 0.6}))
    usage = TokenUsage(input_tokens=10_000, output_tokens=1_000, cache_read_tokens=4_000)
    # no cache price: every input token at 0.20; 10,000 × 0.20 + 1,000 × 0.60 = 2,600 µ$
    assert cost(usage, pricing) == Decimal("0.0026") and pricing.source == "config"


def test_a_self_hosted_model_can_cost_nothing() -> None:
    config = ModelConfig(
        provider="openai",
        model="llama3.1",
        base_url="http://127.0.0.1:11434/v1",
        input_usd_per_mtok=0,
        output_usd_per_mtok=0,
    )
    assert cost(TokenUsage(input_tokens=50_000, output_tokens=5_000), pricing_for(config)) == 0


def test_a_hosted_compatible_api_prices_its_own_models_and_scripted_models_are_found_by_name() -> None:
    groq = resolve_pricing("llama-3.3-70b-versatile", provider="openai", base_url="https://api.groq.com/openai/v1")
    assert groq.source == "genai-prices groq/llama-3.3-70b-versatile"
    scripted = pricing_for(ModelConfig(provider="scripted", model="claude-sonnet-4-6", script="demo.jsonl"))
    assert scripted.source == "genai-prices anthropic/claude-sonnet-4-6"


def test_the_bundled_table_is_used_even_if_genai_prices_global_one_is_swapped() -> None:
    empty = data_snapshot.DataSnapshot(providers=[], from_auto_update=True)
    data_snapshot.set_custom_snapshot(empty)
    try:
        assert resolve_pricing("gpt-4o", provider="openai").source == "genai-prices openai/gpt-4o"
    finally:
        data_snapshot.set_custom_snapshot(None)


def test_input_is_estimated_at_three_characters_a_token_plus_framing() -> None:
    request = ModelRequest(system="abc", messages=[UserMessage(content="hello!")], max_output_tokens=100)
    # 9 characters / 3 = 3 tokens, + 20 framing tokens for the system prompt and for the one message
    assert estimate_input_tokens(request) == 43


def test_a_reservation_is_the_estimated_input_plus_the_full_output_at_the_dearer_input_rate() -> None:
    request = ModelRequest(system="abc", messages=[UserMessage(content="hello!")], max_output_tokens=100)
    # gpt-4o has no cache-write price: 43 × 2.50 + 100 × 10 = 1,107.5 µ$
    assert estimate_reservation(request, GPT_4O) == Decimal("0.0011075")
    # Sonnet may write the prompt to its cache: 43 × 3.75 + 100 × 15 = 1,661.25 µ$
    assert estimate_reservation(request, SONNET) == Decimal("0.00166125")


@pytest.mark.anyio
@pytest.mark.parametrize("request_", [ask(), after_two_calls()], ids=["first-turn", "after-tool-calls"])
async def test_a_reservation_covers_what_the_call_then_costs(
    openai_fake: tuple[FakeOpenAI, str], openai: OpenAIProvider, request_: ModelRequest
) -> None:
    fake, _ = openai_fake
    with anyio.fail_after(10):
        turn = await openai.complete(request_)
    assert turn.usage is not None
    reserved = estimate_reservation(request_, GPT_4O)
    assert cost(turn.usage, GPT_4O) <= reserved
    assert fake.bill.usd(Rates(input=Decimal("2.5"), output=Decimal(10), cache_read=Decimal("1.25"))) <= reserved
