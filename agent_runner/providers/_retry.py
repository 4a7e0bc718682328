"""Retrying a model call within a budget (tenacity), one hook call and one `Attempt` record per try.

The SDKs' own retries are off (`max_retries=0`): every try goes through here, so the wallet reserves each one
(`before_attempt`) and a kill (an anyio cancellation) stops the wait between tries as well as the try itself.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from ..conversation import Attempt, AttemptOutcome, Meter, ModelTurn, TokenUsage
from ..exceptions import BudgetRefused, ProviderError

BeforeAttempt = Callable[[int], Awaitable[Meter | None]]
"""Called with the attempt's number (1, 2, …) before each try, retries included: the wallet reserves there, and
may return the `Meter` the try's streamed answer is to be recorded in (so a try cancelled mid-answer can be
settled from what it received). What it raises stops the call at once (nothing is sent) and goes up unchanged."""

Sleep = Callable[[float], Awaitable[None]]


@dataclass(kw_only=True, frozen=True)
class RetryPolicy:
    """How hard to try: at most `max_attempts` tries, and no wait that would end more than `max_elapsed_s` after
    the first try began. Waits back off exponentially (with jitter) unless the provider said how long to wait
    (`Retry-After`), which is honoured exactly; a wait past the budget is not started and the error goes up."""

    max_attempts: int = 4
    max_elapsed_s: float = 120.0
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 30.0


_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


def retry_after_s(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """The wait a response asks for, in seconds: `retry-after-ms` (OpenAI), else `Retry-After` as delay-seconds
    or an HTTP-date (RFC 9110). None when absent or unreadable; a date in the past is 0."""
    millis = headers.get("retry-after-ms", "").strip()
    if _SECONDS.fullmatch(millis):
        return float(millis) / 1000
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:  # an HTTP-date is GMT
        at = at.replace(tzinfo=UTC)
    return max((at - (now or datetime.now(UTC))).total_seconds(), 0.0)


class AttemptFailed(Exception):
    """Raised by a provider's single try: the error to surface if this was the last try, and what the try was."""

    def __init__(
        self,
        error: ProviderError,
        *,
        outcome: AttemptOutcome,
        retryable: bool = False,
        retry_after_s: float | None = None,
        usage: TokenUsage | None = None,
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.outcome: AttemptOutcome = outcome
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.usage = usage


async def call_with_retries(
    attempt: Callable[[Meter], Awaitable[ModelTurn]],
    *,
    policy: RetryPolicy,
    before_attempt: BeforeAttempt | None,
    sleep: Sleep,
) -> ModelTurn:
    """Run `attempt` until it returns a turn, fails for good, or the budget is spent; the turn (or the
    `ProviderError`, on `.attempts`) records every try, with what a streamed try had received (its `Meter`)
    when it ended without usage."""
    attempts: list[Attempt] = []
    backoff = wait_exponential_jitter(
        multiplier=policy.initial_backoff_s, max=policy.max_backoff_s, jitter=policy.initial_backoff_s
    )

    async def one_try() -> ModelTurn:
        number = len(attempts) + 1
        meter: Meter | None = None
        if before_attempt is not None:
            try:
                meter = await before_attempt(number)
            except BudgetRefused as refused:
                refused.attempts = tuple(attempts)  # the tries before it, for the wallet to settle
                raise
        meter = meter or Meter()
        try:
            turn = await attempt(meter)
        except AttemptFailed as failed:
            observed = meter.observed if failed.usage is None else None
            meter.ended = Attempt(
                number=number,
                outcome=failed.outcome,
                status=failed.error.status,
                usage=failed.usage,
                observed=observed,
            )
            attempts.append(meter.ended)
            raise
        observed = meter.observed if turn.usage is None else None
        meter.ended = Attempt(number=number, outcome="answered", status=200, usage=turn.usage, observed=observed)
        attempts.append(meter.ended)
        return replace(turn, attempts=tuple(attempts))

    def wait(state: RetryCallState) -> float:
        failed = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failed, AttemptFailed) and failed.retry_after_s is not None:
            return failed.retry_after_s
        return backoff(state)

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        # Time spent so far: the clock, or the waits alone when `sleep` does not really sleep (tests).
        spent = max(state.seconds_since_start or 0.0, state.idle_for)
        return spent + state.upcoming_sleep > policy.max_elapsed_s

    retrying = AsyncRetrying(
        stop=stop,
        wait=wait,
        retry=retry_if_exception(lambda exc: isinstance(exc, AttemptFailed) and exc.retryable),
        sleep=sleep,
        reraise=True,
    )
    try:
        return await retrying(one_try)
    except AttemptFailed as failed:
        failed.error.attempts = tuple(attempts)
        raise failed.error from failed.__cause__
