"""Brain fixtures: a controllable clock, a running brain on either state engine, clients per role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from brain_server import (
    Brain,
    BrainSettings,
    MemoryStateEngine,
    SqliteStateEngine,
    StateEngine,
    build_app,
    issue_token,
)
from brain_server.wake.memory import MemoryChannel
from brain_server.wake.setup import WakeSetup

from .helpers import BrainClient, Clock


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
    return BrainSettings(db=tmp_path / "brain.db")


@pytest.fixture(params=["memory", "sqlite"])
async def state(request: pytest.FixtureRequest, settings: BrainSettings) -> AsyncIterator[StateEngine]:
    """Each API test runs on both state engines."""
    assert settings.db is not None
    engine: StateEngine = (
        MemoryStateEngine() if request.param == "memory" else await SqliteStateEngine.open(settings.db)
    )
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
            c, tokens, issue=lambda role, label: issue_token(brain.state, role=role, label=label, at=brain.now())
        )
