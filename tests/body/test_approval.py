"""What the approval gate remembers outlives a body process: a decision is used once per body identity, by one
of its processes, and the files changed within the window count across restarts and between processes."""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from body_mcp import Body, build_server
from shared_protocol import Impact
from shared_protocol.decisions import DecisionRequest

from ..conftest import make_body
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio

TREE = "a/b/c/d/e"
"""Five directories: one `create_directory` of it needs consensus (>= 5 files)."""
TREE_DIRS = ["a", "a/b", "a/b/c", "a/b/c/d", TREE]


def approved(body: Body, files: list[str]) -> str:
    """A decision for `files` (an impact of as many files as it names), asked by the agent, approved by a human."""
    request = DecisionRequest(
        summary="make the tree",
        rationale="test",
        confidence=0.9,
        impact=Impact(files=len(files)),
        files=files,
        agent="test",
        body_id=body.identity.body_id,
    )
    decision = body.local_decisions.create_now(request)
    body.admin.answer(decision.id, "approve", reason="reviewed")
    return decision.id


async def test_a_used_decision_stays_used_when_the_body_restarts(workspace: Path, home: Path) -> None:
    first = make_body(workspace, home)
    try:
        decision = approved(first, TREE_DIRS)
        async with Client(build_server(first)) as client:
            refused(await call(client, "create_directory", path=TREE), "approval_required")
            ok(await call(client, "create_directory", path=TREE, decision_id=decision))
    finally:
        first.close()
    shutil.rmtree(workspace / "a")  # (gone again: the same action needs the same approval)
    again = make_body(workspace, home)
    try:
        async with Client(build_server(again)) as client:
            data = refused(await call(client, "create_directory", path=TREE, decision_id=decision), "approval_required")
            assert "used by an earlier action" in data["message"], data["message"]
    finally:
        again.close()
    assert not (workspace / "a").exists()


async def test_a_decision_an_action_only_shadowed_is_not_used_up(workspace: Path, home: Path) -> None:
    shadow = make_body(workspace, home, {"policy": {"mode": "shadow"}})
    try:
        decision = approved(shadow, TREE_DIRS)
        async with Client(build_server(shadow)) as client:
            assert ok(await call(client, "create_directory", path=TREE, decision_id=decision))["mode"] == "shadow"
    finally:
        shadow.close()
    live = make_body(workspace, home)
    try:
        async with Client(build_server(live)) as client:
            ok(await call(client, "create_directory", path=TREE, decision_id=decision))
            again = await call(client, "create_directory", path="a/b/c/d/e2", decision_id=decision)
            assert (workspace / TREE).is_dir() and not again.is_error, "one directory: no approval needed"
    finally:
        live.close()


async def test_two_bodies_of_one_workspace_racing_with_one_decision_carry_out_one_action(
    workspace: Path, home: Path
) -> None:
    bodies = [make_body(workspace, home) for _ in range(2)]
    try:
        # Two trees of five directories, each within the decision: either action alone is covered by it.
        decision = approved(bodies[0], ["a", "v", "n1", "n2", "n3"])
        outcomes: list[bool] = []

        async def create(body: Body, tree: str) -> None:
            async with Client(build_server(body)) as client:
                result = await call(client, "create_directory", path=tree, decision_id=decision)
                outcomes.append(result.is_error)
                if result.is_error:
                    refused(result, "approval_required")

        async with anyio.create_task_group() as tg:
            tg.start_soon(create, bodies[0], TREE)
            tg.start_soon(create, bodies[1], "v/w/x/y/z")
    finally:
        for body in bodies:
            body.close()
    assert sorted(outcomes) == [False, True]
    assert [(workspace / "a").exists(), (workspace / "v").exists()].count(True) == 1


def _stdio(workspace: Path, home: Path) -> StdioServerParameters:
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_AGENT": "racer"}
    return StdioServerParameters(
        command=sys.executable, args=["-m", "swarm_cli", "body", "--workspace", str(workspace)], env=env
    )


async def test_two_body_processes_racing_with_one_decision_carry_out_one_action(workspace: Path, home: Path) -> None:
    setup = make_body(workspace, home)
    try:
        decisions = [approved(setup, [f"r{n}", f"s{n}", "n1", "n2", "n3"]) for n in range(3)]
    finally:
        setup.close()
    errors: dict[int, list[bool]] = {n: [] for n in range(len(decisions))}

    async def create(client: Client, n: int, tree: str) -> None:
        result = await call(client, "create_directory", path=tree, decision_id=decisions[n])
        errors[n].append(result.is_error)
        if result.is_error:
            refused(result, "approval_required")

    async with Client(_stdio(workspace, home)) as one, Client(_stdio(workspace, home)) as two:
        for n in range(len(decisions)):
            async with anyio.create_task_group() as tg:
                tg.start_soon(create, one, n, f"r{n}/1/2/3/4")
                tg.start_soon(create, two, n, f"s{n}/1/2/3/4")
            assert sorted(errors[n]) == [False, True], f"round {n}: one action per decision"
            assert [(workspace / f"r{n}").exists(), (workspace / f"s{n}").exists()].count(True) == 1


async def test_files_changed_before_a_restart_and_by_another_body_still_count(workspace: Path, home: Path) -> None:
    first, second = make_body(workspace, home), make_body(workspace, home)
    try:
        async with Client(build_server(first)) as a, Client(build_server(second)) as b:
            for n in range(2):
                ok(await call(a, "write_file", path=f"f{n}.txt", content="x"))
                ok(await call(b, "write_file", path=f"g{n}.txt", content="x"))
    finally:
        first.close()
        second.close()
    restarted = make_body(workspace, home)
    try:
        async with Client(build_server(restarted)) as client:
            refused(await call(client, "write_file", path="h.txt", content="x"), "approval_required")
            ok(await call(client, "write_file", path="f0.txt", content="again"))  # four files still, with it
    finally:
        restarted.close()
    assert not (workspace / "h.txt").exists()


async def test_a_state_database_from_before_the_approval_tables_is_migrated(workspace: Path, home: Path) -> None:
    old = make_body(workspace, home)
    try:
        async with Client(build_server(old)) as client:
            ok(await call(client, "write_file", path="f.txt", content="x"))
        path = old.db.path
    finally:
        old.close()
    with sqlite3.connect(path) as conn:  # as a version-6 body left it
        conn.executescript(
            "DROP TABLE decision_uses; DROP TABLE recent_changes; DROP TABLE audit_rewrite_gate; "
            "DROP TRIGGER audit_events_no_update; CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
            "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END; PRAGMA user_version = 6;"
        )
    body = make_body(workspace, home)
    try:
        assert body.audit.broken is None
        decision = approved(body, TREE_DIRS)
        async with Client(build_server(body)) as client:
            ok(await call(client, "create_directory", path=TREE, decision_id=decision))
            ok(await call(client, "write_file", path="g.txt", content="x"))
        with body.db.read() as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 9
            assert conn.execute("SELECT decision_id FROM decision_uses").fetchall() == [(decision,)]
            assert conn.execute("SELECT path FROM recent_changes").fetchall() == [("g.txt",)]
    finally:
        body.close()
