"""The audit trail: every call recorded, append-only in the database, tamper-evident outside it."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import anyio
import pytest
from mcp import Client

from body_mcp import Body
from body_mcp.audit import canonical_json, keep_retention, with_mac
from body_mcp.guard import CallContext, Next, default_guards
from shared_protocol import ToolResult
from shared_protocol.config import parse_config

from ..conftest import make_body, require_binary
from .helpers import call, ok

pytestmark = pytest.mark.anyio


async def _fill(client: Client, n: int = 5) -> None:
    for i in range(n):
        ok(await call(client, "write_file", path=f"f{i}.txt", content=f"v{i}", rationale=f"reason {i}"))


def _sqlite(db: Path, sql: str) -> subprocess.CompletedProcess[str]:
    sqlite3_cli = require_binary("sqlite3", "sqlite3")
    return subprocess.run([sqlite3_cli, str(db), sql], capture_output=True, text=True, check=False)


def _verify_cli(workspace: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm_cli", "audit", "verify", "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        env={"SWARM_HOME": str(home), "PATH": "/usr/bin:/bin"},
        check=False,
    )


async def test_events_carry_rationale_agent_arguments_and_hashed_contents(client: Client, body: Body) -> None:
    ok(await call(client, "write_file", path="a.txt", content="secret-ish content", rationale="because"))
    event = body.audit.tail(1)[0]
    assert event.rationale == "because" and event.tool == "write_file" and event.outcome == "ok"
    assert event.arguments["content"] == {"sha256": event.arguments["content"]["sha256"], "size": 18}
    assert "secret-ish" not in body.paths.db.read_bytes().decode("latin-1")
    assert event.files == ["a.txt"] and event.impact.files == 1 and event.duration_ms > 0


def test_the_database_itself_refuses_update_and_delete(body: Body) -> None:
    body.record_human(action="note", rationale="first")
    with sqlite3.connect(body.paths.db) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit_events SET body = '{}'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit_events")


@pytest.mark.parametrize(
    "name,sql,first_bad",
    [
        (
            "edit",
            "DROP TRIGGER audit_events_no_update; "
            "UPDATE audit_events SET body = replace(body, 'reason 2', 'reason X') WHERE seq = 3;",
            3,
        ),
        ("delete", "DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq = 2;", 3),
        (
            "reorder",
            "DROP TRIGGER audit_events_no_update; "
            "UPDATE audit_events SET seq = seq + 100 WHERE seq IN (2, 3); "
            "UPDATE audit_events SET seq = 5 - (seq - 100) WHERE seq IN (102, 103);",
            2,
        ),
        (
            "insert",
            "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 3; "
            "UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1000; "
            "INSERT INTO audit_events (seq, id, ts, body, mac) "
            "SELECT 3, 'act_forged', ts, body, mac FROM audit_events WHERE seq = 2;",
            3,
        ),
        ("truncate", "DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq = 5;", None),
    ],
)
async def test_tampering_with_the_sqlite3_cli_fails_swarm_audit_verify(
    client: Client, body: Body, workspace: Path, home: Path, name: str, sql: str, first_bad: int | None
) -> None:
    await _fill(client)
    assert _verify_cli(workspace, home).returncode == 0
    result = _sqlite(body.paths.db, sql)
    assert result.returncode == 0, result.stderr
    report = body.audit.verify()
    assert not report.ok, name
    if first_bad is not None:
        assert report.first_bad_seq == first_bad, report
    cli = _verify_cli(workspace, home)
    assert cli.returncode == 1 and "BROKEN" in cli.stderr and cli.stderr.count("\n") == 1


async def test_a_rewritten_chain_without_the_key_is_detected(client: Client, body: Body) -> None:
    await _fill(client, 3)
    # Recompute plain sha256 "macs" as an attacker without the key would: still detected.
    import hashlib
    import json

    with sqlite3.connect(body.paths.db) as conn:
        conn.execute("DROP TRIGGER audit_events_no_update")
        rows = conn.execute("SELECT seq, body FROM audit_events ORDER BY seq").fetchall()
        for seq, raw in rows:
            data = json.loads(raw)
            data["rationale"] = "rewritten"
            data["mac"] = hashlib.sha256(json.dumps(data).encode()).hexdigest()
            conn.execute(
                "UPDATE audit_events SET body = ?, mac = ? WHERE seq = ?", (json.dumps(data), data["mac"], seq)
            )
    assert body.audit.verify().first_bad_seq == 1


async def test_a_database_one_event_ahead_of_its_anchor_is_a_crash_not_tampering(client: Client, body: Body) -> None:
    await _fill(client, 3)
    events = body.audit.tail(2)
    body.audit._write_anchor(events[0].seq, events[0].mac)  # pyright: ignore[reportPrivateUsage]
    report = body.audit.verify()
    assert report.ok and report.anchor == "one_behind"
    body.audit._write_anchor(events[0].seq - 1, events[0].prev_mac)  # pyright: ignore[reportPrivateUsage]
    assert not body.audit.verify().ok


async def test_a_deleted_anchor_is_detected(client: Client, body: Body) -> None:
    await _fill(client, 2)
    body.paths.anchor.write_bytes(b"")
    assert body.audit.verify().anchor == "missing"


async def test_retention_prunes_only_through_a_checkpoint_that_keeps_the_chain_verifiable(
    client: Client, body: Body
) -> None:
    await _fill(client, 5)
    future = datetime.now(UTC) + timedelta(days=91)
    deleted = body.audit.prune(retention_days=90, now=future)
    assert deleted == 4
    report = body.audit.verify()
    assert report.ok, report
    events = body.audit.tail(10)
    assert events[-1].kind == "checkpoint" and events[-1].detail["through_seq"] == 4
    await _fill(client, 2)
    assert body.audit.prune(retention_days=90, now=future + timedelta(days=1)) > 0
    assert body.audit.verify().ok
    with sqlite3.connect(body.paths.db) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("DELETE FROM audit_events")


async def test_a_serving_body_prunes_at_start_and_then_every_interval_while_calls_go_on(
    client: Client, body: Body
) -> None:
    await _fill(client, 5)
    clock = [datetime.now(UTC) + timedelta(days=91)]
    stop = anyio.Event()

    def checkpoints() -> list[int]:
        return [int(e.detail["through_seq"]) for e in body.audit.tail(100) if e.kind == "checkpoint"]

    async with anyio.create_task_group() as group:
        group.start_soon(
            partial(keep_retention, body.audit, retention_days=90, stop=stop, interval_s=0.2, now=lambda: clock[0])
        )
        with anyio.fail_after(5):
            while not checkpoints():
                await anyio.sleep(0.01)
        assert checkpoints() == [4]
        await _fill(client, 3)  # calls go on beside the loop, from the event loop's thread
        clock[0] += timedelta(days=1)
        with anyio.fail_after(5):
            while len(checkpoints()) < 2:
                await anyio.sleep(0.01)
        stop.set()
    report = body.audit.verify()
    assert report.ok and report.anchor == "match", report


async def test_prune_then_deleting_the_first_remaining_event_is_detected(client: Client, body: Body) -> None:
    await _fill(client, 4)
    body.audit.prune(retention_days=90, now=datetime.now(UTC) + timedelta(days=91))
    await _fill(client, 3)
    first = body.audit.tail(100)[0].seq
    _sqlite(body.paths.db, f"DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq = {first};")
    assert not body.audit.verify().ok


def test_two_bodies_on_one_workspace_share_one_chain(workspace: Path, home: Path) -> None:
    a, b = make_body(workspace, home), make_body(workspace, home)
    try:
        for i in range(5):
            a.record_human(action="note", rationale=f"a{i}")
            b.record_human(action="note", rationale=f"b{i}")
        assert a.identity.body_id == b.identity.body_id
        report = a.audit.verify()
        assert report.ok and report.events == 10
    finally:
        a.close()
        b.close()


async def test_the_event_returned_by_append_is_exactly_what_is_stored(client: Client, body: Body) -> None:
    ok(await call(client, "write_file", path="a.txt", content="x", decision_id="dec_1"))
    returned = body.audit.tail(1)[0]
    stored = body.audit.get(returned.id)
    assert stored is not None and stored.model_dump() == returned.model_dump()
    from shared_protocol import AuditEvent

    assert AuditEvent.model_validate(returned.model_dump(mode="json")) == stored


@pytest.mark.parametrize(
    "arguments,rationale,message",
    [
        ({}, "plain", None),
        ({"a": {"b": 1, "message": "nested"}, "message": ',"message":'}, 'say ,"message": here', "refused"),
        ({"z": [{"message": None}]}, 'quote " and ,"message":1', ',"message":"x"'),
    ],
    ids=["plain", "nested-message-keys", "tricky-strings"],
)
def test_the_stored_body_is_the_canonical_json_of_the_signed_payload_plus_its_mac(
    arguments: dict[str, object], rationale: str, message: str | None
) -> None:
    payload = {
        "agent": "a",
        "arguments": arguments,
        "detail": {"message": "d"},
        "message": message,
        "rationale": rationale,
        "seq": 7,
        "ts": "t",
    }
    signed = canonical_json(payload)
    assert with_mac(signed, "f" * 64) == canonical_json({**payload, "mac": "f" * 64})


async def test_retention_never_prunes_past_what_the_brain_acknowledged(client: Client, body: Body) -> None:
    await _fill(client, 5)
    future = datetime.now(UTC) + timedelta(days=91)
    assert body.audit.prune(retention_days=90, now=future, through_at_most=2) == 2
    assert body.audit.tail(100)[0].seq == 3 and body.audit.verify().ok
    assert body.audit.prune(retention_days=90, now=future, through_at_most=2) == 0


async def test_a_failing_prune_is_reported_and_the_loop_goes_on(body: Body, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    errors: list[Exception] = []

    def flaky(**kwargs: object) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OverflowError("date value out of range")  # the fault injected
        return 0

    monkeypatch.setattr(body.audit, "prune", flaky)
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(
            partial(keep_retention, body.audit, retention_days=90, stop=stop, interval_s=0.05, on_error=errors.append)
        )
        with anyio.fail_after(5):
            while len(calls) < 2:
                await anyio.sleep(0.01)
        stop.set()
    assert [type(e) for e in errors] == [OverflowError]
    with pytest.raises(ValueError, match="retention_days"):
        parse_config({"audit": {"retention_days": 10**6}})


@pytest.mark.parametrize("key", [b"", b"k" * 32, b"k" * 64, b"k" * 65, bytes(range(256))])
def test_the_prepared_hmac_is_rfc_2104_hmac_sha256(key: bytes) -> None:
    import hashlib
    import hmac

    from body_mcp.audit import _HmacSha256  # pyright: ignore[reportPrivateUsage]

    prepared = _HmacSha256(key)
    for message in (b"", b"event", "é".encode() * 500):
        assert prepared.hexdigest(message) == hmac.new(key, message, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [1.5, None, True, 'é\n"x'], "c": {"z": float("inf"), "y": 1e16, "x": -0.0}},
        {"k": "\u2028\ud800", "nested": [{"z": 1, "a": 2}]},
        "text",
        3,
        [],
    ],
)
def test_the_prebuilt_encoders_write_what_json_dumps_writes(value: object) -> None:
    import json

    from body_mcp import _json

    assert _json.canonical(value) == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert _json.compact(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert _json.plain(value) == json.dumps(value, ensure_ascii=False)
    with pytest.raises(TypeError, match="not JSON serializable"):
        _json.canonical({"a": object()})


def test_a_body_idle_while_another_appends_and_prunes_still_chains_onto_the_real_head(
    workspace: Path, home: Path
) -> None:
    idle, busy = make_body(workspace, home), make_body(workspace, home)
    try:
        idle.record_human(action="note", rationale="idle remembers this head")
        future = datetime.now(UTC) + timedelta(days=2)
        for i in range(3):
            busy.record_human(action="note", rationale=f"busy {i}")
            busy.audit.prune(retention_days=1, now=future)  # the event after idle's head is pruned away
        idle.record_human(action="note", rationale="idle again")
        idle.audit.prune(retention_days=1, now=future + timedelta(days=2))
        report = idle.audit.verify()
        assert report.ok, report.summary()
        assert idle.audit.tail(1)[0].kind == "checkpoint"
    finally:
        idle.close()
        busy.close()


def test_a_write_that_fails_inside_sqlite_surfaces_its_own_error(tmp_path: Path) -> None:
    from body_mcp._db import StateDB

    db = StateDB(tmp_path / "state.db")
    try:
        with db.write() as conn:
            conn.execute("CREATE TABLE filler (data BLOB)")
        page_count = int(db.conn.execute("PRAGMA page_count").fetchone()[0])
        db.conn.execute(f"PRAGMA max_page_count = {page_count + 2}")  # a disk about to be full
        with pytest.raises(sqlite3.OperationalError, match="full"), db.write() as conn:
            for _ in range(50):
                conn.execute("INSERT INTO filler VALUES (zeroblob(8192))")
        assert not db.conn.in_transaction
        with db.write() as conn:  # and the next transaction starts cleanly
            conn.execute("DELETE FROM filler")
    finally:
        db.close()


def test_an_append_after_close_raises_and_writes_nothing(body: Body) -> None:
    event = body.record_human(action="note", rationale="before close")
    body.audit.close()
    body.audit.close()  # harmless twice (the body closes it again)
    with open(body.paths.db, "rb") as reused:  # a file that may now have the anchor's old descriptor number
        with pytest.raises(RuntimeError, match="closed"):
            body.record_human(action="note", rationale="after close")
        assert reused.read(16) == b"SQLite format 3\x00"
    assert body.paths.anchor.read_text() == f"{event.seq:020d} {event.mac}\n"


def _anchor(body: Body) -> str:
    return body.paths.anchor.read_text()


def _break_anchor(body: Body, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every anchor write fails as a failing disk would, until `monkeypatch.undo()`."""

    def broken(seq: int, mac: str) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(body.audit, "_write_anchor", broken)


def _head(body: Body) -> str:
    head = body.audit.tail(1)[0]
    return f"{head.seq:020d} {head.mac}\n"


async def test_after_a_reply_the_anchor_is_owed_one_event_at_most_and_other_writers_wait_for_it(
    workspace: Path, home: Path
) -> None:
    body = make_body(workspace, home)
    other = make_body(workspace, home)  # another process's store: its own descriptor, so its own flock
    try:
        body.replies_flushed = True  # as the stdio transport sets it
        first = await body.call_tool("write_file", {"path": "a.txt", "content": "1", "rationale": "r"})
        assert not first.is_error
        assert _anchor(body) != _head(body)
        report = body.audit.verify()
        assert report.ok and report.anchor == "one_behind", report.summary()

        done = threading.Event()

        def append_elsewhere() -> None:
            other.record_human(action="note", rationale="waits for the owed anchor")
            done.set()

        thread = threading.Thread(target=append_elsewhere)
        thread.start()
        assert not done.wait(0.3)  # the flock is held until the anchor is written
        body.after_reply()  # what the transport does once the reply is written
        assert done.wait(5)
        thread.join()
        report = body.audit.verify()
        assert report.ok and report.anchor == "match", report.summary()

        # A call whose anchor is still owed pays it before its own commit: never two events ahead.
        for n in range(3):
            await body.call_tool("write_file", {"path": f"b{n}.txt", "content": "x", "rationale": "r"})
            assert body.audit.verify().anchor == "one_behind"
    finally:
        body.close()  # writes what is owed
        other.close()
    reopened = make_body(workspace, home)
    try:
        assert _anchor(reopened) == _head(reopened)
    finally:
        reopened.close()


async def test_an_owed_anchor_is_written_soon_even_when_no_reply_is_written(body: Body) -> None:
    body.replies_flushed = True
    await body.call_tool("write_file", {"path": "a.txt", "content": "1", "rationale": "r"})
    with anyio.fail_after(2):
        while _anchor(body) != _head(body):
            await anyio.sleep(0.005)
    assert not body.audit.anchor_owed


async def test_an_anchor_that_cannot_be_written_after_a_reply_stops_the_next_call_until_it_can(
    body: Body, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    body.replies_flushed = True
    ok_ = await body.call_tool("write_file", {"path": "a.txt", "content": "1", "rationale": "r"})
    assert not ok_.is_error
    written = _head(body)
    _break_anchor(body, monkeypatch)
    body.after_reply()
    assert "work left for after a reply failed" in caplog.text
    assert body.audit.anchor_owed
    events = len(body.audit.tail(100))

    refused = await body.call_tool("write_file", {"path": "b.txt", "content": "2", "rationale": "r"})
    assert refused.is_error
    assert refused.structured["code"] == "io_error" and refused.structured["rule"] == "audit.anchor"
    assert "Input/output error" in refused.structured["message"]
    assert not (body.workspace.root / "b.txt").exists()
    assert len(body.audit.tail(100)) == events  # nothing ran, so nothing to audit (nor could it be)

    # Meanwhile another process may append (the flock was let go), and the retry must not move its anchor back.
    other = make_body(body.workspace.root, body.settings.home)
    try:
        other.record_human(action="note", rationale="appended while the first body's anchor failed")
    finally:
        other.close()
    monkeypatch.undo()
    again = await body.call_tool("write_file", {"path": "b.txt", "content": "2", "rationale": "r"})
    assert not again.is_error
    body.after_reply()
    assert _anchor(body) == _head(body) != written
    report = body.audit.verify()
    assert report.ok and report.anchor == "match", report.summary()


async def test_an_append_pays_the_anchor_it_owes_before_committing_its_own_event(body: Body) -> None:
    from body_mcp.audit import EventDraft

    def draft(n: int) -> EventDraft:
        return EventDraft(id=f"act_{n}", kind="human", agent="t", session="s", rationale=f"{n}", outcome="ok")

    first = body.audit.append(draft(1), anchor_later=True)
    assert body.audit.anchor_owed
    second = body.audit.append(draft(2), anchor_later=True)  # no `anchor()` in between
    assert _anchor(body) == f"{first.seq:020d} {first.mac}\n"
    assert body.audit.verify().anchor == "one_behind"
    body.audit.anchor()
    assert _anchor(body) == f"{second.seq:020d} {second.mac}\n"


async def test_a_failed_anchor_sync_is_written_and_synced_again_not_taken_from_the_page_cache(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = make_body(workspace, home, {"audit": {"durability": "power_loss"}})
    try:
        body.replies_flushed = True
        await body.call_tool("write_file", {"path": "a.txt", "content": "1", "rationale": "r"})
        real = os.fdatasync
        calls: list[str] = []

        def fdatasync(fd: int) -> None:
            if not calls:
                calls.append("failed")
                raise OSError(errno.EIO, "Input/output error")  # the write-back failed; reported this once
            calls.append("synced")
            real(fd)

        monkeypatch.setattr(os, "fdatasync", fdatasync)
        body.after_reply()  # pwrite worked, its sync did not
        assert calls == ["failed"] and _anchor(body) == _head(body)  # (the record is in the page cache)
        assert body.audit.anchor_owed
        body.audit.anchor()
        assert calls == ["failed", "synced"]
        assert not body.audit.anchor_owed
    finally:
        body.close()


class _HoldCalls:
    """A guard that holds calls writing `path` until `go` is set (a call already running when something fails)."""

    def __init__(self, path: str) -> None:
        self.path, self.go, self.holding = path, anyio.Event(), anyio.Event()

    async def __call__(self, body: Body, ctx: CallContext, call_next: Next) -> ToolResult:
        if ctx.raw_arguments.get("path") == self.path:
            self.holding.set()
            await self.go.wait()
        return await call_next(ctx)


async def test_a_call_already_running_when_an_anchor_fails_is_still_audited_and_the_failure_raised(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = _HoldCalls("b.txt")
    body = make_body(workspace, home, guards=[hold, *default_guards()])
    try:
        body.replies_flushed = True
        failure: list[BaseException] = []

        async def call_b() -> None:
            try:
                await body.call_tool("write_file", {"path": "b.txt", "content": "b", "rationale": "runs on"})
            except OSError as exc:
                failure.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call_b)
            await hold.holding.wait()  # B is past the start of its call
            await body.call_tool("write_file", {"path": "a.txt", "content": "a", "rationale": "replied"})
            _break_anchor(body, monkeypatch)
            body.after_reply()  # A's anchor fails after its reply
            hold.go.set()
        assert (workspace / "b.txt").read_text() == "b"
        assert failure and "Input/output error" in str(failure[0])  # loud, to B's caller
        recorded = [e for e in body.audit.tail(10) if e.tool == "write_file"]
        assert [e.files for e in recorded] == [["a.txt"], ["b.txt"]]  # and B's change is in the trail

        monkeypatch.undo()
        again = await body.call_tool("write_file", {"path": "c.txt", "content": "c", "rationale": "r"})
        assert not again.is_error
        body.after_reply()
        report = body.audit.verify()
        assert report.ok and report.anchor == "match", report.summary()
    finally:
        body.close()


async def test_while_an_owed_anchor_fails_only_calls_that_already_ran_are_committed(
    body: Body, monkeypatch: pytest.MonkeyPatch
) -> None:
    body.replies_flushed = True
    for name in ("a.txt", "b.txt"):  # (two events: retention always keeps the newest)
        await body.call_tool("write_file", {"path": name, "content": "1", "rationale": "r"})
    _break_anchor(body, monkeypatch)
    body.after_reply()
    before = [e.seq for e in body.audit.tail(100)]
    with pytest.raises(OSError, match="Input/output error"):
        body.record_human(action="note", rationale="a human's note waits for the anchor")
    with pytest.raises(OSError, match="Input/output error"):
        body.audit.prune(retention_days=1, now=datetime.now(UTC) + timedelta(days=2))
    assert [e.seq for e in body.audit.tail(100)] == before  # neither committed (nor pruned) anything
