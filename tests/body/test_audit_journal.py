"""The audit journal: a call's event is durable before its reply and committed after it.

A serving body journals each call's event (one write) before replying, and commits and anchors it once the
reply is on its way. A body that dies in between leaves the event in the journal, and the next store to take
the anchor's lock commits it. These tests cover the order, what other processes see meanwhile, crashes
(a real SIGKILL), torn and forged records, and writes that fail at each step.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import anyio
import pytest

from body_mcp import Body
from body_mcp._db import Writes
from body_mcp.audit import EventDraft
from body_mcp.audit import _writer as audit_writer  # pyright: ignore[reportPrivateUsage]
from body_mcp.audit._chain import Chain
from body_mcp.audit._journal import END, PREFIX_LEN, decode, encode
from body_mcp.killswitch import LocalKillSwitch
from body_mcp.pipeline import CallContext, CallOutcome, Next
from body_mcp.tools._spec import ToolOutput
from tests.cli.inprocess import swarm_in_process

from ..conftest import make_body

pytestmark = pytest.mark.anyio


def _anchor(body: Body) -> str:
    """The head the anchor names (its tag left out)."""
    return " ".join(body.paths.anchor.read_text().split()[:2])


def _head(body: Body) -> str:
    head = body.audit.tail(1)[0]
    return f"{head.seq:020d} {head.mac}"


async def _after_reply(body: Body) -> None:
    """What the transport does once a reply is written, and the commit it asks the audit writer for, done."""
    body.replies.run()
    await body.audit_writer.settled()
    await anyio.sleep(0)  # (the writer tells the loop what it finished)


def _committed(body: Body) -> list[str]:
    """The ids of the events in the database, read through a connection of its own (as another process)."""
    conn = sqlite3.connect(body.paths.db)
    try:
        return [str(row[0]) for row in conn.execute("SELECT id FROM audit_events ORDER BY seq")]
    finally:
        conn.close()


def _break_anchor(body: Body, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every anchor write fails as a failing disk would, until `monkeypatch.undo()`."""

    def broken(seq: int, mac: str) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(body.audit, "_write_anchor", broken)


def _break_commits(body: Body, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every transaction of this body's database fails as a full disk would, until `monkeypatch.undo()`."""

    def broken(*, synced: bool = True) -> object:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(body.db, "write", broken)


def _draft(n: int) -> EventDraft:
    return EventDraft(id=f"act_{n}", kind="human", agent="t", session="s", rationale=f"{n}", outcome="ok")


# -- the record format ---------------------------------------------------------------------


def _record(chain: Chain, seq: int, prev_mac: str, action_id: str, writes: Writes | None, decision: str | None = None):
    """A journal record of a small event chained onto `prev_mac`, and the event's row (as the store keeps it)."""
    payload = {"id": action_id, "seq": seq, "prev_mac": prev_mac, "ts": "ts", "decision_id": decision, "message": None}
    signed, body, mac, hashed = chain.sign_hashed(payload)
    return encode(seq, mac, signed, hashed, writes, chain.tag), (seq, mac, prev_mac, (action_id, "ts", decision, body))


def test_a_record_carries_its_event_and_statements_and_a_torn_or_forged_one_is_not_read() -> None:
    chain = Chain(b"k" * 32, "body")
    writes = Writes()
    writes.add("INSERT INTO blobs (sha256, data) VALUES (?, ?)", ("abc", b"\x00\xffpre-image"))
    writes.add("UPDATE t SET a = ?, b = ?, c = ? WHERE id = ?", (1.5, None, "é", 7))
    first, first_row = _record(chain, 1, "g" * 64, "act_1", writes)
    second, second_row = _record(chain, 2, first_row[1], "act_2", None, "dec_1")

    journal = first[: -len(END)] + second  # the second written where the first's end mark was
    records = decode(journal, chain.tag)
    assert [(r.seq, r.mac, r.prev_mac, r.row) for r in records] == [first_row, second_row]
    mac, genesis = first_row[1], "g" * 64
    assert records[0].row[3] == (  # the row's body: the event as signed, its `mac` put in
        f'{{"decision_id":null,"id":"act_1","mac":"{mac}","message":null,"prev_mac":"{genesis}","seq":1,"ts":"ts"}}'
    )
    assert records[0].writes.statements == writes.statements
    assert records[1].writes.statements == []
    assert records[0].end == len(first) - len(END) and records[1].end == len(journal) - len(END)
    assert [r.seq for r in decode(first + second, chain.tag)] == [1]  # nothing is read past an end mark

    assert [r.seq for r in decode(journal[: -len(END) - 1], chain.tag)] == [1]  # torn: the crash came mid-write
    for at in (5, PREFIX_LEN + 5, len(first) - len(END) - 40, len(first) - len(END) - 1):  # seq, header, data, tag
        forged = bytearray(first)
        forged[at] ^= 1
        assert (
            decode(bytes(forged[: -len(END)]) + second, chain.tag) == []
        )  # changed without the key: not it, nor after
    event_at = first.index(b'{"decision_id"')
    forged = bytearray(first)
    forged[event_at + 20] ^= 1  # the event itself
    assert decode(bytes(forged), chain.tag) == []
    assert decode(first, Chain(b"other key", "body").tag) == []
    assert decode(bytes(PREFIX_LEN) + first, chain.tag) == []  # a record made void (zeroed) stops reading


# -- order and what others see -------------------------------------------------------------


async def test_after_a_reply_the_event_is_journaled_and_committed_after_and_other_writers_do_not_wait(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (Only the test settles: a settle timed by an earlier commit, due 50 ms later, commits whatever is journaled,
    # the events the loop below expects uncommitted included, on a slow machine.)
    monkeypatch.setattr("body_mcp.audit._writer.ANCHOR_SYNC_AT_MOST_S", 3600.0)
    body = make_body(workspace, home)
    other = make_body(workspace, home)  # another process's store: its own descriptor, so its own flock
    try:
        body.replies.flushed = True  # as the stdio transport sets it
        first = await body.call_tool("write_file", {"path": "a.txt", "content": "1", "rationale": "r"})
        assert not first.is_error
        assert _committed(body) == [] and body.audit.owed
        assert first.action_id.encode() in body.paths.journal.read_bytes()

        # The flock is not held until the reply is written: another writer goes on at once, committing the
        # journaled event first, so the chain keeps one order.
        done = threading.Event()

        def append_elsewhere() -> None:
            other.record_human(action="note", rationale="does not wait for the reply")
            done.set()

        thread = threading.Thread(target=append_elsewhere)
        thread.start()
        assert done.wait(5)
        thread.join()
        assert _committed(body)[0] == first.action_id and len(_committed(body)) == 2
        await _after_reply(body)  # what the transport does once the reply is written: nothing is left to commit
        await body.audit_writer.settled()
        body.audit.settle()  # (as the writer's timer does: the database's sync and the anchor)
        assert not body.audit.owed and len(_committed(body)) == 2
        report = body.audit.verify()
        assert report.ok and report.anchor == "match", report.summary()

        # A mutating call pays what it owes before journaling its own event: one mutating event uncommitted.
        for n in range(3):
            out = await body.call_tool("write_file", {"path": f"b{n}.txt", "content": "x", "rationale": "r"})
            assert out.action_id not in _committed(body) and len(_committed(body)) == 2 + n
    finally:
        body.close()  # commits what is owed
        other.close()
    reopened = make_body(workspace, home)
    try:
        assert _anchor(reopened) == _head(reopened) and len(_committed(reopened)) == 5
        assert reopened.audit.verify().ok
    finally:
        reopened.close()


async def test_reads_share_one_commit_and_a_mutating_call_commits_them_with_its_own(
    body: Body, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (No batch commit by the timer meanwhile, however slow the machine.)
    monkeypatch.setattr("body_mcp.audit._writer.LAZY_FINISH_S", 60.0)
    body.replies.flushed = True
    (body.workspace.root / "r.txt").write_text("r")
    reads: list[str] = []
    for _ in range(3):
        out = await body.call_tool("read_text_file", {"path": "r.txt", "rationale": "r"})
        assert not out.is_error
        await _after_reply(body)  # the reply is written: a read's commit waits a little, for others to share it
        reads.append(out.action_id)
    assert not any(action in _committed(body) for action in reads) and body.audit.owed
    journal = body.paths.journal.read_bytes()
    assert all(action.encode() in journal for action in reads)  # journaled before each reply
    write = await body.call_tool("write_file", {"path": "w.txt", "content": "x", "rationale": "r"})
    assert _committed(body) == reads  # paid before the mutating call's own event
    assert write.action_id.encode() in body.paths.journal.read_bytes()
    await _after_reply(body)
    body.audit.settle()
    assert _committed(body) == [*reads, write.action_id] and _anchor(body) == _head(body)
    # A read alone is committed soon all the same.
    monkeypatch.undo()
    last = await body.call_tool("read_text_file", {"path": "r.txt", "rationale": "r"})
    await _after_reply(body)
    with anyio.fail_after(2):
        while last.action_id not in _committed(body) or _anchor(body) != _head(body):
            await anyio.sleep(0.005)
    assert body.audit.verify().ok


async def test_concurrent_calls_share_a_journal_sync(body: Body, monkeypatch: pytest.MonkeyPatch) -> None:
    if body.db.durability != "power_loss":
        pytest.skip("crash durability syncs nothing")
    synced: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        if fd == body.audit._journal_fd:  # pyright: ignore[reportPrivateUsage]
            synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    body.replies.flushed = True
    outs: list[CallOutcome] = []

    async def one(n: int) -> None:
        outs.append(await body.call_tool("write_file", {"path": f"c{n % 2}.txt", "content": "x", "rationale": "r"}))

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(one, n)
    assert len(outs) == 8 and not any(out.is_error for out in outs)
    assert 1 <= len(synced) < 8  # each reply after its event's sync; fewer syncs than calls
    await _after_reply(body)
    await body.audit_writer.finish()
    assert body.audit.verify().ok and len(_committed(body)) == 8


async def test_a_lone_write_is_journaled_and_synced_on_the_event_loop_before_its_reply(
    body: Body, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write alone in the body, the locks free and nothing owed: its event is journaled and synced on the event
    loop's thread (no round trip to the writer's thread), durable before the call returns; its commit follows the
    reply in the writer's thread, as before."""
    if body.db.durability != "power_loss":
        pytest.skip("crash durability syncs nothing")
    body.replies.flushed = True
    warm = await body.call_tool("write_file", {"path": "a.txt", "content": "0", "rationale": "r"})
    await _after_reply(body)
    await body.audit_writer.finish()
    assert not warm.is_error and not body.audit.owed
    loop_thread = threading.get_ident()
    synced_by: list[int] = []
    real_sync = os.fdatasync

    def recording_sync(fd: int) -> None:
        if fd == body.audit._journal_fd:  # pyright: ignore[reportPrivateUsage]
            synced_by.append(threading.get_ident())
        real_sync(fd)

    executor = body.audit_writer._executor  # pyright: ignore[reportPrivateUsage]
    submitted: list[object] = []
    real_submit = executor.submit

    def recording_submit(fn: Callable[..., object], /, *args: object, **kwargs: object) -> object:
        submitted.append(fn)
        return real_submit(fn, *args, **kwargs)

    monkeypatch.setattr(os, "fdatasync", recording_sync)
    monkeypatch.setattr(executor, "submit", recording_submit)
    out = await body.call_tool("write_file", {"path": "a.txt", "content": "1", "rationale": "r"})
    assert not out.is_error
    assert synced_by == [loop_thread] and submitted == []  # durable before the reply, with no hop to the thread
    assert out.action_id.encode() in body.paths.journal.read_bytes()
    assert out.action_id not in _committed(body)  # (committed after the reply)
    await _after_reply(body)
    assert len(submitted) == 1  # the commit, in the writer's thread
    assert out.action_id in _committed(body)
    await body.audit_writer.finish()
    assert body.audit.verify().ok


async def test_a_killed_call_s_refusal_is_journaled_before_its_reply_without_a_sync_of_its_own(
    body: Body, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill is felt as the refusal of the agent's next call: that refusal (the call changed nothing) is journaled
    before its reply like a read's event, not synced on its own, and committed with the next batch."""
    if body.db.durability != "power_loss":
        pytest.skip("crash durability syncs nothing")
    synced: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        if fd == body.audit._journal_fd:  # pyright: ignore[reportPrivateUsage]
            synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    body.replies.flushed = True
    wrote = await body.call_tool("write_file", {"path": "w.txt", "content": "x", "rationale": "r"})
    assert not wrote.is_error and len(synced) == 1  # (a mutating call's event: synced before its reply)
    await _after_reply(body)
    LocalKillSwitch(home / "kill.json").engage(reason="runaway", by="human:test")
    refusals: list[str] = []
    for n in range(3):
        out = await body.call_tool("write_file", {"path": f"k{n}.txt", "content": "x", "rationale": "r"})
        assert out.is_error and out.structured["code"] == "kill_switch_engaged", out.structured
        assert out.action_id.encode() in body.paths.journal.read_bytes()  # journaled before the reply
        await _after_reply(body)
        refusals.append(out.action_id)
    assert len(synced) == 1, "no sync of the refusals' own"
    with anyio.fail_after(5):
        while not all(action in _committed(body) for action in refusals) or _anchor(body) != _head(body):
            await anyio.sleep(0.005)
    assert body.audit.verify().ok


async def test_an_owed_commit_happens_soon_even_when_no_reply_is_written(body: Body) -> None:
    body.replies.flushed = True
    out = await body.call_tool("write_file", {"path": "a.txt", "content": "1", "rationale": "r"})
    with anyio.fail_after(2):
        while out.action_id not in _committed(body) or _anchor(body) != _head(body):
            await anyio.sleep(0.005)
    await body.audit_writer.settled()  # (the anchor is written before its sync returns)
    assert not body.audit.owed


@pytest.mark.parametrize("durability", ["power_loss", "crash"])
async def test_an_append_does_what_the_last_one_owes_before_journaling_its_own(
    workspace: Path, home: Path, durability: str
) -> None:
    body = make_body(workspace, home, {"audit": {"durability": durability}})
    try:
        _append_what_the_last_one_owes(body)
    finally:
        body.close()


def _append_what_the_last_one_owes(body: Body) -> None:
    before = body.paths.anchor.read_bytes()
    first = body.audit.append(_draft(1), finish_later=True)
    assert body.audit.owed and _committed(body) == []
    second = body.audit.append(_draft(2), finish_later=True)  # no `finish()` in between
    assert _committed(body) == ["act_1"]
    if body.db.durability == "power_loss":  # (the anchor waits for the database's sync, which is not waited for)
        assert body.paths.anchor.read_bytes() == before and body.audit.sync_owed
        assert b"act_1" in body.paths.journal.read_bytes()  # (its record kept until that sync)
    else:
        assert _anchor(body) == f"{first.seq:020d} {first.mac}"
    body.audit.finish()
    assert _committed(body) == ["act_1", "act_2"]
    assert _anchor(body) == f"{second.seq:020d} {second.mac}"


# -- crashes -------------------------------------------------------------------------------

_REPLY_THEN_DIE = """
import os, signal, sys
from pathlib import Path
import anyio
from body_mcp import Body, BodySettings
from shared_protocol.config import SwarmConfig

body = Body(BodySettings(workspace=Path(sys.argv[1]), home=Path(sys.argv[2]), config=SwarmConfig()))
body.replies.flushed = True

async def main() -> None:
    out = await body.call_tool("write_file", {"path": "a.txt", "content": "new\\n", "rationale": "replied, then died"})
    assert not out.is_error, out.structured
    print(out.action_id, flush=True)  # the reply
    os.kill(os.getpid(), signal.SIGKILL)  # before the commit it left for after the reply

anyio.run(main)
"""


def _reply_then_die(workspace: Path, home: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", _REPLY_THEN_DIE, str(workspace), str(home)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == -9, result.stderr
    return result.stdout.strip()


async def _swarm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI's entry point in the test's process (`tests/cli/inprocess.py`: no new Python to start; the body that
    died is the process of its own here)."""
    return await swarm_in_process(args, {**os.environ, "SWARM_HOME": str(home)})


async def test_a_body_killed_after_its_reply_leaves_the_event_to_the_next_store_undo_records_and_all(
    workspace: Path, home: Path
) -> None:
    (workspace / "a.txt").write_text("old\n")
    before = make_body(workspace, home)
    try:
        before.record_human(action="note", rationale="an event before")
        db = before.paths.db
    finally:
        before.close()
    action_id = _reply_then_die(workspace, home)
    assert (workspace / "a.txt").read_text() == "new\n"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT COUNT(*) FROM audit_events WHERE id = ?", (action_id,)).fetchone() == (0,)
    finally:
        conn.close()

    verify = await _swarm(home, "audit", "verify", "--workspace", str(workspace))
    assert verify.returncode == 0 and "OK: 2 events" in verify.stdout, verify.stdout + verify.stderr
    assert action_id in (await _swarm(home, "audit", "tail", "--workspace", str(workspace))).stdout
    undo = await _swarm(home, "undo", action_id, "--workspace", str(workspace))  # its undo records came back with it
    assert undo.returncode == 0, undo.stderr
    assert (workspace / "a.txt").read_text() == "old\n"
    reopened = make_body(workspace, home)
    try:
        assert [e.tool for e in reopened.audit.tail(10)] == ["note", "write_file", "undo"]
        report = reopened.audit.verify()
        assert report.ok and report.anchor == "match", report.summary()
    finally:
        reopened.close()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:-7], id="torn"),
        pytest.param(lambda data: data[:60] + bytes([data[60] ^ 1]) + data[61:], id="forged"),
    ],
)
async def test_a_torn_or_forged_journal_record_is_not_replayed(
    workspace: Path, home: Path, damage: Callable[[bytes], bytes]
) -> None:
    first = make_body(workspace, home)
    try:
        first.record_human(action="note", rationale="committed")
    finally:
        first.close()
    action_id = _reply_then_die(workspace, home)
    journal = home / "workspaces"
    (path,) = journal.glob("*/audit.journal")
    path.write_bytes(damage(path.read_bytes()))
    body = make_body(workspace, home)
    try:
        assert body.audit.get(action_id) is None
        report = body.audit.verify()
        assert report.ok and report.events == 1, report.summary()  # the chain before it is whole
        body.record_human(action="note", rationale="the chain goes on")
        assert body.audit.verify().ok
    finally:
        body.close()


async def test_tampering_cannot_use_the_journal_to_hide_a_deleted_last_event(body: Body) -> None:
    for n in range(3):
        body.record_human(action="note", rationale=f"{n}")
    conn = sqlite3.connect(body.paths.db)
    try:  # with direct access to the file: the last event (still in the journal, and anchored) is deleted
        conn.executescript("DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq = 3;")
    finally:
        conn.close()
    report = body.audit.verify()
    assert not report.ok and "truncated" in (report.problem or ""), report.summary()
    assert len(_committed(body)) == 2  # nothing put back: the anchor already covered it


# -- writes that fail ----------------------------------------------------------------------


async def test_an_anchor_that_cannot_be_written_after_a_reply_stops_the_next_call_until_it_can(
    body: Body, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    body.replies.flushed = True
    ok_ = await body.call_tool("write_file", {"path": "a.txt", "content": "1", "rationale": "r"})
    assert not ok_.is_error
    _break_anchor(body, monkeypatch)
    await _after_reply(body)
    logged = "could not commit or anchor what it owes"
    with anyio.fail_after(5):  # (the anchor is written once the database is synced, by the writer's timer)
        while not (body.audit.failing and logged in caplog.text):  # (logged by the work's done-callback, just after)
            await anyio.sleep(0.005)
    assert logged in caplog.text
    assert body.audit.owed and _committed(body) == [ok_.action_id]  # committed; its anchor is owed
    written = _head(body)

    refused = await body.call_tool("write_file", {"path": "b.txt", "content": "2", "rationale": "r"})
    assert refused.is_error
    assert refused.structured["code"] == "io_error" and refused.structured["rule"] == "audit.write"
    assert "Input/output error" in refused.structured["message"]
    assert not (body.workspace.root / "b.txt").exists()
    assert len(_committed(body)) == 1  # nothing ran, so nothing to audit (nor could it be)

    # Meanwhile another process may append (the flock was let go), and the retry must not move its anchor back.
    other = make_body(body.workspace.root, body.settings.home)
    try:
        other.record_human(action="note", rationale="appended while the first body's anchor failed")
    finally:
        other.close()
    monkeypatch.undo()
    again = await body.call_tool("write_file", {"path": "b.txt", "content": "2", "rationale": "r"})
    assert not again.is_error
    await _after_reply(body)
    body.audit.settle()
    assert _anchor(body) == _head(body) != written
    report = body.audit.verify()
    assert report.ok and report.anchor == "match", report.summary()


async def test_a_commit_that_fails_after_a_reply_keeps_the_event_in_the_journal_for_whoever_commits_next(
    body: Body, monkeypatch: pytest.MonkeyPatch
) -> None:
    body.replies.flushed = True
    replied = await body.call_tool("write_file", {"path": "a.txt", "content": "1", "rationale": "r"})
    _break_commits(body, monkeypatch)
    await _after_reply(body)
    assert body.audit.owed and _committed(body) == []

    refused = await body.call_tool("write_file", {"path": "b.txt", "content": "2", "rationale": "r"})
    assert refused.structured["rule"] == "audit.write" and "disk is full" in refused.structured["message"]
    assert not (body.workspace.root / "b.txt").exists()

    # Another process takes the flock (let go after the failure) and commits the journaled event first.
    other = make_body(body.workspace.root, body.settings.home)
    try:
        assert _committed(body) == [replied.action_id]
        other.record_human(action="note", rationale="after the replayed event")
    finally:
        other.close()
    monkeypatch.undo()
    again = await body.call_tool("write_file", {"path": "b.txt", "content": "2", "rationale": "r"})
    await _after_reply(body)
    assert _committed(body) == [replied.action_id, _committed(body)[1], again.action_id]  # each once, in order
    report = body.audit.verify()
    assert report.ok and report.anchor == "match", report.summary()


async def test_a_failed_anchor_sync_is_written_and_synced_again_not_taken_from_the_page_cache(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = make_body(workspace, home, {"audit": {"durability": "power_loss"}})
    try:
        body.replies.flushed = True
        await body.call_tool("write_file", {"path": "a.txt", "content": "1", "rationale": "r"})
        real = os.fdatasync
        calls: list[str] = []
        anchor = os.stat(body.paths.anchor).st_ino

        def fdatasync(fd: int) -> None:
            if os.fstat(fd).st_ino == anchor:
                if not calls:
                    calls.append("failed")
                    raise OSError(errno.EIO, "Input/output error")  # the write-back failed; reported this once
                calls.append("synced")
            real(fd)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        await _after_reply(body)  # the commit worked; the database's sync, the anchor's write and its sync are owed
        assert calls == [] and body.audit.sync_owed
        with pytest.raises(OSError, match="Input/output error"):
            body.audit.settle()  # (as the writer's timer does) the anchor is written, its sync fails
        assert calls == ["failed"] and _anchor(body) == _head(body) and body.audit.owed and body.audit.failing
        body.audit.finish()
        assert calls == ["failed", "synced"]
        assert not body.audit.owed and not body.audit.sync_owed and not body.audit.failing
    finally:
        body.close()


def _count_syncs(body: Body, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files synced from now on, by name: `anchor`, `wal` (the database's, whoever syncs it), `journal`."""
    names = {body.paths.anchor: "anchor", Path(f"{body.paths.db}-wal"): "wal", body.paths.journal: "journal"}
    real = os.fdatasync
    synced: list[str] = []

    def fdatasync(fd: int) -> None:
        ino = os.fstat(fd).st_ino
        synced.extend(name for path, name in names.items() if path.exists() and path.stat().st_ino == ino)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return synced


async def test_mutating_calls_share_one_sync_of_the_database_and_one_of_the_anchor(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_writer, "ANCHOR_SYNC_AT_MOST_S", 60.0)  # (no timer fires during the test)
    body = make_body(workspace, home, {"audit": {"durability": "power_loss"}})
    try:
        body.replies.flushed = True
        anchored = _anchor(body)
        synced = _count_syncs(body, monkeypatch)
        calls: list[str] = []
        for n in range(3):
            out = await body.call_tool("write_file", {"path": "a.txt", "content": f"{n}", "rationale": "r"})
            await _after_reply(body)
            assert out.action_id in _committed(body)  # each committed at once, its commit not synced...
            calls.append(out.action_id)
        assert (
            synced == ["journal"] * 3 and body.audit.sync_owed
        )  # ...only each event's journal record before its reply
        assert _anchor(body) == anchored  # the anchor waits for the database's sync: never durable ahead of it
        kept = decode(body.paths.journal.read_bytes(), body.audit._chain.tag)  # pyright: ignore[reportPrivateUsage]
        assert [record.row[0] for record in kept][-3:] == calls  # their records kept until then
    finally:
        body.close()
    assert synced == ["journal"] * 3 + ["wal", "anchor"]  # (closing settles what is owed: one sync each)


async def test_a_mutating_calls_anchor_is_synced_soon_after_its_reply_without_another_call(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = make_body(workspace, home, {"audit": {"durability": "power_loss"}})
    try:
        body.replies.flushed = True
        synced = _count_syncs(body, monkeypatch)
        await body.call_tool("write_file", {"path": "a.txt", "content": "1", "rationale": "r"})
        await _after_reply(body)
        with anyio.fail_after(5):  # (ANCHOR_SYNC_AT_MOST_S, 50 ms, on a quiet machine)
            while body.audit.sync_owed:
                await anyio.sleep(0.01)
        assert synced.count("anchor") == 1 and "wal" in synced and _anchor(body) == _head(body)
        assert not decode(body.paths.journal.read_bytes(), body.audit._chain.tag)  # pyright: ignore[reportPrivateUsage]
    finally:
        body.close()


async def test_a_journal_write_that_fails_leaves_nothing_to_replay(body: Body, monkeypatch: pytest.MonkeyPatch) -> None:
    body.record_human(action="note", rationale="before")
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(body.db, "durability", "power_loss")
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    with pytest.raises(OSError, match="Input/output error"):
        body.record_human(action="note", rationale="its caller is told it failed")
    monkeypatch.setattr(os, "fdatasync", real)
    assert body.audit.recover() == 0
    assert [e.rationale for e in body.audit.tail(10)] == ["before"]
    body.record_human(action="note", rationale="after")
    assert body.audit.verify().ok


class _HoldCalls:
    """A guard that holds calls writing `path` until `go` is set (a call already running when something fails)."""

    def __init__(self, path: str) -> None:
        self.path, self.go, self.holding = path, anyio.Event(), anyio.Event()

    async def __call__(self, ctx: CallContext, call_next: Next) -> ToolOutput:
        if ctx.raw_arguments.get("path") == self.path:
            self.holding.set()
            await self.go.wait()
        return await call_next(ctx)


@pytest.mark.parametrize(("breaks", "error"), [(_break_anchor, "Input/output error"), (_break_commits, "disk is full")])
async def test_a_call_already_running_when_the_trail_fails_is_still_journaled_and_the_failure_raised(
    workspace: Path,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    breaks: Callable[[Body, pytest.MonkeyPatch], None],
    error: str,
) -> None:
    hold = _HoldCalls("b.txt")
    # (No cumulative window: with one, B's files are noted in a transaction of their own before its tool runs, and a
    # trail broken by then stops B before it changes anything; here B's tool must run on.)
    body = make_body(workspace, home, {"policy": {"cumulative_window_s": 0}}, outer_guards=[hold])
    try:
        body.replies.flushed = True
        failure: list[BaseException] = []

        async def call_b() -> None:
            try:
                await body.call_tool("write_file", {"path": "b.txt", "content": "b", "rationale": "runs on"})
            except (OSError, sqlite3.Error) as exc:
                failure.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call_b)
            await hold.holding.wait()  # B is past the start of its call
            await body.call_tool("write_file", {"path": "a.txt", "content": "a", "rationale": "replied"})
            breaks(body, monkeypatch)
            await _after_reply(body)  # A's commit or anchor fails after its reply
            if breaks is _break_anchor:  # (written once the database is synced: by the writer's timer)
                with pytest.raises(OSError, match=error):
                    body.audit.settle()
            hold.go.set()
        assert (workspace / "b.txt").read_text() == "b"
        assert failure and error in str(failure[0])  # loud, to B's caller

        monkeypatch.undo()
        again = await body.call_tool("write_file", {"path": "c.txt", "content": "c", "rationale": "r"})
        assert not again.is_error
        await _after_reply(body)
        recorded = [e for e in body.audit.tail(10) if e.tool == "write_file"]
        assert [e.files for e in recorded] == [["a.txt"], ["b.txt"], ["c.txt"]]  # B's change is in the trail
        report = body.audit.verify()
        assert report.ok and report.anchor == "match", report.summary()
    finally:
        body.close()


async def test_while_what_is_owed_fails_only_calls_that_already_ran_are_appended(
    body: Body, monkeypatch: pytest.MonkeyPatch
) -> None:
    body.replies.flushed = True
    for name in ("a.txt", "b.txt"):  # (two events: retention always keeps the newest)
        await body.call_tool("write_file", {"path": name, "content": "1", "rationale": "r"})
    _break_anchor(body, monkeypatch)
    await _after_reply(body)
    with pytest.raises(OSError, match="Input/output error"):
        body.audit.settle()  # (as the writer's timer does: the anchor is written once the database is synced)
    before = [e.seq for e in body.audit.tail(100)]
    journal = body.paths.journal.read_bytes()
    with pytest.raises(OSError, match="Input/output error"):
        body.record_human(action="note", rationale="a human's note waits for the anchor")
    with pytest.raises(OSError, match="Input/output error"):
        body.audit.prune(retention_days=1, now=datetime.now(UTC) + timedelta(days=2))
    assert [e.seq for e in body.audit.tail(100)] == before  # neither committed (nor pruned) anything
    assert body.paths.journal.read_bytes() == journal  # nor journaled


# -- several stores, and failures between them ----------------------------------------------


def _die(body: Body) -> None:
    """What SIGKILL leaves of a store: its files closed (the flock let go), nothing it owes finished."""
    store = body.audit
    store._closed = True  # pyright: ignore[reportPrivateUsage]
    os.close(store._anchor_fd)  # pyright: ignore[reportPrivateUsage]
    os.close(store._journal_fd)  # pyright: ignore[reportPrivateUsage]


def _trail(workspace: Path, home: Path) -> list[str]:
    """The ids in the trail as the next body sees it (it commits what the journal holds), checked whole."""
    body = make_body(workspace, home)
    try:
        report = body.audit.verify()
        assert report.ok, report.summary()
        return [e.id for e in body.audit.tail(100)]
    finally:
        body.close()


async def test_an_append_whose_caller_was_told_it_failed_never_appears_later(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = make_body(workspace, home)
    body.record_human(action="note", rationale="before")
    with monkeypatch.context() as patch:
        _break_commits(body, patch)
        with pytest.raises(sqlite3.OperationalError):
            body.audit.append(_draft(1))  # e.g. the IDE hook: it denies the call when this raises
    assert not body.audit.owed
    _die(body)
    assert "act_1" not in _trail(workspace, home)


async def test_a_record_made_void_at_the_start_does_not_look_like_an_unchanged_journal(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = make_body(workspace, home), make_body(workspace, home)
    a.record_human(action="note", rationale="before")
    real = os.fdatasync
    failing = False

    def fdatasync(fd: int) -> None:
        if failing and fd == b.audit._journal_fd:  # pyright: ignore[reportPrivateUsage]
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(b.db, "durability", "power_loss")
    failing = True
    with pytest.raises(OSError):
        b.record_human(action="note", rationale="fails: its record is voided at the start of the journal")
    a.audit.recover()  # (a starting, or verifying): sees the voided start
    failing = False
    b.record_human(action="note", rationale="appended")
    failing = True
    with pytest.raises(OSError):
        b.record_human(action="note", rationale="fails again: the same voided start")
    failing = False
    a.audit.append(_draft(1), finish_later=True, happened=True)  # durable; its reply goes out
    _die(a)
    b.close()
    assert _trail(workspace, home)[-1] == "act_1"


async def test_a_record_written_after_an_uncommitted_one_is_seen_by_a_store_that_knew_only_the_first(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = make_body(workspace, home), make_body(workspace, home)
    a.record_human(action="note", rationale="before")
    a.audit.append(_draft(1), finish_later=True, happened=True)  # replied
    with monkeypatch.context() as patch:
        _break_commits(a, patch)
        with pytest.raises(sqlite3.OperationalError):
            a.audit.finish()  # a lets go of the flock, owing act_1
        assert b.audit.recover() == 1  # b (starting, or verifying) commits act_1 and knows the journal so far
        with pytest.raises(sqlite3.OperationalError):
            a.audit.append(_draft(2), happened=True)  # a call that ran: journaled after act_1, still uncommitted
    b.record_human(action="note", rationale="must chain after act_2")
    _die(a)
    b.close()
    trail = _trail(workspace, home)
    assert trail[1:3] == ["act_1", "act_2"] and len(trail) == 4


async def test_an_event_that_cannot_be_taken_back_stays_owed_in_this_store_as_in_any_other(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    body = make_body(workspace, home)
    body.record_human(action="note", rationale="before")
    journal_fd = body.audit._journal_fd  # pyright: ignore[reportPrivateUsage]
    real = os.pwrite
    writes = 0

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        nonlocal writes
        if fd == journal_fd:
            writes += 1
            if writes > 1:  # the record is written; the write that would void it fails
                raise OSError(errno.EIO, "Input/output error")
        return real(fd, data, offset)

    with monkeypatch.context() as patch:
        _break_commits(body, patch)
        patch.setattr(os, "pwrite", pwrite)
        with pytest.raises(sqlite3.OperationalError):
            body.audit.append(_draft(1))
    assert "could not be taken back" in caplog.text
    assert body.audit.owed  # whole in the journal: whoever commits next commits it, this store included
    body.record_human(action="note", rationale="after")
    body.close()
    assert _trail(workspace, home).count("act_1") == 1


async def test_anchor_writes_that_failed_before_a_crash_are_not_taken_for_tampering(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = make_body(workspace, home)
    body.record_human(action="note", rationale="before")
    with monkeypatch.context() as patch:
        _break_anchor(body, patch)
        with pytest.raises(OSError):
            body.audit.append(_draft(1))  # committed; its anchor is owed
        with pytest.raises(OSError):
            body.audit.append(_draft(2), happened=True)  # a call that ran: committed as well, two past the anchor
    _die(body)
    reopened = make_body(workspace, home)
    try:
        report = reopened.audit.verify()
        # (With power-loss durability the journal keeps committed events' records until the database's sync: the
        # next store, finding them committed and unanchored, anchors them once it has synced the database.)
        assert report.ok and report.anchor == "match", report.summary()
        reopened.record_human(action="note", rationale="the next append anchors the head")
        assert reopened.audit.verify().anchor == "match"
    finally:
        reopened.close()


async def test_an_append_after_the_last_events_were_deleted_keeps_the_anchor_as_evidence(
    body: Body, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(3):
        body.record_human(action="note", rationale=f"{n}")
    anchor = _anchor(body)
    conn = sqlite3.connect(body.paths.db)
    try:  # with direct access to the file: the last (anchored) event is deleted
        conn.executescript("DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq = 3;")
    finally:
        conn.close()
    body.record_human(action="note", rationale="this store chains on its own head: the database lacks it")
    other = make_body(body.workspace.root, body.settings.home)  # and a store that reads the head afresh
    try:
        other.record_human(action="note", rationale="chains onto the database's head")
        assert "kept as evidence" in caplog.text
        assert _anchor(body) == anchor
        report = other.audit.verify()
        assert not report.ok and report.anchor == "mismatch", report.summary()
    finally:
        other.close()


def _record_lockers(body: Body, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The threads that take the store's blocking flock from now on (the lazy path only ever tries it)."""
    lockers: list[int] = []
    take = body.audit._lock  # pyright: ignore[reportPrivateUsage]

    def recording_lock() -> None:
        lockers.append(threading.get_ident())
        take()

    monkeypatch.setattr(body.audit, "_lock", recording_lock)
    return lockers


async def test_a_call_waiting_for_the_audit_lock_does_not_stop_the_event_loop(
    body: Body, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the anchor's flock: the calls wait for it in the writer's thread, while the event loop
    goes on (it could read a kill event meanwhile); once it is let go they finish, reads and writes alike."""
    lockers = _record_lockers(body, monkeypatch)
    body.replies.flushed = True
    (body.workspace.root / "r.txt").write_text("r")
    fd = os.open(body.paths.anchor, os.O_RDWR)
    ticks = 0
    outs: list[CallOutcome] = []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another body's append would

        async def call(name: str, args: dict[str, str]) -> None:
            outs.append(await body.call_tool(name, args))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "read_text_file", {"path": "r.txt", "rationale": "r"})
            tg.start_soon(call, "write_file", {"path": "w.txt", "content": "x", "rationale": "r"})
            for _ in range(20):
                await anyio.sleep(0.01)
                ticks += 1
            assert outs == []  # both still waiting for the lock, the loop running
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    assert ticks == 20 and len(outs) == 2 and not any(out.is_error for out in outs)
    await _after_reply(body)
    await body.audit_writer.finish()
    assert lockers and threading.get_ident() not in lockers  # (never the event loop's thread)
    assert body.audit.verify().ok and {o.action_id for o in outs} <= set(_committed(body))


async def test_admin_events_and_a_cancelled_calls_event_wait_for_the_audit_lock_off_the_event_loop(
    body: Body, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot's event (from its worker thread), an admin action of the serving body and a cancelled call's
    event all wait for the anchor's flock in the writer's thread: the event loop goes on meanwhile, and no blocking
    flock is ever taken on its thread."""
    loop_thread = threading.get_ident()
    lockers = _record_lockers(body, monkeypatch)
    body.replies.flushed = True
    done: list[str] = []
    fd = os.open(body.paths.anchor, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another body's append would
        holding, release = anyio.Event(), anyio.Event()

        async def command_holding_the_workspace() -> None:
            async with body.workspace_lock:
                holding.set()
                await release.wait()

        async def snapshot() -> None:
            await anyio.to_thread.run_sync(lambda: body.snapshotter.create(reason="while the lock is held"))
            done.append("snapshot")

        async def admin_action() -> None:
            await body.admin.record_async(action="note", rationale="an admin action of the serving body")
            done.append("admin")

        async def cancelled_write(scope: anyio.CancelScope) -> None:
            with scope:
                await body.call_tool("write_file", {"path": "c.txt", "content": "x", "rationale": "cancelled"})
            done.append("cancelled")

        async with anyio.create_task_group() as tg:
            tg.start_soon(command_holding_the_workspace)
            with anyio.fail_after(10):
                await holding.wait()
            scope = anyio.CancelScope()
            tg.start_soon(cancelled_write, scope)
            with anyio.fail_after(10):  # queued behind the command: cancelled there, its event still to write
                while body.workspace_lock.statistics().tasks_waiting == 0:
                    await anyio.sleep(0.01)
            scope.cancel()
            tg.start_soon(snapshot)
            tg.start_soon(admin_action)
            ticks = 0
            for _ in range(20):
                await anyio.sleep(0.01)
                ticks += 1
            assert ticks == 20 and done == []  # all three waiting for the flock, the loop running
            fcntl.flock(fd, fcntl.LOCK_UN)
            release.set()
    finally:
        os.close(fd)
    assert sorted(done) == ["admin", "cancelled", "snapshot"]
    assert lockers and loop_thread not in lockers
    tools = [(e.tool, e.outcome, e.code) for e in body.audit.tail(10)]
    assert ("write_file", "failed", "cancelled") in tools and ("note", "ok", None) in tools
    assert ("snapshot.snapshot_create", "ok", None) in tools, tools
    assert body.audit.verify().ok


async def test_a_call_cancelled_while_its_event_waits_in_the_writers_queue_still_gets_its_event(body: Body) -> None:
    """The tool ran; its append waits behind another in the writer's queue when the call is cancelled: the append
    still happens (the trail holds every call that ran), once the flock is let go."""
    body.replies.flushed = True
    fd = os.open(body.paths.anchor, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another body's append would
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(body.admin.record_async, action="note", rationale="ahead in the writer's queue"))
            scope = anyio.CancelScope()

            async def write() -> None:
                with scope:
                    await body.call_tool("write_file", {"path": "q.txt", "content": "x", "rationale": "queued"})

            tg.start_soon(write)
            with anyio.fail_after(10):  # the tool ran, and its event waits behind the note's
                while body.audit_writer._appends_asked == 0:  # pyright: ignore[reportPrivateUsage]
                    await anyio.sleep(0.005)
            assert (body.workspace.root / "q.txt").read_text() == "x"
            scope.cancel()
            await anyio.sleep(0.05)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    await body.audit_writer.finish()
    tools = [(e.tool, e.outcome) for e in body.audit.tail(5)]
    assert tools[-2:] == [("note", "ok"), ("write_file", "ok")], tools
    assert body.audit.verify().ok


async def test_after_a_settle_empties_the_journal_the_next_append_chains_on_without_reading_the_database(
    workspace: Path, home: Path
) -> None:
    body = make_body(workspace, home, {"audit": {"durability": "power_loss"}})
    other = make_body(workspace, home)  # another process's store: its own descriptor, so its own flock
    try:
        first = body.audit.append(_draft(1), finish_later=True)
        body.audit.finish(anchor_sync=False)
        body.audit.settle()  # (the database synced, the anchor written, the journal marked empty)
        assert _anchor(body) == f"{first.seq:020d} {first.mac}" and not body.audit.sync_owed
        # The database's connection held by another thread (as a commit holds it): the next append does not wait.
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with body.db.read():
                held.set()
                release.wait(30)

        appended: list[int] = []
        holder = threading.Thread(target=hold)
        appender = threading.Thread(target=lambda: appended.append(body.audit.append(_draft(2), finish_later=True).seq))
        holder.start()
        try:
            assert held.wait(10)
            appender.start()
            appender.join(10)
            assert appended == [first.seq + 1]
        finally:
            release.set()
            holder.join(10)
            if appender.is_alive():
                appender.join(10)
        body.audit.finish(anchor_sync=False)
        body.audit.settle()
        # Another writer appends after the journal was emptied: the next append sees it and chains after it.
        third = other.audit.append(_draft(3))
        fourth = body.audit.append(_draft(4), finish_later=True)
        assert fourth.seq == third.seq + 1
        body.audit.finish()
        assert _committed(body) == ["act_1", "act_2", "act_3", "act_4"]
        assert body.audit.verify().ok
    finally:
        other.close()
        body.close()


async def test_a_read_is_journaled_while_the_reads_batch_commit_waits_for_its_sync(
    body: Body, monkeypatch: pytest.MonkeyPatch
) -> None:
    from body_mcp._db import StateDB

    # A slow disk: the database's sync waits until the test lets it go.
    syncing, release = threading.Event(), threading.Event()
    real = StateDB.sync_wal

    def slow_sync(db: StateDB) -> None:
        syncing.set()
        release.wait(30)
        real(db)

    monkeypatch.setattr(StateDB, "sync_wal", slow_sync)
    monkeypatch.setattr("body_mcp.audit._writer.LAZY_FINISH_S", 0.0)
    body.replies.flushed = True
    (body.workspace.root / "r.txt").write_text("r")
    try:
        first = await body.call_tool("read_text_file", {"path": "r.txt", "rationale": "r"})
        body.replies.run()  # the batch commit is asked for (its timer: at once)
        with anyio.fail_after(10):
            while not syncing.is_set():  # committed, and its sync begun (in the settler's thread)
                await anyio.sleep(0.005)
        assert first.action_id in _committed(body)
        with anyio.fail_after(5):  # (waiting behind the sync, under the locks, it would wait 30 s)
            second = await body.call_tool("read_text_file", {"path": "r.txt", "rationale": "r"})
        assert not second.is_error
        assert second.action_id.encode() in body.paths.journal.read_bytes()
    finally:
        release.set()
    body.replies.run()
    with anyio.fail_after(5):
        while second.action_id not in _committed(body) or _anchor(body) != _head(body):
            await anyio.sleep(0.005)
    assert body.audit.verify().ok


async def test_a_mutating_calls_settle_is_timed_off_the_event_loop(workspace: Path, home: Path) -> None:
    import time

    body = make_body(workspace, home, {"audit": {"durability": "power_loss"}})
    try:
        body.replies.flushed = True
        out = await body.call_tool("write_file", {"path": "a.txt", "content": "1", "rationale": "r"})
        assert not out.is_error
        body.replies.run()
        await body.audit_writer.settled()  # committed; the settle is owed
        # The event loop kept busy (this test's own thread, not awaiting): the settle comes all the same.
        deadline = time.monotonic() + 5
        while body.audit.sync_owed and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not body.audit.sync_owed and _anchor(body) == _head(body)
    finally:
        body.close()
