"""Decisions of a standalone body: request_approval never blocks, humans answer, the gate checks coverage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client

from body_mcp import Body, build_server
from body_mcp._db import StateDB
from body_mcp.decisions import DecisionConflict, LocalDecisionStore
from shared_protocol import DecisionRequest
from shared_protocol.decisions import DEFAULT_THRESHOLDS, AnswerKind

from ..cli.inprocess import swarm_in_process
from ..conftest import make_body, require_binary
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_the_rules_decide_what_a_request_needs(client: Client) -> None:
    small = ok(await call(client, "request_approval", summary="tiny", confidence=0.9, files=["a.py"]))
    assert small["needs"] == "none" and small["state"] == "approved"
    unsure = ok(await call(client, "request_approval", summary="unsure", confidence=0.5))
    assert unsure["needs"] == "human" and unsure["state"] == "pending"
    wide = ok(await call(client, "request_approval", summary="wide", confidence=0.9, files=[f"f{i}" for i in range(6)]))
    assert wide["needs"] == "consensus" and wide["state"] == "pending"
    costly = ok(await call(client, "request_approval", summary="spend", confidence=0.9, impact_usd=60))
    assert costly["needs"] == "consensus"
    blocked = ok(await call(client, "request_approval", summary="huge", confidence=0.9, impact_usd=101))
    assert blocked["needs"] == "blocked" and blocked["state"] == "denied"


async def test_a_pending_decision_expires_to_denied_at_its_deadline(workspace: Path, home: Path) -> None:
    clock = Clock()
    body = make_body(workspace, home, clock=clock)
    try:
        async with Client(build_server(body)) as client:
            pending = ok(await call(client, "request_approval", summary="x", confidence=0.1))
            clock.now += 3599
            assert ok(await call(client, "decision_status", id=pending["decision_id"]))["state"] == "pending"
            clock.now += 2
            status = ok(await call(client, "decision_status", id=pending["decision_id"]))
            assert status["state"] == "expired" and any("deadline" in a for a in status["answered_by"])
    finally:
        body.close()


def local_stores(path: Path, clock: Clock) -> tuple[LocalDecisionStore, LocalDecisionStore, StateDB, StateDB]:
    """Two stores on one `state.db`, as the body and the `swarm approve` process each hold one."""
    body_db, cli_db = StateDB(path), StateDB(path)
    body_store, cli_store = (
        LocalDecisionStore(db, rules=DEFAULT_THRESHOLDS, deadline_s=3600, clock=clock) for db in (body_db, cli_db)
    )
    return body_store, cli_store, body_db, cli_db


def stored_state(db: StateDB, decision_id: str) -> str:
    return db.conn.execute("SELECT state FROM decisions WHERE id = ?", (decision_id,)).fetchone()[0]


UNSURE = DecisionRequest(summary="x", rationale="y", confidence=0.1, agent="a", body_id="b")


def test_a_local_answer_is_seen_by_every_store_of_the_workspace_and_a_second_one_is_refused(tmp_path: Path) -> None:
    body_store, cli_store, body_db, cli_db = local_stores(tmp_path / "state.db", Clock())
    try:
        decision = body_store.create_now(UNSURE)
        assert cli_store.answer(decision.id, "approve", by="human:alice", reason="ok").state == "approved"
        assert (body_store.get_now(decision.id) or decision).state == "approved"
        with pytest.raises(DecisionConflict):
            body_store.answer(decision.id, "deny", by="human:bob", reason="no")
        assert stored_state(body_db, decision.id) == "approved"
    finally:
        body_db.close()
        cli_db.close()


def test_a_local_decision_past_its_deadline_is_stored_expired_and_takes_no_answer(tmp_path: Path) -> None:
    clock = Clock()
    body_store, cli_store, body_db, cli_db = local_stores(tmp_path / "state.db", clock)
    try:
        decision = body_store.create_now(UNSURE)
        clock.now += 3600
        kinds: list[AnswerKind] = ["approve", "override"]
        for kind in kinds:
            with pytest.raises(DecisionConflict):
                cli_store.answer(decision.id, kind, by="human:alice", reason="late")
        assert stored_state(body_db, decision.id) == "expired"
        assert [a.by for a in (body_store.get_now(decision.id) or decision).answers] == ["deadline"]
    finally:
        body_db.close()
        cli_db.close()


def swarm_process(home: Path, workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, as a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "swarm_cli", *args, "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        env={**os.environ, "SWARM_HOME": str(home)},
        stdin=subprocess.DEVNULL,
        check=False,
    )


async def swarm(home: Path, workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI's entry point in the test's process (`tests/cli/inprocess.py`: no new Python to start)."""
    return await swarm_in_process([*args, "--workspace", str(workspace)], {**os.environ, "SWARM_HOME": str(home)})


async def test_a_human_answers_from_the_cli_and_the_gate_honours_coverage(
    client: Client, body: Body, workspace: Path, home: Path
) -> None:
    (workspace / "many").mkdir()
    for n in range(6):
        (workspace / "many" / f"f{n}.txt").write_text("x")
    refused(await call(client, "move_file", source="many", destination="moved"), "approval_required")
    too_small = ok(
        await call(
            client,
            "request_approval",
            summary="move 6",
            confidence=0.9,
            files=["many", "moved", *(f"f{n}" for n in range(4))],
        )
    )
    enough = ok(
        await call(
            client,
            "request_approval",
            summary="move 7",
            confidence=0.9,
            files=["many", "moved", *(f"f{n}" for n in range(5))],
        )
    )
    assert swarm_process(home, workspace, "approve", too_small["decision_id"]).returncode == 0
    # Approved for 6 files: does not cover moving a directory of 6 files (7 modifications: the directory too).
    refused(
        await call(client, "move_file", source="many", destination="moved", decision_id=too_small["decision_id"]),
        "approval_required",
    )
    # Pending: refused.
    refused(
        await call(client, "move_file", source="many", destination="moved", decision_id=enough["decision_id"]),
        "approval_required",
    )
    result = await swarm(home, workspace, "approve", enough["decision_id"], "--reason", "reviewed")
    assert result.returncode == 0 and "approved" in result.stdout
    ok(await call(client, "move_file", source="many", destination="moved", decision_id=enough["decision_id"]))
    assert (workspace / "moved" / "f5.txt").exists()
    status = ok(await call(client, "decision_status", id=enough["decision_id"]))
    assert any("reviewed" in a for a in status["answered_by"])
    # Answering twice is an error; a captain may still override an approved decision.
    again = await swarm(home, workspace, "deny", enough["decision_id"])
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    assert (await swarm(home, workspace, "override", enough["decision_id"])).returncode == 0
    assert ok(await call(client, "decision_status", id=enough["decision_id"]))["state"] == "overridden"
    assert [e.tool for e in body.audit.tail(50) if e.kind == "human"] == ["approve", "approve", "override"]
    assert (await swarm(home, workspace, "approve", "dec_nope")).returncode == 1


async def test_a_command_held_for_approval_is_applied_after_it_without_rerunning(
    client: Client, workspace: Path, home: Path
) -> None:
    require_binary("bwrap", "bubblewrap")
    # Each run writes a fresh random token: a re-run would show up as different content.
    script = [
        "/bin/sh",
        "-c",
        "t=$(cat /proc/sys/kernel/random/uuid); echo $t; for i in 1 2 3 4 5 6; do echo $t > gen$i.txt; done",
    ]
    held = await call(client, "run_command", argv=script)
    data = held.structured_content or {}
    assert held.is_error and data["refusal"]["code"] == "approval_required" and not (workspace / "gen1.txt").exists()
    decision = ok(
        await call(
            client, "request_approval", summary="generate 6", confidence=0.9, files=[f"gen{i}.txt" for i in range(1, 7)]
        )
    )
    assert (await swarm(home, workspace, "approve", decision["decision_id"])).returncode == 0
    applied = ok(await call(client, "run_command", argv=script, decision_id=decision["decision_id"]))
    assert applied["applied"] is True
    contents = {(workspace / f"gen{i}.txt").read_text() for i in range(1, 7)}
    assert contents == {data["stdout"]}  # the held run's output, not a second run's
    ok(await call(client, "undo", id=applied["action_id"]))
    assert not (workspace / "gen1.txt").exists()
