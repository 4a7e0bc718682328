"""A small time-bounded cache for what the network providers fetch: a secret is reused for `[secrets] cache_ttl_s`,
then fetched again (so a rotated secret is picked up), and never written anywhere."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlCache(Generic[T]):
    """Values by key, each good for `ttl_s` after it was fetched (0: nothing kept)."""

    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._values: dict[str, tuple[T, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, fetch: Callable[[], T]) -> T:
        """The value kept for `key` if still fresh, else `fetch()`'s (kept; an exception keeps nothing)."""
        now = self._clock()
        with self._lock:
            kept = self._values.get(key)
            if kept is not None and now < kept[1]:
                return kept[0]
        value = fetch()
        if self._ttl_s > 0:
            with self._lock:
                self._values[key] = (value, now + self._ttl_s)
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
