"""Undo restores pre-images exactly, refuses conflicts unless forced, and is itself audited and undoable."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest
from mcp import Client

from body_mcp import Body

from ..cli.inprocess import run_swarm
from ..conftest import make_body
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio


async def test_undo_restores_an_edit_a_write_a_delete_and_a_move(client: Client, body: Body, workspace: Path) -> None:
    # Five paths and more change in one session (a move changes both places): an approved decision names them.
    files = ["src", "lib", "lib/src", "src/app.py", "lib/src/app.py", "deep", "deep/file.txt", "README.md"]
    decision = ok(await call(client, "request_approval", summary="edits and a move", confidence=0.9, files=files))
    original = (workspace / "src/app.py").read_text()
    edit = ok(
        await call(client, "edit_file", path="src/app.py", edits=[{"old_text": "return 1", "new_text": "return 2"}])
    )
    new = ok(await call(client, "write_file", path="deep/file.txt", content="new\n"))
    gone = ok(await call(client, "delete_file", path="README.md"))
    moved = refused(await call(client, "move_file", source="src", destination="lib/src"), "approval_required")
    body.admin.answer(decision["decision_id"], "approve", reason="fine")
    moved = ok(
        await call(client, "move_file", source="src", destination="lib/src", decision_id=decision["decision_id"])
    )
    for action in (moved, gone, new, edit):
        ok(await call(client, "undo", id=action["action_id"]))
    assert (workspace / "src/app.py").read_text() == original
    assert (workspace / "README.md").read_text() == "# sample\n"
    assert not (workspace / "deep").exists() and not (workspace / "lib").exists()


async def test_undo_keeps_file_modes(client: Client, workspace: Path) -> None:
    script = workspace / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    action = ok(await call(client, "write_file", path="run.sh", content="#!/bin/sh\necho bye\n"))
    assert script.stat().st_mode & 0o777 == 0o755  # an overwrite keeps the mode
    ok(await call(client, "undo", id=action["action_id"]))
    assert script.read_text() == "#!/bin/sh\necho hi\n" and script.stat().st_mode & 0o777 == 0o755


async def test_a_conflicting_undo_is_refused_unless_forced(client: Client, workspace: Path) -> None:
    action = ok(await call(client, "write_file", path="README.md", content="agent\n"))
    (workspace / "README.md").write_text("human edited since\n")
    refused(await call(client, "undo", id=action["action_id"]), "undo_conflict")
    assert (workspace / "README.md").read_text() == "human edited since\n"
    ok(await call(client, "undo", id=action["action_id"], force=True))
    assert (workspace / "README.md").read_text() == "# sample\n"


async def test_undo_is_audited_and_can_itself_be_undone(client: Client, body: Body, workspace: Path) -> None:
    action = ok(await call(client, "write_file", path="README.md", content="v2\n"))
    undo = ok(await call(client, "undo", id=action["action_id"]))
    assert undo["undone"] == [action["action_id"]]
    event = body.audit.get(undo["action_id"])
    assert event is not None and event.tool == "undo" and event.detail["undid"] == [action["action_id"]]
    refused(await call(client, "undo", id=action["action_id"]), "undo_unavailable")  # not twice
    ok(await call(client, "undo", id=undo["action_id"]))  # redo
    assert (workspace / "README.md").read_text() == "v2\n"


async def test_undoing_a_decision_reverses_its_actions_newest_first(client: Client, workspace: Path) -> None:
    for text in ("one\n", "two\n", "three\n"):
        ok(await call(client, "write_file", path="notes.txt", content=text, decision_id="dec_42"))
    ok(await call(client, "write_file", path="other.txt", content="not in the decision\n"))
    result = ok(await call(client, "undo", id="dec_42"))
    assert len(result["undone"]) == 3
    assert not (workspace / "notes.txt").exists()
    assert (workspace / "other.txt").exists()


async def test_unknown_and_read_only_actions_have_nothing_to_undo(client: Client) -> None:
    read = ok(await call(client, "read_text_file", path="README.md"))
    refused(await call(client, "undo", id=read["action_id"]), "undo_unavailable")
    refused(await call(client, "undo", id="act_nope"), "undo_unavailable")


async def test_a_large_pre_image_is_kept_as_a_blob_file_and_restored(
    client: Client, body: Body, workspace: Path
) -> None:
    big = "x" * (300 * 1024)
    (workspace / "big.txt").write_text(big)
    action = ok(await call(client, "write_file", path="big.txt", content="small"))
    assert any(body.paths.blobs.rglob("*"))
    ok(await call(client, "undo", id=action["action_id"]))
    assert (workspace / "big.txt").read_text() == big


def _flip_blob(body: Body, sha: str) -> None:
    path = body.paths.blobs / sha[:2] / sha
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _sql(body: Body, sql: str, params: tuple[object, ...] = ()) -> None:
    conn = sqlite3.connect(body.paths.db)
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


@pytest.mark.parametrize("damage", ["pre-image file", "pre-image in the database", "undo record"])
async def test_damaged_undo_data_is_refused_whole_restores_nothing_and_verify_names_it(
    client: Client, body: Body, workspace: Path, damage: str
) -> None:
    big = "x" * (300 * 1024)
    (workspace / "big.txt").write_text(big)
    ok(await call(client, "write_file", path="big.txt", content="small", decision_id="dec_9"))  # its pre-image: a file
    ok(await call(client, "write_file", path="README.md", content="changed\n", decision_id="dec_9"))  # inline
    big_sha = hashlib.sha256(big.encode()).hexdigest()
    small_sha = hashlib.sha256(b"# sample\n").hexdigest()
    if damage == "pre-image file":
        _flip_blob(body, big_sha)  # restored last (newest first): the other must not be restored before it
    elif damage == "pre-image in the database":
        _sql(body, "UPDATE blobs SET data = ? WHERE sha256 = ?", (b"# sampl3\n", small_sha))
    else:
        _sql(body, "UPDATE undo_records SET before = '{not json' WHERE path = 'big.txt'")
    refused(await call(client, "undo", id="dec_9"), "undo_damaged")
    assert (workspace / "README.md").read_text() == "changed\n" and (workspace / "big.txt").read_text() == "small"
    report = body.admin.verify()
    assert not report.ok and report.problem is None and len(report.damage) == 1, report


def test_verify_checks_the_database_pages_and_indexes_too(workspace: Path, home: Path) -> None:
    body = make_body(workspace, home)
    try:
        for n in range(50):
            body.record_human(action="note", rationale=f"event {n}")
        db = body.paths.db
    finally:
        body.close()  # (its pages are all in the file now, none in the WAL)
    conn = sqlite3.connect(db)
    try:
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'audit_events_id'").fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    finally:
        conn.close()
    data = bytearray(db.read_bytes())
    data[root * page_size - 20] ^= 0xFF  # a flipped bit in the index's last cell
    db.write_bytes(bytes(data))
    result = run_swarm(["audit", "verify", "--workspace", str(workspace)], {**os.environ, "SWARM_HOME": str(home)})
    assert result.returncode == 1, result.stdout
    lines = result.stderr.splitlines()
    assert lines[0].startswith("audit chain OK") and any(line.startswith("state.db: ") for line in lines[1:])
