"""The wallet's total against the providers' own bill, over 1,000+ model calls through the real SDKs.

    uv run python bench/bench_wallet.py [--calls 1200] [--lanes 2] [--max-output 2048] [--seed 17]

Agent-like conversations (a system prompt, tools, tool calls and results growing step by step) go through the
real `OpenAIProvider` (gpt-4o) and `AnthropicProvider` (claude-sonnet-4-6) to the fake APIs of tests/fakes on
127.0.0.1, each call through a `Wallet` whose ledger is a real limits file (`LimitsLedger`). Half the tasks have a
long system prompt (the fakes' prompt cache serves their later calls: OpenAI cached tokens, Anthropic cache
writes then reads), half a short one (never cached). Some steps are retried (a 429, 500, 503 or 529 first, then
the answer), some aborted by the client's timeout mid-answer (then retried), some cancelled mid-answer (a kill).

The fakes bill what they served, from their own count of each request and of the output they generated (4 bytes
a token), at the providers' list prices written out below, never from the usage they report; an answer the client
abandoned is billed its input and the output generated before the client went away. The wallet prices what the
SDK read back with genai-prices' table, and settles an aborted or cancelled attempt at its reservation (the
request's size at 3 characters a token, plus all of `max_output_tokens`): by design it over-counts those. So the
figures are split: attempts settled from reported usage (the target: < 1% off the bill) and attempts settled at
their reservation (an upper bound, over by design), then the total. Calls within a lane run one after another
(each lane has its own fake servers, so scripted replies meet the right request); lanes run side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path

import anyio

from agent_runner import (
    AnthropicProvider,
    AssistantMessage,
    BudgetRefused,
    Message,
    ModelRequest,
    OpenAIProvider,
    Provider,
    ProviderError,
    RetryPolicy,
    ToolDefinition,
    ToolResult,
    ToolResultsMessage,
    UsageRecord,
    UserMessage,
    Wallet,
    resolve_pricing,
)
from shared_protocol.config import LimitsConfig
from shared_protocol.secrets import Secret
from swarm_cli._wallet import LimitsLedger
from tests.fakes.anthropic_api import API_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.llm import Fail, FakeCall, FakeLLMServer, Rates, Reply, Slow, Turn
from tests.fakes.openai_api import API_KEY as OPENAI_KEY
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.serve import serve_app

# The providers' list prices (USD per million tokens), as their pricing pages give them: the fakes' bill.
OPENAI_MODEL, OPENAI_RATES = "gpt-4o", Rates(input=Decimal("2.5"), output=Decimal(10), cache_read=Decimal("1.25"))
ANTHROPIC_MODEL, ANTHROPIC_RATES = (
    "claude-sonnet-4-6",
    Rates(input=Decimal(3), output=Decimal(15), cache_read=Decimal("0.3"), cache_write=Decimal("3.75")),
)
TIMEOUT_S = 0.5
"""The providers' per-try timeout; an aborted answer takes `SLOW_S` to generate, so the client gives up first."""
SLOW_S = 1.2
CANCEL_AFTER_S = 0.15
P_RETRY, P_TIMEOUT, P_CANCEL = 0.10, 0.02, 0.02
STEPS_PER_TASK = 10

TOOLS = [
    ToolDefinition(
        name="read_text_file",
        description="Read a file of the workspace.",
        input_schema={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    ),
    ToolDefinition(
        name="write_file",
        description="Write a file of the workspace.",
        input_schema={
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    ),
]
WORDS = ["the", "of", "model", "call", "token", "cache", "reserve", "settle", "wallet", "budget", "limit", "agent"]


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


@dataclass
class Lane:
    """One provider and its fake, calls one after another."""

    api: str
    fake: FakeLLMServer
    provider: Provider
    wallet: Wallet
    rates: Rates
    kinds: Counter[str] = field(default_factory=Counter[str])
    seconds: dict[str, list[float]] = field(default_factory=dict[str, list[float]])
    records: list[UsageRecord] = field(default_factory=list[UsageRecord])


async def run_lane(lane: Lane, *, calls: int, max_output: int, rng: random.Random) -> None:
    task_number = 0
    done = 0
    while done < calls:
        task_number += 1
        long_prompt = task_number % 2 == 1
        system = ("You are a careful coding agent. " + text(rng, 1100)) if long_prompt else "You are a coding agent."
        messages: list[Message] = [UserMessage(content=f"Task {task_number}: " + text(rng, 40))]
        task = lane.wallet.task(f"{lane.api}-{task_number}")
        for step in range(STEPS_PER_TASK):
            if done >= calls:
                break
            done += 1
            request = ModelRequest(system=system, messages=list(messages), tools=TOOLS, max_output_tokens=max_output)
            calling = rng.random() < 0.8
            turn = Turn(
                content=text(rng, rng.randint(10, 120)),
                tool_calls=[FakeCall(name="read_text_file", arguments={"path": f"src/m{step}.py"})] if calling else [],
            )
            draw = rng.random()
            script: list[Reply]
            if draw < P_RETRY:
                kind = "retried"
                failures = [Fail(status=rng.choice([429, 500, 503, 529 if lane.api == "anthropic" else 502]))]
                script = [*failures * rng.randint(1, 2), turn]
            elif draw < P_RETRY + P_TIMEOUT:
                kind, script = "aborted (timeout), then retried", [Slow(turn=turn, seconds=SLOW_S), turn]
            elif draw < P_RETRY + P_TIMEOUT + P_CANCEL:
                kind, script = "cancelled mid-answer", [Slow(turn=turn, seconds=SLOW_S)]
            else:
                kind, script = "answered first time", [turn]
            lane.fake.script(*script)
            lane.kinds[kind] += 1
            answer = None
            began = time.perf_counter()
            with anyio.move_on_after(CANCEL_AFTER_S if kind == "cancelled mid-answer" else 60):
                try:
                    answer = await task.complete(lane.provider, request)
                except (ProviderError, BudgetRefused) as exc:
                    raise SystemExit(f"unexpected failure in {lane.api}: {exc}") from None
            lane.seconds.setdefault(kind, []).append(time.perf_counter() - began)
            if answer is None:
                continue  # cancelled: the next step asks again
            messages.append(AssistantMessage(content=answer.content, tool_calls=answer.tool_calls))
            if answer.tool_calls:
                results = tuple(
                    ToolResult(call_id=c.id, content=text(rng, rng.randint(20, 250 if long_prompt else 30)))
                    for c in answer.tool_calls
                )
                messages.append(ToolResultsMessage(results=results))
            else:
                messages.append(UserMessage(content="Continue: " + text(rng, 8)))


def make_provider(api: str, url: str) -> Provider:
    async def no_wait(_seconds: float) -> None:  # retries are real HTTP tries; only the back-off is skipped
        await anyio.lowlevel.checkpoint()

    retry = RetryPolicy(max_attempts=4, max_elapsed_s=120)
    if api == "openai":
        key = Secret(OPENAI_KEY)
        return OpenAIProvider(
            model=OPENAI_MODEL, api_key=key, base_url=f"{url}/v1", timeout_s=TIMEOUT_S, retry=retry, sleep=no_wait
        )
    key = Secret(ANTHROPIC_KEY)
    return AnthropicProvider(
        model=ANTHROPIC_MODEL, api_key=key, base_url=url, timeout_s=TIMEOUT_S, retry=retry, sleep=no_wait
    )


def usd(value: Decimal) -> str:
    return f"${value:,.4f}"


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        limits = LimitsConfig(usd_per_hour=1_000_000, max_usd_per_action=1_000_000, calls_per_minute=0)
        ledger = LimitsLedger(Path(tmp) / "agent" / "limits-v4", limits)
        lanes: list[Lane] = []
        async with contextlib.AsyncExitStack() as stack:
            for n in range(args.lanes):
                api = "openai" if n % 2 == 0 else "anthropic"
                fake: FakeLLMServer = FakeOpenAI() if api == "openai" else FakeAnthropic()
                url = await stack.enter_async_context(serve_app(fake))
                stack.callback(fake.close)
                provider = make_provider(api, url)
                stack.push_async_callback(provider.aclose)
                model = OPENAI_MODEL if api == "openai" else ANTHROPIC_MODEL
                records: list[UsageRecord] = []

                async def sink(record: UsageRecord, records: list[UsageRecord] = records) -> None:
                    records.append(record)

                wallet = Wallet(
                    ledger,
                    resolve_pricing(model, provider=api),
                    provider=api,
                    agent=f"bench-{n}",
                    logic_version="lv-bench",
                    max_usd_per_task=1000,
                    sink=sink,
                )
                rates = OPENAI_RATES if api == "openai" else ANTHROPIC_RATES
                lanes.append(Lane(api=api, fake=fake, provider=provider, wallet=wallet, rates=rates, records=records))
            started = time.perf_counter()
            per_lane = -(-args.calls // args.lanes)
            async with anyio.create_task_group() as group:
                for n, lane in enumerate(lanes):
                    lane_rng = random.Random(rng.random())
                    calls = min(per_lane, args.calls - n * per_lane)
                    group.start_soon(partial(run_lane, lane, calls=calls, max_output=args.max_output, rng=lane_rng))
            elapsed = time.perf_counter() - started
        report(lanes, ledger, elapsed)
        ledger.close()


def report(lanes: list[Lane], ledger: LimitsLedger, elapsed: float) -> None:
    kinds: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for lane in lanes:
        kinds.update(lane.kinds)
        outcomes.update(r.outcome for r in lane.records)
    served = [entry for lane in lanes for entry in lane.fake.bill.served]
    cached_calls = sum(1 for entry in served if entry.status == 200 and entry.cache_read_tokens)
    answered = sum(1 for entry in served if entry.status == 200)
    print(
        f"model calls: {sum(kinds.values())} in {elapsed:.1f} s ({len(lanes)} lanes, real SDKs -> fakes on 127.0.0.1)"
    )
    for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]):
        times = sorted(t for lane in lanes for t in lane.seconds.get(kind, []))
        median, worst = times[len(times) // 2] * 1000, times[-1] * 1000
        print(f"  {kind:<34} {count:>5}   median {median:6.1f} ms, max {worst:6.1f} ms")
    print(f"HTTP attempts: {sum(outcomes.values())}  " + "  ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    print(f"answers served: {answered}, of which read from the prompt cache: {cached_calls}")

    wallet_total = Decimal(0)
    bill_total = Decimal(0)
    from_usage_wallet = from_usage_bill = at_reservation_wallet = at_reservation_bill = Decimal(0)
    print()
    print(f"{'provider':<10} {'wallet':>12} {'server bill':>12} {'error':>9}")
    for lane in lanes:
        wallet = sum((r.usd for r in lane.records), Decimal(0))
        bill = lane.fake.bill.usd(lane.rates)
        reserved = sum((r.usd for r in lane.records if r.outcome == "aborted"), Decimal(0))
        completed = [e for e in lane.fake.bill.served if e.completed]
        abandoned = [e for e in lane.fake.bill.served if not e.completed]
        from_usage_wallet += wallet - reserved
        from_usage_bill += type(lane.fake.bill)(served=completed).usd(lane.rates)
        at_reservation_wallet += reserved
        at_reservation_bill += type(lane.fake.bill)(served=abandoned).usd(lane.rates)
        wallet_total += wallet
        bill_total += bill
        print(f"{lane.api:<10} {usd(wallet):>12} {usd(bill):>12} {(wallet - bill) / bill:>+9.3%}")
    print()
    print(
        f"settled from reported usage : wallet {usd(from_usage_wallet)}  bill {usd(from_usage_bill)}  "
        f"error {(from_usage_wallet - from_usage_bill) / from_usage_bill:+.4%}  (target < 1%)"
    )
    print(
        f"settled at reservation      : wallet {usd(at_reservation_wallet)}  bill {usd(at_reservation_bill)}  "
        f"ratio {at_reservation_wallet / at_reservation_bill:.2f}x  (aborted/cancelled: an upper bound by design)"
    )
    print(
        f"total                       : wallet {usd(wallet_total)}  bill {usd(bill_total)}  "
        f"error {(wallet_total - bill_total) / bill_total:+.3%}"
    )
    window = {b.name: b.used for b in ledger.limits.budgets()}["usd_per_hour"]
    print(f"limits file usd_per_hour window: ${window:,.4f} (the wallet's total, each attempt rounded up to 1 micro-$)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--lanes", type=int, default=2, help="side by side, alternately OpenAI and Anthropic")
    parser.add_argument("--max-output", type=int, default=2048, help="max_output_tokens of every request")
    parser.add_argument("--seed", type=int, default=17)
    anyio.run(main, parser.parse_args())
