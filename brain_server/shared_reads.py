"""Reads that every open dashboard asks for at once, computed once: `SharedReads`.

Each open page polls the KPIs and the usage totals on the same timer; pages opened together (and a page's own two
KPI windows) ask for the same thing within moments. A read asked for while the same one is being computed waits for
that computation and gets its result, instead of scanning the same tables again next to it. Nothing is kept once a
computation ends: a read that starts after another ended computes afresh, so every answer is as of a moment during
the request (a follower's, as of when the computation it joined began).
"""

from __future__ import annotations

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

    def __init__(self) -> None:
        self._flights: dict[K, _Flight[V]] = {}

    async def read(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """`compute()`'s result, or that of the computation of `key` already under way. A computation whose
        caller is cancelled (a page that closed) leaves those waiting on it to compute for themselves."""
        while (flight := self._flights.get(key)) is not None:
            await flight.done.wait()
            if flight.finished:
                if flight.error is not None:
                    raise flight.error
                return cast(V, flight.value)  # (finished without an error: its value is set)
        flight = self._flights[key] = _Flight[V]()
        try:
            flight.value = value = await compute()
            flight.finished = True
            return value
        except Exception as exc:
            flight.error = exc
            flight.finished = True
            raise
        finally:
            del self._flights[key]
            flight.done.set()
