"""The kill switch stops every mutating tool (the agent's undo too) but not reads; shadow mode changes nothing."""

from __future__ import annotations

import errno
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult

from body_mcp import Body, build_server
from body_mcp.killswitch import LocalKillSwitch

from ..conftest import make_body
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio

MUTATING = {
    "write_file": {"path": "x.txt", "content": "x"},
    "edit_file": {"path": "README.md", "edits": [{"old_text": "sample", "new_text": "x"}]},
    "create_directory": {"path": "d"},
    "move_file": {"source": "README.md", "destination": "R.md"},
    "delete_file": {"path": "README.md"},
    "undo": {"id": "act_whatever"},
}


async def test_engaged_kill_switch_refuses_every_mutating_tool_and_allows_reads(
    client: Client, body: Body, workspace: Path, home: Path
) -> None:
    action = ok(await call(client, "write_file", path="a.txt", content="a"))
    kill = LocalKillSwitch(home / "kill.json")
    kill.engage(reason="runaway agent", by="human:test")
    before = sorted(p.name for p in workspace.iterdir())
    for tool, args in MUTATING.items():
        refused(await call(client, tool, **args), "kill_switch_engaged")
    refused(await call(client, "undo", id=action["action_id"]), "kill_switch_engaged")
    assert sorted(p.name for p in workspace.iterdir()) == before
    ok(await call(client, "read_text_file", path="README.md"))
    ok(await call(client, "list_directory", path="."))
    status = ok(await call(client, "status"))
    assert status["kill_switch"] == "engaged" and status["kill_reason"] == "runaway agent"
    # A human can still undo while killed.
    body.admin.undo(action["action_id"], force=False)
    assert not (workspace / "a.txt").exists()
    kill.release()
    ok(await call(client, "write_file", path="b.txt", content="b"))
    assert ok(await call(client, "status"))["kill_switch"] == "released"


async def test_a_kill_file_that_cannot_be_read_still_means_killed(client: Client, home: Path) -> None:
    (home / "kill.json").write_text("{not json")
    refused(await call(client, "write_file", path="x.txt", content="x"), "kill_switch_engaged")


@pytest.mark.parametrize("link", ["loop", "dangling"])
async def test_a_symlink_where_the_kill_file_goes_still_means_killed(client: Client, home: Path, link: str) -> None:
    """`access` follows links: a loop or a link to nothing put at the kill file's name read as "no kill file"."""
    kill = home / "kill.json"
    kill.symlink_to(kill if link == "loop" else home / "nowhere")
    assert LocalKillSwitch(kill).state().engaged
    refused(await call(client, "write_file", path="x.txt", content="x"), "kill_switch_engaged")
    kill.unlink()
    assert not LocalKillSwitch(kill).state().engaged
    ok(await call(client, "write_file", path="x.txt", content="x"))


async def test_shadow_mode_reports_the_diff_and_changes_nothing(workspace: Path, home: Path) -> None:
    body = make_body(workspace, home, {"policy": {"mode": "shadow"}})
    before = {p: p.read_bytes() for p in workspace.rglob("*") if p.is_file()}
    try:
        async with Client(build_server(body)) as client:
            data = ok(await call(client, "write_file", path="README.md", content="# changed\n"))
            assert data["mode"] == "shadow" and "-# sample\n+# changed\n" in data["diff"]
            edit = ok(await call(client, "edit_file", path="src/app.py", edits=[{"old_text": "1", "new_text": "2"}]))
            assert edit["mode"] == "shadow" and "+    return 2" in edit["diff"]
            for tool, args in MUTATING.items():
                if tool != "undo":
                    ok(await call(client, tool, **args))
            assert ok(await call(client, "status"))["mode"] == "shadow"
        assert {p: p.read_bytes() for p in workspace.rglob("*") if p.is_file()} == before
        assert not (workspace / "d").exists() and not (workspace / "x.txt").exists()
        shadow_events = [e for e in body.audit.tail(50) if e.tool in MUTATING]
        assert shadow_events and all(e.outcome == "shadow" and e.mode == "shadow" for e in shadow_events)
        assert all(e.impact.files == 0 for e in shadow_events)
    finally:
        body.close()


def test_a_kill_engages_even_when_the_disk_is_full(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: Path, *_: object, **__: object) -> int:
        self.touch()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    before = sorted(p.name for p in home.iterdir())
    state = LocalKillSwitch(home / "kill.json").engage(reason="runaway", by="human:test")

    assert state.engaged
    assert LocalKillSwitch(home / "kill.json").state().engaged
    assert sorted(p.name for p in home.iterdir()) == sorted([*before, "kill.json"])  # no half-written file beside it


async def test_a_kill_that_lands_while_a_call_waits_past_the_first_check_refuses_it_before_it_runs(
    client: Client, body: Body, workspace: Path, home: Path
) -> None:
    """A call that passed the kill switch's guard and then waited (here for the workspace lock, as behind a running
    command) is checked again just before it runs: the kill refuses it, nothing is written, and it is audited."""
    async with anyio.create_task_group() as group:
        await body.workspace_lock.acquire()  # (what a running command holds)
        results: list[CallToolResult] = []

        async def write() -> None:
            results.append(await call(client, "write_file", path="late.txt", content="x"))

        group.start_soon(write)
        with anyio.fail_after(10):
            while body.workspace_lock.statistics().tasks_waiting == 0:
                await anyio.sleep(0.005)
        LocalKillSwitch(home / "kill.json").engage(reason="runaway agent", by="human:test")
        body.workspace_lock.release()
    (result,) = results
    refused(result, "kill_switch_engaged")
    assert not (workspace / "late.txt").exists()
    (event,) = [e for e in body.audit.tail(5) if e.tool == "write_file"]
    assert (event.outcome, event.code) == ("refused", "kill_switch_engaged")


async def test_a_write_reads_the_kill_state_twice_and_a_kill_between_the_two_still_refuses_it(
    body: Body, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no earlier commit to wait for, a write reads the kill state in the guard and again just before its
    effect (not a third time first); a kill engaged after the guard's read is heard by the second, and nothing is
    written."""
    switch = body.kill_switch
    assert isinstance(switch, LocalKillSwitch)
    reads: list[bool] = []
    read = switch.state

    def counting() -> object:
        state = read()
        reads.append(state.engaged)
        if len(reads) == 1 and engage_after_first:
            switch.engage(reason="stop", by="test")
        return state

    monkeypatch.setattr(switch, "state", counting)
    engage_after_first = False
    first = await body.call_tool("write_file", {"path": "a.txt", "content": "1", "rationale": "r"})
    assert not first.is_error and reads == [False, False]
    body.replies.run()
    await body.audit_writer.settled()
    reads.clear()
    engage_after_first = True
    second = await body.call_tool("write_file", {"path": "a.txt", "content": "2", "rationale": "r"})
    assert second.is_error and "kill switch" in second.text and reads == [False, True]
    assert (body.workspace.root / "a.txt").read_text() == "1"
