"""Adversarial review 19b: a failed `fdatasync` of the audit journal, on the event loop's path (`try_sync_journal`,
a lone mutating call) and on the writer thread's (`sync_journal`, calls in flight together).

Linux reports a writeback error once: the pages dirty at the failed sync are marked clean, and a later sync
succeeds without writing them unless they were written again since ("fsyncgate"). So a record whose sync failed
may never reach the disk, and the next call's successful sync must not be taken to cover it.

Run: python3 -m uv run --frozen pytest -n 0 tests/review19b/test_journal_sync_failed.py
"""

from __future__ import annotations

import errno
import os
from contextlib import closing
from pathlib import Path

import pytest

from body_mcp import Body
from tests.body.audit_disk import NO_WINDOW, Disk, unsettled_body, write_committed
from tests.conftest import make_body

pytestmark = pytest.mark.anyio

_PAGE = 4096


class JournalDisk:
    """What the disk holds of the audit journal: its image as of its last successful `fdatasync`, a failed one's
    dirty pages dropped (kept in the cache, never written) unless written again before a later sync."""

    def __init__(self, body: Body, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path = body.audit._files.journal  # pyright: ignore[reportPrivateUsage]
        self.durable = self.path.read_bytes()
        self._fail = 0
        self._dropped: bytes | None = None
        self.failed = 0
        real = os.fdatasync

        def fdatasync(fd: int) -> None:
            if not self._is_journal(fd):
                real(fd)
                return
            now = self.path.read_bytes()
            if self._fail:
                self._fail -= 1
                self.failed += 1
                self._dropped = now
                raise OSError(errno.EIO, "Input/output error")
            real(fd)
            if self._dropped is not None:
                now = _merge(self.durable, self._dropped, now)
                self._dropped = None
            self.durable = now

        monkeypatch.setattr(os, "fdatasync", fdatasync)

    def _is_journal(self, fd: int) -> bool:
        try:
            st = os.fstat(fd)
        except OSError:
            return False
        ours = self.path.stat()
        return (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino)

    def fail_next_sync(self) -> None:
        self._fail = 1

    def power_loss(self) -> None:
        self.path.write_bytes(self.durable)


def _merge(old: bytes, dropped: bytes, now: bytes) -> bytes:
    """`now` as a sync after a failed one makes it durable: a page dirty at the failure and unchanged since stays
    as it was on disk before it (zeros past the old end)."""
    out = bytearray(now)
    for at in range(0, len(now), _PAGE):
        page = now[at : at + _PAGE]
        if page == dropped[at : at + _PAGE] and page != old[at : at + _PAGE]:
            before = old[at : at + _PAGE]
            out[at : at + len(page)] = before + bytes(len(page) - len(before))
    return bytes(out)


async def _call(body: Body, name: str, rationale: str) -> str | None:
    """A write's action id if its reply says it was done (its event durable), else None (an error, or the call
    raised: what the server turns into an error reply)."""
    try:
        out = await body.call_tool("write_file", {"path": name, "content": f"{name}\n", "rationale": rationale})
    except OSError:
        return None
    return None if out.is_error else out.action_id


async def _acknowledged_after_a_failed_journal_sync(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch, *, together: bool
) -> None:
    body = unsettled_body(workspace, home, monkeypatch, NO_WINDOW)
    disk = Disk(body, monkeypatch)
    await write_committed(body, "a.txt")
    body.audit.settle()  # (the database synced, the journal emptied: b's record is written at its start)
    journal = JournalDisk(body, monkeypatch)
    journal.fail_next_sync()
    # b's record spans pages that c's record never writes again (its rationale ~12 KB).
    b = await _call(body, "b.txt", "r" * 12_000)
    assert journal.failed == 1, "the journal's sync was not asked for"
    body.replies.run()
    await body.audit_writer.settled()
    if together:
        # c goes the writer thread's way (another call in flight when it appends).
        body.pipeline._auditor.in_flight += 1  # pyright: ignore[reportPrivateUsage]
    try:
        c = await _call(body, "c.txt", "r")
    finally:
        if together:
            body.pipeline._auditor.in_flight -= 1  # pyright: ignore[reportPrivateUsage]
    acknowledged = [action for action in (b, c) if action is not None]
    assert acknowledged, "neither call was acknowledged: nothing to lose"
    disk.power_loss()  # (the body stops where it is: the database back to its last sync)
    journal.power_loss()
    with closing(make_body(workspace, home, NO_WINDOW)) as after:
        report = after.audit.verify()
        ids = [e.id for e in after.audit.tail(10)]
        lost = [action for action in acknowledged if action not in ids]
        assert not lost, f"acknowledged events lost after a power loss: {lost} (trail: {ids})"
        assert report.ok, report.summary()


async def test_a_lone_calls_failed_journal_sync_is_not_trusted_to_a_later_sync(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HIGH (fixed). Reproduce: write a, settle; fail the next journal fdatasync; write b (a lone call: journaled
    and synced on the event loop, `try_sync_journal` raises EIO; its event stays owed and is committed, unsynced,
    after the reply); write c (lone: its record after b's, synced: success); power loss. Before the fix c's reply
    said durable but c was lost: b's first pages never reached the disk, so c's record did not continue the chain
    and was not replayed. Now a failed journal sync makes the store `failing` and no later journal sync is
    trusted: the next call waits for a settle that syncs the database (holding b) first."""
    await _acknowledged_after_a_failed_journal_sync(workspace, home, monkeypatch, together=False)


async def test_a_failed_journal_sync_on_the_writer_thread_is_not_trusted_to_a_later_sync(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with c's append on the writer thread's path (`sync_journal`): not a new hole of the loop path,
    the same fix."""
    await _acknowledged_after_a_failed_journal_sync(workspace, home, monkeypatch, together=True)
