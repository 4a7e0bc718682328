"""Reads that every open dashboard asks for at once, computed once: `SharedReads`.

Each open page polls the KPIs and the usage totals on the same timer; pages opened together (and a page's own two
KPI windows) ask for the same thing within moments. A read asked for while the same one is being computed waits for
that computation and gets its result, instead of scanning the same tables again next to it. Nothing is kept once a
computation ends: a read that starts after another ended computes afresh, so every answer is as of a moment during
the request (a follower's, as of when the computation it joined began) — unless made with `max_age_s`: then a result
is also kept that long from when its computation began, and a read of the same key meanwhile gets it
(`dashboard.snapshots`: the pages' polls).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

import anyio

MAX_KEPT = 256
"""The most results kept at once (`max_age_s`): the keys are what callers ask (a query string), so without a bound
one caller asking many distinct ones within `max_age_s` would keep them all; the oldest kept goes first."""

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(eq=False)
class _Flight(Generic[V]):
    done: anyio.Event = field(default_factory=anyio.Event)
    value: V | None = None
    error: Exception | None = None
    finished: bool = False


class SharedReads(Generic[K, V]):
    """Concurrent reads of the same key share one computation (its result, or its error)."""

    def __init__(
        self,
        *,
        max_age_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        max_kept: int = MAX_KEPT,
        weigh: Callable[[V], int] | None = None,
        max_weight: int = 0,
    ) -> None:
        """`max_kept` results at most are kept, and with `weigh` (a result's size) `max_weight` of them in all: a
        result heavier than that alone is not kept."""
        self._flights: dict[K, _Flight[V]] = {}
        self._max_age_s = max_age_s
        self._max_kept = max_kept
        self._weigh = weigh
        self._max_weight = max_weight
        self._weight = 0
        self._clock = clock
        self._kept: dict[K, tuple[float, V]] = {}

    async def read(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """`compute()`'s result, or that of the computation of `key` already under way. A computation whose
        caller is cancelled (a page that closed) leaves those waiting on it to compute for themselves. With
        `max_age_s`: a result whose computation began less than `max_age_s` ago, if one is kept."""
        # (an age below 0 is a clock stepped back: not a fresh result, or it would be served until the clock caught up)
        if (kept := self._kept.get(key)) is not None and 0 <= self._clock() - kept[0] < self._max_age_s:
            return kept[1]
        while (flight := self._flights.get(key)) is not None:
            await flight.done.wait()
            if flight.finished:
                if flight.error is not None:
                    raise flight.error
                return cast(V, flight.value)  # (finished without an error: its value is set)
        flight = self._flights[key] = _Flight[V]()
        began = self._clock()
        try:
            flight.value = value = await compute()
            flight.finished = True
            if self._max_age_s > 0:
                self._keep(key, began, value)
            return value
        except Exception as exc:
            flight.error = exc
            flight.finished = True
            raise
        finally:
            del self._flights[key]
            flight.done.set()

    def _keep(self, key: K, began: float, value: V) -> None:
        # (what aged out goes as each result is kept: the dict holds the keys read within `max_age_s`, no more)
        now = self._clock()
        for old in [k for k, (at, _) in self._kept.items() if not 0 <= now - at < self._max_age_s]:
            self._drop(old)
        self._drop(key)
        weight = 0 if self._weigh is None else self._weigh(value)
        if self._weigh is not None and weight > self._max_weight:
            return
        # (insertion order: the oldest kept goes first)
        while self._kept and (len(self._kept) >= self._max_kept or self._weight + weight > self._max_weight > 0):
            self._drop(next(iter(self._kept)))
        self._kept[key] = (began, value)
        self._weight += weight

    def _drop(self, key: K) -> None:
        if (kept := self._kept.pop(key, None)) is not None and self._weigh is not None:
            self._weight -= self._weigh(kept[1])

    @property
    def kept(self) -> int:
        """How many results are kept now."""
        return len(self._kept)

    @property
    def weight(self) -> int:
        """The kept results' weight in all (`weigh`; 0 without)."""
        return self._weight
