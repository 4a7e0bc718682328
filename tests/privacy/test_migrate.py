"""`swarm privacy migrate` (#21): random personal data planted through a real `swarm body` running with `[privacy]
redaction = false` (as a body before #21 wrote it), in its trail, its kept outputs and the events it shipped to a
real brain, is found in no file under either's state once migrated (SQLite files, WAL, journal, backups), in clear,
base64, hex, percent- or JSON-escaped form; both chains still verify and link, the migration is an event in the
chain, shipping goes on, a second run does nothing, a failure or a kill midway leaves nothing half-written, and a
running body, an unknown state or a brain that refuses get one clear line."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from mcp import Client

from brain_server.backup import backup_database
from tests.body.helpers import ok
from tests.brain.helpers import LiveBrain

from .plant import Planted, leaks, plant
from .stack import (
    OFF,
    body,
    brain_chain_links,
    events,
    linked,
    one_line,
    plant_calls,
    swarm,
    until_registered,
    until_shipped,
    verifies,
)

pytestmark = pytest.mark.anyio


async def _planted_standalone(workspace: Path, home: Path, p: Planted) -> None:
    (home / "swarm.toml").write_text(OFF)
    async with Client(body(workspace, home)) as client:
        await plant_calls(client, p)
    assert leaks([home], p.values())  # (as an older body kept it: in clear)
    (home / "swarm.toml").write_text("")  # [privacy] redaction on (the default) from now on


async def test_a_standalone_body_is_migrated_once_verifies_and_its_subjects_can_be_exported_and_erased(
    workspace: Path, home: Path
) -> None:
    p = plant()
    await _planted_standalone(workspace, home, p)
    before = await events(home, workspace)

    migrated = await swarm(home, "privacy", "migrate", "--workspace", str(workspace), "--batch", "2", "--progress")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith("body: ") and "events rewritten" in migrated.stdout, migrated.stdout
    assert "migrating: 2/" in migrated.stderr  # progress, batch by batch
    assert leaks([home], p.values()) == []
    await verifies(home, workspace)
    after = await events(home, workspace)
    recorded = [e for e in after if e["tool"] == "privacy.migrate"]
    assert recorded and sum(e["detail"]["rewritten"] for e in recorded) >= 2
    assert all(e["detail"]["head_before"][0] >= e["detail"]["last_seq"] for e in recorded)
    # The events kept their place in the chain: same ids, seqs and MACs, only their text changed.
    assert [(e["seq"], e["id"], e["mac"]) for e in after[: len(before)]] == [
        (e["seq"], e["id"], e["mac"]) for e in before
    ]
    assert any("privacy_migrated" in e["detail"] for e in after)

    again = await swarm(home, "privacy", "migrate", "--workspace", str(workspace))
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("body: nothing to migrate"), again.stdout
    assert len(await events(home, workspace)) == len(after)  # nothing recorded either

    exported = await swarm(home, "privacy", "export", p.email, "--workspace", str(workspace), "--json")
    assert exported.returncode == 0, exported.stderr
    held = json.loads(exported.stdout)["body"]
    assert {i["value"] for i in held} == {p.email}
    assert any(i["where"].startswith("output ") for i in held)  # the kept output too
    erased = await swarm(home, "privacy", "erase", p.email, "--workspace", str(workspace))
    assert erased.returncode == 0, erased.stderr
    await verifies(home, workspace)


async def test_a_failure_inside_a_batch_leaves_nothing_half_written_and_a_rerun_finishes(
    workspace: Path, home: Path
) -> None:
    p = plant()
    await _planted_standalone(workspace, home, p)
    db = home / "workspaces"
    (state_db,) = list(db.rglob("state.db"))
    conn = sqlite3.connect(state_db)
    try:  # a real failure in the middle of the batch's transaction: the update of event 2 aborts
        conn.execute(
            "CREATE TRIGGER inject_failure BEFORE UPDATE ON audit_events WHEN OLD.seq = 2 "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
        conn.commit()
        before = conn.execute("SELECT seq, body FROM audit_events ORDER BY seq").fetchall()
    finally:
        conn.close()

    failed = await swarm(home, "privacy", "migrate", "--workspace", str(workspace))
    one_line(failed, "injected failure")
    conn = sqlite3.connect(state_db)
    try:
        assert conn.execute("SELECT seq, body FROM audit_events ORDER BY seq").fetchall() == before
        conn.execute("DROP TRIGGER inject_failure")
        conn.commit()
    finally:
        conn.close()
    await verifies(home, workspace)

    done = await swarm(home, "privacy", "migrate", "--workspace", str(workspace))
    assert done.returncode == 0, done.stderr
    assert "events rewritten" in done.stdout
    assert leaks([home], p.values()) == []
    await verifies(home, workspace)


async def test_a_migration_killed_midway_leaves_whole_batches_and_a_rerun_finishes(workspace: Path, home: Path) -> None:
    p = plant()
    await _planted_standalone(workspace, home, p)
    env = {k: v for k, v in os.environ.items() if k not in ("SWARM_BRAIN_URL", "SWARM_TOKEN")}
    env["SWARM_HOME"] = str(home)
    argv = [sys.executable, "-m", "swarm_cli", "privacy", "migrate", "--workspace", str(workspace)]
    proc = subprocess.Popen([*argv, "--batch", "1", "--progress"], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    first = await anyio.to_thread.run_sync(proc.stderr.readline)
    assert first.startswith("migrating: "), first
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    await verifies(home, workspace)  # whatever batches committed are whole, each recorded

    done = await swarm(home, "privacy", "migrate", "--workspace", str(workspace))
    assert done.returncode == 0, done.stderr
    assert leaks([home], p.values()) == []
    await verifies(home, workspace)
    again = await swarm(home, "privacy", "migrate", "--workspace", str(workspace))
    assert again.stdout.startswith("body: nothing to migrate"), again.stdout


async def test_refused_while_a_body_runs_on_the_state_and_for_bad_input(workspace: Path, home: Path) -> None:
    p = plant()
    await _planted_standalone(workspace, home, p)
    async with Client(body(workspace, home)) as client:
        ok(await client.call_tool("list_directory", {"path": ".", "rationale": "look"}))
        running = await swarm(home, "privacy", "migrate", "--workspace", str(workspace))
        one_line(running, "open", "stop it")
    assert leaks([home], p.values())  # (refused: nothing done)

    empty = workspace.parent / "never-served"
    empty.mkdir()
    one_line(await swarm(home, "privacy", "migrate", "--workspace", str(empty)), "no body state")
    one_line(await swarm(home, "privacy", "migrate", "--workspace", str(workspace.parent / "nowhere")))
    one_line(await swarm(home, "privacy", "migrate", "--workspace", str(workspace), "--batch", "0"), "--batch")
    (home / "swarm.toml").write_text(OFF)
    one_line(await swarm(home, "privacy", "migrate", "--workspace", str(workspace)), "redaction is off")


async def test_a_linked_body_and_its_brain_are_migrated_and_shipping_goes_on(
    tmp_path: Path, home: Path, live: LiveBrain
) -> None:
    p = plant()
    workspace, token, captain = await linked(tmp_path, live)
    (home / "swarm.toml").write_text(OFF)
    async with Client(body(workspace, home, (live.url, token))) as client:
        await until_shipped(live.db, await plant_calls(client, p))
    roots = [home, live.db.parent]
    assert leaks([live.db.parent], p.values())  # the brain's copy, in clear
    (home / "swarm.toml").write_text("")

    scope = ["--workspace", str(workspace), "--brain", live.url]
    refused = await swarm(home, "privacy", "migrate", *scope, "--token", token)  # a body's token: not a captain
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert leaks([home], p.values())  # (the brain is asked first: refused, the body is left as it was)

    migrated = await swarm(home, "privacy", "migrate", *scope, "--token", captain)
    assert migrated.returncode == 0, migrated.stderr
    lines = migrated.stdout.splitlines()
    assert lines[0].startswith("body: ") and "events rewritten" in lines[0]
    assert lines[1].startswith("brain: ") and "stored events rewritten" in lines[1], lines
    backup_database(live.db, live.db.parent / "backups", keep=2)
    assert leaks(roots, p.values()) == []
    await verifies(home, workspace)
    brain_chain_links(live.db)

    again = await swarm(home, "privacy", "migrate", *scope, "--token", captain, "--json")
    assert again.returncode == 0, again.stderr
    results = json.loads(again.stdout)
    assert results["body"].startswith("nothing to migrate") and results["brain"].startswith("nothing to migrate")

    # The body starts again: its chain (MACs unchanged) still links to the brain's copy, the migration ships too.
    async with Client(body(workspace, home, (live.url, token))) as client:
        # (a mutating call: a read-only one is never refused by the failsafe, so it did not wait for the link)
        await until_registered(client, "create_directory", {"path": "after", "rationale": "linked again"})
        shown = ok(await client.call_tool("run_command", {"argv": ["true"], "rationale": "after the migration"}))
        await until_shipped(live.db, str(shown["action_id"]))
    brain_chain_links(live.db)
    conn = sqlite3.connect(f"file:{live.db}?mode=ro", uri=True)
    try:
        tools = [json.loads(e)["tool"] for (e,) in conn.execute("SELECT event FROM audit_events").fetchall()]
        log = [a for (a,) in conn.execute("SELECT action FROM brain_log").fetchall()]
    finally:
        conn.close()
    assert "privacy.migrate" in tools and "privacy_migrate" in log

    erased = await swarm(home, "privacy", "erase", p.email, *scope, "--token", captain)
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.splitlines() == ["body: erased (email)", "brain: erased (email)"]
    await verifies(home, workspace)
    assert leaks(roots, p.values()) == []
