"""A body on an audit chain that does not verify: it refuses mutating calls until a human starts a new chain.

Damage is done to the files between two bodies, as an attacker or a failing disk would: the key, the database
or the anchor deleted, replaced or edited. A brand-new workspace is not damaged; start-up verifies only what
was appended since the last check; `swarm audit reset` sets the old chain aside and starts a new one.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from mcp import Client

from body_mcp import build_server
from body_mcp.state import StatePaths

from ..cli.inprocess import run_swarm, swarm_in_process
from ..conftest import make_body
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio


def _trail_of(workspace: Path, home: Path, events: int) -> StatePaths:
    """A workspace whose chain holds `events` events, checked once at a start, and no body open on it."""
    body = make_body(workspace, home)
    try:
        for n in range(events):
            body.record_human(action="note", rationale=f"event {n}")
        paths = body.paths
    finally:
        body.close()
    return paths


def _sql(paths: StatePaths, script: str) -> None:
    conn = sqlite3.connect(paths.db)
    try:
        conn.executescript(script)
    finally:
        conn.close()


def _delete_database(paths: StatePaths) -> None:
    for suffix in ("", "-wal", "-shm"):
        paths.db.with_name(paths.db.name + suffix).unlink(missing_ok=True)


def _swarm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI's entry point in the test's process (`tests/cli/inprocess.py`: no new Python to start)."""
    return run_swarm(args, {**os.environ, "SWARM_HOME": str(home)})


def _swarm_process(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, a process of its own (as a body, or a command that another process's body must stop)."""
    return subprocess.run(
        [sys.executable, "-m", "swarm_cli", *args],
        env={**os.environ, "SWARM_HOME": str(home)},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=60,
    )


DAMAGE: dict[str, Callable[[StatePaths], None]] = {
    "database deleted": _delete_database,
    "tail deleted": lambda p: _sql(p, "DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq > 2;"),
    "event edited": lambda p: _sql(
        p,
        "DROP TRIGGER audit_events_no_update; "
        "UPDATE audit_events SET body = replace(body, 'event 4', 'event X') WHERE seq = 5;",
    ),
    "anchor garbage": lambda p: p.anchor.write_bytes(b"garbage\n"),
    "anchor deleted": lambda p: p.anchor.unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
async def test_a_body_on_a_damaged_chain_refuses_mutating_calls_and_says_so_in_status(
    workspace: Path, home: Path, damage: str
) -> None:
    paths = _trail_of(workspace, home, 3)
    body = make_body(workspace, home)  # (a start checks from here: the events after it are what it verifies)
    for n in range(3, 6):
        body.record_human(action="note", rationale=f"event {n}")
    body.close()
    DAMAGE[damage](paths)
    body = make_body(workspace, home)
    try:
        assert body.audit.broken is not None
        async with Client(build_server(body)) as client:
            data = refused(await call(client, "write_file", path="new.txt", content="x"), "audit_broken")
            assert not (workspace / "new.txt").exists()
            event = body.audit.get(data["action_id"])
            assert event is not None and event.code == "audit_broken"  # the refusal is audited all the same
            ok(await call(client, "read_text_file", path="README.md"))
            status = ok(await call(client, "status"))
            assert status["audit"] == "broken" and status["audit_problem"]
    finally:
        body.close()
    again = make_body(workspace, home)  # what was appended since does not make it whole again
    try:
        assert again.audit.broken is not None and not again.audit.verify().ok
    finally:
        again.close()


async def test_without_its_key_a_chain_is_never_given_a_new_one_and_nothing_runs(workspace: Path, home: Path) -> None:
    paths = _trail_of(workspace, home, 3)
    paths.audit_key.unlink()
    body = make_body(workspace, home)
    try:
        assert body.audit.sealed
        async with Client(build_server(body)) as client:
            refused_write = await call(client, "write_file", path="new.txt", content="x")
            assert refused_write.is_error and refused_write.structured_content
            assert refused_write.structured_content["code"] == "audit_broken"
            read = await call(client, "read_text_file", path="README.md")  # nothing can be recorded: denied too
            assert read.is_error and read.structured_content and read.structured_content["code"] == "audit_broken"
        assert not (workspace / "new.txt").exists() and not paths.audit_key.exists()
        assert not body.audit.verify().ok
    finally:
        body.close()
    env = {**os.environ, "SWARM_HOME": str(home)}
    verify = await swarm_in_process(["audit", "verify", "--workspace", str(workspace)], env)
    assert verify.returncode == 1 and "BROKEN" in verify.stderr and not paths.audit_key.exists()
    status = await swarm_in_process(["status", "--workspace", str(workspace)], env)
    assert status.returncode == 0 and "audit: BROKEN" in status.stdout


def test_a_database_sqlite_cannot_open_stops_the_body_in_one_line_and_a_reset_sets_it_aside(
    workspace: Path, home: Path
) -> None:
    paths = _trail_of(workspace, home, 200)
    os.truncate(paths.db, paths.db.stat().st_size // 2)
    paths.identity.write_text("{")  # (damaged as well: the reset sets it aside with the rest)
    body = _swarm_process(home, "body", "--workspace", str(workspace))
    assert body.returncode == 1 and body.stderr.count("\n") == 1 and "swarm audit reset" in body.stderr
    reset = _swarm(home, "audit", "reset", "--reason", "disk damage", "--workspace", str(workspace))
    assert reset.returncode == 0, reset.stderr
    (aside,) = paths.dir.glob("audit-reset-*")
    assert (aside / "state.db").stat().st_size > 0
    assert _swarm(home, "audit", "verify", "--workspace", str(workspace)).returncode == 0


def test_a_database_replaced_by_an_older_copy_with_its_anchor_is_found_by_the_last_check(
    workspace: Path, home: Path, tmp_path: Path
) -> None:
    paths = _trail_of(workspace, home, 2)
    shutil.copy(paths.db, tmp_path / "old.db")
    shutil.copy(paths.anchor, tmp_path / "old.anchor")
    _trail_of(workspace, home, 2)  # its start checked the first two, and two more are appended after
    _trail_of(workspace, home, 0)  # a start that checks them all
    shutil.copy(tmp_path / "old.db", paths.db)  # an older copy, consistent with its own anchor
    shutil.copy(tmp_path / "old.anchor", paths.anchor)
    body = make_body(workspace, home)
    try:
        assert body.audit.broken is not None
    finally:
        body.close()


def test_a_brand_new_workspace_and_a_database_created_before_its_key_are_not_broken(
    workspace: Path, home: Path
) -> None:
    body = make_body(workspace, home)
    try:
        assert body.audit.broken is None and body.audit.check().ok
    finally:
        body.close()
    paths = StatePaths(home=home, workspace=workspace)
    paths.audit_key.unlink()  # as a start that died between creating the database and the key leaves it
    paths.audit.checkpoint.unlink(missing_ok=True)
    body = make_body(workspace, home)
    try:
        assert body.audit.broken is None
    finally:
        body.close()


def test_start_up_verifies_only_the_events_appended_since_the_last_check(workspace: Path, home: Path) -> None:
    paths = _trail_of(workspace, home, 20)
    body = make_body(workspace, home)
    try:
        for n in range(3):
            body.record_human(action="note", rationale=f"after {n}")
        report = body.audit.check()
        assert report.ok and report.events == 3, report
        assert body.audit.check().events == 0
        paths.audit.checkpoint.write_text(paths.audit.checkpoint.read_text()[:-5] + "0000\n")  # a forged checkpoint
        assert body.audit.check().events == 23  # is not trusted: verified from the start
    finally:
        body.close()


def test_swarm_audit_reset_sets_the_old_chain_aside_and_starts_a_new_audited_one(workspace: Path, home: Path) -> None:
    paths = _trail_of(workspace, home, 3)
    old_body_id = json.loads(paths.identity.read_text())["body_id"]
    paths.audit_key.unlink()
    open_body = make_body(workspace, home)
    try:
        busy = _swarm_process(home, "audit", "reset", "--reason", "key lost", "--workspace", str(workspace))
        assert busy.returncode == 1 and busy.stderr.count("\n") == 1  # not while a body has it open
    finally:
        open_body.close()
    reset = _swarm(home, "audit", "reset", "--reason", "key lost", "--workspace", str(workspace))
    assert reset.returncode == 0, reset.stderr
    (aside,) = paths.dir.glob("audit-reset-*")
    assert {p.name for p in aside.iterdir()} >= {"state.db", "audit.anchor", "identity.json"}
    verify = _swarm(home, "audit", "verify", "--workspace", str(workspace))
    assert verify.returncode == 0 and "OK: 1 events" in verify.stdout, verify.stderr
    body = make_body(workspace, home)
    try:
        assert body.audit.broken is None and body.identity.body_id != old_body_id
        (first,) = body.audit.tail(10)
        assert first.tool == "audit.reset" and first.rationale == "key lost"
        assert first.detail["previous_chain"] == str(aside) and first.detail["previous_body_id"] == old_body_id
        assert first.detail["previous_head"].startswith("event 3 ")
        body.record_human(action="note", rationale="the new chain takes writes")
    finally:
        body.close()
    status = _swarm(home, "status", "--workspace", str(workspace))
    assert status.returncode == 0 and "audit chain OK" in status.stdout
