"""Budgets: blast radius per action, rolling windows, and a circuit breaker.

Reserve before executing, settle after: a reservation counts against every window the
moment it is made, in the workspace's table of calls in flight (`_inflight.py`, shared by
every process under an `flock`), so two callers (tasks or processes) racing for the last unit
cannot both get it. Settling records what the action measurably did in SQLite, in the same
transaction as its audit event; the slot is freed after that commit. A reservation left
behind by a crashed body expires after ten minutes.

What the windows count (PRODUCT.md): calls (every tool call, per minute), file
modifications (per hour), money (per hour). Calls that are refused before reserving do
not consume budget; refusals by a limit are breaches, and repeated breaches or
consecutive failures open the breaker, which refuses mutating calls until a cool-down
passes, then lets one trial call through (half-open).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared_protocol import Budget, Impact
from shared_protocol.config import LimitsConfig

from ._db import StateDB
from ._inflight import InFlight, TooManyInFlight
from .exceptions import BlastRadiusExceeded, CircuitOpen, RateLimited

_RESERVATION_TTL_S = 600.0
BreakerState = Literal["closed", "open", "half_open"]


@dataclass(kw_only=True, frozen=True)
class Reservation:
    slot: int
    token: int
    """Which slot of the in-flight table this call holds (the token tells it from a later holder)."""
    second: int
    trial: bool
    """This call is the breaker's half-open trial: its outcome closes or re-opens it."""
    failures_seen: int
    """Consecutive failures when reserved: a success resets the count only if it was not already zero."""


class Limits:
    def __init__(
        self,
        db: StateDB,
        config: LimitsConfig,
        *,
        inflight: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self.config = config
        self._clock = clock
        self._inflight = InFlight(inflight or db.path.with_name("inflight"))

    def close(self) -> None:
        self._inflight.close()

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
            self._breach()
            raise BlastRadiusExceeded(
                "one action may not exceed the blast radius: "
                + "; ".join(over)
                + ". Split the work into smaller actions.",
                rule="limits.blast_radius",
            )

    # -- windows -----------------------------------------------------------------------
    # Settled usage lives in buckets (calls per second, files and money per minute), so a
    # check reads at most 60 rows per window however busy the body is; calls in flight are
    # the few live slots of the in-flight table. Hour windows move at minute granularity: a
    # unit is counted until the end of the minute it falls out of the window (errs towards refusing).

    # One statement reads every settled window and the breaker: it runs on every call.
    _USAGE_SQL = (
        "SELECT b.state, b.opened_at, b.consecutive_failures, c.calls, u.files, u.usd FROM breaker AS b, "
        "(SELECT COALESCE(SUM(calls), 0) AS calls FROM calls_by_second WHERE second > ?) AS c, "
        "(SELECT COALESCE(SUM(files), 0) AS files, COALESCE(SUM(usd), 0) AS usd FROM usage_by_minute "
        "WHERE minute > ?) AS u "
        "WHERE b.id = 1"
    )

    def _usage(self, now: float) -> tuple[str, float, int, int, int, float]:
        """(breaker state, opened_at, failures, calls in the last minute, files and $ in the last hour).

        Settled usage plus what the calls in flight hold; call it holding the in-flight table.
        """
        with self._db.read() as conn:
            state, opened_at, failures, calls, files, usd = conn.execute(
                self._USAGE_SQL, (int(now) - 60, int(now // 60) - 60)
            ).fetchone()
        held = self._inflight.held(now)
        return (
            str(state),
            float(opened_at),
            int(failures),
            int(calls) + held.calls,
            int(files) + held.files,
            float(usd) + held.usd,
        )

    def _window_sums(self, now: float) -> tuple[int, int, float]:
        with self._inflight:
            _, _, _, calls, files, usd = self._usage(now)
        return calls, files, usd

    def reserve(self, want: Impact, *, mutating: bool) -> Reservation:
        """Reserve one call plus `want` against every window, or refuse naming the window and numbers."""
        now = self._clock()
        c = self.config
        trial = False
        with self._inflight:
            state, opened_at, failures, calls, files, usd = self._usage(now)
            if mutating:
                trial = self._admit_through_breaker(now, state, opened_at)
            problem: tuple[str, str] | None = None
            if calls + 1 > c.calls_per_minute:
                problem = (
                    "limits.calls_per_minute",
                    f"{calls} of {c.calls_per_minute} tool calls used in the last minute",
                )
            elif want.files and files + want.files > c.file_mods_per_hour:
                problem = (
                    "limits.file_mods_per_hour",
                    f"{files} of {c.file_mods_per_hour} file modifications used in the last hour; "
                    f"this call needs {want.files}",
                )
            elif want.usd and usd + want.usd > c.usd_per_hour:
                problem = (
                    "limits.usd_per_hour",
                    f"${usd:.2f} of ${c.usd_per_hour:.2f} spent in the last hour; this call needs ${want.usd:.2f}",
                )
            if problem is None:
                try:
                    slot, token = self._inflight.take(
                        expires=now + _RESERVATION_TTL_S, files=want.files, api_calls=want.api_calls, usd=want.usd
                    )
                except TooManyInFlight as exc:
                    problem = ("limits.calls_in_flight", f"{exc}; wait for some to finish")
                else:
                    return Reservation(slot=slot, token=token, second=int(now), trial=trial, failures_seen=failures)
            if trial:
                with self._db.write(fast=True) as conn:
                    conn.execute("UPDATE breaker SET state = 'open', opened_at = ? WHERE id = 1", (now,))
        self._breach()
        raise RateLimited(f"rate limit: {problem[1]}. Wait for the window to move on.", rule=problem[0])

    @staticmethod
    def _forget(conn: sqlite3.Connection, now: float) -> None:
        conn.execute("DELETE FROM calls_by_second WHERE second < ?", (int(now) - 120,))
        conn.execute("DELETE FROM usage_by_minute WHERE minute < ?", (int(now // 60) - 120,))

    def _admit_through_breaker(self, now: float, state: str, opened_at: float) -> bool:
        if state == "closed":
            return False
        remaining = self.config.breaker_cooldown_s - (now - opened_at)
        if state == "open" and remaining <= 0:
            with self._db.write(fast=True) as conn:
                conn.execute("UPDATE breaker SET state = 'half_open' WHERE id = 1")
            return True
        wait = max(remaining, 0.0)
        raise CircuitOpen(
            f"circuit breaker is {state.replace('_', '-')} after repeated limit breaches or failures; "
            f"mutating calls are refused for {wait:.0f} more seconds"
            + (" (a trial call is in progress)" if state == "half_open" else "")
        )

    def extend(self, reservation: Reservation, extra: Impact) -> None:
        """Grow a reservation once the measured impact exceeds the planned one, or refuse."""
        now = self._clock()
        c = self.config
        with self._inflight:
            _, _, _, _, files, usd = self._usage(now)
            if files + extra.files > c.file_mods_per_hour:
                problem = (
                    "limits.file_mods_per_hour",
                    f"{files} of {c.file_mods_per_hour} file modifications used in the last hour; "
                    f"this call needs {extra.files} more",
                )
            elif usd + extra.usd > c.usd_per_hour:
                problem = ("limits.usd_per_hour", f"${usd:.2f} of ${c.usd_per_hour:.2f} spent in the last hour")
            else:
                self._inflight.grow(
                    reservation.slot, reservation.token, files=extra.files, api_calls=extra.api_calls, usd=extra.usd
                )
                return
        self._breach()
        raise RateLimited(f"rate limit: {problem[1]}. Wait for the window to move on.", rule=problem[0])

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation for a call that was refused after reserving (it counts for nothing)."""
        if reservation.trial:
            with self._db.write(fast=True) as conn:
                conn.execute("UPDATE breaker SET state = 'open', opened_at = ? WHERE id = 1", (self._clock(),))
        self.done(reservation)

    def done(self, reservation: Reservation) -> None:
        """Free the slot: after the settling commit (or the release), so the call is never counted nowhere."""
        with self._inflight:
            self._inflight.free(reservation.slot, reservation.token)

    def settle(self, conn: sqlite3.Connection, reservation: Reservation, actual: Impact, *, failed: bool) -> None:
        """Record what the call did; runs inside the audit transaction (`done` frees its slot after the commit)."""
        now = self._clock()
        conn.execute(
            "INSERT INTO calls_by_second (second, calls) VALUES (?, 1) "
            "ON CONFLICT (second) DO UPDATE SET calls = calls + 1",
            (reservation.second,),
        )
        if actual.files or actual.api_calls or actual.usd:
            conn.execute(
                "INSERT INTO usage_by_minute (minute, files, api_calls, usd) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (minute) DO UPDATE SET files = files + excluded.files, "
                "api_calls = api_calls + excluded.api_calls, usd = usd + excluded.usd",
                (int(now // 60), actual.files, actual.api_calls, actual.usd),
            )
        if reservation.second % 60 == 0:  # now and then, forget what no window can see any more
            self._forget(conn, now)
        if failed:
            (failures,) = conn.execute(
                "UPDATE breaker SET consecutive_failures = consecutive_failures + 1 WHERE id = 1 "
                "RETURNING consecutive_failures"
            ).fetchone()
            if reservation.trial or int(failures) >= self.config.breaker_consecutive_failures:
                conn.execute("UPDATE breaker SET state = 'open', opened_at = ? WHERE id = 1", (now,))
        else:
            # Seen as zero when reserved: nothing to reset (a failure elsewhere since then stays counted,
            # which errs towards opening the breaker, never towards keeping it closed).
            if reservation.failures_seen:
                conn.execute("UPDATE breaker SET consecutive_failures = 0 WHERE id = 1")
            if reservation.trial:
                conn.execute("UPDATE breaker SET state = 'closed' WHERE id = 1")
                conn.execute("DELETE FROM breaches")

    def _breach(self) -> None:
        now = self._clock()
        with self._db.write(fast=True) as conn:
            conn.execute("INSERT INTO breaches (ts) VALUES (?)", (now,))
            conn.execute("DELETE FROM breaches WHERE ts < ?", (now - self.config.breaker_window_s,))
            (count,) = conn.execute("SELECT COUNT(*) FROM breaches").fetchone()
            if int(count) >= self.config.breaker_breaches:
                conn.execute(
                    "UPDATE breaker SET state = 'open', opened_at = ? WHERE id = 1 AND state = 'closed'", (now,)
                )

    # -- reporting ---------------------------------------------------------------------

    def breaker_state(self) -> BreakerState:
        with self._db.read() as conn:
            state, opened_at = conn.execute("SELECT state, opened_at FROM breaker WHERE id = 1").fetchone()
        if state == "open" and self._clock() - float(opened_at) >= self.config.breaker_cooldown_s:
            return "half_open"
        return state

    def budgets(self) -> list[Budget]:
        now = self._clock()
        c = self.config
        calls, files, usd = self._window_sums(now)

        def budget(name: str, used: float, limit: float, window: int) -> Budget:
            return Budget(name=name, used=used, limit=limit, remaining=max(limit - used, 0), window_s=window)

        return [
            budget("calls_per_minute", calls, c.calls_per_minute, 60),
            budget("file_mods_per_hour", files, c.file_mods_per_hour, 3600),
            budget("usd_per_hour", usd, c.usd_per_hour, 3600),
        ]
