"""End to end: a live brain on loopback, two `swarm body --agent` processes over real stdio with tokens bound to two
agents; `swarm kill --agent` pauses one (its body refuses with the kill code, the other works), `swarm resume
--agent` lets it work again, and the brain's global kill still stops both."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from brain_server import BrainSettings
from brain_server.state import sqlite_url
from shared_protocol.config import parse_config, render_config
from tests.brain.helpers import LiveBrain, live_brain

from .agent_helpers import AGENT, agent_config
from .test_brain_link import run_swarm

pytestmark = pytest.mark.anyio

KILLED = "kill_switch_engaged"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    settings = BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"), keepalive_s=0.2)
    async with live_brain(settings) as brain:
        yield brain


def _params(workspace: Path, home: Path, config: Path, agent: str, url: str, token: str) -> StdioServerParameters:
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_BRAIN_URL": url, "SWARM_TOKEN": token}
    env.pop("SWARM_AGENT", None)
    args = ["-m", "swarm_cli", "body", "--workspace", str(workspace), "--agent", agent, "--config", str(config)]
    return StdioServerParameters(command=sys.executable, args=args, env=env)


async def _write(client: Client, name: str) -> str | None:
    """None when the write went through, else the refusal's code."""
    result = await client.call_tool("write_file", {"path": name, "content": "x\n", "rationale": "test"})
    if not result.is_error:
        return None
    data: Any = result.structured_content
    return str(data["code"])


async def _until(client: Client, want: str | None, name: str) -> None:
    """Write until the answer is `want` (the body hears the brain's events a moment after they are sent)."""
    with anyio.fail_after(45):
        n = 0
        while await _write(client, f"{name}-{n}.txt") != want:
            n += 1
            await anyio.sleep(0.05)


async def test_pausing_one_agent_stops_its_body_only(tmp_path: Path, home: Path, live: LiveBrain) -> None:
    config = parse_config({**agent_config().model_dump(mode="json"), "agents": [AGENT, {**AGENT, "name": "w2"}]})
    config_file = tmp_path / "swarm.toml"
    config_file.write_text(render_config(config))
    tokens = {agent: await live.add_token(f"{agent}-body", agent=agent) for agent in ("w1", "w2")}
    captain = ["--brain", live.url, "--token", live.tokens["captain"]]
    async with AsyncExitStack() as stack:
        clients: dict[str, Client] = {}
        for agent in ("w1", "w2"):
            ws = tmp_path / f"ws-{agent}"
            ws.mkdir()
            params = _params(ws, home, config_file, agent, live.url, tokens[agent])
            clients[agent] = await stack.enter_async_context(Client(params))
        w1, w2 = clients["w1"], clients["w2"]
        await _until(w1, None, "up")  # linked: the body refuses (failsafe) until it has registered
        await _until(w2, None, "up")

        paused = await anyio.to_thread.run_sync(lambda: run_swarm(home, "kill", "--agent", "w1", *captain))
        assert paused.returncode == 0, paused.stderr
        await _until(w1, KILLED, "paused")
        assert await _write(w2, "other.txt") is None

        resumed = await anyio.to_thread.run_sync(lambda: run_swarm(home, "resume", "--agent", "w1", *captain))
        assert resumed.returncode == 0, resumed.stderr
        await _until(w1, None, "resumed")

        killed = await anyio.to_thread.run_sync(
            lambda: run_swarm(
                home, "kill", "--brain", live.url, "--token", live.tokens["captain"], "--reason", "all stop"
            )
        )
        assert killed.returncode == 0, killed.stderr
        await _until(w1, KILLED, "killed")
        await _until(w2, KILLED, "killed")


def test_pausing_an_agent_needs_a_brain_and_says_so_in_one_line(home: Path) -> None:
    done = run_swarm(home, "kill", "--agent", "w1")
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "--brain" in done.stderr


def test_resuming_an_agent_that_is_not_paused_fails_in_one_line(home: Path, tmp_path: Path) -> None:
    async def check() -> None:
        async with live_brain(BrainSettings(database_url=sqlite_url(tmp_path / "b.db"))) as brain:
            args = ("resume", "--agent", "w1", "--brain", brain.url, "--token", brain.tokens["captain"])
            done = await anyio.to_thread.run_sync(lambda: run_swarm(home, *args))
            assert done.returncode != 0
            assert len(done.stderr.strip().splitlines()) == 1 and "not paused" in done.stderr

    anyio.run(check)
