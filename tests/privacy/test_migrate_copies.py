"""`swarm privacy migrate` and the copies (#21): random personal data planted through a real `swarm body` with
`[privacy] redaction = false`, in a command's output too large to be kept inline (a file under `outputs/`) and in
snapshots taken before the migration, is found in no file under the state once migrated (the snapshots' objects
included), in clear, base64, hex, percent- or JSON-escaped form. Each snapshot that held `state.db` in clear lost
that copy only: it still restores, the migration says which and records it in the chain, which verifies. The kept
file and an approval request stored then are exported decrypted and, once the subject is erased, the file reads back
as `[pii:…:erased]`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client

from tests.body.helpers import ok

from .plant import Planted, leaks, plant
from .stack import OFF, body, events, one_line, swarm, verifies

pytestmark = pytest.mark.anyio

BIG = 300_000
"""Over `undo.INLINE_MAX` (256 KiB): the output is kept in a file."""


async def _planted(workspace: Path, home: Path, p: Planted, *, approval: bool = False) -> tuple[str, str | None]:
    """Through a body that keeps personal data in clear (as before #21): a command's output too large to be kept
    inline, and (`approval`) an approval request. Its action id, and the request's decision id."""
    (home / "swarm.toml").write_text(OFF)
    script = f"echo '{p.text()}'; head -c {BIG} /dev/zero | tr '\\0' x; echo; echo '{p.email}'"
    async with Client(body(workspace, home)) as client:
        ran = ok(await client.call_tool("run_command", {"argv": ["sh", "-c", script], "rationale": "a long output"}))
        asked = None
        if approval:
            request = {"summary": f"mail {p.email}", "confidence": 0.2, "options": [f"call {p.phone}"]}
            asked = str(ok(await client.call_tool("request_approval", {**request, "rationale": "r"}))["decision_id"])
    return str(ran["action_id"]), asked


async def test_outputs_in_files_and_snapshot_copies_are_migrated_exported_and_erased(
    workspace: Path, home: Path
) -> None:
    p = plant()
    action_id, decision_id = await _planted(workspace, home, p, approval=True)
    (kept,) = [f for f in home.rglob(f"{action_id}.stdout")]
    assert p.email.encode() in kept.read_bytes()  # (kept in a file, in clear, as before #21)
    before = await swarm(home, "snapshot", "create", "--workspace", str(workspace), "--reason", "before")
    assert before.returncode == 0, before.stderr
    old_id = before.stdout.strip().splitlines()[-1].split()[-1]
    (home / "swarm.toml").write_text("")  # redaction on from now on
    (tmp,) = list(home.rglob("snapshots/tmp"))  # a copy a migration killed while checking it left behind
    (tmp / "privacy-check-1.db").write_text(p.text())

    migrated = await swarm(home, "privacy", "migrate", "--workspace", str(workspace), "--json")
    assert migrated.returncode == 0, migrated.stderr
    said = json.loads(migrated.stdout)["body"]
    assert "kept output(s) rewritten" in said and "1 snapshot(s)" in said and old_id in said, said
    assert "1 approval request(s) rewritten" in said, said
    assert leaks([home], p.values()) == []
    await verifies(home, workspace)
    recorded = [e for e in await events(home, workspace) if e["tool"] == "privacy.migrate_copies"]
    assert len(recorded) == 1 and recorded[0]["detail"]["snapshots_state_db_dropped"] == [old_id]
    assert recorded[0]["detail"]["outputs"] >= 1

    # The snapshot still restores (its workspace files are kept); only its copy of state.db is gone, said so.
    listed = await swarm(home, "snapshot", "list", "--workspace", str(workspace))
    assert listed.returncode == 0 and old_id in listed.stdout, listed.stdout + listed.stderr
    (workspace / "notes.txt").write_text("after the snapshot\n")
    restored = await swarm(home, "snapshot", "restore", old_id, "--workspace", str(workspace))
    assert restored.returncode == 0, restored.stderr
    assert not (workspace / "notes.txt").exists()
    no_copy = await swarm(
        home, "snapshot", "restore", old_id, "--workspace", str(workspace), "--state-db-to", str(home / "x.db")
    )
    one_line(no_copy, "state.db")

    # A snapshot taken after the migration keeps its copy, and a second migration changes nothing.
    after = await swarm(home, "snapshot", "create", "--workspace", str(workspace), "--reason", "after")
    assert after.returncode == 0, after.stderr
    again = await swarm(home, "privacy", "migrate", "--workspace", str(workspace))
    assert again.returncode == 0 and again.stdout.startswith("body: nothing to migrate"), again.stdout
    assert leaks([home], p.values()) == []

    # The kept file is read back decrypted and exported; erased, it reads as erased.
    shown = await swarm(home, "audit", "output", action_id, "--workspace", str(workspace))
    assert shown.returncode == 0 and p.email in shown.stdout, shown.stderr
    exported = await swarm(home, "privacy", "export", p.email, "--workspace", str(workspace), "--json")
    assert exported.returncode == 0, exported.stderr
    held = json.loads(exported.stdout)["body"]
    assert f"output {action_id} stdout" in {i["where"] for i in held}
    assert f"decision {decision_id} summary" in {i["where"] for i in held}
    assert {i["value"] for i in held} == {p.email}
    erased = await swarm(home, "privacy", "erase", p.email, "--workspace", str(workspace))
    assert erased.returncode == 0, erased.stderr
    shown = await swarm(home, "audit", "output", action_id, "--workspace", str(workspace))
    assert shown.returncode == 0 and p.email not in shown.stdout and "[pii:email:erased]" in shown.stdout
    await verifies(home, workspace)
    gone = await swarm(home, "privacy", "export", p.email, "--workspace", str(workspace))
    assert gone.returncode == 1


async def test_a_migration_killed_between_a_kept_files_steps_is_finished_by_the_next(
    workspace: Path, home: Path
) -> None:
    p = plant()
    action_id, _ = await _planted(workspace, home, p)
    (kept,) = [f for f in home.rglob(f"{action_id}.stdout")]
    (home / "swarm.toml").write_text("")
    migrated = await swarm(home, "privacy", "migrate", "--workspace", str(workspace))
    assert migrated.returncode == 0, migrated.stderr
    protected = kept.read_bytes()
    # As if killed after the row was updated and before the protected file replaced the old one: put the old
    # text back and the protected one beside it, as the first two steps leave them.
    (kept.parent / f".{kept.name}.migrate").write_bytes(protected)
    abandoned = kept.parent / f".{action_id}.stderr.migrate"
    abandoned.write_bytes(b"an abandoned first step")
    kept.write_bytes(b"the old text was here")
    again = await swarm(home, "privacy", "migrate", "--workspace", str(workspace))
    assert again.returncode == 0, again.stderr
    assert kept.read_bytes() == protected and not abandoned.exists()
    shown = await swarm(home, "audit", "output", action_id, "--workspace", str(workspace))
    assert shown.returncode == 0 and p.email in shown.stdout, shown.stderr
