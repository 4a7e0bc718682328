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

    def __init__(self, *, max_age_s: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._flights: dict[K, _Flight[V]] = {}
        self._max_age_s = max_age_s
        self._clock = clock
        self._kept: dict[K, tuple[float, V]] = {}

    async def read(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """`compute()`'s result, or that of the computation of `key` already under way. A computation whose
        caller is cancelled (a page that closed) leaves those waiting on it to compute for themselves. With
        `max_age_s`: a result whose computation began less than `max_age_s` ago, if one is kept."""
        if (kept := self._kept.get(key)) is not None and self._clock() - kept[0] < self._max_age_s:
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
        for old in [k for k, (at, _) in self._kept.items() if now - at >= self._max_age_s]:
            del self._kept[old]
        self._kept[key] = (began, value)
