"""A live brain on a SQLite file of its own, for the #21 tests that search its state directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url
from tests.brain.helpers import LiveBrain, live_brain


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    state = tmp_path / "brain-state"
    state.mkdir()
    settings = BrainSettings(database_url=sqlite_url(state / "brain.db"), keepalive_s=0.2)
    async with live_brain(settings) as brain:
        yield brain
