"""Brain fixtures: a controllable clock, a running brain on every kind of state engine, clients per role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from brain_server import Brain, BrainSettings, StateEngine, build_app, issue_token
from brain_server.state import ENGINES, open_engine
from brain_server.wake.memory import MemoryChannel
from brain_server.wake.setup import WakeSetup

from .helpers import BrainClient, Clock, engine_url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pages() -> MemoryChannel:
    """The brain's one wake-up channel: every page it sends a human, kept."""
    return MemoryChannel()


@pytest.fixture
def settings(tmp_path: Path) -> BrainSettings:
    return BrainSettings(database_url=engine_url("sqlite", tmp_path))


@pytest.fixture(params=sorted(ENGINES))
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateEngine]:
    """Each API test runs on every kind of state engine (SQLite on the file `settings` names)."""
    engine = await open_engine(engine_url(request.param, tmp_path))
    try:
        yield engine
    finally:
        await engine.close()


@pytest.fixture
async def brain(
    settings: BrainSettings, state: StateEngine, pages: MemoryChannel, clock: Clock
) -> AsyncIterator[Brain]:
    b = Brain(settings, state=state, clock=clock, wake=WakeSetup.paging(pages))
    async with b.running():
        yield b


@pytest.fixture
async def api(brain: Brain) -> AsyncIterator[BrainClient]:
    """The brain's HTTP API in memory (httpx.ASGITransport), with one token per role."""
    tokens = {
        role: await issue_token(brain.state, role=role, label=f"{role}-1", at=brain.now())
        for role in ("body", "approver", "captain")
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(brain)), base_url="http://brain") as c:
        yield BrainClient(
            c,
            tokens,
            issue=lambda role, label, agent: issue_token(
                brain.state, role=role, label=label, at=brain.now(), agent=agent
            ),
        )
