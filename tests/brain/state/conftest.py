"""The `engine` fixture: every contract test runs once on each kind of engine in `ENGINES`, opened by its URL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from brain_server.state import ENGINES, StateEngine, open_engine

from ..helpers import engine_url


@pytest.fixture(params=sorted(ENGINES))
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateEngine]:
    opened = await open_engine(engine_url(request.param, tmp_path))
    try:
        yield opened
    finally:
        await opened.close()
