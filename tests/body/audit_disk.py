"""What the audit durability tests share (`test_audit_unsynced_commits.py`, `test_review_audit17_durability.py`):
a body only the test settles, the events a database holds, a write committed but not settled, and a disk that keeps
only what was synced (`with Disk(body, monkeypatch):` ends in a power loss)."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

from body_mcp import Body
from body_mcp._db import StateDB
from body_mcp.audit import _writer as audit_writer  # pyright: ignore[reportPrivateUsage]

from ..conftest import make_body

_PAGE = 4096

NO_WINDOW = {"policy": {"cumulative_window_s": 0}}
"""(No approval window: its own transactions, synced, would sync the unsynced commits before them as well, in ways
the disk model here does not follow.)"""


def unsettled_body(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any] | None = None
) -> Body:
    """A body whose commits are settled (the database synced, the anchor written) only when the test says, the
    writer's timer an hour away; its replies taken as flushed, so a call's commit is not held for its reply."""
    monkeypatch.setattr(audit_writer, "ANCHOR_SYNC_AT_MOST_S", 3600.0)
    body = make_body(workspace, home, config)
    body.replies.flushed = True
    return body


def committed(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [str(row[0]) for row in conn.execute("SELECT id FROM audit_events ORDER BY seq")]
    finally:
        conn.close()


async def write_committed(body: Body, name: str) -> str:
    """A mutating call, its reply written and the commit it asks for done (not the settle: only the test's)."""
    out = await body.call_tool("write_file", {"path": name, "content": f"{name}\n", "rationale": "r"})
    assert not out.is_error, out.structured
    body.replies.run()
    await body.audit_writer.settled()
    return out.action_id


class Disk:
    """What the disk holds of the database's files: their image as of their last successful sync.

    `fail_next_sync()` makes the next `StateDB.sync_wal` fail (EIO, ENOSPC: a full or failing disk) the way Linux
    does: the pages dirty at that moment may be dropped from the writeback (marked clean, never written) and a later
    sync succeeds without writing them, unless they were written again since (what PostgreSQL learnt as
    "fsyncgate"; the store already assumes it of the anchor, `_anchor_sync_failed`)."""

    def __init__(self, body: Body, monkeypatch: pytest.MonkeyPatch) -> None:
        self.body = body
        self.files = (body.paths.db, Path(f"{body.paths.db}-wal"))
        self.durable: dict[Path, bytes] = {path: _read(path) for path in self.files}
        self._failing = False
        self._dropped: dict[Path, bytes] | None = None
        """The files as they were when a sync failed: pages still so were never written."""
        real = StateDB.sync_wal

        def sync_wal(db: StateDB) -> None:
            if self._failing:
                self._failing = False
                self._dropped = {path: _read(path) for path in self.files}
                raise OSError(errno.EIO, "Input/output error")
            real(db)
            now = {path: _read(path) for path in self.files}
            if self._dropped is not None:
                now = {path: _merge(self.durable[path], self._dropped[path], now[path]) for path in self.files}
                self._dropped = None
            self.durable = now

        monkeypatch.setattr(StateDB, "sync_wal", sync_wal)
        real_rewrite = StateDB.rewrite_durably

        def rewrite_durably(db: StateDB) -> bool:
            done = real_rewrite(db)
            if done:  # (every page written afresh and synced: what was dropped before is on disk now)
                self._dropped = None
                self.durable = {path: _read(path) for path in self.files}
            return done

        monkeypatch.setattr(StateDB, "rewrite_durably", rewrite_durably)

    def fail_next_sync(self) -> None:
        self._failing = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.power_loss()

    def power_loss(self) -> None:
        """The body stops where it is; the database's files go back to their durable image, the journal and anchor
        stay as written."""
        body = self.body
        body.audit_writer.close()
        store = body.audit
        store._closed = True  # pyright: ignore[reportPrivateUsage]
        for fd in (store._anchor_fd, store._journal_fd, store._lock_fd):  # pyright: ignore[reportPrivateUsage]
            os.close(fd)
        body.db.close()  # (every connection of the process: its own and `read_now`'s)
        for path, data in self.durable.items():
            path.write_bytes(data)
        Path(f"{body.paths.db}-shm").unlink(missing_ok=True)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _merge(old: bytes, dropped: bytes, now: bytes) -> bytes:
    """`now` as a sync after a failed one makes it durable: a page unchanged since the failure that was dirty then
    stays as it was on disk before it (zeros past the old end)."""
    out = bytearray(now)
    for at in range(0, len(now), _PAGE):
        page = now[at : at + _PAGE]
        if page == dropped[at : at + _PAGE] and page != old[at : at + _PAGE]:
            before = old[at : at + _PAGE]
            out[at : at + len(page)] = before + bytes(len(page) - len(before))
    return bytes(out)
