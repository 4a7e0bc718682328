"""The kill switch as an agent runner obeys it: engaged by the brain's kill, or by failsafe when the brain is out of
reach; released only by the brain's resume (or its return).

Everything that spends runs inside `gate.watch()`: the moment the gate engages, every such scope is cancelled in the
same loop iteration (an in-flight model request is aborted, no retry follows), and nothing new starts until
`released()` returns.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager

import anyio


class KillGate:
    def __init__(self) -> None:
        self._reasons: dict[str, str] = {}
        self._scopes: set[anyio.CancelScope] = set()
        self._released = anyio.Event()
        self._released.set()

    @property
    def engaged(self) -> bool:
        return bool(self._reasons)

    @property
    def reasons(self) -> frozenset[str]:
        """The sources holding it engaged ("brain", "failsafe")."""
        return frozenset(self._reasons)

    @property
    def reason(self) -> str:
        return "; ".join(f"{source}: {why}" for source, why in sorted(self._reasons.items()))

    def engage(self, source: str, reason: str) -> None:
        """Engage for `source` ("brain", "failsafe"): cancel every watched scope now."""
        self._reasons[source] = reason or source
        if self._released.is_set():
            self._released = anyio.Event()
        for scope in list(self._scopes):
            scope.cancel()

    def release(self, source: str) -> None:
        self._reasons.pop(source, None)
        if not self._reasons:
            self._released.set()

    @contextmanager
    def watch(self) -> Generator[anyio.CancelScope]:
        """A cancel scope cancelled the moment the gate engages (at once if it is engaged already)."""
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                if self.engaged:
                    scope.cancel()
                yield scope
            finally:
                self._scopes.discard(scope)

    async def released(self) -> None:
        while self._reasons:
            await self._released.wait()
