"""The wallet: every model call's money, reserved before each HTTP attempt and settled from what came back.

    wallet = Wallet(ledger, pricing, provider="openai", agent="coder", logic_version="lv-…",
                    max_usd_per_task=2.0, sink=post_usage)
    task = wallet.task("t-42")
    turn = await task.complete(provider, request)   # reserve, call, settle; BudgetRefused / ProviderError go up
    task.spend()                                    # TaskSpend: usd, tokens by kind, calls, attempts

`complete` is `open_call` + `provider.complete(request, before_attempt=call.before_attempt)` + one of
`call.settle_turn(turn)`, `call.settle_error(error)`, `call.abort()`; a loop that needs the steps apart uses them.

Before each attempt (retries included) the wallet reserves `estimate_reservation(request)`: the request's size
plus its whole `max_output_tokens`, priced. The size is estimated at 3 characters a token (plus framing), or,
when the request extends the task's last one the provider counted, as that count plus the new messages' estimate
(`estimate_input_tokens(after=…)`). A reservation that would take the task's money (settled plus held)
past `max_usd_per_task` is refused with `BudgetRefused` (code "max_usd_per_task") and nothing is sent; so is
one the `Ledger` (the agent's [limits]: $ per action, $ per hour) refuses. When the call ends, each attempt is
settled once, at:

    answered, usage reported   cost(usage): input, output, cache reads and writes × the price table
    rejected (429, 5xx, 4xx)   0: nothing was generated
    cut off mid-answer         cost(what was observed), recorded as `aborted`: a timeout, a dropped stream, or a
      (or answered, no usage)  cancellation (the kill switch; the settling is shielded) once the streamed answer
                               began (see `observed_usage`)
    nothing observed           its reservation (`aborted`; `answered` for a 2xx that was not an answer): the
                               provider may have worked, and billed, all of it

What was observed (`Observed`, kept by the provider in the attempt's `Meter`): the input as the provider reported
it when it did before the end (Anthropic's `message_start`, cache reads and writes included), else the input
estimate (all at the input rate); the output as the provider's running count when it sent one, else the larger of
the stream events carrying text (OpenAI and most compatible servers send a token an event) and the characters
received at 3 a token.

Each settled attempt becomes a `UsageRecord`, awaited into `sink` (the runner posts them to the brain's
`POST /v1/usage`) in a shielded scope, so a cancelled task still reports what it spent. Amounts are `Decimal`
(exact over thousands of calls); the ledger gets `float`s, as the limits are floats.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol, Self

import anyio

from .conversation import Attempt, AttemptOutcome, Meter, ModelRequest, ModelTurn, Observed, TokenUsage
from .exceptions import BudgetRefused, ProviderError, RunnerUserError
from .pricing import (
    CHARS_PER_TOKEN,
    Anchor,
    ModelPricing,
    cost,
    estimate_input_tokens,
    estimate_reservation,
)
from .providers import Provider

ZERO = Decimal(0)
TASK_BUDGET = "max_usd_per_task"
"""`BudgetRefused.code` when the task's own budget refuses."""


@dataclass(kw_only=True, frozen=True)
class Hold:
    """Money a `Ledger` holds for one attempt until it is settled or released. `ref` is the ledger's own."""

    usd: float
    what: str
    ref: object = None


class Ledger(Protocol):
    """Where the agent's money windows live (`swarm_cli._wallet.LimitsLedger`: the agent's limits file, the one
    its body enforces [limits] with). Calls are short and synchronous (no await: nothing can cancel a settle
    halfway)."""

    def reserve(self, usd: float, *, what: str) -> Hold:
        """Hold `usd` for `what` (e.g. "openai gpt-4o call for task t-42, attempt 1"), or raise `BudgetRefused`
        naming the limit that refuses it."""
        ...

    def settle(self, hold: Hold, usd: float) -> None:
        """The attempt is over and cost `usd` (more or less than held): count that instead of the hold."""
        ...

    def release(self, hold: Hold) -> None:
        """Give the hold back: the money was never spent."""
        ...


class MemoryLedger:
    """A `Ledger` in memory, optionally capped (`limit_usd` over everything held and settled): tests, and runs
    without a limits file."""

    def __init__(self, *, limit_usd: float | None = None) -> None:
        self.limit_usd = limit_usd
        self.spent_usd = 0.0
        self.holds: dict[int, Hold] = {}
        """The holds not settled yet."""
        self._next = 0

    @property
    def held_usd(self) -> float:
        return sum(hold.usd for hold in self.holds.values())

    def reserve(self, usd: float, *, what: str) -> Hold:
        if self.limit_usd is not None and self.spent_usd + self.held_usd + usd > self.limit_usd:
            raise BudgetRefused(
                f"{what}: ${self.spent_usd + self.held_usd:.4f} of the ledger's ${self.limit_usd:.4f} spent or held; "
                f"this call needs ${usd:.4f}",
                code="ledger",
            )
        self._next += 1
        hold = Hold(usd=usd, what=what, ref=self._next)
        self.holds[self._next] = hold
        return hold

    def settle(self, hold: Hold, usd: float) -> None:
        if self.holds.pop(_key(hold), None) is not None:
            self.spent_usd += usd

    def release(self, hold: Hold) -> None:
        self.holds.pop(_key(hold), None)


def _key(hold: Hold) -> int:
    if not isinstance(hold.ref, int):
        raise TypeError("not a hold of this ledger")
    return hold.ref


def _priced(usage: TokenUsage, pricing: ModelPricing) -> Decimal | None:
    """`cost(usage)`, or None for usage the price table cannot price (genai-prices refuses cached tokens beyond the
    input): the attempt is then settled at its reservation rather than the settle failing halfway."""
    try:
        return cost(usage, pricing)
    except ValueError:
        return None


def observed_usage(observed: Observed, *, estimated_input: int) -> TokenUsage:
    """The usage to settle an attempt at from what it was seen to receive: the input the provider reported (else
    `estimated_input`, all uncached), and the output tokens received (the provider's running count, else the larger
    of the text-carrying events and the characters at `CHARS_PER_TOKEN`)."""
    output = max(observed.output_tokens, observed.output_chunks, math.ceil(observed.output_chars / CHARS_PER_TOKEN))
    reported = observed.input
    if reported is None:
        return TokenUsage(input_tokens=estimated_input, output_tokens=output)
    return TokenUsage(
        input_tokens=reported.input_tokens,
        output_tokens=output,
        cache_read_tokens=reported.cache_read_tokens,
        cache_write_tokens=reported.cache_write_tokens,
    )


@dataclass(kw_only=True, frozen=True)
class UsageRecord:
    """One settled attempt, as the brain stores it (`POST /v1/usage`, idempotent by `id`). Tokens are what the
    provider reported, or for an attempt settled from what was observed, those it was settled at (0 for one settled
    at its reservation); `usd` is what the wallet settled it at."""

    id: str
    at: datetime
    agent: str
    logic_version: str
    task_id: str | None
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    usd: Decimal
    outcome: AttemptOutcome
    duration_ms: float | None = None
    """From the attempt's reservation to the next attempt's (a retry's wait included) or to the settlement."""


UsageSink = Callable[[UsageRecord], Awaitable[None]]
"""Gets every record, once; awaited in a shielded scope, so it should be quick (queue, and post in the background).
What it raises goes up from the settle (the money is counted by then)."""


@dataclass(kw_only=True, frozen=True)
class Spend:
    """Settled totals: money, tokens by kind, model calls (one per `complete`) and their HTTP attempts."""

    usd: Decimal = ZERO
    input_tokens: int = 0
    """Every input token, cached ones included (as in `TokenUsage`)."""
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    calls: int = 0
    attempts: int = 0

    def plus(self, record: UsageRecord) -> Self:
        return replace(
            self,
            usd=self.usd + record.usd,
            input_tokens=self.input_tokens + record.input_tokens,
            output_tokens=self.output_tokens + record.output_tokens,
            cache_read_tokens=self.cache_read_tokens + record.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + record.cache_write_tokens,
            attempts=self.attempts + 1,
        )


@dataclass(kw_only=True, frozen=True)
class TaskSpend(Spend):
    """One task's settled totals (the brain's `TaskSpend`: `calls` are its steps)."""

    task_id: str
    model: str


class Wallet:
    """One agent's money for one configured model: a `TaskWallet` per task, totals per model across tasks."""

    def __init__(
        self,
        ledger: Ledger,
        pricing: ModelPricing,
        *,
        provider: str,
        agent: str,
        logic_version: str,
        max_usd_per_task: float,
        sink: UsageSink | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not max_usd_per_task > 0:
            raise RunnerUserError(f"max_usd_per_task must be more than 0, not {max_usd_per_task!r}")
        self.ledger = ledger
        self.pricing = pricing
        self.provider = provider
        self.agent = agent
        self.logic_version = logic_version
        self.max_usd_per_task = Decimal(str(max_usd_per_task))
        self.sink = sink
        self.clock = clock
        self._by_model: dict[str, Spend] = {}

    def task(self, task_id: str, *, spent: TaskSpend | None = None) -> TaskWallet:
        """The task's wallet; `spent`: what the task spent before (a parked task taken up again after a restart),
        which counts against its budget."""
        return TaskWallet(self, task_id, spent=spent)

    def spend_by_model(self) -> dict[str, Spend]:
        """Settled totals per model, over every task of this wallet."""
        return dict(self._by_model)

    def count(self, record: UsageRecord, *, new_call: bool) -> None:
        """Add a settled attempt to its model's totals (`WalletCall` does, as it settles)."""
        spent = self._by_model.get(record.model, Spend()).plus(record)
        self._by_model[record.model] = replace(spent, calls=spent.calls + 1) if new_call else spent


class TaskWallet:
    """One task's budget (`max_usd_per_task`) and totals. Calls may run concurrently; each has its own holds."""

    def __init__(self, wallet: Wallet, task_id: str, *, spent: TaskSpend | None = None) -> None:
        self.wallet = wallet
        self.task_id = task_id
        self._spend = spent if spent is not None else TaskSpend(task_id=task_id, model=wallet.pricing.model)
        self._open: set[WalletCall] = set()
        self.anchor: Anchor | None = None
        """The task's last request whose input the provider counted, and that count (see `estimate_input_tokens`)."""

    @property
    def held_usd(self) -> Decimal:
        """Reserved for attempts not settled yet."""
        return sum((call.held_usd for call in self._open), ZERO)

    def spend(self) -> TaskSpend:
        """Settled totals so far (holds not included)."""
        return self._spend

    def open_call(self, request: ModelRequest) -> WalletCall:
        """A model call about to be made with `request`: pass its `before_attempt` to `Provider.complete`, then
        settle it exactly once (`settle_turn`, `settle_error` or `abort`; a second settle does nothing)."""
        call = WalletCall(self, request)
        self._open.add(call)
        return call

    async def complete(self, provider: Provider, request: ModelRequest) -> ModelTurn:
        """`provider.complete(request)` with every attempt reserved and settled, whatever happens: a turn is
        returned; `ProviderError` and `BudgetRefused` go up after their attempts are settled; a cancellation
        goes up after the unfinished attempt is settled at its reservation."""
        call = self.open_call(request)
        try:
            turn = await provider.complete(request, before_attempt=call.before_attempt)
        except (ProviderError, BudgetRefused) as error:
            await call.settle_error(error)
            raise
        except BaseException:
            await call.abort()
            raise
        await call.settle_turn(turn)
        return turn

    async def abort(self) -> None:
        """Settle every open call at its reservations (the task was killed with calls in flight)."""
        for call in list(self._open):
            await call.abort()

    def check(self, reservation: Decimal, what: str) -> None:
        """`BudgetRefused` unless `reservation` fits the task's budget beside what it spent and holds."""
        limit = self.wallet.max_usd_per_task
        committed = self._spend.usd + self.held_usd
        if committed + reservation > limit:
            raise BudgetRefused(
                f"{what} refused: the task has spent or holds ${committed:.4f} of its max_usd_per_task "
                f"${limit:.4f}; this call needs ${reservation:.4f}",
                code=TASK_BUDGET,
            )

    def settled(self, call: WalletCall, records: list[UsageRecord]) -> None:
        """`call` is settled: close it and add its records to the totals (`WalletCall` does, as it settles)."""
        self._open.discard(call)
        spend = self._spend
        for index, record in enumerate(records):
            spend = spend.plus(record)
            self.wallet.count(record, new_call=index == 0)
        if records:
            spend = replace(spend, calls=spend.calls + 1)
        self._spend = spend


class WalletCall:
    """The holds of one model call, one per attempt (made by `TaskWallet.open_call`)."""

    def __init__(self, task: TaskWallet, request: ModelRequest) -> None:
        self.task = task
        self.request = request
        self._holds: dict[int, tuple[Hold, Decimal]] = {}
        self._meters: dict[int, Meter] = {}
        self._started: dict[int, datetime] = {}
        self._input_tokens = 0
        self._reservation: Decimal | None = None
        self._done = False

    @property
    def held_usd(self) -> Decimal:
        return sum((reserved for _, reserved in self._holds.values()), ZERO)

    async def before_attempt(self, number: int) -> Meter:
        """The provider's `BeforeAttempt`: reserve this attempt, or raise `BudgetRefused`; the `Meter` returned is
        where a streaming provider records what the attempt receives."""
        wallet = self.task.wallet
        if self._done:
            raise RuntimeError("this wallet call is already settled")
        if self._reservation is None:
            self._input_tokens = estimate_input_tokens(self.request, after=self.task.anchor)
            self._reservation = estimate_reservation(self.request, wallet.pricing, input_tokens=self._input_tokens)
        what = f"{wallet.provider} {wallet.pricing.model} call for task {self.task.task_id}, attempt {number}"
        self.task.check(self._reservation, what)
        hold = wallet.ledger.reserve(float(self._reservation), what=what)
        self._holds[number] = (hold, self._reservation)
        self._started[number] = wallet.clock()
        meter = self._meters[number] = Meter()
        return meter

    async def settle_turn(self, turn: ModelTurn) -> None:
        await self._settle(turn.attempts)

    async def settle_error(self, error: ProviderError | BudgetRefused) -> None:
        await self._settle(error.attempts)

    async def abort(self) -> None:
        """Settle every hold as `aborted`: from what its attempt was observed to receive, else at its reservation
        (the call was cancelled or its end is unknown)."""
        await self._settle(())

    async def _settle(self, attempts: tuple[Attempt, ...]) -> None:
        if self._done:
            return
        self._done = True
        records = self._settle_holds({attempt.number: attempt for attempt in attempts})
        sink = self.task.wallet.sink
        if sink is not None and records:
            with anyio.CancelScope(shield=True):
                for record in records:
                    await sink(record)

    def _settle_holds(self, attempts: dict[int, Attempt]) -> list[UsageRecord]:
        """Synchronous (nothing can interrupt it): every hold settled in the ledger and counted."""
        wallet = self.task.wallet
        records: list[UsageRecord] = []
        holds, self._holds = self._holds, {}
        now = wallet.clock()
        starts = sorted(self._started.items())
        ends = {number: (starts[n + 1][1] if n + 1 < len(starts) else now) for n, (number, _) in enumerate(starts)}
        for number, (hold, reserved) in sorted(holds.items()):
            meter = self._meters.get(number)
            attempt = attempts.get(number) or (meter.ended if meter is not None else None)
            outcome: AttemptOutcome = attempt.outcome if attempt is not None else "aborted"
            usage = attempt.usage if attempt is not None else None
            observed = attempt.observed if attempt is not None else meter.observed if meter is not None else None
            usd = reserved
            if outcome == "rejected":
                usage, usd = None, ZERO
            else:
                anchor: int | None = None
                if usage is not None:
                    anchor = usage.input_tokens
                elif observed is not None:
                    usage = observed_usage(observed, estimated_input=self._input_tokens)
                    anchor = observed.input.input_tokens if observed.input is not None else None
                priced = None if usage is None else _priced(usage, wallet.pricing)
                if priced is None:
                    # Nothing came back, or usage no price can be worked out from: the provider may have worked,
                    # and billed, all of it.
                    usage = None
                else:
                    usd = priced
                    if anchor is not None:
                        self.task.anchor = (self.request, anchor)
            if usd:
                wallet.ledger.settle(hold, float(usd))
            else:
                wallet.ledger.release(hold)
            started = self._started.get(number)
            took = None if started is None else max((ends[number] - started).total_seconds() * 1000, 0.0)
            records.append(self._record(outcome, usage, usd, took))
        self.task.settled(self, records)
        return records

    def _record(
        self, outcome: AttemptOutcome, usage: TokenUsage | None, usd: Decimal, duration_ms: float | None
    ) -> UsageRecord:
        wallet = self.task.wallet
        tokens = usage or TokenUsage(input_tokens=0, output_tokens=0)
        return UsageRecord(
            id=f"use-{uuid.uuid4().hex}",
            at=wallet.clock(),
            agent=wallet.agent,
            logic_version=wallet.logic_version,
            task_id=self.task.task_id,
            provider=wallet.provider,
            model=wallet.pricing.model,
            input_tokens=tokens.input_tokens,
            output_tokens=tokens.output_tokens,
            cache_read_tokens=tokens.cache_read_tokens,
            cache_write_tokens=tokens.cache_write_tokens,
            usd=usd,
            outcome=outcome,
            duration_ms=duration_ms,
        )
