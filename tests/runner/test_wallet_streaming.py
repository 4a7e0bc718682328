"""The wallet against streamed answers (issue #17, point 5): a try cut off mid-answer is settled from what its stream
delivered, one cut off before anything came at its reservation; retries go through the wallet. Real SDK clients
against the fake APIs, whose bill counts the output events they actually wrote."""

from __future__ import annotations

import math
from decimal import Decimal

import anyio
import pytest

from agent_runner import (
    AnthropicProvider,
    AssistantMessage,
    MemoryLedger,
    ModelRequest,
    Provider,
    RetryPolicy,
    ToolResult,
    ToolResultsMessage,
    UsageRecord,
    Wallet,
    estimate_input_tokens,
    estimate_reservation,
)
from agent_runner.wallet import TaskWallet
from shared_protocol.secrets import Secret
from tests.fakes.anthropic_api import API_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.llm import Bill, FakeCall, FakeLLMServer, Hang, Rates, Served, Slow, Turn
from tests.fakes.openai_api import FakeOpenAI

from .conftest import Sleeps, ask
from .test_wallet import PRICES, RATES, Sink, make_wallet, openai_on, priced

pytestmark = pytest.mark.anyio

ESSAY = "word " * 400
"""2,000 characters: 500 output tokens by the fakes' count."""
LONG = "Read the whole module and tell me what it does. " * 120
"""A prompt long enough for the fakes' prompt cache (1,024 tokens)."""


def usd(entry: Served, rates: Rates = RATES) -> Decimal:
    return Bill(served=[entry]).usd(rates)


def claude_on(url: str, sleeps: Sleeps, *, timeout_s: float = 5, retry: RetryPolicy | None = None) -> Provider:
    return AnthropicProvider(
        model="claude-sonnet-4-6",
        api_key=Secret(ANTHROPIC_KEY),
        base_url=url,
        timeout_s=timeout_s,
        retry=retry or RetryPolicy(max_attempts=2),
        sleep=sleeps,
    )


def anthropic_wallet(ledger: MemoryLedger, sink: Sink) -> Wallet:
    from agent_runner import resolve_pricing

    return Wallet(
        ledger,
        resolve_pricing("claude-sonnet-4-6", provider="anthropic", overrides=PRICES),
        provider="anthropic",
        agent="coder",
        logic_version="lv-0123456789abcdef",
        max_usd_per_task=2.0,
        sink=sink,
    )


async def kill_mid_answer(task: TaskWallet, provider: Provider, fake: FakeLLMServer, request: ModelRequest) -> None:
    """Start the call, let the answer stream for a while, then cancel it as the kill switch does."""
    async with anyio.create_task_group() as group:

        async def call() -> None:
            await task.complete(provider, request)

        group.start_soon(call)
        with anyio.fail_after(5):
            await fake.streaming.wait()
        await anyio.sleep(0.3)
        group.cancel_scope.cancel()
    with anyio.fail_after(5):
        await fake.disconnected.wait()


def output_received(record: UsageRecord, served: Served, *, tokens_in_flight: int) -> None:
    """The output settled is what the server wrote (less what was still on the wire when the client went away),
    counted at 3 characters a token against the fake's 4: never under, at most a third over."""
    assert served.output_tokens - tokens_in_flight <= record.output_tokens
    assert record.output_tokens <= math.ceil(served.output_tokens * 4 / 3) + 1


async def test_an_openai_call_killed_mid_answer_is_settled_from_what_it_streamed(
    openai_fake: tuple[FakeOpenAI, str], sleeps: Sleeps
) -> None:
    fake, url = openai_fake
    fake.script(Slow(turn=Turn(content=ESSAY), seconds=2.0))
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink).task("t-kill")
    provider = openai_on(url, sleeps)
    try:
        await kill_mid_answer(task, provider, fake, ask(max_output_tokens=1000))
    finally:
        await provider.aclose()

    [served] = fake.bill.served
    [record] = sink.records
    assert not served.completed and 0 < served.output_tokens < 500
    # OpenAI reports usage only at the end: the input is the request's estimate, all uncached.
    assert record.outcome == "aborted" and record.input_tokens == estimate_input_tokens(ask())
    assert record.input_tokens >= served.input_tokens
    output_received(record, served, tokens_in_flight=2)
    reservation = estimate_reservation(ask(max_output_tokens=1000), priced())
    assert usd(served) <= record.usd < reservation / 2  # not the reservation any more
    assert task.spend().usd == record.usd and not ledger.holds and task.held_usd == 0


async def test_an_anthropic_call_killed_mid_answer_is_settled_from_message_start_and_the_output_received(
    anthropic_fake: tuple[FakeAnthropic, str], sleeps: Sleeps
) -> None:
    fake, url = anthropic_fake
    fake.script(Turn(content="read"), Slow(turn=Turn(content=ESSAY), seconds=2.0))
    ledger, sink = MemoryLedger(), Sink()
    task = anthropic_wallet(ledger, sink).task("t-kill")
    provider = claude_on(url, sleeps)
    request = ask(LONG, max_output_tokens=1000)
    try:
        await task.complete(provider, request)  # writes the prompt to the cache
        await kill_mid_answer(task, provider, fake, request)  # reads it back, then is killed
    finally:
        await provider.aclose()

    served = fake.bill.served[1]
    record = sink.records[1]
    assert not served.completed and served.cache_read_tokens > 0
    # The input as message_start reported it, cache reads included: exactly what the server served.
    assert record.outcome == "aborted"
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_tokens) == (
        served.input_tokens,
        served.cache_read_tokens,
        served.cache_write_tokens,
    )
    output_received(record, served, tokens_in_flight=6)  # two 3-token deltas
    rates = Rates(input=Decimal(2), output=Decimal(10), cache_read=Decimal("0.5"), cache_write=Decimal("2.5"))
    assert abs(record.usd - usd(served, rates)) <= usd(served, rates) / 5
    assert not ledger.holds


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_a_call_killed_before_its_answer_began_is_settled_at_its_reservation(
    api: str, openai_fake: tuple[FakeOpenAI, str], anthropic_fake: tuple[FakeAnthropic, str], sleeps: Sleeps
) -> None:
    ledger, sink = MemoryLedger(), Sink()
    fake: FakeLLMServer
    if api == "openai":
        fake, url = openai_fake
        wallet, provider = make_wallet(ledger, sink), openai_on(openai_fake[1], sleeps)
    else:
        fake, url = anthropic_fake
        wallet, provider = anthropic_wallet(ledger, sink), claude_on(url, sleeps)
    fake.script(Hang())
    task = wallet.task("t-early")
    try:
        async with anyio.create_task_group() as group:

            async def call() -> None:
                await task.complete(provider, ask())

            group.start_soon(call)
            with anyio.fail_after(5):
                await fake.hanging.wait()
            group.cancel_scope.cancel()
    finally:
        await provider.aclose()

    reservation = estimate_reservation(ask(), wallet.pricing)
    assert [(r.outcome, r.usd, r.input_tokens, r.output_tokens) for r in sink.records] == [
        ("aborted", reservation, 0, 0)
    ]
    assert not ledger.holds


async def test_a_try_timed_out_mid_answer_then_retried_is_settled_per_attempt_through_the_wallet(
    anthropic_fake: tuple[FakeAnthropic, str], sleeps: Sleeps
) -> None:
    fake, url = anthropic_fake
    answer = Turn(content="Reading it.", tool_calls=[FakeCall(name="read_text_file", arguments={"path": "a.py"})])
    fake.script(Slow(turn=Turn(content=ESSAY), seconds=1.0), answer)
    ledger, sink = MemoryLedger(), Sink()
    task = anthropic_wallet(ledger, sink).task("t-retry")
    provider = claude_on(url, sleeps, timeout_s=0.5, retry=RetryPolicy(max_attempts=2))
    try:
        turn = await task.complete(provider, ask(max_output_tokens=1000))
    finally:
        await provider.aclose()

    assert [c.name for c in turn.tool_calls] == ["read_text_file"]
    assert [(a.outcome, a.observed is not None) for a in turn.attempts] == [("aborted", True), ("answered", False)]
    cut, whole = fake.bill.served
    assert not cut.completed and whole.completed
    assert [r.outcome for r in sink.records] == ["aborted", "answered"]
    assert sink.records[0].input_tokens == cut.input_tokens  # from message_start
    assert sink.records[1].usd == usd(whole)  # from the reported usage, exactly
    output_received(sink.records[0], cut, tokens_in_flight=6)
    bill = fake.bill.usd(RATES)
    assert bill <= task.spend().usd <= bill * 4 / 3  # at worst the output counted at 3 characters a token, not 4
    assert (task.spend().calls, task.spend().attempts) == (1, 2) and not ledger.holds


async def test_the_next_call_of_a_conversation_is_estimated_from_the_providers_count_of_the_last(
    openai_fake: tuple[FakeOpenAI, str], sleeps: Sleeps
) -> None:
    fake, url = openai_fake
    fake.script(Turn(content="Reading.", tool_calls=[FakeCall(name="read_text_file", arguments={"path": "a.py"})]))
    fake.script(Turn(content="Done."))
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink).task("t-anchor")
    provider = openai_on(url, sleeps)
    first = ask(LONG)
    try:
        turn = await task.complete(provider, first)
        result = ToolResult(call_id=turn.tool_calls[0].id, content="def main():\n    return 1\n")
        second = ModelRequest(
            system=first.system,
            messages=[
                *first.messages,
                AssistantMessage(content=turn.content, tool_calls=turn.tool_calls),
                ToolResultsMessage(results=(result,)),
            ],
            tools=first.tools,
            max_output_tokens=first.max_output_tokens,
        )
        await task.complete(provider, second)
    finally:
        await provider.aclose()

    reported = sink.records[0].input_tokens
    assert task.anchor is not None and task.anchor[0] == second
    anchored = estimate_input_tokens(second, after=(first, reported))
    # Still an upper bound of what the server counted, and tighter than the request's size alone.
    assert fake.bill.served[1].input_tokens <= anchored < estimate_input_tokens(second)
    assert estimate_input_tokens(second, after=(ask("another conversation"), reported)) == estimate_input_tokens(second)
