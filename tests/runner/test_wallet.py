"""The wallet: each attempt reserved before it is sent, settled from what came back, held to the task's budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import anyio
import pytest

from agent_runner import (
    BudgetRefused,
    InMemoryProvider,
    MemoryLedger,
    ModelRequest,
    ModelTurn,
    OpenAIProvider,
    PriceOverrides,
    ProviderUnavailable,
    RateLimited,
    RetryPolicy,
    RunnerUserError,
    TokenUsage,
    UsageRecord,
    UserMessage,
    Wallet,
    estimate_input_tokens,
    estimate_reservation,
    resolve_pricing,
)
from agent_runner.pricing import ModelPricing
from shared_protocol.secrets import Secret
from tests.fakes.llm import Bill, Fail, FakeLLMServer, Hang, Rates, Served, Slow, Turn
from tests.fakes.openai_api import API_KEY as OPENAI_KEY
from tests.fakes.openai_api import FakeOpenAI

from .conftest import RETRIES, Sleeps, ask

pytestmark = pytest.mark.anyio

# USD per million tokens, set on every price so the figures below can be worked out by hand.
PRICES = PriceOverrides(
    input_usd_per_mtok=Decimal(2),
    output_usd_per_mtok=Decimal(10),
    cache_read_usd_per_mtok=Decimal("0.5"),
    cache_write_usd_per_mtok=Decimal("2.5"),
)
RATES = Rates(input=Decimal(2), output=Decimal(10), cache_read=Decimal("0.5"), cache_write=Decimal("2.5"))
MTOK = Decimal(1_000_000)


def priced(model: str = "gpt-4o") -> ModelPricing:
    return resolve_pricing(model, provider="openai", overrides=PRICES)


def small_request() -> ModelRequest:
    """30 + 60 characters: ceil(90 / 3) = 30 tokens, plus 20 framing tokens for the request and 20 for its one
    message = 70 input tokens; with 100 output tokens, reserved at the dearer cache-write rate:
    (70 × 2.5 + 100 × 10) / 1e6 = $0.001175."""
    return ModelRequest(system="S" * 30, messages=[UserMessage(content="U" * 60)], max_output_tokens=100)


SMALL_RESERVATION = Decimal("0.001175")


class Sink:
    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    async def __call__(self, record: UsageRecord) -> None:
        await anyio.lowlevel.checkpoint()
        self.records.append(record)


def make_wallet(ledger: MemoryLedger, sink: Sink, *, max_usd_per_task: float = 2.0, model: str = "gpt-4o") -> Wallet:
    return Wallet(
        ledger,
        priced(model),
        provider="openai",
        agent="coder",
        logic_version="lv-0123456789abcdef",
        max_usd_per_task=max_usd_per_task,
        sink=sink,
    )


async def test_an_attempt_is_reserved_while_it_runs_and_settled_at_its_priced_usage() -> None:
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink).task("t-1")
    held_during: list[float] = []

    async def answer(request: ModelRequest) -> ModelTurn:
        held_during.append(ledger.held_usd)
        usage = TokenUsage(input_tokens=1000, output_tokens=200, cache_read_tokens=400, cache_write_tokens=100)
        return ModelTurn(content="done", usage=usage)

    assert estimate_reservation(small_request(), priced()) == SMALL_RESERVATION
    await task.complete(InMemoryProvider([answer]), small_request())

    assert held_during == [float(SMALL_RESERVATION)]
    # 500 uncached × 2 + 400 read × 0.5 + 100 written × 2.5 + 200 out × 10 = 3450 per million
    assert task.spend().usd == Decimal(3450) / MTOK
    assert ledger.spent_usd == pytest.approx(0.00345) and not ledger.holds
    spend = task.spend()
    assert (spend.input_tokens, spend.output_tokens, spend.cache_read_tokens, spend.cache_write_tokens) == (
        1000,
        200,
        400,
        100,
    )
    assert (spend.calls, spend.attempts, spend.task_id, spend.model) == (1, 1, "t-1", "gpt-4o")
    [record] = sink.records
    assert record.outcome == "answered" and record.usd == Decimal(3450) / MTOK
    assert (record.agent, record.logic_version, record.task_id, record.provider, record.model) == (
        "coder",
        "lv-0123456789abcdef",
        "t-1",
        "openai",
        "gpt-4o",
    )


async def test_a_reservation_that_would_pass_the_task_budget_is_refused_before_anything_is_sent() -> None:
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink, max_usd_per_task=0.002).task("t-2")
    usage = TokenUsage(input_tokens=50, output_tokens=20)  # (50 × 2 + 20 × 10) / 1e6 = $0.0003 a call
    provider = InMemoryProvider([ModelTurn(content="ok", usage=usage)] * 4)
    for _ in range(3):  # $0.0009 spent: the next needs 0.0009 + 0.001175 > 0.002
        await task.complete(provider, small_request())
    with pytest.raises(BudgetRefused) as refused:
        await task.complete(provider, small_request())

    assert refused.value.code == "max_usd_per_task"
    assert "max_usd_per_task $0.0020" in refused.value.reason and "$0.0009" in refused.value.reason
    assert len(provider.requests) == 3  # the fourth was never sent
    assert task.spend().usd == Decimal("0.0009") and task.spend().calls == 3
    assert not ledger.holds and len(sink.records) == 3


async def test_the_ledger_refusal_goes_up_as_budget_refused_and_holds_nothing() -> None:
    ledger, sink = MemoryLedger(limit_usd=0.001), Sink()  # less than one reservation
    task = make_wallet(ledger, sink).task("t-3")
    provider = InMemoryProvider([ModelTurn(content="never")])
    with pytest.raises(BudgetRefused) as refused:
        await task.complete(provider, small_request())
    assert refused.value.code == "ledger" and "attempt 1" in refused.value.reason
    assert not provider.requests and not ledger.holds and not sink.records
    assert task.spend().calls == 0


def openai_on(url: str, sleeps: Sleeps, *, timeout_s: float = 5, retry: RetryPolicy = RETRIES) -> OpenAIProvider:
    return OpenAIProvider(
        model="gpt-4o", api_key=Secret(OPENAI_KEY), base_url=f"{url}/v1", timeout_s=timeout_s, retry=retry, sleep=sleeps
    )


def served_usd(fake: FakeLLMServer) -> Decimal:
    return fake.bill.usd(RATES)


async def test_rejected_attempts_cost_nothing_and_the_answer_costs_what_the_server_billed(
    openai_fake: tuple[FakeOpenAI, str], sleeps: Sleeps
) -> None:
    fake, url = openai_fake
    fake.script(Fail(status=429, retry_after="1"), Fail(status=503), Turn(content="fixed it"))
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink).task("t-4")
    provider = openai_on(url, sleeps)
    try:
        await task.complete(provider, ask())
    finally:
        await provider.aclose()

    assert [r.outcome for r in sink.records] == ["rejected", "rejected", "answered"]
    assert [r.usd for r in sink.records][:2] == [Decimal(0), Decimal(0)]
    assert task.spend().usd == sink.records[2].usd == served_usd(fake) > 0
    assert (task.spend().calls, task.spend().attempts) == (1, 3)
    assert not ledger.holds and ledger.spent_usd == pytest.approx(float(served_usd(fake)))


async def test_a_budget_refused_retry_settles_the_rejected_attempts_before_it(
    openai_fake: tuple[FakeOpenAI, str], sleeps: Sleeps
) -> None:
    fake, url = openai_fake
    fake.script(Fail(status=429))
    reservation = float(estimate_reservation(ask(), priced()))
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink, max_usd_per_task=reservation * 1.5).task("t-5")  # one hold fits, two do not
    provider = openai_on(url, sleeps)
    try:
        with pytest.raises(BudgetRefused) as refused:
            await task.complete(provider, ask())
    finally:
        await provider.aclose()
    assert refused.value.code == "max_usd_per_task" and "attempt 2" in refused.value.reason
    assert [(r.outcome, r.usd) for r in sink.records] == [("rejected", Decimal(0))]
    assert len(fake.requests) == 1 and not ledger.holds and task.spend().usd == 0


async def test_a_hung_attempt_settles_at_its_reservation_and_an_answer_without_usage_from_what_it_streamed(
    openai_fake: tuple[FakeOpenAI, str], sleeps: Sleeps
) -> None:
    fake, url = openai_fake
    fake.script(Hang(), Turn(content="no usage here", report_usage=False))
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink).task("t-6")
    reservation = estimate_reservation(ask(), priced())
    provider = openai_on(url, sleeps, timeout_s=0.5, retry=RetryPolicy(max_attempts=1))
    try:
        with pytest.raises(ProviderUnavailable):
            await task.complete(provider, ask())
        await task.complete(provider, ask())
    finally:
        await provider.aclose()

    # Nothing came back from the hung one: its reservation. The other streamed 13 characters in 4 chunks: the
    # request's estimate as input, and max(4 chunks, ceil(13 / 3)) = 5 output tokens.
    estimated = (estimate_input_tokens(ask()) * 2 + 5 * 10) / MTOK
    assert [(r.outcome, r.usd) for r in sink.records] == [("aborted", reservation), ("answered", estimated)]
    assert (sink.records[1].input_tokens, sink.records[1].output_tokens) == (estimate_input_tokens(ask()), 5)
    assert task.spend().usd == reservation + estimated and (task.spend().calls, task.spend().attempts) == (2, 2)
    # Over-counted, never under: the server billed less than the wallet counted for both.
    assert _usd(fake.bill.served[1]) < estimated < reservation
    assert served_usd(fake) < task.spend().usd
    assert not ledger.holds


async def test_a_call_cancelled_mid_attempt_is_settled_at_its_reservation_and_reported(
    openai_fake: tuple[FakeOpenAI, str], sleeps: Sleeps
) -> None:
    fake, url = openai_fake
    fake.script(Hang())
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink).task("t-7")
    provider = openai_on(url, sleeps)
    try:
        async with anyio.create_task_group() as group:

            async def call() -> None:
                await task.complete(provider, ask())

            group.start_soon(call)
            with anyio.fail_after(5):
                await fake.hanging.wait()
            assert ledger.held_usd > 0 and task.held_usd > 0
            group.cancel_scope.cancel()  # a kill: the task's scope is cancelled mid-response
        with anyio.fail_after(5):
            await fake.disconnected.wait()
    finally:
        await provider.aclose()

    reservation = estimate_reservation(ask(), priced())
    assert [(r.outcome, r.usd) for r in sink.records] == [("aborted", reservation)]  # the sink ran, shielded
    assert task.spend().usd == reservation and not ledger.holds and task.held_usd == 0
    assert ledger.spent_usd == pytest.approx(float(reservation))


async def test_abort_settles_every_open_call_of_the_task_once() -> None:
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink).task("t-8")
    first, second = task.open_call(small_request()), task.open_call(small_request())
    await first.before_attempt(1)
    await second.before_attempt(1)
    await second.before_attempt(2)
    assert task.held_usd == 3 * SMALL_RESERVATION
    await task.abort()
    await task.abort()
    await first.abort()
    assert [r.outcome for r in sink.records] == ["aborted"] * 3
    assert task.spend().usd == 3 * SMALL_RESERVATION and (task.spend().calls, task.spend().attempts) == (2, 3)
    assert not ledger.holds and task.held_usd == 0


async def test_the_sink_gets_every_attempt_and_the_totals_add_up(
    openai_fake: tuple[FakeOpenAI, str], sleeps: Sleeps
) -> None:
    fake, url = openai_fake
    # A long prompt, asked again: the fake's cache serves the second one (cached tokens priced at their rate).
    long_prompt = "Read the whole module and tell me what it does. " * 200
    fake.script(Turn(content="a"), Fail(status=500), Turn(content="b"), Fail(status=429))
    fake.script(*[Turn(content=f"turn {n}") for n in range(6)])
    ledger, sink = MemoryLedger(), Sink()
    wallet = make_wallet(ledger, sink)
    tasks = [wallet.task("t-a"), wallet.task("t-b")]
    provider = openai_on(url, sleeps)
    try:
        for n in range(8):
            await tasks[n % 2].complete(provider, ask(long_prompt))
    finally:
        await provider.aclose()

    assert len(sink.records) == 10 and len({r.id for r in sink.records}) == 10
    assert sum(r.cache_read_tokens for r in sink.records) > 0
    spends = [task.spend() for task in tasks]
    assert sum(s.attempts for s in spends) == 10 and sum(s.calls for s in spends) == 8
    assert sum((r.usd for r in sink.records), Decimal(0)) == sum((s.usd for s in spends), Decimal(0))
    assert sum((s.usd for s in spends), Decimal(0)) == served_usd(fake)
    by_model = wallet.spend_by_model()["gpt-4o"]
    assert (by_model.calls, by_model.attempts, by_model.usd) == (8, 10, served_usd(fake))
    assert not fake.replies
    with pytest.raises(RateLimited):  # (the scripted 429s were retried above; a fresh run of them is not)
        fake.script(*[Fail(status=429)] * 4)
        provider = openai_on(url, sleeps)
        try:
            await tasks[0].complete(provider, ask())
        finally:
            await provider.aclose()
    assert [r.outcome for r in sink.records[-4:]] == ["rejected"] * 4


@pytest.mark.parametrize("budget", [0.0, -1.0, float("nan")])
def test_a_wallet_without_a_positive_task_budget_is_refused_naming_it(budget: float) -> None:
    with pytest.raises(RunnerUserError, match="max_usd_per_task must be more than 0"):
        make_wallet(MemoryLedger(), Sink(), max_usd_per_task=budget)


async def test_a_slow_answer_is_billed_whole_and_one_abandoned_halfway_for_the_output_generated_so_far(
    openai_fake: tuple[FakeOpenAI, str], sleeps: Sleeps
) -> None:
    fake, url = openai_fake
    essay = "word " * 400  # 500 output tokens by the fake's count
    fake.script(Slow(turn=Turn(content=essay), seconds=0.05), Slow(turn=Turn(content=essay), seconds=1.0))
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink).task("t-9")
    provider = openai_on(url, sleeps, timeout_s=0.5, retry=RetryPolicy(max_attempts=1))
    try:
        turn = await task.complete(provider, ask(max_output_tokens=1000))
        assert turn.content == essay
        with pytest.raises(ProviderUnavailable):
            await task.complete(provider, ask(max_output_tokens=1000))
        with anyio.fail_after(5):
            await fake.disconnected.wait()
    finally:
        await provider.aclose()

    whole, abandoned = fake.bill.served
    assert whole.completed and whole.output_tokens == 500
    assert not abandoned.completed and 200 <= abandoned.output_tokens <= 300  # about half of it, at 0.5 s of 1 s
    assert sink.records[0].usd == served_usd(fake) - _usd(abandoned)
    # Settled from what it streamed before the timeout (not at its reservation): over the bill, by the input
    # estimate's margin and 3 characters a token against the fake's 4.
    reservation = estimate_reservation(ask(max_output_tokens=1000), priced())
    assert sink.records[1].outcome == "aborted" and _usd(abandoned) < sink.records[1].usd < reservation / 2
    assert sink.records[1].output_tokens >= abandoned.output_tokens - 1


def _usd(entry: Served) -> Decimal:
    bill = Bill(served=[entry])
    return bill.usd(RATES)


async def test_each_attempt_is_timed_by_the_wallets_clock_for_the_latency_histogram() -> None:
    """`duration_ms`: from the attempt's reservation to the next attempt's, or to the settlement (a record the brain
    observes in `swarm_llm_call_duration_seconds`)."""
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    ledger, sink = MemoryLedger(), Sink()
    wallet = Wallet(
        ledger,
        priced(),
        provider="openai",
        agent="coder",
        logic_version="lv-0123456789abcdef",
        max_usd_per_task=2.0,
        sink=sink,
        clock=lambda: now[0],
    )

    async def answer(request: ModelRequest) -> ModelTurn:
        now[0] += timedelta(milliseconds=2500)  # the model thinks for 2.5 s
        return ModelTurn(content="done", usage=TokenUsage(input_tokens=10, output_tokens=1))

    await wallet.task("t-9").complete(InMemoryProvider([answer]), small_request())
    [record] = sink.records
    assert record.duration_ms == pytest.approx(2500.0)
