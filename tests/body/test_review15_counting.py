"""Review of issue 15 (items 8 and 19): every directory an action creates counts, and concurrent calls do not slip
past the cumulative approval window."""

from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from body_mcp import build_server

from ..conftest import make_body
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio

DEEP = "d1/d2/d3/d4/d5/d6/d7/d8"
"""Eight directories that do not exist: one action creating them all needs consensus (>= 5 files)."""


async def test_write_file_into_new_directories_counts_each_directory(workspace: Path, home: Path) -> None:
    body = make_body(workspace, home)
    try:
        async with Client(build_server(body)) as client:
            data = refused(await call(client, "write_file", path=f"{DEEP}/f.txt", content="x"), "approval_required")
            assert "9 files" in data["message"] or "9 distinct" in data["message"], data["message"]
    finally:
        body.close()
    assert not (workspace / "d1").exists()


async def test_move_file_into_new_directories_counts_each_directory(workspace: Path, home: Path) -> None:
    body = make_body(workspace, home)
    try:
        async with Client(build_server(body)) as client:
            refused(
                await call(client, "move_file", source="README.md", destination=f"{DEEP}/README.md"),
                "approval_required",
            )
    finally:
        body.close()
    assert not (workspace / "d1").exists()
    assert (workspace / "README.md").exists()


async def test_concurrent_writes_do_not_slip_past_the_cumulative_window(workspace: Path, home: Path) -> None:
    """Three files written, then four single-file writes at once: each alone makes four files in the window (under
    the threshold, 5), together seven."""
    body = make_body(workspace, home)
    results: list[bool] = []
    try:
        async with Client(build_server(body)) as client:

            async def one(i: int) -> None:
                result = await call(client, "write_file", path=f"many/f{i}.txt", content="x")
                results.append(result.is_error)

            (workspace / "many").mkdir()
            for n in range(3):
                ok(await call(client, "write_file", path=f"many/first{n}.txt", content="x"))
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(one, i)
    finally:
        body.close()
    written = sorted(p.name for p in (workspace / "many").iterdir())
    assert len(written) < 5, f"{len(written)} files written without approval in one window: {written}"


async def test_sequential_writes_are_held_to_the_cumulative_window(workspace: Path, home: Path) -> None:
    """The same ten writes one after the other: the fifth needs approval (this holds; the concurrent case above is the
    attack)."""
    body = make_body(workspace, home)
    try:
        (workspace / "many").mkdir()
        async with Client(build_server(body)) as client:
            for i in range(4):
                ok(await call(client, "write_file", path=f"many/f{i}.txt", content="x"))
            refused(await call(client, "write_file", path="many/f4.txt", content="x"), "approval_required")
    finally:
        body.close()


def _stdio(workspace: Path, home: Path) -> StdioServerParameters:
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_AGENT": "racer"}
    return StdioServerParameters(
        command=sys.executable, args=["-m", "swarm_cli", "body", "--workspace", str(workspace)], env=env
    )


async def test_body_processes_of_one_workspace_writing_at_once_are_held_to_the_cumulative_window(
    workspace: Path, home: Path
) -> None:
    """Three files written, then four body processes of one workspace (four IDE windows) each writing one more at the
    same moment: each alone makes four files in the window, together seven, where the fifth needs approval."""
    (workspace / "many").mkdir()
    async with (
        Client(_stdio(workspace, home)) as a,
        Client(_stdio(workspace, home)) as b,
        Client(_stdio(workspace, home)) as c,
        Client(_stdio(workspace, home)) as d,
    ):
        for n in range(3):
            ok(await call(a, "write_file", path=f"many/first{n}.txt", content="x"))
        async with anyio.create_task_group() as tg:
            for i, client in enumerate((a, b, c, d)):
                tg.start_soon(partial(call, client, "write_file", path=f"many/race{i}.txt", content="x"))
    written = sorted(p.name for p in (workspace / "many").iterdir())
    assert len(written) < 5, f"{len(written)} files written without approval in one window: {written}"


async def test_files_of_an_action_refused_after_its_count_do_not_count(workspace: Path, home: Path) -> None:
    """A file is counted from when its action is checked, and given back when that action is refused further in
    (here: an edit whose old text is not found), so failed attempts do not use up the window."""
    for name in ("e0.txt", "e1.txt"):
        (workspace / name).write_text("text\n")
    body = make_body(workspace, home)
    try:
        async with Client(build_server(body)) as client:
            for n in range(3):
                ok(await call(client, "write_file", path=f"f{n}.txt", content="x"))
            for name in ("e0.txt", "e1.txt"):
                edit = [{"old_text": "absent", "new_text": "y"}]
                refused(await call(client, "edit_file", path=name, edits=edit), "edit_mismatch")
            ok(await call(client, "write_file", path="f3.txt", content="x"))  # four files changed: under five
            refused(await call(client, "write_file", path="f4.txt", content="x"), "approval_required")
    finally:
        body.close()


async def test_the_agent_cannot_redo_an_approved_change_a_human_undid_without_approval(
    workspace: Path, home: Path
) -> None:
    """A human approved six files (one action), then took them back with `swarm undo`; the agent's `undo` of that
    undo puts the six files back: the same impact as the approved action, so it needs a decision of its own (the
    first was used up), as writing them again would."""
    body = make_body(workspace, home)
    files = [f"six/f{n}.txt" for n in range(6)]
    try:
        async with Client(build_server(body)) as client:
            script = " && ".join(f"echo x > {f}" for f in files)
            asked = ok(await call(client, "request_approval", summary="six files", confidence=0.9, files=files))
            body.admin.answer(asked["decision_id"], "approve", reason="reviewed")
            (workspace / "six").mkdir()
            argv = ["sh", "-c", script]
            done = ok(await call(client, "run_command", argv=argv, decision_id=asked["decision_id"]))
            assert all((workspace / f).exists() for f in files)
            undone, _ = body.admin.undo(done["action_id"], force=False)  # the human takes it back
            assert not any((workspace / f).exists() for f in files)
            refused(await call(client, "undo", id=undone.id), "approval_required")
    finally:
        body.close()
    assert not any((workspace / f).exists() for f in files)
