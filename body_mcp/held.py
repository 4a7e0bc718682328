"""Staged command runs held for the approval they need (PRODUCT.md, "Approval rules").

When a command's measured impact needs an approved decision, its staged set is kept until
the decision's deadline, so that the approved retry applies exactly what was reviewed,
without running the command again. Held runs occupy memory (their staged sets live on a
tmpfs): they are capped by count and by bytes (`[sandbox] max_held_runs`, `max_held_mb`),
the oldest discarded first, and each is discarded at its deadline.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox import StagedRun
from shared_protocol import CommandChange

from . import _fsops
from ._fsops import EntryState
from .confinement import Workspace
from .staging import SortedChanges

HeldKey = tuple[tuple[str, ...], str]
"""A command's argv and working directory: the retry that applies a held run names the same."""


@dataclass(kw_only=True)
class HeldRun:
    staged: StagedRun
    sorted_: SortedChanges
    changes: list[CommandChange]
    states: dict[str, EntryState]
    """What the workspace held at each path when the command ran: applying later requires it unchanged."""
    expires: float

    def unchanged(self, workspace: Workspace) -> bool:
        for path, state in self.states.items():
            current, _ = _fsops.read_entry(workspace, tuple(path.split("/")))
            if (current.type, current.sha256, current.target) != (state.type, state.sha256, state.target):
                return False
        return True


class HeldRuns:
    """A body's held runs, by key; at most `max_count` at a time, holding at most `max_bytes` together."""

    def __init__(self, *, max_count: int, max_bytes: int) -> None:
        self._runs: dict[HeldKey, HeldRun] = {}
        self._max_count = max_count
        self._max_bytes = max_bytes

    def _bytes(self) -> int:
        return sum(run.staged.result.staged_bytes for run in self._runs.values())

    def __len__(self) -> int:
        return len(self._runs)

    def take(self, key: HeldKey) -> HeldRun | None:
        return self._runs.pop(key, None)

    async def put(self, key: HeldKey, run: HeldRun) -> bool:
        """Hold `run`, replacing one under the same key and discarding the oldest beyond the caps. False (and
        nothing held: the caller discards it) when it alone is over them."""
        if (previous := self._runs.pop(key, None)) is not None:
            await previous.staged.aclose()
        if self._max_count < 1 or run.staged.result.staged_bytes > self._max_bytes:
            return False
        self._runs[key] = run
        while len(self._runs) > self._max_count or self._bytes() > self._max_bytes:
            oldest = next(iter(self._runs))
            await self._runs.pop(oldest).staged.aclose()
        return True

    def discard_all(self) -> None:
        """Discard every held run (the body is closing: no retry can apply one any more). Their staging areas are
        removed in the background (`sandbox.wait_discarded`): a closed body leaves none behind in the staging root,
        where only a later body's first run would remove them, and only once this process is gone."""
        runs, self._runs = list(self._runs.values()), {}
        for run in runs:
            run.staged.discard_soon()

    async def discard_expired(self, now: float) -> None:
        for key in [k for k, v in self._runs.items() if v.expires <= now]:
            await self._runs.pop(key).staged.aclose()
