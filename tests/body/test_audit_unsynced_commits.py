"""With power-loss durability an audit commit is not synced by itself: the journal keeps the records of committed
events until one sync of the database covers them (`AuditStore.settle`), and the anchor is written only then.

These tests cover what that leaves after a real SIGKILL between a commit and the database's sync, and after a
simulated power loss that takes back every commit not yet synced (the database files put back as they were at
their last sync, the journal and anchor as written): the next store replays what the database lost, and the
chain verifies, anchor included.
"""

from __future__ import annotations

import dataclasses
import errno
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from body_mcp.audit._journal import decode
from body_mcp.tools._spec import ToolOutput

from ..conftest import make_body
from .audit_disk import NO_WINDOW, Disk, committed, unsettled_body, write_committed

pytestmark = pytest.mark.anyio


_COMMIT_THEN_DIE = """
import os, signal, sys
from pathlib import Path
import anyio
from body_mcp import Body, BodySettings
from body_mcp.audit import _writer
from shared_protocol.config import parse_config

_writer.ANCHOR_SYNC_AT_MOST_S = 3600.0  # (the settle never comes)
config = parse_config({"policy": {"cumulative_window_s": 0}})
body = Body(BodySettings(workspace=Path(sys.argv[1]), home=Path(sys.argv[2]), config=config))
body.replies.flushed = True

async def main() -> None:
    for name in ("a.txt", "b.txt"):
        out = await body.call_tool("write_file", {"path": name, "content": "new\\n", "rationale": "committed"})
        assert not out.is_error, out.structured
        body.replies.run()
        await body.audit_writer.settled()  # committed, not synced
        print(out.action_id, flush=True)
    assert body.audit.sync_owed
    os.kill(os.getpid(), signal.SIGKILL)

anyio.run(main)
"""


async def test_a_body_killed_between_its_commits_and_the_database_sync_leaves_a_whole_chain(
    workspace: Path, home: Path
) -> None:
    before = make_body(workspace, home, NO_WINDOW)
    try:
        before.record_human(action="note", rationale="an event before")
        paths = before.paths
        anchored = paths.anchor.read_bytes()
        tag = before.audit._chain.tag  # pyright: ignore[reportPrivateUsage]  # (the journal's, from the key)
    finally:
        before.close()
    result = subprocess.run(
        [sys.executable, "-c", _COMMIT_THEN_DIE, str(workspace), str(home)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == -9, result.stderr
    actions = result.stdout.split()
    assert len(actions) == 2 and committed(paths.db)[1:] == actions  # committed (a crash keeps the page cache)
    assert paths.anchor.read_bytes() == anchored  # never written: the database was not synced
    assert [r.row[0] for r in decode(paths.journal.read_bytes(), tag)] == actions  # kept until that sync

    after = make_body(workspace, home, NO_WINDOW)
    try:
        report = after.audit.verify()  # (the database is ahead of its anchor, as after any crash before anchoring)
        assert report.ok and report.anchor == "match", report.summary()
        assert [e.id for e in after.audit.tail(10)][1:] == actions  # each once
        third = await write_committed(after, "c.txt")
        after.audit.finish()
        assert not decode(paths.journal.read_bytes(), tag)  # synced: the journal emptied
    finally:
        after.close()
    assert committed(paths.db)[1:] == [*actions, third]


def _recent(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {str(r[0]) for r in conn.execute("SELECT path FROM recent_changes WHERE action_id IS NULL")}
    finally:
        conn.close()


async def test_a_power_loss_that_takes_back_unsynced_commits_is_made_good_from_the_journal(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (The approval window on, as by default: each write's files are noted, unsynced, before it runs.)
    body = unsettled_body(workspace, home, monkeypatch)
    paths = body.paths
    with Disk(body, monkeypatch):
        first = await write_committed(body, "a.txt")
        body.audit.settle()  # the database synced (its image taken), then the anchor written and synced
        anchored = paths.anchor.read_bytes()
        lost = [await write_committed(body, name) for name in ("b.txt", "c.txt", "d.txt")]
        assert committed(paths.db) == [first, *lost] and paths.anchor.read_bytes() == anchored
        journal = paths.journal.read_bytes()
    assert committed(paths.db) == [first] and _recent(paths.db) == {"a.txt"}  # the three commits are gone...
    assert paths.journal.read_bytes() == journal  # ...not from the journal

    with closing(make_body(workspace, home)) as after:
        report = after.audit.verify()
        assert report.ok and report.anchor == "match", report.summary()
        assert [e.id for e in after.audit.tail(10)] == [first, *lost]
        conn = sqlite3.connect(paths.db)
        try:  # their undo records came back with them, and their files count in the approval window again
            undo = {str(r[0]) for r in conn.execute("SELECT action_id FROM undo_records")}
        finally:
            conn.close()
        assert set(lost) <= undo
        assert _recent(paths.db) == {"a.txt", "b.txt", "c.txt", "d.txt"}


async def test_a_call_that_failed_part_way_still_counts_its_files_after_a_power_loss(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = unsettled_body(workspace, home, monkeypatch)

    async def fails_part_way(ctx: object) -> ToolOutput:
        raise OSError(errno.EIO, "Input/output error")  # (after its files were noted: it may have changed some)

    spec = body.tools["write_file"]
    monkeypatch.setitem(body.tools, "write_file", dataclasses.replace(spec, handler=fails_part_way))
    with Disk(body, monkeypatch):
        body.record_human(action="note", rationale="synced: the image the power loss goes back to")
        out = await body.call_tool("write_file", {"path": "half.txt", "content": "x", "rationale": "r"})
        assert out.is_error
        body.replies.run()
        with anyio.fail_after(5):
            while out.action_id not in committed(body.paths.db):
                await anyio.sleep(0.005)
        with body.db.read() as conn:  # (noted as the call began, unsynced)
            assert conn.execute("SELECT action_id FROM recent_changes WHERE path = 'half.txt'").fetchone() == (None,)
    assert _recent(body.paths.db) == set()
    with closing(make_body(workspace, home)) as after:
        assert after.audit.verify().ok
        assert _recent(body.paths.db) == {"half.txt"}  # noted again by its event, replayed from the journal


async def test_settling_waits_for_no_call_and_empties_the_journal(workspace: Path, home: Path) -> None:
    with closing(make_body(workspace, home, NO_WINDOW)) as body:
        body.replies.flushed = True
        await write_committed(body, "a.txt")
        with anyio.fail_after(5):  # (the writer's timer, ANCHOR_SYNC_AT_MOST_S after the commit)
            while body.audit.sync_owed:
                await anyio.sleep(0.01)
        head = body.audit.tail(1)[0]
        assert body.paths.anchor.read_text().split()[:2] == [f"{head.seq:020d}", head.mac]
        assert body.paths.journal.read_bytes()[:4] == bytes(4)  # emptied: its records are in the synced database


async def test_once_settled_a_deleted_last_event_is_reported_not_put_back(workspace: Path, home: Path) -> None:
    with closing(make_body(workspace, home, NO_WINDOW)) as body:
        body.replies.flushed = True
        await write_committed(body, "a.txt")
        last = await write_committed(body, "b.txt")
        body.audit.settle()  # (the writer's timer): the database synced, the anchor written, the journal emptied
        conn = sqlite3.connect(body.paths.db)
        try:  # with direct access to the file: the last event, anchored, is deleted
            conn.executescript(f"DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE id = '{last}';")
        finally:
            conn.close()
        report = body.audit.verify()
        assert not report.ok and "truncated" in (report.problem or ""), report.summary()
        assert last not in committed(body.paths.db)  # nothing put back: the journal no longer holds it
