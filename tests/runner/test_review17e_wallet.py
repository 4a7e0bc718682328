"""Review of issue #17 (pass e): the wallet and the money limits against lying providers, parallel calls, kills
and workspaces. The real `openai` SDK against the fake Chat Completions API on 127.0.0.1, the real wallet, and the
real ledger on an agent's limits file (`swarm_cli._wallet.LimitsLedger`)."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_runner import (
    BudgetRefused,
    InMemoryProvider,
    MemoryLedger,
    ModelTurn,
    OpenAIProvider,
    PriceOverrides,
    ResponseGarbage,
    RetryPolicy,
    ScriptInvalid,
    TokenUsage,
    Wallet,
    estimate_reservation,
    resolve_pricing,
)
from agent_runner.gate import KillGate
from agent_runner.providers import ScriptedProvider
from agent_runner.runner import UsageQueue
from body_mcp.state import StatePaths
from shared_protocol.brain import MAX_USAGE_USD, UsageAck, UsageBatch
from shared_protocol.config import parse_config
from shared_protocol.secrets import Secret
from swarm_cli._wallet import LimitsLedger
from tests.fakes.llm import Fail, Hang, Slow, Turn
from tests.fakes.openai_api import API_KEY, FakeOpenAI

from .conftest import Sleeps, ask
from .test_wallet import Sink, make_wallet, openai_on, priced

pytestmark = pytest.mark.anyio

Fake = tuple[FakeOpenAI, str]
ONE_TRY = RetryPolicy(max_attempts=1)


class Poster:
    """The brain's `POST /v1/usage` as the usage queue sees it: keeps every batch it is sent."""

    def __init__(self) -> None:
        self.batches: list[UsageBatch] = []

    async def post_usage(self, batch: UsageBatch) -> UsageAck:
        self.batches.append(batch)
        return UsageAck(stored=len(batch.records), duplicates=0)


def reported(usage: dict[str, Any]) -> Turn:
    return Turn(content="done", usage=usage)


# -- a provider's usage that cannot be priced or stored ----------------------------------------------------------


async def test_review17e_cached_tokens_beyond_the_prompt_are_garbage_not_a_crash_of_the_wallet(
    openai_fake: Fake, sleeps: Sleeps
) -> None:
    """Was a hole (high): an OpenAI-compatible server reporting `prompt_tokens_details.cached_tokens` above
    `prompt_tokens` made genai-prices raise ValueError inside the wallet's settle: the call went up as a bare
    ValueError (not a ProviderError), the loop did not catch it and the runner died ("unexpected error … this is a
    bug"), the attempt's hold half-settled. Fixed by `providers._usage.token_usage` refusing such usage (the answer
    is garbage, settled from what it streamed) and the wallet settling any usage it cannot price at its
    reservation (`wallet._priced`)."""
    fake, url = openai_fake
    lie = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    fake.script(reported({**lie, "prompt_tokens_details": {"cached_tokens": 100_000}}))
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink).task("t-1")
    provider = openai_on(url, sleeps, retry=ONE_TRY)
    try:
        with pytest.raises(ResponseGarbage, match="more than the 10 input tokens"):
            await task.complete(provider, ask())
    finally:
        await provider.aclose()
    [record] = sink.records
    assert record.outcome == "answered" and record.usd > 0, "the streamed answer is paid for"
    assert not ledger.holds and ledger.spent_usd == pytest.approx(float(record.usd))
    assert task.spend().usd == record.usd and task.held_usd == 0


def test_review17e_a_script_with_cached_tokens_beyond_its_input_is_refused_when_loaded(tmp_path: Path) -> None:
    """Was a hole (low): a scripted line with `cache_read_tokens` above `input_tokens` loaded, then crashed the
    wallet's settle the same way. Fixed: the script is refused when the provider is made, naming the line."""
    script = tmp_path / "script.jsonl"
    script.write_text('{"content": "ok", "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_tokens": 50}}\n')
    with pytest.raises(ScriptInvalid, match=r"script.jsonl:1: .*part of input_tokens"):
        ScriptedProvider(script, model="gpt-4o-mini")


async def test_review17e_a_token_count_past_any_context_window_is_garbage(openai_fake: Fake, sleeps: Sleeps) -> None:
    """Was a hole (medium): a server reporting 2e12 prompt tokens was priced and settled, then the usage queue's
    record (the brain's `UsageRecord` holds at most `MAX_USAGE_TOKENS`) raised a ValidationError out of the wallet's
    shielded sink: the runner died. Fixed: a count past `MAX_USAGE_TOKENS` is garbage (`token_usage`)."""
    fake, url = openai_fake
    fake.script(reported({"prompt_tokens": 2 * 10**12, "completion_tokens": 5, "total_tokens": 2 * 10**12 + 5}))
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink).task("t-2")
    provider = openai_on(url, sleeps, retry=ONE_TRY)
    try:
        with pytest.raises(ResponseGarbage, match="token count"):
            await task.complete(provider, ask())
    finally:
        await provider.aclose()
    assert [r.outcome for r in sink.records] == ["answered"] and not ledger.holds


async def test_review17e_a_bill_past_what_the_brain_stores_reaches_it_clamped_and_stops_the_task(
    openai_fake: Fake, sleeps: Sleeps
) -> None:
    """Was a hole (medium): 9e11 prompt tokens (a count the brain stores) at $2 a million is a $1.8M bill, past the
    brain's `MAX_USAGE_USD` for one record: `UsageQueue.put` raised a ValidationError out of the wallet's settle and
    the runner died. Fixed: the queue clamps each record to what the brain stores (the wallet and the ledger keep
    the whole figure), and the task's budget refuses the next call."""
    fake, url = openai_fake
    huge = 9 * 10**11
    fake.script(reported({"prompt_tokens": huge, "completion_tokens": 5, "total_tokens": huge + 5}), Turn())
    poster = Poster()
    queue = UsageQueue(poster, "body-1")
    ledger = MemoryLedger()
    wallet = Wallet(
        ledger,
        priced(),
        provider="openai",
        agent="coder",
        logic_version="lv-0123456789abcdef",
        max_usd_per_task=2.0,
        sink=queue.put,
    )
    task = wallet.task("t-3")
    provider = openai_on(url, sleeps, retry=ONE_TRY)
    try:
        await task.complete(provider, ask())
        with pytest.raises(BudgetRefused) as refused:
            await task.complete(provider, ask())
    finally:
        await provider.aclose()
    assert refused.value.code == "max_usd_per_task"
    assert task.spend().usd > Decimal(1_000_000) and ledger.spent_usd > 1_000_000
    await queue.flush()
    [record] = [r for batch in poster.batches for r in batch.records]
    assert record.usd == MAX_USAGE_USD and record.input_tokens == huge
    assert len(fake.requests) == 1, "nothing was sent after the budget was spent"


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -1_000_000, "completion_tokens": 5, "total_tokens": 5},
        {"prompt_tokens": 100, "completion_tokens": -50, "total_tokens": 50},
        {"prompt_tokens": 1.5, "completion_tokens": 5, "total_tokens": 6},
        {"prompt_tokens": True, "completion_tokens": 5, "total_tokens": 6},
        {"completion_tokens": 5},
    ],
)
async def test_review17e_negative_or_odd_usage_is_garbage_and_never_gives_money_back(
    openai_fake: Fake, sleeps: Sleeps, usage: dict[str, Any]
) -> None:
    """Withstood: usage with a negative, fractional, boolean or missing count (which would make a negative cost,
    handing the task's budget and the hour's window money back) is garbage: the attempt is settled from what it
    streamed, never below zero, and the task stays within its budget."""
    fake, url = openai_fake
    fake.script(reported(usage))
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink).task("t-4")
    provider = openai_on(url, sleeps, retry=ONE_TRY)
    try:
        with pytest.raises(ResponseGarbage, match="usage"):
            await task.complete(provider, ask())
    finally:
        await provider.aclose()
    [record] = sink.records
    assert record.usd > 0 and task.spend().usd == record.usd and ledger.spent_usd > 0 and not ledger.holds


async def test_review17e_a_server_reporting_zero_usage_is_paid_what_it_reports(
    openai_fake: Fake, sleeps: Sleeps
) -> None:
    """Withstood (by design): a provider reporting zero tokens is settled at $0 — its report is the bill — but the
    next call of the task is still reserved from its own size, not from the zero the provider counted (the wallet's
    anchor only tightens the estimate by what the conversation added)."""
    fake, url = openai_fake
    fake.script(reported({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}), Turn())
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink).task("t-5")
    provider = openai_on(url, sleeps, retry=ONE_TRY)
    held: list[float] = []
    try:
        await task.complete(provider, ask())
        call = task.open_call(ask(max_output_tokens=2048))
        await call.before_attempt(1)
        held.append(ledger.held_usd)
        await call.abort()
    finally:
        await provider.aclose()
    assert sink.records[0].usd == 0
    # The same request again: its reservation covers at least its full output.
    assert held[0] >= 2048 * 10 / 1e6


# -- parallel calls and the money windows ------------------------------------------------------------------------


async def test_review17e_parallel_calls_of_one_task_cannot_hold_more_than_its_budget(
    openai_fake: Fake, sleeps: Sleeps
) -> None:
    """Withstood: five calls of one task started at once, against a budget that fits two reservations: the check
    and the hold happen with no await between them, so only two are sent and three are refused before anything
    goes out."""
    fake, url = openai_fake
    reservation = estimate_reservation(ask(), priced())
    fake.script(*[Slow(turn=Turn(content="ok"), seconds=0.3) for _ in range(5)])
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink, max_usd_per_task=float(reservation * 2 + reservation / 2)).task("t-6")
    provider = openai_on(url, sleeps, retry=ONE_TRY)
    outcomes: list[str] = []

    async def one() -> None:
        try:
            await task.complete(provider, ask())
            outcomes.append("answered")
        except BudgetRefused as refused:
            outcomes.append(refused.code)

    try:
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(one)
    finally:
        await provider.aclose()
    assert sorted(outcomes) == ["answered", "answered", *["max_usd_per_task"] * 3]
    assert len(fake.requests) == 2 and task.spend().usd <= reservation * 2 and not ledger.holds


def limits(tmp_path: Path, **values: Any) -> LimitsLedger:
    config = parse_config({"limits": {"breaker_breaches": 50, **values}}).limits
    return LimitsLedger(StatePaths.for_agent(tmp_path / "home", "coder", tmp_path / "task-a").limits, config)


def dear_wallet(ledger: LimitsLedger) -> Wallet:
    """$1000 a million input tokens and $2000 a million output: `ask()` reserves about $2.3, under the hour's $10."""
    overrides = PriceOverrides(input_usd_per_mtok=Decimal(1000), output_usd_per_mtok=Decimal(2000))
    pricing = resolve_pricing("gpt-4o", provider="openai", overrides=overrides)
    return Wallet(ledger, pricing, provider="openai", agent="coder", logic_version="lv-x", max_usd_per_task=100)


async def test_review17e_parallel_tasks_of_one_agent_cannot_spend_past_usd_per_hour(
    tmp_path: Path, openai_fake: Fake, sleeps: Sleeps
) -> None:
    """Withstood: six calls in flight at once, each for a task of its own (six task budgets of $100), on the
    agent's limits file with `usd_per_hour = 10`: the window counts what is held in flight, so only the calls whose
    reservations fit in $10 are sent, the others are refused by `[limits] usd_per_hour` before anything goes out;
    the calls cut off (a kill) are counted at their reservation, so the window stays full afterwards."""
    fake, url = openai_fake
    fake.script(*[Hang() for _ in range(6)])
    ledger = limits(tmp_path, usd_per_hour=10)
    wallet = dear_wallet(ledger)
    reservation = float(estimate_reservation(ask(), wallet.pricing))
    fits = int(10 // reservation)
    provider = openai_on(url, sleeps, retry=ONE_TRY, timeout_s=30)
    refused: list[str] = []

    async def one(n: int) -> None:
        try:
            await wallet.task(f"t-{n}").complete(provider, ask())
        except BudgetRefused as exc:
            refused.append(exc.code)

    try:
        async with anyio.create_task_group() as group:
            for n in range(6):
                group.start_soon(one, n)
            with anyio.fail_after(10):
                while len(fake.requests) + len(refused) < 6:
                    await anyio.sleep(0.05)
            group.cancel_scope.cancel()  # the kill: every call in flight is cut off
        assert 1 <= fits < 6 and len(fake.requests) == fits and refused == ["limits.usd_per_hour"] * (6 - fits)
        with pytest.raises(BudgetRefused) as after:
            await wallet.task("t-after").complete(provider, ask())
        assert after.value.code == "limits.usd_per_hour", "the cut-off calls count, at their reservation"
        used = {b.name: b.used for b in ledger.limits.budgets()}["usd_per_hour"]
        assert used == pytest.approx(reservation * fits, abs=1e-5)
    finally:
        await provider.aclose()
        ledger.close()


async def test_review17e_a_price_override_cannot_make_one_call_pass_max_usd_per_action(
    tmp_path: Path, openai_fake: Fake, sleeps: Sleeps
) -> None:
    """Withstood: an override making one call's reservation $20,000 (output at $1M a million tokens) is refused by
    `[limits] max_usd_per_action` ($100) before anything is sent, though the task's budget would allow it."""
    fake, url = openai_fake
    ledger = limits(tmp_path)
    overrides = PriceOverrides(input_usd_per_mtok=Decimal(1), output_usd_per_mtok=Decimal(1_000_000))
    pricing = resolve_pricing("gpt-4o", provider="openai", overrides=overrides)
    wallet = Wallet(ledger, pricing, provider="openai", agent="coder", logic_version="lv-x", max_usd_per_task=1e9)
    provider = openai_on(url, sleeps, retry=ONE_TRY)
    try:
        with pytest.raises(BudgetRefused) as refused:
            await wallet.task("t-1").complete(provider, ask(max_output_tokens=20_000))
    finally:
        await provider.aclose()
        ledger.close()
    assert refused.value.code == "limits.blast_radius" and fake.requests == []


async def test_review17e_a_new_workspace_does_not_reset_the_agents_money_window(tmp_path: Path) -> None:
    """Withstood: the ledger of the same agent opened for another task's workspace (and with no workspace, as the
    CLI opens it) is the same limits file: the hour's spend made for one task refuses the next task's call."""
    config = parse_config({"limits": {"usd_per_hour": 3, "breaker_breaches": 50}}).limits
    home = tmp_path / "home"
    paths = [StatePaths.for_agent(home, "coder", tmp_path / w) for w in ("task-a", "task-b")]
    paths.append(StatePaths.for_agent(home, "coder"))
    assert len({p.limits for p in paths}) == 1
    other = StatePaths.for_agent(home, "other-agent", tmp_path / "task-a").limits
    assert other != paths[0].limits
    first = LimitsLedger(paths[0].limits, config)
    try:
        first.settle(first.reserve(2.5, what="task a's call"), 2.5)
    finally:
        first.close()
    second = LimitsLedger(paths[1].limits, config)
    try:
        with pytest.raises(BudgetRefused, match=r"\$2.50 of \$3.00"):
            second.reserve(1.0, what="task b's call")
    finally:
        second.close()
    third = LimitsLedger(other, config)
    try:
        third.release(third.reserve(1.0, what="another agent's call"))  # (its own window: not refused)
    finally:
        third.close()


# -- the kill switch and retries ---------------------------------------------------------------------------------


async def test_review17e_a_kill_during_a_retry_after_wait_cuts_the_call_off_at_once_with_no_retry(
    openai_fake: Fake,
) -> None:
    """Withstood, with a hole fixed (low): a 429 asking to come back in 30 s; the kill switch engages during that
    wait: the call ends within a second and no second attempt is sent. The hole: the wallet, cancelled during the
    wait, knew nothing of the ended attempt and settled the 429 (nothing generated) as `aborted` at its whole
    reservation, overcounting the hour's money window. Fixed: the retry loop records how each attempt ended on its
    `Meter` (`Meter.ended`), which the wallet settles a cancelled call's finished attempts from."""
    fake, url = openai_fake
    fake.script(Fail(status=429, retry_after="30"), Turn(content="too late"))
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink).task("t-k")
    gate = KillGate()
    retry = RetryPolicy(max_attempts=3, max_elapsed_s=120, initial_backoff_s=0.5, max_backoff_s=60)
    waiting = anyio.Event()

    async def sleep(seconds: float) -> None:
        """The real wait, saying when it starts."""
        waiting.set()
        await anyio.sleep(seconds)

    provider = OpenAIProvider(model="gpt-4o", api_key=Secret(API_KEY), base_url=f"{url}/v1", retry=retry, sleep=sleep)
    took, started = 0.0, 0.0
    try:
        async with anyio.create_task_group() as group:

            async def call() -> None:
                with gate.watch():
                    await task.complete(provider, ask())

            group.start_soon(call)
            with anyio.fail_after(30):
                await waiting.wait()  # in the Retry-After wait (the 429 is in)
            started = time.monotonic()
            gate.engage("brain", "test kill")
        took = time.monotonic() - started
        await anyio.sleep(0.5)
    finally:
        await provider.aclose()
    assert took < 1.0 and len(fake.requests) == 1
    assert [r.outcome for r in sink.records] == ["rejected"] and task.spend().usd == 0 and not ledger.holds


async def test_review17e_a_configured_model_with_a_long_name_does_not_crash_the_first_settle() -> None:
    """Was a hole (low): `[models.NAME] model` has no length limit, but the brain's `UsageRecord.model` holds 200
    characters: a self-hosted model named by a long path (priced by overrides) made `UsageQueue.put` raise a
    ValidationError at the first settled call, killing the runner mid-task. Fixed: the queue cuts the label to what
    the brain stores."""
    name = "models/" + "very-long-fine-tune-name-" * 12
    overrides = PriceOverrides(input_usd_per_mtok=Decimal(1), output_usd_per_mtok=Decimal(2))
    pricing = resolve_pricing(name, provider="openai", base_url="http://127.0.0.1:9/v1", overrides=overrides)
    poster = Poster()
    queue = UsageQueue(poster, "body-1")
    wallet = Wallet(
        MemoryLedger(),
        pricing,
        provider="openai",
        agent="coder",
        logic_version="lv-x",
        max_usd_per_task=1,
        sink=queue.put,
    )
    answer = ModelTurn(content="ok", usage=TokenUsage(input_tokens=10, output_tokens=2))
    await wallet.task("t-l").complete(InMemoryProvider([answer]), ask())
    await queue.flush()
    [record] = [r for batch in poster.batches for r in batch.records]
    assert len(name) > 200 and record.model == name[:200]
