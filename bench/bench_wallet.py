"""The wallet's total against the providers' own bill, over 1,000+ model calls through the real SDKs.

    uv run python bench/bench_wallet.py [--calls 1000] [--worst-calls 400] [--lanes 2] [--max-output 2048] [--seed 17]

Agent-like conversations (a system prompt, tools, tool calls and results growing step by step) go through the
real `OpenAIProvider` (gpt-4o) and `AnthropicProvider` (claude-sonnet-4-6), both streaming, to the fake APIs of
tests/fakes on 127.0.0.1, each call through a `Wallet` whose ledger is a real limits file (`LimitsLedger`). Half
the tasks have a long system prompt (the fakes' prompt cache serves their later calls: OpenAI cached tokens,
Anthropic cache writes then reads), half a short one (never cached). Some steps are retried (a 429, 500, 503 or
529 first, then the answer), some time out mid-answer (then retried), some are cancelled mid-answer (a kill), and
a few are cancelled before their answer began (a kill while the provider reads the prompt).

The fakes bill what they served, from their own count of each request and of the output events they actually
wrote to the socket (4 bytes a token), at the providers' list prices written out below, never from the usage they
report; an answer the client abandoned is billed its input and the output written before the client went away.
The wallet prices what the SDK read back with genai-prices' table; it settles a try cut off mid-answer from what
the stream had delivered (the input Anthropic reports at `message_start`, else its estimate; the output
received), and one cut off before anything came at its reservation.

Two mixes, one after the other: the realistic one (`--calls`; aborts 4.5% of calls, more than an agent meets:
a try times out after 300 s, a kill is rare) and the worst case (`--worst-calls`; aborts 30% of calls), so the
dependency on the abort share shows. Peer, on the same calls: what the previous wallet (every abort at its
reservation, the request's size at 3 characters a token) would have counted. Calls within a lane run one after
another (each lane has its own fake servers, so scripted replies meet the right request); lanes run side by side,
alternately OpenAI and Anthropic.
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
    estimate_input_tokens,
    estimate_reservation,
    resolve_pricing,
)
from shared_protocol.config import LimitsConfig
from shared_protocol.secrets import Secret
from swarm_cli._wallet import LimitsLedger
from tests.fakes.anthropic_api import API_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.llm import Bill, Fail, FakeCall, FakeLLMServer, Rates, Reply, Served, Slow, Turn
from tests.fakes.openai_api import API_KEY as OPENAI_KEY
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.serve import serve_app

# The providers' list prices (USD per million tokens), as their pricing pages give them: the fakes' bill.
OPENAI_MODEL, OPENAI_RATES = "gpt-4o", Rates(input=Decimal("2.5"), output=Decimal(10), cache_read=Decimal("1.25"))
ANTHROPIC_MODEL, ANTHROPIC_RATES = (
    "claude-sonnet-4-6",
    Rates(input=Decimal(3), output=Decimal(15), cache_read=Decimal("0.3"), cache_write=Decimal("3.75")),
)
TIMEOUT_S = 2.0
"""The providers' per-try timeout (an answer at once takes ~40 ms: a timeout this long is never hit by a fast answer,
even on a loaded machine). A slow answer starts after `FIRST_TOKEN_S` (the model reading its prompt) and streams for
`SLOW_S`, within the timeout; a kill lands at a uniformly random moment of it, so about a quarter of kills come
before the first token (agent steps are short answers to long prompts). An answer that times out streams for
3 × `SLOW_S`, so the client gives up midway."""
FIRST_TOKEN_S = 0.5
SLOW_S = 1.4
STEPS_PER_TASK = 10


@dataclass(kw_only=True, frozen=True)
class Mix:
    """Shares of the calls: retried after an error status, timed out mid-answer then retried, killed (at a random
    moment: before the first token or mid-answer); the rest answered at the first try."""

    name: str
    retry: float
    timeout: float
    kill: float

    @property
    def aborts(self) -> float:
        return self.timeout + self.kill


REALISTIC = Mix(name="realistic", retry=0.10, timeout=0.01, kill=0.005)
"""An agent's tries time out after 300 s, rarely; a kill is one event that cuts each agent's call in flight."""
WORST = Mix(name="worst case", retry=0.10, timeout=0.10, kill=0.20)

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


@dataclass(kw_only=True)
class Row:
    """One model call: its kind, the wallet's records of it, the fake's bill entries for it, and what the previous
    wallet (every abort at its reservation) would have counted."""

    kind: str
    records: list[UsageRecord]
    served: list[Served]
    peer_usd: Decimal
    seconds: float
    estimates: tuple[int, int]
    """The request's input estimate: the wallet's (anchored on the provider's last count) and from its size alone."""


@dataclass
class Lane:
    """One provider and its fake, calls one after another."""

    api: str
    fake: FakeLLMServer
    provider: Provider
    wallet: Wallet
    rates: Rates
    records: list[UsageRecord] = field(default_factory=list[UsageRecord])
    rows: list[Row] = field(default_factory=list[Row])


async def run_lane(lane: Lane, *, calls: int, max_output: int, mix: Mix, rng: random.Random) -> None:
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
            if draw < mix.retry:
                kind = "retried after 429/5xx"
                failures = [Fail(status=rng.choice([429, 500, 503, 529 if lane.api == "anthropic" else 502]))]
                script = [*failures * rng.randint(1, 2), turn]
            elif draw < mix.retry + mix.timeout:
                slow = Slow(turn=turn, seconds=3 * SLOW_S, first_token_s=FIRST_TOKEN_S)  # past the timeout
                kind, script = "timed out mid-answer, retried", [slow, turn]
            elif draw < mix.retry + mix.aborts:
                kind, script = "killed", [Slow(turn=turn, seconds=SLOW_S, first_token_s=FIRST_TOKEN_S)]
            else:
                kind, script = "answered first try", [turn]
            lane.fake.script(*script)
            records_before, served_before = len(lane.records), len(lane.fake.bill.served)
            estimates = (estimate_input_tokens(request, after=task.anchor), estimate_input_tokens(request))
            answer = None
            began = time.perf_counter()
            kill_at = rng.uniform(0.01, FIRST_TOKEN_S + SLOW_S)
            with anyio.move_on_after(kill_at if kind == "killed" else 60):
                try:
                    answer = await task.complete(lane.provider, request)
                except (ProviderError, BudgetRefused) as exc:
                    raise SystemExit(f"unexpected failure in {lane.api}: {exc}") from None
            seconds = time.perf_counter() - began
            if lane.fake.replies:  # killed before the request reached the fake: its reply is not for the next call
                lane.fake.replies.clear()
            records = lane.records[records_before:]
            if kind == "killed":
                early = all(r.input_tokens == 0 for r in records if r.outcome == "aborted")  # at the reservation
                kind = "killed before the first token" if early else "killed mid-answer"
            # The previous wallet: every abort at its reservation, the request's size at 3 characters a token.
            crude = estimate_reservation(request, lane.wallet.pricing)
            peer = sum((crude if r.outcome == "aborted" else r.usd for r in records), Decimal(0))
            served = lane.fake.bill.served[served_before:]
            if kind == "answered first try" and any(entry.cache_read_tokens for entry in served):
                kind = "answered first try, cached"
            row = Row(kind=kind, records=records, served=served, peer_usd=peer, seconds=seconds, estimates=estimates)
            lane.rows.append(row)
            if answer is None:
                continue  # killed: the next step asks again
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


async def run_mix(args: argparse.Namespace, mix: Mix, calls: int) -> None:
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
            per_lane = -(-calls // args.lanes)
            async with anyio.create_task_group() as group:
                for n, lane in enumerate(lanes):
                    lane_rng = random.Random(rng.random())
                    lane_calls = min(per_lane, calls - n * per_lane)
                    run = partial(run_lane, lane, calls=lane_calls, max_output=args.max_output, mix=mix, rng=lane_rng)
                    group.start_soon(run)
            elapsed = time.perf_counter() - started
            await anyio.sleep(0.2)  # the fakes notice the last killed streams' clients are gone
        report(mix, lanes, ledger, elapsed)
        ledger.close()


async def main(args: argparse.Namespace) -> None:
    await run_mix(args, REALISTIC, args.calls)
    print()
    await run_mix(args, WORST, args.worst_calls)


def error(wallet: Decimal, bill: Decimal) -> str:
    return f"{(wallet - bill) / bill:+.3%}" if bill else "n/a"


def report(mix: Mix, lanes: list[Lane], ledger: LimitsLedger, elapsed: float) -> None:
    rows = [(lane, row) for lane in lanes for row in lane.rows]
    outcomes = Counter(r.outcome for lane in lanes for r in lane.records)
    print(
        f"== {mix.name}: {len(rows)} model calls in {elapsed:.1f} s ({len(lanes)} lanes, real SDKs streaming -> fakes "
        f"on 127.0.0.1); aborts {mix.aborts:.1%} of calls (timeouts mid-answer {mix.timeout:.1%}, kills "
        f"{mix.kill:.1%}), retries {mix.retry:.0%}"
    )
    print(f"HTTP attempts: {sum(outcomes.values())}  " + "  ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    print()
    print(f"{'kind':<32} {'calls':>6} {'server bill':>12} {'wallet':>12} {'error':>9}   ", end="")
    print(f"{'previous wallet':>15} {'error':>9}")
    kinds = sorted({row.kind for _, row in rows}, key=lambda k: -sum(1 for _, r in rows if r.kind == k))
    for kind in [*kinds, "total"]:
        chosen = [(lane, row) for lane, row in rows if kind in (row.kind, "total")]
        bill = sum((Bill(served=row.served).usd(lane.rates) for lane, row in chosen), Decimal(0))
        wallet = sum((r.usd for _, row in chosen for r in row.records), Decimal(0))
        peer = sum((row.peer_usd for _, row in chosen), Decimal(0))
        print(
            f"{kind:<32} {len(chosen):>6} {usd(bill):>12} {usd(wallet):>12} {error(wallet, bill):>9}   "
            f"{usd(peer):>15} {error(peer, bill):>9}"
        )
    rest = [(lane, row) for lane, row in rows if row.kind != "killed before the first token"]
    if len(rest) < len(rows):  # the attempts settled at their reservation left out: the streamed settling alone
        bill = sum((Bill(served=row.served).usd(lane.rates) for lane, row in rest), Decimal(0))
        wallet = sum((r.usd for _, row in rest for r in row.records), Decimal(0))
        label = "total without kills before the first token"
        print(f"{label:<45} wallet {usd(wallet)}  bill {usd(bill)}  error {error(wallet, bill)}")
    print()
    pairs = [(row.estimates, entry.input_tokens) for _, row in rows for entry in row.served[-1:] if entry.input_tokens]
    for label, which in (("the wallet's (anchored)", 0), ("the request's size alone", 1)):
        over = sorted(estimates[which] / served - 1 for estimates, served in pairs)
        under = sum(1 for excess in over if excess < 0)
        print(
            f"input estimate, {label:<25}: under the served input in {under} of {len(over)} calls; over it by "
            f"{over[len(over) // 2]:.1%} median, {over[-1]:.1%} max"
        )
    for lane in lanes:
        bill = lane.fake.bill.usd(lane.rates)
        wallet = sum((r.usd for r in lane.records), Decimal(0))
        print(f"{lane.api:<10} wallet {usd(wallet):>10}  server bill {usd(bill):>10}  error {error(wallet, bill)}")
    window = {b.name: b.used for b in ledger.limits.budgets()}["usd_per_hour"]
    print(f"limits file usd_per_hour window: ${window:,.4f} (the wallet's total, each attempt rounded up to 1 micro-$)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls of the realistic mix")
    parser.add_argument("--worst-calls", type=int, default=400, help="calls of the worst-case mix")
    parser.add_argument("--lanes", type=int, default=2, help="side by side, alternately OpenAI and Anthropic")
    parser.add_argument("--max-output", type=int, default=2048, help="max_output_tokens of every request")
    parser.add_argument("--seed", type=int, default=17)
    anyio.run(main, parser.parse_args())
