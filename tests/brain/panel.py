"""A reviewer panel of five agents for the decision tests: the brain's settings and the tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from brain_server import BrainSettings
from shared_protocol.config import ConsensusConfig

from .helpers import BrainClient, engine_url, live_reviewers

REVIEWERS = ["rev-a", "rev-b", "rev-c", "rev-d", "rev-e"]


def panel_settings(database_url: str, **changes: Any) -> BrainSettings:
    """A panel of five reviewer agents (no rule reviewers: every vote is the test's), quorum 3."""
    consensus = ConsensusConfig(panel=REVIEWERS, quorum=3, deadline_s=600)
    return BrainSettings(database_url=database_url, consensus=consensus, **changes)


def panel_fixtures(*others: str) -> tuple[Any, Any]:
    """The `settings` and `panel` fixtures (`settings, panel = panel_fixtures()` in a module): a SQLite brain with
    the panel, and its client holding a reviewer token for each seat and each of `others`, and agent claude's body
    token (`claude-body`). Each reviewer agent's `REVIEWER_LV` is live (a human captain's readiness override)."""

    @pytest.fixture
    def settings(tmp_path: Path) -> BrainSettings:
        return panel_settings(engine_url("sqlite", tmp_path))

    @pytest.fixture
    async def panel(api: BrainClient) -> BrainClient:
        for name in [*REVIEWERS, *others]:
            await api.add_token(name, "reviewer", agent=name)
        await live_reviewers(api, [*REVIEWERS, *others])
        await api.add_token("claude-body", "body", agent="claude")
        return api

    return settings, panel
