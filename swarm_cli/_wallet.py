"""The wallet's ledger on the agent's limits file: model spend and the body's money limits are one window.

    ledger = LimitsLedger(StatePaths.for_agent(home, name, workspace).limits, config.limits)
    wallet = Wallet(ledger, pricing, provider=…, agent=name, …)

Every model-call attempt is a money-only hold in the limits table the agent's body maps (`Limits.reserve_spend`):
checked against `[limits] max_usd_per_action` (one attempt's reservation is one action) and `usd_per_hour` (with
the tool calls' money), never counted as a tool call in `calls_per_minute`, and settled at what the attempt cost.
A refusal becomes `BudgetRefused` whose code is the limit's rule (`limits.usd_per_hour`, `limits.blast_radius`,
`limits.calls_in_flight`) and whose reason names the `[limits]` key and the numbers. A runner that dies holding
a reservation has it counted as spent by the next reader, as a body's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from agent_runner import BudgetRefused, Hold
from body_mcp.exceptions import LimitExceeded
from body_mcp.limits import Limits, Reservation
from shared_protocol.config import LimitsConfig
from shared_protocol.refusals import Rule

_KEYS: dict[Rule, str] = {
    Rule.BLAST_RADIUS: "[limits] max_usd_per_action",
    Rule.USD_PER_HOUR: "[limits] usd_per_hour",
    Rule.CALLS_IN_FLIGHT: "calls in flight",
}


class LimitsLedger:
    """`agent_runner.Ledger` over a limits file (`StatePaths.limits`) and the `[limits]` it is enforced with."""

    def __init__(self, path: Path, config: LimitsConfig, *, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.limits = Limits(path, config, clock=clock)

    def close(self) -> None:
        self.limits.close()

    def reserve(self, usd: float, *, what: str) -> Hold:
        try:
            reservation = self.limits.reserve_spend(usd)
        except LimitExceeded as exc:
            key = _KEYS.get(exc.rule, str(exc.rule))
            raise BudgetRefused(f"{what} refused by {key}: {exc.message}", code=str(exc.rule)) from None
        return Hold(usd=usd, what=what, ref=reservation)

    def settle(self, hold: Hold, usd: float) -> None:
        self.limits.settle_spend(_reservation(hold), usd)

    def release(self, hold: Hold) -> None:
        self.limits.release(_reservation(hold))


def _reservation(hold: Hold) -> Reservation:
    if not isinstance(hold.ref, Reservation):
        raise TypeError(f"not a hold of a limits ledger: {hold.what}")
    return hold.ref
