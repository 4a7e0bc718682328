"""A real `swarm body` process linked to a brain on loopback: what its brain hears when it exits cleanly or is
killed (a page only for a lost heartbeat, once), and what `swarm status` in another process says of it.

The brain runs in this process on an injected clock, its loops driven by the test (`brain.sweep()`,
`brain.escalator.tick()`), its pages kept by the in-memory wake channel; waits are on its state and its
event streams changing, never on time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncGenerator, Callable, Generator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.memory import MemoryObjectReceiveStream

from body_mcp.link_state import LinkRecord, read_link_record
from body_mcp.state import StatePaths
from brain_server import Brain, BrainSettings, MemoryStateEngine, issue_token, serve_brain
from brain_server.auth import Principal
from brain_server.events import BrainEvent, EventHub
from brain_server.state import BodyRecord, LogEntry
from brain_server.wake.memory import MemoryChannel
from brain_server.wake.setup import WakeSetup
from tests.brain.helpers import Clock
from tests.cli.inprocess import swarm_in_process
from tests.tool_definitions import seed_tool_definitions

pytestmark = pytest.mark.anyio

FAILSAFE_S = 5.0
CAPTAIN = Principal(token_id="tok_captain", role="captain", label="captain-1")


class Changes:
    """Something tests wait on: `await changes.until(predicate)` wakes at every change, never on a timer."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def changed(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    async def until(self, predicate: Callable[[], bool], *, timeout_s: float = 30) -> None:
        with anyio.fail_after(timeout_s):
            while not predicate():
                await self._event.wait()


class WatchedState(MemoryStateEngine):
    """The memory engine, counting what bodies do to it."""

    def __init__(self, changes: Changes) -> None:
        super().__init__()
        self.changes = changes
        self.registered = 0
        self.heartbeats = 0

    async def upsert_body(self, body: BodyRecord, *, key_log: LogEntry | None = None) -> None:
        await super().upsert_body(body, key_log=key_log)
        self.registered += 1
        self.changes.changed()

    async def touch_body(self, body_id: str, at: datetime) -> bool:
        known = await super().touch_body(body_id, at)
        self.heartbeats += 1
        self.changes.changed()
        return known

    async def deregister_body(self, body_id: str, *, at: datetime, log: LogEntry) -> bool:
        known = await super().deregister_body(body_id, at=at, log=log)
        self.changes.changed()
        return known


class WatchedHub(EventHub):
    """The event hub, saying when a stream opens or closes."""

    def __init__(self, changes: Changes) -> None:
        super().__init__()
        self.changes = changes

    @contextmanager
    def subscribe(
        self, body_id: str | None = None, *, agent: str | None = None
    ) -> Generator[MemoryObjectReceiveStream[BrainEvent]]:
        try:
            with super().subscribe(body_id, agent=agent) as events:
                self.changes.changed()
                yield events
        finally:
            self.changes.changed()


@dataclass
class Harness:
    brain: Brain
    state: WatchedState
    changes: Changes
    clock: Clock
    pages: MemoryChannel
    url: str
    token: str
    home: Path
    workspace: Path

    async def start_body(self) -> Process:
        """`swarm body` for the workspace, linked to this brain; returns once it registered and streams events."""
        process = await anyio.open_process(
            [sys.executable, "-m", "swarm_cli", "body", "--workspace", str(self.workspace), "--brain", self.url],
            env=self.env({"SWARM_TOKEN": self.token}),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=(self.home / "body.log").open("ab"),
        )
        await self.changes.until(lambda: bool(self.brain.hub.connected()) and self.state.heartbeats > 0)
        return process

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
        return {**env, "SWARM_HOME": str(self.home), **(extra or {})}

    async def status(self) -> dict[str, str]:
        """`swarm status` in the test's process (`tests/cli/inprocess.py`: the same entry point, no new Python; the
        body it reports on is a process of its own), as `{label: value}` of its lines."""
        done = await swarm_in_process(["status", "--workspace", str(self.workspace)], self.env())
        assert done.returncode == 0, done.stderr
        lines = [line.partition(":") for line in done.stdout.splitlines()]
        return {label.strip(): value.strip() for label, _, value in lines}

    async def lost_and_paged(self, seconds: float) -> int:
        """Let `seconds` pass on the brain's clock, do what its loops would, and count the pages sent so far."""
        self.clock.advance(seconds)
        await self.brain.sweep()
        await self.brain.escalator.tick()
        return len(self.pages.pages)

    async def recorded(self, predicate: Callable[[LinkRecord], bool], timeout_s: float = 10) -> None:
        """Wait until the body's record of its link (what `swarm status` reads) satisfies `predicate`."""
        path = StatePaths(home=self.home, workspace=self.workspace.resolve()).link_state
        with anyio.fail_after(timeout_s):
            while (record := read_link_record(path)) is None or not predicate(record):
                await anyio.sleep(0.01)

    async def gone_from_streams(self) -> None:
        await self.changes.until(lambda: not self.brain.hub.connected())


@asynccontextmanager
async def linked(tmp_path: Path) -> AsyncGenerator[Harness]:
    changes, clock, pages = Changes(), Clock(), MemoryChannel()
    state = WatchedState(changes)
    settings = BrainSettings(
        host="127.0.0.1", port=0, database_url="memory://", failsafe_s=FAILSAFE_S, heartbeat_interval_s=0.2
    )
    brain = Brain(settings, state=state, clock=clock, wake=WakeSetup.paging(pages))
    brain.hub = WatchedHub(changes)
    token = await issue_token(state, role="body", label="laptop", at=brain.now())
    workspace, home = tmp_path / "ws", tmp_path / "home"
    workspace.mkdir()
    home.mkdir()
    seed_tool_definitions(home)
    (workspace / "f.txt").write_text("x\n")
    urls: list[str] = []
    ready, stop = anyio.Event(), anyio.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: serve_brain(brain, on_ready=on_ready, stop=stop, loops=False))
        with anyio.fail_after(10):
            await ready.wait()
        try:
            yield Harness(brain, state, changes, clock, pages, urls[0], token, home, workspace)
        finally:
            stop.set()


async def finish(process: Process, *, kill: bool) -> int:
    if kill:
        process.send_signal(signal.SIGKILL)
    else:
        assert process.stdin is not None
        await process.stdin.aclose()  # what an IDE does when it closes the session
    with anyio.fail_after(30):
        return await process.wait()


async def test_a_body_that_exits_cleanly_deregisters_and_nobody_is_paged(tmp_path: Path) -> None:
    async with linked(tmp_path) as h:
        process = await h.start_body()
        assert await h.lost_and_paged(0) == 0
        assert await finish(process, kill=False) == 0
        await h.gone_from_streams()
        (body,) = await h.state.bodies()
        assert body.left_at is not None, "the brain was told before the process ended"
        for _ in range(3):
            assert await h.lost_and_paged(10 * FAILSAFE_S) == 0, "gone, not lost: no page"
        status = await h.status()
        assert status["brain"].startswith("connected to ") and "left cleanly" in status["brain"]


async def test_a_body_that_is_killed_is_reported_lost_once(tmp_path: Path) -> None:
    async with linked(tmp_path) as h:
        process = await h.start_body()
        assert await h.lost_and_paged(0) == 0
        await h.recorded(lambda record: record.link == "connected")  # (what `swarm status` has of it once it is gone)
        assert await finish(process, kill=True) == -signal.SIGKILL
        await h.gone_from_streams()
        assert await h.lost_and_paged(FAILSAFE_S / 2) == 0, "not yet past the failsafe time"
        assert await h.lost_and_paged(FAILSAFE_S) == 1
        (page,) = h.pages.pages
        assert page.kind == "alert" and "lost" in page.title
        for _ in range(3):
            assert await h.lost_and_paged(10 * FAILSAFE_S) == 1, "one page per loss, however long it lasts"
        status = await h.status()
        assert "not running" in status["brain"] and "without saying so" in status["brain"]


async def test_swarm_status_of_a_linked_body_under_a_brain_kill_says_engaged_by_the_brain(tmp_path: Path) -> None:
    async with linked(tmp_path) as h:
        process = await h.start_body()
        try:
            await h.recorded(lambda record: record.link == "connected")
            before = await h.status()
            assert before["kill switch"] == "released" and before["brain"].startswith(f"connected to {h.url}")
            await h.brain.set_kill(CAPTAIN, engaged=True, reason="drill")
            # The body records what it heard in a thread of its own (no heartbeat waits for that write).
            await h.recorded(lambda record: record.brain_kill)
            status = await h.status()
            assert status["kill switch"].startswith("ENGAGED (brain: drill, by captain-1)")
            assert status["brain"].startswith(f"connected to {h.url}")
        finally:
            await finish(process, kill=True)
        stopped = await h.status()
        assert stopped["kill switch"].startswith("ENGAGED (brain: drill") and "not running" in stopped["kill switch"]
