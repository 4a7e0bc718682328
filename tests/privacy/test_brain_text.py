"""Human-typed text on the brain (#21): a kill's and a resume's reason, an agent's pause and resume reasons, a task's
acceptance and setup commands, planted with random personal data over the real HTTP API, are kept in no file under
the brain's state in any common encoding; the API reads them back as written (the acceptance command still runs as
typed), export finds them, and an erasure leaves them redacted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url
from tests.brain.helpers import LiveBrain, live_brain

from .plant import leaks, plant

pytestmark = pytest.mark.anyio


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    state = tmp_path / "brain-state"
    state.mkdir()
    settings = BrainSettings(database_url=sqlite_url(state / "brain.db"), keepalive_s=0.2)
    async with live_brain(settings) as brain:
        yield brain


async def test_reasons_and_commands_typed_on_the_brain_are_kept_protected_and_read_back_as_written(
    live: LiveBrain,
) -> None:
    p = plant()
    await live.add_token("worker", agent="w1")
    captain = {"Authorization": f"Bearer {live.tokens['captain']}"}
    acceptance = f"python -m pytest -q tests --mail {p.email}"
    async with httpx.AsyncClient(base_url=live.url, timeout=10, headers=captain) as http:
        for path, reason in (
            ("/v1/kill", f"stop: {p.email} complained"),
            ("/v1/resume", f"resolved with {p.phone}"),
            ("/v1/agents/w1/pause", f"paused for {p.email}"),
            ("/v1/agents/w1/resume", f"resumed, card {p.card}"),
        ):
            answered = await http.post(path, json={"reason": reason})
            assert answered.status_code in (200, 201), (path, answered.text)
        created = await http.post(
            "/v1/tasks",
            json={"title": "t", "description": "d", "value_usd": 1, "acceptance": acceptance, "setup": f"echo {p.ip}"},
        )
        assert created.status_code == 201, created.text
        task = created.json()
        assert task["acceptance"] == acceptance and task["setup"] == f"echo {p.ip}"  # as typed, for the runner
        assert leaks([live.db.parent], p.values()) == []

        exported = await http.post("/v1/privacy/export", json={"subject": p.email})
        assert exported.status_code == 200, exported.text
        where = {item["where"] for item in exported.json()["held"]}
        assert f"task {task['id']} acceptance" in where
        assert any(w.startswith("log ") and "kill" in w for w in where)
        assert any("agent_pause" in w for w in where)

        erased = await http.post("/v1/privacy/erase", json={"subject": p.email})
        assert erased.status_code == 200, erased.text
        after = (await http.get(f"/v1/tasks/{task['id']}")).json()
        assert after["acceptance"] == "python -m pytest -q tests --mail [pii:email]"
        assert leaks([live.db.parent], p.values()) == []
