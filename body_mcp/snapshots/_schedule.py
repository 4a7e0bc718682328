"""Snapshot scheduling: retention (which snapshots to keep) and the hourly loop a body runs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from ._store import snapshot_time

if TYPE_CHECKING:
    from ._snapshotter import Snapshotter


def retained(ids: Sequence[str], *, now: datetime, keep_last: int = 48, keep_daily: int = 7) -> set[str]:
    """The snapshots retention keeps: the `keep_last` newest, plus the newest of each of the last `keep_daily` days."""
    dated = sorted((t, i) for i in ids if (t := snapshot_time(i)) is not None)
    keep = {i for _, i in dated[-keep_last:]} if keep_last > 0 else set[str]()
    days: set[object] = set()
    for taken, snapshot_id in reversed(dated):
        day = taken.date()
        if 0 <= (now.date() - day).days < keep_daily and day not in days:
            days.add(day)
            keep.add(snapshot_id)
    return keep


def seconds_until_due(ids: Sequence[str], interval_s: float, *, now: datetime | None = None) -> float:
    """Time left until the next snapshot, counted from the newest of `ids` (so restarts keep the rhythm)."""
    last = snapshot_time(ids[-1]) if ids else None
    if last is None:
        return 0.0
    age = ((now or datetime.now(UTC)) - last).total_seconds()
    return interval_s if age < 0 else max(interval_s - age, 0.0)


async def run_hourly(
    snapshotter: Snapshotter,
    *,
    stop: anyio.Event,
    interval_s: float = 3600.0,
    pause: AbstractAsyncContextManager[object] | None = None,
    on_error: Callable[[Exception], object] | None = None,
) -> None:
    """Snapshot and prune every `interval_s` until `stop` is set; for the body's lifespan.

    `pause` (e.g. the body's workspace lock) is held while a snapshot is taken, so no tool
    changes files mid-walk. Failures go to `on_error` and the loop carries on: a missed
    snapshot must not take the body down.
    """
    while not stop.is_set():
        with anyio.move_on_after(seconds_until_due(snapshotter.store.ids(), interval_s)):
            await stop.wait()
        if stop.is_set():
            return
        try:
            async with pause if pause is not None else contextlib.nullcontext():
                await anyio.to_thread.run_sync(lambda: snapshotter.create(reason="hourly"))
            await anyio.to_thread.run_sync(snapshotter.prune)
        except Exception as exc:  # noqa: BLE001 - handed to on_error (logged): the body keeps serving (a name the manifest could not hold killed it)
            if on_error is not None:
                on_error(exc)
            # Do not spin on a persistent failure: wait a full interval before trying again.
            with anyio.move_on_after(interval_s):
                await stop.wait()
