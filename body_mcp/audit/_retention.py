"""Retention: events older than the retention are deleted through a checkpoint that keeps the chain verifiable.

A prune appends a `checkpoint` event naming the last event it deletes (`through_seq`) and that event's
MAC (`mac_at`), and deletes them in the checkpoint's transaction; verify then starts the chain from that
MAC (`_verify`). The database's delete trigger lets only such a delete through, by a mark written in the
same transaction. `keep_retention` prunes at a serving body's start and then daily, and checks the chain
each time (`AuditStore.check`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from .._db import StateDB, Writes
from ._event import Appended, EventDraft, new_action_id

if TYPE_CHECKING:
    from ._store import AuditStore

_MAX_SEQ = 2**63 - 1  # SQLite's largest integer


def prune_trail(
    db: StateDB,
    append: Callable[..., Appended],
    *,
    retention_days: int,
    now: datetime | None,
    agent: str,
    through_at_most: int | None,
) -> int:
    """`AuditStore.prune`, with the store's database and its `append`."""
    cutoff = ((now or datetime.now(UTC)) - timedelta(days=retention_days)).isoformat(timespec="microseconds")
    limit = _MAX_SEQ if through_at_most is None else through_at_most
    with db.read() as conn:
        row = conn.execute(
            "SELECT seq, mac FROM audit_events WHERE ts < ? AND seq < (SELECT MAX(seq) FROM audit_events) "
            "AND seq <= ? ORDER BY seq DESC LIMIT 1",
            (cutoff, limit),
        ).fetchone()
    if row is None:
        return 0
    through_seq, mac_at = int(row[0]), str(row[1])

    draft = EventDraft(
        id=new_action_id(),
        kind="checkpoint",
        agent=agent,
        session="retention",
        rationale=f"retention: events older than {retention_days} days are pruned",
        outcome="ok",
        detail={"through_seq": through_seq, "mac_at": mac_at, "cutoff": cutoff},
    )
    # The mark is what lets the delete trigger pass, for these events only (never the head: the checkpoint
    # is chained onto it in the same transaction).
    writes = Writes()
    writes.add("INSERT INTO audit_prune_marks (through_seq) VALUES (?)", (through_seq,))
    writes.add("DELETE FROM audit_events WHERE seq <= ?", (through_seq,))
    append(draft, writes=writes)
    return writes.rowcounts[1] if writes.rowcounts else 0


async def keep_retention(
    store: AuditStore,
    *,
    retention_days: int,
    stop: anyio.Event,
    interval_s: float = 86_400.0,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    through_at_most: Callable[[], int | None] = lambda: None,
    on_error: Callable[[Exception], object] | None = None,
) -> None:
    """Prune past the retention at start and then every `interval_s` until `stop`, and check the chain after each
    prune; for a serving body's lifespan.

    Each prune that deletes anything leaves its checkpoint event; one with nothing to delete writes nothing.
    `through_at_most` is asked each time (a linked body: what its brain holds). A failure goes to `on_error`
    and the loop carries on: retention must not take the body down.
    """

    def prune() -> None:
        store.prune(retention_days=retention_days, now=now(), through_at_most=through_at_most())
        # And what was appended since the last check is verified: the next start has that much less to read, and
        # a chain tampered with while the body runs is found (its mutating calls refused from then on).
        store.check()

    while not stop.is_set():
        try:
            await anyio.to_thread.run_sync(prune)
        except Exception as exc:  # noqa: BLE001 - handed to on_error (logged): the body keeps serving
            if on_error is not None:
                on_error(exc)
        with anyio.move_on_after(interval_s):
            await stop.wait()
