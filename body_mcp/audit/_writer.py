"""AuditWriter: a serving body's audit writes, in one worker thread, so the event loop never waits on the flock.

Every write the store does for a tool call (the append, its journal sync, the commit and anchor
owed after the reply) runs in the writer's one thread, in the order asked. That order is what
shares a sync between concurrent calls: two appends queued before the first one's sync are both
made durable by it (`AuditStore.sync_journal`), and the second sync costs nothing. The one
exception is an append that needs no waiting (the locks free, nothing to pay first, no other
call's append queued): it is journaled, and synced, on the event loop's thread itself
(`AuditStore.try_append_now`), which costs less than the round trip to the thread and back.

The commit and anchor owed after a reply are asked for at once after a mutating call's reply
(`finish_soon()`), or `LAZY_FINISH_S` after a read's (its event is `lazy`: reads share one commit);
a caller that must know whether they worked awaits `settled()` first. What a mutating call's finish
leaves owed (with power-loss durability: the database's sync, then the anchor's write and sync) is
settled at most `ANCHOR_SYNC_AT_MOST_S` later, once for every commit made meanwhile, in a second
thread, so that no call's append waits behind those syncs (`AuditStore.finish` says why that is safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from .._db import Writes
from ._event import Appended, EventDraft
from ._store import ANCHOR_SYNC_AT_MOST_S, AuditStore

logger = logging.getLogger("body_mcp.audit")
_T = TypeVar("_T")

LAZY_FINISH_S = 0.05
"""How long a read's commit may wait for others to share it (a mutating call's, or more reads')."""


class AuditWriter:
    def __init__(self, store: AuditStore, *, on_committed: Callable[[], object] | None = None) -> None:
        self._store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swarm-audit")
        self._settler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swarm-audit-sync")
        """Where `AuditStore.settle` runs: not in the writer's thread, where the next call's append would queue
        behind its syncs (it takes the store's locks only around what must not interleave with an append)."""
        self._finishing: Future[None] | None = None
        self._finishing_lazy = False
        """`_finishing` is a batch of reads' commit (a timer's), not one a mutating call's reply asked for."""
        self._timer: asyncio.TimerHandle | None = None
        self._settle_pending = False
        """A settle is timed in the settler's thread (`_settle_when_due`): set once by the finish that left it owed,
        never put off; timed there, not on the event loop, so that a write's finish does not wake the loop."""
        self._wake_settler = threading.Event()
        """Ends a timed settle's wait early (a batch of reads' settle, due at once; closing)."""
        self._on_committed = on_committed
        """Told when what was owed is in the database (a linked body ships it): from the thread that committed it,
        the writer's (no wake-up of the event loop for each commit) or the event loop's; so it must be thread-safe."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._counting = threading.Lock()
        self._appends_asked = 0
        """Calls' appends submitted..."""
        self._appends_begun = 0
        """...and begun (or cancelled before they began): when they are equal, no append waits in the queue."""

    async def append(
        self,
        draft: EventDraft,
        *,
        writes: Writes | None,
        durable: bool,
        lazy: bool,
        happened: bool = True,
        alone: bool = True,
    ) -> Appended:
        """Journal `draft` (its commit and anchor owed), then, if `durable`, sync it: returns once the event is
        durable with the configured durability (`durable`), or journaled (a read's, when not). Not `alone` (other
        calls of this body in flight), a durable event goes to the writer's thread, where their appends share
        its sync."""
        self._loop = asyncio.get_running_loop()
        store = self._store
        if lazy or (alone and self._appends_asked == self._appends_begun):
            # When the locks are free, nothing is owed that must be paid first and (a mutating call's) no other
            # call is in flight or waits in the writer's queue to share its sync: journaled here, and synced here, on
            # the event loop's thread, without the round trip to the writer's thread and back (its two wake-ups
            # and GIL hand-overs cost more than the sync blocks the loop: ~0.25 ms on a quiet disk). Never
            # waiting: a lock held elsewhere, or another thread's journal sync under way, sends it to the thread.
            journaled = store.try_append_now(draft, writes, lazy=lazy)
            if journaled is not None:
                if durable and not store.try_sync_journal(journaled.seq):
                    seq = journaled.seq
                    await self._run(lambda: store.sync_journal(seq))
                return journaled

        def work() -> tuple[Appended, bool]:
            self._begun()
            journaled = store.append(draft, writes=writes, finish_later=True, happened=happened, lazy=lazy)
            if durable and self._appends_asked == self._appends_begun:
                # No append waits behind this one to share its sync: synced now, without a second round trip.
                store.sync_journal(journaled.seq)
                return journaled, True
            return journaled, False

        with self._counting:
            self._appends_asked += 1
        future = self._executor.submit(work)
        future.add_done_callback(self._begun_if_cancelled)
        event, synced = await asyncio.shield(asyncio.wrap_future(future))
        if durable and not synced:  # (after the appends queued behind it: one sync for them all)
            seq = event.seq
            await self._run(lambda: store.sync_journal(seq))
        return event

    def _begun(self) -> None:
        with self._counting:
            self._appends_begun += 1

    def _begun_if_cancelled(self, future: Future[tuple[Appended, bool]]) -> None:
        if future.cancelled():  # (never ran: its caller was cancelled while it waited in the queue)
            self._begun()

    async def append_now(self, draft: EventDraft, *, writes: Writes | None, happened: bool = True) -> Appended:
        """Append `draft` durable, committed and anchored (no reply to wait for): a cancelled call's event (its
        caller shields the await), an admin event of a coroutine. Tells of the commit."""
        self._loop = asyncio.get_running_loop()
        store = self._store
        event = await self._run(lambda: store.append(draft, writes=writes, happened=happened))
        self._committed()
        return event

    def append_waiting(self, draft: EventDraft, *, writes: Writes | None = None) -> Appended:
        """`append_now` for a caller that is not a coroutine (a snapshot in a worker thread, an admin action):
        in the writer's thread, in order with the calls' events, waited for; durable, committed and anchored
        when it returns. A caller on the event loop's own thread waits there (only tests do)."""
        store = self._store
        event = self._executor.submit(lambda: store.append(draft, writes=writes)).result()
        self._committed()
        return event

    def bind(self) -> None:
        """Remember the running event loop (where a read's commit is timed, and a settle is timed from)."""
        self._loop = asyncio.get_running_loop()

    def finish_soon(self, *, lazy: bool) -> None:
        """Ask for the commit and anchor owed: now (after a mutating call's reply), or a little later (a read's)."""
        if self._closed:
            return
        loop = self._loop
        if not lazy or loop is None or loop.is_closed():  # (no loop left to time it: at once)
            self._cancel_timer()
            self._submit_finish(lazy=lazy)
        elif self._timer is None:
            self._timer = loop.call_later(LAZY_FINISH_S, self._lazy_due)

    @property
    def settling(self) -> bool:
        """A finish a mutating call's reply asked for is under way (`settled()` would wait for it)."""
        finishing = self._finishing
        return finishing is not None and not self._finishing_lazy and not finishing.done()

    async def settled(self) -> None:
        """Wait for a finish a mutating call's reply asked for (its failure shows in `AuditStore.failing`); not for
        a batch of reads' (a call waiting for that would wait on a commit it does not need)."""
        finishing = self._finishing
        if finishing is not None and not self._finishing_lazy and not finishing.done():
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(finishing)

    async def finish(self) -> None:
        """Commit and anchor what is owed, now; a failure is raised."""
        self._cancel_timer()
        await self._run(self._store.finish)
        self._committed()

    def close(self) -> None:
        """Finish the queued work (the store's `close` commits what is still owed)."""
        self._closed = True
        self._cancel_timer()
        self._wake_settler.set()  # (a timed settle ends its wait: the store's close settles what is owed)
        self._settler.shutdown(wait=True)
        self._executor.shutdown(wait=True)

    def _lazy_due(self) -> None:
        self._timer = None
        self._submit_finish(lazy=True)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _submit_finish(self, *, lazy: bool) -> None:
        if self._closed or not self._store.owed:
            return
        loop = self._loop
        # No finish syncs under the store's locks when there is a loop to time the settle that does: a mutating
        # call's settle comes at most `ANCHOR_SYNC_AT_MOST_S` later; a batch of reads' (due already: they waited
        # `LAZY_FINISH_S` for it) at once, in the settler's thread. So the locks are held for the commit alone, and
        # a read arriving meanwhile is journaled on the event loop (`try_append_now`) instead of waiting behind
        # two syncs in the writer's thread (what made the reads' p99).
        future = self._executor.submit(partial(self._store.finish, anchor_sync=loop is None))
        self._finishing, self._finishing_lazy = future, lazy
        future.add_done_callback(self._finished)  # (in the writer's thread: no wake-up of the event loop)
        if loop is not None:
            future.add_done_callback(self._settle_now if lazy else self._settle_soon)

    def _settle_now(self, future: Future[None]) -> None:
        """After a batch of reads' commit (in the writer's thread): what it left owed, settled now (a settle timed
        already ends its wait)."""
        if self._closed or future.cancelled() or future.exception() is not None or not self._store.sync_owed:
            return
        if self._settle_pending:
            self._wake_settler.set()
        with contextlib.suppress(RuntimeError):  # (closing: the store's close settles what is owed)
            self._settler.submit(self._store.settle).add_done_callback(_log_failure)

    def _settle_soon(self, future: Future[None]) -> None:
        """After a mutating call's commit (in the writer's thread): what it left owed, settled in the settler's thread
        at most `ANCHOR_SYNC_AT_MOST_S` from now, unless a settle is timed already."""
        if self._closed or not self._store.sync_owed:
            return
        with self._counting:
            if self._settle_pending:
                return
            self._settle_pending = True
        try:
            job = self._settler.submit(self._settle_when_due, time.monotonic() + ANCHOR_SYNC_AT_MOST_S)
        except RuntimeError:  # (closing: the store's close settles what is owed)
            return
        # Not `_finishing`: no call waits for this sync (a failure sets `failing`, and the next call retries it).
        job.add_done_callback(_log_failure)

    def _settle_when_due(self, due: float) -> None:
        remaining = due - time.monotonic()
        if remaining > 0:
            self._wake_settler.wait(remaining)
        self._wake_settler.clear()
        with self._counting:
            self._settle_pending = False  # (a commit from now on times a settle of its own)
        if not self._closed:
            self._store.settle()

    def _finished(self, future: Future[None]) -> None:
        _log_failure(future)
        self._committed()

    def _committed(self) -> None:
        if self._on_committed is not None:
            try:
                self._on_committed()
            except Exception:
                logger.exception("telling of committed audit events failed")

    async def _run(self, work: Callable[[], _T]) -> _T:
        # Cancelled while waiting, the work still goes on in the thread (an append is never half done, nor
        # dropped from the queue: a call that ran keeps its event).
        return await asyncio.shield(asyncio.wrap_future(self._executor.submit(work)))


def _log_failure(future: Future[None]) -> None:
    exc = future.exception()
    if exc is not None:  # (retried by the next call, which is refused until it works)
        logger.error("the audit trail could not commit or anchor what it owes: %s", exc)
