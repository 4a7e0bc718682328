"""Budgets: blast radius per action, rolling windows, and a circuit breaker.

Reserve before executing, settle after: a reservation counts against every window the
moment it is made, inside a `BEGIN IMMEDIATE` transaction, so two callers (tasks or
processes) racing for the last unit cannot both get it. Settling replaces the reservation
with what the action measurably did, in the same transaction as its audit event. A
reservation left behind by a crashed body expires after ten minutes.

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
from typing import Literal

from shared_protocol import Budget, Impact
from shared_protocol.config import LimitsConfig

from ._db import StateDB
from .exceptions import BlastRadiusExceeded, CircuitOpen, RateLimited

_RESERVATION_TTL_S = 600.0
BreakerState = Literal["closed", "open", "half_open"]


@dataclass(kw_only=True, frozen=True)
class Reservation:
    row_id: int
    """0: nothing held but the call itself (a read-only call with no impact)."""
    second: int
    trial: bool
    """This call is the breaker's half-open trial: its outcome closes or re-opens it."""


class Limits:
    def __init__(self, db: StateDB, config: LimitsConfig, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self.config = config
        self._clock = clock

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
    # the few rows of `reservations`. Hour windows move at minute granularity: a unit is
    # counted until the end of the minute it falls out of the window (errs towards refusing).

    # One statement reads every window and the breaker: it runs on every call.
    _USAGE_SQL = (
        "SELECT b.state, b.opened_at, c.calls, u.files + h.files, u.usd + h.usd FROM breaker AS b, "
        "(SELECT COALESCE(SUM(calls), 0) AS calls FROM calls_by_second WHERE second > ?) AS c, "
        "(SELECT COALESCE(SUM(files), 0) AS files, COALESCE(SUM(usd), 0) AS usd FROM usage_by_minute "
        "WHERE minute > ?) AS u, "
        "(SELECT COALESCE(SUM(files), 0) AS files, COALESCE(SUM(usd), 0) AS usd FROM reservations "
        "WHERE expires > ?) AS h "
        "WHERE b.id = 1"
    )

    def _usage(self, conn: sqlite3.Connection, now: float) -> tuple[str, float, int, int, float]:
        """(breaker state, opened_at, calls in the last minute, files and $ in the last hour, held ones included)."""
        state, opened_at, calls, files, usd = conn.execute(
            self._USAGE_SQL, (int(now) - 60, int(now // 60) - 60, now)
        ).fetchone()
        return str(state), float(opened_at), int(calls), int(files), float(usd)

    def _window_sums(self, conn: sqlite3.Connection, now: float) -> tuple[int, int, float]:
        _, _, calls, files, usd = self._usage(conn, now)
        return calls, files, usd

    def reserve(self, want: Impact, *, mutating: bool) -> Reservation:
        """Reserve one call plus `want` against every window, or refuse naming the window and numbers."""
        now = self._clock()
        c = self.config
        trial = False
        with self._db.write(fast=True) as conn:
            state, opened_at, calls, files, usd = self._usage(conn, now)
            if mutating:
                trial = self._admit_through_breaker(conn, now, state, opened_at)
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
                second = int(now)
                conn.execute(
                    "INSERT INTO calls_by_second (second, calls) VALUES (?, 1) "
                    "ON CONFLICT (second) DO UPDATE SET calls = calls + 1",
                    (second,),
                )
                row_id = 0
                if mutating or want.files or want.api_calls or want.usd:
                    cursor = conn.execute(
                        "INSERT INTO reservations (second, expires, files, api_calls, usd) VALUES (?, ?, ?, ?, ?)",
                        (second, now + _RESERVATION_TTL_S, want.files, want.api_calls, want.usd),
                    )
                    row_id = int(cursor.lastrowid or 0)
                if second % 60 == 0:  # now and then, forget what no window can see any more
                    self._forget(conn, now)
                return Reservation(row_id=row_id, second=second, trial=trial)
            if trial:
                conn.execute("UPDATE breaker SET state = 'open', opened_at = ? WHERE id = 1", (now,))
        self._breach()
        raise RateLimited(f"rate limit: {problem[1]}. Wait for the window to move on.", rule=problem[0])

    @staticmethod
    def _forget(conn: sqlite3.Connection, now: float) -> None:
        conn.execute("DELETE FROM calls_by_second WHERE second < ?", (int(now) - 120,))
        conn.execute("DELETE FROM usage_by_minute WHERE minute < ?", (int(now // 60) - 120,))
        conn.execute("DELETE FROM reservations WHERE expires < ?", (now,))

    def _admit_through_breaker(self, conn: sqlite3.Connection, now: float, state: str, opened_at: float) -> bool:
        if state == "closed":
            return False
        remaining = self.config.breaker_cooldown_s - (now - opened_at)
        if state == "open" and remaining <= 0:
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
        assert reservation.row_id, "only mutating calls hold a reservation row, and only they grow"
        now = self._clock()
        c = self.config
        with self._db.write(fast=True) as conn:
            _, files, usd = self._window_sums(conn, now)
            if files + extra.files > c.file_mods_per_hour:
                problem = (
                    "limits.file_mods_per_hour",
                    f"{files} of {c.file_mods_per_hour} file modifications used in the last hour; "
                    f"this call needs {extra.files} more",
                )
            elif usd + extra.usd > c.usd_per_hour:
                problem = ("limits.usd_per_hour", f"${usd:.2f} of ${c.usd_per_hour:.2f} spent in the last hour")
            else:
                conn.execute(
                    "UPDATE reservations SET files = files + ?, api_calls = api_calls + ?, usd = usd + ? WHERE id = ?",
                    (extra.files, extra.api_calls, extra.usd, reservation.row_id),
                )
                return
        self._breach()
        raise RateLimited(f"rate limit: {problem[1]}. Wait for the window to move on.", rule=problem[0])

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation for a call that was refused after reserving."""
        with self._db.write(fast=True) as conn:
            if reservation.row_id:
                conn.execute("DELETE FROM reservations WHERE id = ?", (reservation.row_id,))
            conn.execute("UPDATE calls_by_second SET calls = calls - 1 WHERE second = ?", (reservation.second,))
            if reservation.trial:
                conn.execute("UPDATE breaker SET state = 'open', opened_at = ? WHERE id = 1", (self._clock(),))

    def settle(self, conn: sqlite3.Connection, reservation: Reservation, actual: Impact, *, failed: bool) -> None:
        """Replace the reservation by what the call did; runs inside the audit transaction."""
        now = self._clock()
        if reservation.row_id:
            conn.execute("DELETE FROM reservations WHERE id = ?", (reservation.row_id,))
        if actual.files or actual.api_calls or actual.usd:
            conn.execute(
                "INSERT INTO usage_by_minute (minute, files, api_calls, usd) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (minute) DO UPDATE SET files = files + excluded.files, "
                "api_calls = api_calls + excluded.api_calls, usd = usd + excluded.usd",
                (int(now // 60), actual.files, actual.api_calls, actual.usd),
            )
        if failed:
            (failures,) = conn.execute(
                "UPDATE breaker SET consecutive_failures = consecutive_failures + 1 WHERE id = 1 "
                "RETURNING consecutive_failures"
            ).fetchone()
            if reservation.trial or int(failures) >= self.config.breaker_consecutive_failures:
                conn.execute("UPDATE breaker SET state = 'open', opened_at = ? WHERE id = 1", (now,))
        else:
            conn.execute("UPDATE breaker SET consecutive_failures = 0 WHERE id = 1 AND consecutive_failures != 0")
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
        with self._db.read() as conn:
            calls, files, usd = self._window_sums(conn, now)

        def budget(name: str, used: float, limit: float, window: int) -> Budget:
            return Budget(name=name, used=used, limit=limit, remaining=max(limit - used, 0), window_s=window)

        return [
            budget("calls_per_minute", calls, c.calls_per_minute, 60),
            budget("file_mods_per_hour", files, c.file_mods_per_hour, 3600),
            budget("usd_per_hour", usd, c.usd_per_hour, 3600),
        ]
