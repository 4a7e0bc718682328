"""The audit trail: every call recorded, append-only in the database, tamper-evident outside it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import anyio
import pytest
from mcp import Client

from body_mcp import Body
from body_mcp.audit import canonical_json, keep_retention, redact_arguments
from body_mcp.audit._chain import with_mac
from body_mcp.audit._files import read_key
from shared_protocol import AuditEvent
from shared_protocol.audit import attestation_key, attested
from shared_protocol.config import parse_config
from tests.cli.inprocess import swarm_in_process

from ..conftest import make_body, require_binary
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio


async def _fill(client: Client, n: int = 5) -> None:
    for i in range(n):
        # (four files at most: a fifth in one session would need approval, which is not what these tests are about)
        ok(await call(client, "write_file", path=f"f{i % 4}.txt", content=f"v{i}", rationale=f"reason {i}"))


def _sqlite(db: Path, sql: str) -> subprocess.CompletedProcess[str]:
    sqlite3_cli = require_binary("sqlite3", "sqlite3")
    return subprocess.run([sqlite3_cli, str(db), sql], capture_output=True, text=True, check=False)


async def _verify_here(workspace: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`swarm audit verify` in the test's process (`tests/cli/inprocess.py`: the same entry point, its output and exit
    status, minus a new Python's start); `_verify_cli` runs it as a process of its own."""
    env = {"SWARM_HOME": str(home), "PATH": "/usr/bin:/bin"}
    return await swarm_in_process(["audit", "verify", "--workspace", str(workspace)], env)


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
    assert (await _verify_here(workspace, home)).returncode == 0
    result = _sqlite(body.paths.db, sql)
    assert result.returncode == 0, result.stderr
    report = body.audit.verify()
    assert not report.ok, name
    if first_bad is not None:
        assert report.first_bad_seq == first_bad, report
    cli = await _verify_here(workspace, home)
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


async def test_a_database_ahead_of_its_anchor_is_a_crash_or_failed_anchor_writes_not_tampering(
    client: Client, body: Body
) -> None:
    await _fill(client, 3)
    events = body.audit.tail(3)
    body.audit._write_anchor(events[1].seq, events[1].mac)  # pyright: ignore[reportPrivateUsage]
    report = body.audit.verify()
    assert report.ok and report.anchor == "one_behind", report.summary()
    body.audit._write_anchor(events[0].seq, events[0].mac)  # pyright: ignore[reportPrivateUsage]
    report = body.audit.verify()  # (two behind: anchor writes that failed while calls that ran went on)
    assert report.ok and report.anchor == "behind", report.summary()
    body.audit._write_anchor(events[0].seq, events[1].mac)  # pyright: ignore[reportPrivateUsage]
    assert not body.audit.verify().ok  # an anchor that names no event of the chain


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

    from body_mcp.audit._chain import HmacSha256

    prepared = HmacSha256(key)
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
    assert body.paths.anchor.read_text().split()[:2] == [f"{event.seq:020d}", event.mac]


# -- strings UTF-8 cannot encode ---------------------------------------------------------------


def test_an_event_holding_strings_utf8_cannot_encode_is_written_escaped_and_verifies(body: Body) -> None:
    from body_mcp.audit import EventDraft, new_action_id, unescape_string

    sent = {"path": "bad\udcff\\x41.txt", "k\ud800": ["\udc80"], "content": "text \udcff"}
    appended = body.audit.append(
        EventDraft(
            id=new_action_id(),
            kind="tool_call",
            agent="a",
            session="s",
            rationale="why \udcfe",
            outcome="refused",
            tool="write\udcff",
            arguments=redact_arguments(sent),
            files=["bad\udcff"],
        )
    )
    report = body.audit.verify()
    assert report.ok and report.events == 1, report.summary()
    stored = body.audit.get(appended.id)
    assert stored is not None and stored.detail["strings_escaped"] is True
    assert unescape_string(stored.arguments["path"]) == sent["path"]  # lossless: a literal "\x41" stays itself
    assert {unescape_string(k) for k in stored.arguments} == set(sent)
    assert unescape_string(stored.rationale) == "why \udcfe" and unescape_string(stored.files[0]) == "bad\udcff"
    assert stored.arguments["content"]["size"] == len("text \udcff".encode(errors="surrogatepass"))


@pytest.mark.parametrize(
    "arguments",
    [
        {"path": "bad\udcff.txt", "content": "x"},
        {"path": "ok.txt", "content": "x\ud800"},
        {"path": "ok.txt", "content": "x", "extra\udcff": 1},
    ],
    ids=["path", "content", "argument-name"],
)
async def test_a_write_whose_arguments_are_not_valid_unicode_is_a_refused_audited_result_and_writes_nothing(
    client: Client, body: Body, workspace: Path, arguments: dict[str, object]
) -> None:
    before = sorted(p.name for p in workspace.rglob("*"))
    result = await call(client, "write_file", **arguments)
    data = refused(result, "invalid_arguments")
    event = body.audit.get(data["action_id"])
    assert event is not None and event.outcome == "refused" and event.code == "invalid_arguments"
    assert body.audit.verify().ok
    assert sorted(p.name for p in workspace.rglob("*")) == before
    ok(await call(client, "write_file", path="after.txt", content="the body goes on"))


def test_over_stdio_a_write_whose_path_is_not_valid_unicode_is_refused_audited_and_writes_nothing(
    workspace: Path, home: Path
) -> None:
    import json
    import os
    import select

    before = sorted(p.name for p in workspace.rglob("*"))
    body = subprocess.Popen(
        [sys.executable, "-m", "swarm_cli", "body", "--workspace", str(workspace)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "SWARM_HOME": str(home)},
    )
    assert body.stdin is not None and body.stdout is not None

    def send(raw: bytes) -> None:
        assert body.stdin is not None
        body.stdin.write(raw + b"\n")
        body.stdin.flush()

    def reply() -> dict[str, object]:
        assert body.stdout is not None
        ready, _, _ = select.select([body.stdout], [], [], 30)
        assert ready, "no reply"
        return json.loads(body.stdout.readline())

    try:
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}).encode())
        reply()
        send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        # As a client's JSON.stringify sends a name it read from a directory that is not UTF-8: a lone surrogate.
        arguments = b'{"path":"bad\\udcff.txt","content":"x","rationale":"r"}'
        send(
            b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"write_file","arguments":'
            + arguments
            + b"}}"
        )
        answer = reply()
    finally:
        body.kill()
        body.wait()
    result = answer["result"]
    assert isinstance(result, dict) and result["isError"] is True
    assert result["structuredContent"]["code"] == "invalid_arguments"
    assert sorted(p.name for p in workspace.rglob("*")) == before  # nothing written, under any name
    verify = _verify_cli(workspace, home)  # (it also commits what the killed body journaled)
    assert verify.returncode == 0 and "audit chain OK" in verify.stdout, verify.stderr
    [db] = home.rglob("state.db")
    events = [json.loads(row[0]) for row in sqlite3.connect(db).execute("SELECT body FROM audit_events")]
    calls = [e for e in events if e["kind"] == "tool_call"]  # (the body's start snapshot may be there too)
    assert [(e["tool"], e["code"]) for e in calls] == [("write_file", "invalid_arguments")], events


def test_statements_holding_a_name_utf8_cannot_encode_never_stop_the_event_being_written(body: Body) -> None:
    from body_mcp._db import Writes
    from body_mcp.audit import EventDraft, new_action_id

    writes = Writes()
    writes.add("INSERT INTO blobs (sha256, data) VALUES (?, ?)", ("name \udcff", b"x"))
    appended = body.audit.append(
        EventDraft(id=new_action_id(), kind="tool_call", agent="a", session="s", rationale="r", outcome="ok"),
        writes=writes,
    )
    stored = body.audit.get(appended.id)
    assert stored is not None and stored.detail["writes_dropped"] == 1
    assert body.audit.verify().ok


# -- the anchor cannot be written from the database alone ------------------------------------------


@pytest.mark.parametrize("tag", ["none", "the-old-anchor's", "made-up"])
async def test_cutting_the_tail_and_writing_the_anchor_from_the_database_is_detected_without_the_key(
    client: Client, body: Body, workspace: Path, home: Path, tag: str
) -> None:
    await _fill(client, 5)
    old_tag = body.paths.anchor.read_text().split()[2]
    # All an attacker without the key can do: cut the tail, name the new head in the anchor, empty the journal.
    cut = _sqlite(body.paths.db, "DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq > 3;")
    assert cut.returncode == 0, cut.stderr
    head = body.audit.tail(1)[0]
    forged = {"none": "", "the-old-anchor's": f" {old_tag}", "made-up": " " + "0" * 64}[tag]
    body.paths.anchor.write_text(f"{head.seq:020d} {head.mac}{forged}\n")
    body.paths.journal.write_bytes(b"")
    report = body.audit.verify()
    assert not report.ok and report.anchor == "forged", report.summary()
    cli = await _verify_here(workspace, home)
    assert cli.returncode == 1 and cli.stderr.count("\n") == 1


def test_an_untagged_anchor_from_before_tags_is_upgraded_in_place_and_refused_after(
    workspace: Path, home: Path
) -> None:
    from body_mcp.audit._files import KEY_HEADER

    old = make_body(workspace, home)
    for n in range(3):
        old.record_human(action="note", rationale=f"{n}")
    head = old.audit.tail(1)[0]
    paths = old.paths
    old.close()
    # What a workspace from before anchors were tagged holds: a bare 32-byte key, an untagged anchor.
    paths.audit_key.write_bytes(paths.audit_key.read_bytes()[-32:])
    paths.anchor.write_text(f"{head.seq:020d} {head.mac}\n")
    paths.audit.checkpoint.unlink(missing_ok=True)
    body = make_body(workspace, home)
    try:
        assert body.audit.broken is None
        assert paths.audit_key.read_bytes().startswith(KEY_HEADER) and len(paths.anchor.read_text().split()) == 3
        body.record_human(action="note", rationale="after the upgrade")
        assert body.audit.verify().ok
        head = body.audit.tail(1)[0]
        paths.anchor.write_text(f"{head.seq:020d} {head.mac}\n")  # untagged, now that the key file says otherwise
        assert body.audit.verify().anchor == "forged"
    finally:
        body.close()


async def test_the_body_attests_only_what_its_chain_signed(client: Client, body: Body) -> None:
    """What a linked body ships carries an attestation the brain checks under the body's verification key: the
    same from the stored text as from the event; none for a row someone wrote into the database with another MAC."""
    await _fill(client, 2)
    body.record_human(action="note", rationale="with\\backslash and \u00e9")
    attester = body.audit.attester()
    key = read_key(body.paths.audit.key)
    assert attester is not None and key is not None
    assert attester.verify_key == attestation_key(key.key, body.identity.body_id), "derived: never the audit key"
    with sqlite3.connect(body.paths.db) as conn:
        stored = [row[0] for row in conn.execute("SELECT body FROM audit_events ORDER BY seq")]
    for text in stored:
        event = AuditEvent.model_validate_json(text)
        fast, slow = attester.attest(event, stored=text), attester.attest(event)
        assert fast.attest is not None and fast.attest == slow.attest
        assert attested(attester.verify_key, fast), "the brain's check agrees"
        assert not attested("ab" * 32, fast)
    forged = AuditEvent.model_validate_json(stored[-1]).model_copy(update={"rationale": "edited"})
    assert attester.attest(forged).attest is None, "a row the chain's key did not sign is not attested"
