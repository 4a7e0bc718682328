"""`swarm status --brain URL`: the workspace's own state, then what the brain says (its kill switch, which every
linked body obeys, paused agents, bodies, tasks, decisions), against a real brain on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url
from tests.brain.helpers import LiveBrain, live_brain, ok, registration
from tests.cli.inprocess import swarm_on as swarm
from tests.cli.test_task_cmds import one_line

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    async with live_brain(BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"))) as brain:
        yield brain


async def test_status_with_a_brain_shows_the_brains_kill_and_work_after_the_workspaces_own(
    live: LiveBrain, home: Path, workspace: Path
) -> None:
    async with live.client() as api:
        ok(await api.post("/v1/bodies/register", registration("body-a"), as_="body"))
        ok(await api.post("/v1/tasks", {"title": "t"}, as_="approver"), 201)

    code, out, err = await swarm(live, "status", "--workspace", str(workspace), home=home)
    assert code == 0, err
    local, _, remote = out.partition(f"brain {live.url}:")
    assert "kill switch:     released" in local and remote, out  # (the workspace's lines first, then the brain's)
    assert "  kill switch:   released" in remote
    assert "  bodies:        " in remote and "of 1 registered" in remote
    assert "  tasks:         1 queued, 0 claimed, 0 waiting for a decision" in remote

    code, _, err = await swarm(live, "kill", "--reason", "runaway spend", home=home, as_="captain")
    assert code == 0, err
    code, out, err = await swarm(live, "status", "--workspace", str(workspace), home=home)
    assert code == 0, err
    remote = out.partition(f"brain {live.url}:")[2]
    assert "  kill switch:   ENGAGED (runaway spend, by " in remote, out

    # Without a brain named, nothing is asked of one (the workspace's state alone, as before).
    code, out, err = await swarm(live, "status", "--workspace", str(workspace), home=home, brain=False)
    assert code == 0, err
    assert "brain http" not in out


async def test_status_with_a_stopped_brain_prints_the_workspace_then_names_the_brain_in_one_line(
    home: Path, workspace: Path
) -> None:
    url = "http://127.0.0.1:9"  # (discard: nothing listens)
    code, out, err = await swarm(
        None, "status", "--workspace", str(workspace), "--brain", url, "--token", "t", home=home
    )
    assert "kill switch:     released" in out, out
    assert one_line(code, err) == f"swarm: brain {url} unreachable: Connection refused (ConnectError)"
