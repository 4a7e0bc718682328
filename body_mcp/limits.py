"""Budgets: blast radius per action, rolling windows, and a circuit breaker.

Reserve before executing, settle after: a reservation counts against every window the
moment it is made, in the workspace's limits table (`_limits_table.py`: a file every body of
the workspace maps, changed under an `flock`), so two callers (tasks or processes) racing for
the last unit cannot both get it. Settling moves the call from in flight to the windows, with
what it measurably did, in one step, after its audit event is committed. A reservation left
behind by a body that died is reclaimed (its process is gone; at the latest after a day) and
counted as done with everything it had reserved.

What the windows count (PRODUCT.md): calls (every tool call, per minute), file
modifications (per hour), money (per hour: tool calls' and, through `reserve_spend`, the
agent's model calls', one window). Calls that are refused before reserving do
not consume budget; refusals by a limit are breaches, and repeated breaches or
consecutive failures open the breaker, which refuses mutating calls until a cool-down
passes, then lets one trial call through (half-open). Hour windows move at minute
granularity: a unit is counted until the end of the minute it falls out of the window
(errs towards refusing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared_protocol import Budget, Impact
from shared_protocol.config import LimitsConfig
from shared_protocol.refusals import Rule

from ._limits_table import BreakerState, LimitsTable, TooManyInFlight, micro_usd
from .exceptions import BlastRadiusExceeded, CircuitOpen, RateLimited

_RESERVATION_TTL_S = 86_400.0
"""A backstop only: a dead body's reservations are reclaimed as soon as its process is gone."""


@dataclass(kw_only=True, frozen=True)
class Reservation:
    slot: int
    token: int
    """Which slot of the limits table this call holds (the token tells it from a later holder)."""
    second: int
    trial: bool
    """This call is the breaker's half-open trial: its outcome closes or re-opens it."""


class Limits:
    def __init__(self, table: Path, config: LimitsConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._table = LimitsTable(table)

    def close(self) -> None:
        self._table.close()

    # -- per action --------------------------------------------------------------------

    def check_blast_radius(self, impact: Impact) -> None:
        c = self.config
        over: list[str] = []
        if impact.files > c.max_files_per_action:
            over.append(f"{impact.files} files modified (limit {c.max_files_per_action})")
        if impact.api_calls > c.max_api_calls_per_action:
            over.append(f"{impact.api_calls} API calls (limit {c.max_api_calls_per_action})")
        if impact.usd > c.max_usd_per_action:
            over.append(f"${impact.usd:.2f} (limit ${c.max_usd_per_action:.2f})")
        if over:
            with self._table:
                self._breach(self._clock())
            raise BlastRadiusExceeded(
                "one action may not exceed the blast radius: " + "; ".join(over) + ". Nothing was done.",
                rule=Rule.BLAST_RADIUS,
            )

    # -- windows -----------------------------------------------------------------------

    def reserve(self, want: Impact, *, mutating: bool) -> Reservation:
        """Reserve one call plus `want` against every window, or refuse naming the window and numbers."""
        now = self._clock()
        c = self.config
        trial = False
        table = self._table
        with table:
            used = table.usage(now)
            if mutating:
                trial = self._admit_through_breaker(now)
            problem: tuple[Rule, str] | None = None
            if used.calls + 1 > c.calls_per_minute:
                problem = (
                    Rule.CALLS_PER_MINUTE,
                    f"{used.calls} of {c.calls_per_minute} tool calls used in the last minute",
                )
            elif want.files and used.files + want.files > c.file_mods_per_hour:
                problem = (
                    Rule.FILE_MODS_PER_HOUR,
                    f"{used.files} of {c.file_mods_per_hour} file modifications used in the last hour; "
                    f"this call needs {want.files}",
                )
            elif want.usd and used.usd + want.usd > c.usd_per_hour:
                problem = (
                    Rule.USD_PER_HOUR,
                    f"${used.usd:.2f} of ${c.usd_per_hour:.2f} spent in the last hour; this call needs ${want.usd:.2f}",
                )
            if problem is None:
                try:
                    slot, token = table.take(
                        expires=now + _RESERVATION_TTL_S,
                        files=want.files,
                        api_calls=want.api_calls,
                        usd_micro=micro_usd(want.usd) if want.usd else 0,
                        trial=trial,
                    )
                except TooManyInFlight as exc:
                    if trial:
                        table.set_breaker(state="open", opened_at=now)
                    raise RateLimited(f"{exc}; wait for some to finish.", rule=Rule.CALLS_IN_FLIGHT) from None
                return Reservation(slot=slot, token=token, second=int(now), trial=trial)
            if trial:
                table.set_breaker(state="open", opened_at=now)
            self._breach(now)
        raise RateLimited(f"rate limit: {problem[1]}. Wait for the window to move on.", rule=problem[0])

    def reserve_spend(self, usd: float) -> Reservation:
        """Reserve money that is not a tool call (a model call made for this workspace's agent): held to the
        blast radius per action (`max_usd_per_action`) and the money window (`usd_per_hour`), like a tool call's
        money, but counted in neither calls per minute nor the breaker's trial (a refusal is a breach, as a tool
        call's is). Settle it with `settle_spend`, or give it back with `release`; a holder that dies is counted as
        having spent it all."""
        self.check_blast_radius(Impact(usd=usd))
        now = self._clock()
        c = self.config
        with self._table as table:
            used = table.usage(now)
            if usd and used.usd + usd > c.usd_per_hour:
                self._breach(now)
                message = f"${used.usd:.2f} of ${c.usd_per_hour:.2f} spent in the last hour; this call needs ${usd:.2f}"
                raise RateLimited(f"rate limit: {message}. Wait for the window to move on.", rule=Rule.USD_PER_HOUR)
            try:
                slot, token = table.take(
                    expires=now + _RESERVATION_TTL_S,
                    files=0,
                    api_calls=0,
                    usd_micro=micro_usd(usd),
                    trial=False,
                    spend_only=True,
                )
            except TooManyInFlight as exc:
                raise RateLimited(f"{exc}; wait for some to finish.", rule=Rule.CALLS_IN_FLIGHT) from None
        return Reservation(slot=slot, token=token, second=int(now), trial=False)

    def settle_spend(self, reservation: Reservation, usd: float) -> None:
        """A `reserve_spend` is done: count what it cost (more or less than reserved) in the money window instead
        of what it held. The breaker is not fed: a model call's failure is not a tool call's."""
        now = self._clock()
        with self._table as table:
            table.move_to(now)
            # Counted before the slot is freed, as `settle` does: dying in between counts it twice, never zero times.
            if usd > 0:
                table.count(now, second=reservation.second, calls=0, files=0, api_calls=0, usd_micro=micro_usd(usd))
            table.free(reservation.slot, reservation.token)

    def _admit_through_breaker(self, now: float) -> bool:
        if self._table.breaker_closed():
            return False
        breaker = self._table.breaker()
        remaining = self.config.breaker_cooldown_s - (now - breaker.opened_at)
        if breaker.state == "open" and remaining <= 0:
            self._table.set_breaker(state="half_open")
            return True
        wait = max(remaining, 0.0)
        raise CircuitOpen(
            f"circuit breaker is {breaker.state.replace('_', '-')} after repeated limit breaches or failures; "
            f"mutating calls are refused for {wait:.0f} more seconds"
            + (" (a trial call is in progress)" if breaker.state == "half_open" else "")
        )

    def extend(self, reservation: Reservation, extra: Impact) -> None:
        """Grow a reservation once the measured impact exceeds the planned one, or refuse."""
        now = self._clock()
        c = self.config
        with self._table as table:
            used = table.usage(now)
            if used.files + extra.files > c.file_mods_per_hour:
                problem = (
                    Rule.FILE_MODS_PER_HOUR,
                    f"{used.files} of {c.file_mods_per_hour} file modifications used in the last hour; "
                    f"this call needs {extra.files} more",
                )
            elif used.usd + extra.usd > c.usd_per_hour:
                problem = (Rule.USD_PER_HOUR, f"${used.usd:.2f} of ${c.usd_per_hour:.2f} spent in the last hour")
            else:
                grown = dict(files=extra.files, api_calls=extra.api_calls, usd_micro=micro_usd(extra.usd))
                if not table.grow(reservation.slot, reservation.token, **grown):
                    # Its slot was reclaimed (counted as done): count the extra as done too, now.
                    table.count(now, second=int(now), calls=0, **grown)
                return
            self._breach(now)
        raise RateLimited(f"rate limit: {problem[1]}. Wait for the window to move on.", rule=problem[0])

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation for a call that was refused after reserving (it counts for nothing)."""
        with self._table as table:
            if table.free(reservation.slot, reservation.token) and reservation.trial:
                table.set_breaker(state="open", opened_at=self._clock())

    def settle(self, reservation: Reservation, actual: Impact, *, failed: bool, cancelled: bool = False) -> None:
        """The call is done (and audited): count what it did instead of what it reserved, and feed the breaker.

        A cancelled call proves nothing either way: it leaves the failure count alone, and as the half-open
        trial it re-opens the breaker (as a trial refused after reserving does).
        """
        now = self._clock()
        with self._table as table:
            table.move_to(now)
            # Counted before the slot is freed: dying in between counts the call twice, never zero times.
            # (A slot already reclaimed was counted as done with its reservation; the call is counted again.)
            table.count(
                now,
                second=reservation.second,
                calls=1,
                files=actual.files,
                api_calls=actual.api_calls,
                usd_micro=micro_usd(actual.usd) if actual.usd else 0,
            )
            table.free(reservation.slot, reservation.token)
            if cancelled:
                if reservation.trial:
                    table.set_breaker(state="open", opened_at=now)
            elif failed:
                failures = table.failures() + 1
                table.set_breaker(failures=failures)
                if reservation.trial or failures >= self.config.breaker_consecutive_failures:
                    table.set_breaker(state="open", opened_at=now)
            else:
                if table.failures():
                    table.set_breaker(failures=0)
                if reservation.trial:
                    table.set_breaker(state="closed")
                    table.forget_breaches()

    def _breach(self, now: float) -> None:
        """A limit refused a call (run holding the table): enough of them in the window open the breaker."""
        table = self._table
        breaches = table.breach(now, self.config.breaker_window_s)
        if breaches >= self.config.breaker_breaches and table.breaker_closed():
            table.set_breaker(state="open", opened_at=now)

    # -- reporting ---------------------------------------------------------------------

    def breaker_state(self) -> BreakerState:
        with self._table as table:
            breaker = table.breaker()
        if breaker.state == "open" and self._clock() - breaker.opened_at >= self.config.breaker_cooldown_s:
            return "half_open"
        return breaker.state

    def budgets(self) -> list[Budget]:
        now = self._clock()
        c = self.config
        with self._table as table:
            used = table.usage(now)

        def budget(name: str, used: float, limit: float, window: int) -> Budget:
            return Budget(name=name, used=used, limit=limit, remaining=max(limit - used, 0), window_s=window)

        return [
            budget("calls_per_minute", used.calls, c.calls_per_minute, 60),
            budget("file_mods_per_hour", used.files, c.file_mods_per_hour, 3600),
            budget("usd_per_hour", used.usd, c.usd_per_hour, 3600),
        ]
