"""`swarm rollout status|promote|rollback AGENT` against the real brain (`brain_server.run` on 127.0.0.1): the
report, a human captain's promotion and rollback, and one-line errors for bad input."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url
from shared_protocol.agents import agent_logic_version
from shared_protocol.brain import RolloutReport
from shared_protocol.config import ConsensusConfig, load_config

from ..brain.helpers import LiveBrain, decision_request, live_brain
from .inprocess import swarm_as, swarm_here
from .test_cli import one_line_error

pytestmark = pytest.mark.anyio

OLD = "lv-0000000000000001"
READY = {"ready": True, "items": [{"name": "kill_drill", "ok": True, "detail": "0.1 s", "fix": ""}]}
TOML = (
    '[models.m]\nprovider = "openai"\nmodel = "gpt-4.1"\napi_key = "env:OPENAI_API_KEY"\n'
    '[[agents]]\nname = "w1"\nmodel = "m"\nprompt = "work"\ntools = ["read_text_file", "write_file"]\n'
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _config(tmp_path: Path, rollout: str = "") -> Path:
    path = tmp_path / "swarm.toml"
    path.write_text(TOML + rollout)
    return path


@asynccontextmanager
async def _brain_with_a_candidate(tmp_path: Path, version: str) -> AsyncGenerator[LiveBrain]:
    """The real brain where agent w1 works live at `OLD` and its configured `version` has claimed in shadow."""
    settings = BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"), durability="crash")
    async with live_brain(settings) as brain, httpx.AsyncClient(base_url=brain.url, timeout=10) as http:
        captain = {"Authorization": f"Bearer {brain.tokens['captain']}"}
        assert (await http.post("/v1/readiness", json=READY, headers=captain)).status_code == 201
        first = {"agent": "w1", "logic_version": OLD, "reason": "the first live version", "for_s": 3600}
        assert (await http.post("/v1/readiness/overrides", json=first, headers=captain)).status_code == 201
        for name, body_id, mode, lv in (("old", "body-old", "live", OLD), ("new", "body-new", "shadow", version)):
            await brain.add_token(name, agent="w1")
            await http.post(
                "/v1/tasks", json={"title": "t"}, headers={"Authorization": f"Bearer {brain.tokens['approver']}"}
            )
            claim = {"body_id": body_id, "agent": "w1", "mode": mode, "logic_version": lv}
            answer = await http.post(
                "/v1/tasks/claim", json=claim, headers={"Authorization": f"Bearer {brain.tokens[name]}"}
            )
            assert answer.status_code == 200 and answer.json()["task"] is not None, answer.text
        yield brain


async def test_status_promote_and_rollback_through_the_cli(home: Path, tmp_path: Path) -> None:
    config = _config(tmp_path)
    version = agent_logic_version(load_config(config), "w1")
    async with _brain_with_a_candidate(tmp_path, version) as brain:
        captain, approver = brain.tokens["captain"], brain.tokens["approver"]
        url = ("--brain", brain.url)
        shown = await swarm_as("rollout", "status", "w1", *url, home=home, config=config, token=approver)
        assert shown.returncode == 0, shown.stderr
        assert f"live version:       {OLD}" in shown.stdout and f"configured here:    {version}" in shown.stdout
        assert f"candidate:          {version}: shadow" in shown.stdout and "verified_success" in shown.stdout
        assert "next:" in shown.stdout and "Fisher" in shown.stdout

        denied = await swarm_as(
            "rollout", "promote", "w1", "--reason", "go", *url, home=home, config=config, token=approver
        )
        assert "403" in one_line_error(denied)
        promoted = await swarm_as(
            "rollout", "promote", "w1", "--reason", "reviewed", "--json", *url, home=home, config=config, token=captain
        )
        assert promoted.returncode == 0, promoted.stderr
        report = RolloutReport.model_validate_json(promoted.stdout)
        assert (report.state.stage, report.percent, report.state.candidate) == ("canary", 1, version)

        back = await swarm_as(
            "rollout", "rollback", "w1", "--reason", "no", *url, home=home, config=config, token=captain
        )
        assert back.returncode == 0 and "rolled back:        " + version in back.stdout, back.stderr
        again = await swarm_as(
            "rollout", "rollback", "w1", "--reason", "no", *url, home=home, config=config, token=captain
        )
        assert "no candidate" in one_line_error(again)
        as_json = await swarm_as("rollout", "status", "w1", "--json", *url, home=home, config=config, token=approver)
        assert json.loads(as_json.stdout)["state"]["rolled_back"] == [version]


async def test_an_agent_with_no_rollout_yet_is_a_clear_error(home: Path, tmp_path: Path) -> None:
    config = _config(tmp_path)
    settings = BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"), durability="crash")
    async with live_brain(settings) as brain:
        result = await swarm_as(
            "rollout", "status", "w1", "--brain", brain.url, home=home, config=config, token=brain.tokens["captain"]
        )
    assert "no rollout" in one_line_error(result)


@pytest.mark.parametrize(
    ("args", "rollout", "names"),
    [
        (("status", "nobody", "--brain", "http://127.0.0.1:9"), "", "nobody"),
        (("status", "w1"), "", "--brain"),
        (("promote", "w1", "--reason", " ", "--brain", "http://127.0.0.1:9"), "", "--reason"),
        (("status", "w1"), "[rollout]\nsteps = [10, 5, 100]\n", "rollout.steps"),
        (("status", "w1"), "[rollout]\nsteps = [10, 50]\n", "last step is 100"),
        (("status", "w1"), "[rollout]\nmin_tasks_per_step = 0\n", "rollout.min_tasks_per_step"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(
    home: Path, tmp_path: Path, args: tuple[str, ...], rollout: str, names: str
) -> None:
    config = _config(tmp_path, rollout)
    result = swarm_here("rollout", *args, "--config", str(config), home=home)
    assert names in one_line_error(result)


REVIEWER_TOML = (
    '[[agents]]\nname = "rev-a"\nrole = "reviewer"\nmodel = "m"\nprompt = "review"\ntools = ["read_text_file"]\n'
)


async def test_a_reviewer_agents_shadow_votes_against_the_live_ones_and_a_captains_promotion(
    home: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path, REVIEWER_TOML)
    version = agent_logic_version(load_config(config), "rev-a")
    settings = BrainSettings(
        database_url=sqlite_url(tmp_path / "brain.db"),
        durability="crash",
        consensus=ConsensusConfig(panel=["rev-a", "rules:cost", "rules:confidence"], quorum=2, deadline_s=600),
    )
    async with live_brain(settings) as brain, httpx.AsyncClient(base_url=brain.url, timeout=10) as http:
        captain = {"Authorization": f"Bearer {brain.tokens['captain']}"}
        first = {"agent": "rev-a", "logic_version": OLD, "reason": "the first live version", "for_s": 3600}
        assert (await http.post("/v1/readiness/overrides", json=first, headers=captain)).status_code == 201
        await brain.add_token("rev-a", "reviewer", agent="rev-a")
        await brain.add_token("w1-body", agent="w1")
        reviewer = {"Authorization": f"Bearer {brain.tokens['rev-a']}"}
        for lv in (OLD, version):  # the live version votes, then the configured one (never seen: in shadow)
            request = decision_request(
                "body-w", agent="w1", summary=f"change by {lv}", impact={"files": 6, "api_calls": 0, "usd": 0}
            )
            asked = await http.post(
                "/v1/decisions", json=request, headers={"Authorization": f"Bearer {brain.tokens['w1-body']}"}
            )
            assert asked.status_code == 201, asked.text
            vote = {"value": "approve", "reason": "fine", "logic_version": lv}
            voted = await http.post(f"/v1/decisions/{asked.json()['id']}/votes", json=vote, headers=reviewer)
            assert voted.status_code == 200, voted.text
        url = ("--brain", brain.url)
        shown = await swarm_as("rollout", "status", "rev-a", *url, home=home, config=config, token=captain_token(brain))
        assert shown.returncode == 0, shown.stderr
        assert f"live version:       {OLD}" in shown.stdout
        assert f"candidate:          {version}: shadow (its votes kept, not counted)" in shown.stdout, shown.stdout
        assert "shadow votes:       on 1 decisions" in shown.stdout and "vote_agreement" in shown.stdout
        promoted = await swarm_as(
            "rollout",
            "promote",
            "rev-a",
            "--reason",
            "read it",
            *url,
            home=home,
            config=config,
            token=captain_token(brain),
        )
        assert promoted.returncode == 0, promoted.stderr
        assert "canary step 1" in promoted.stdout and "its votes count on 1% of decisions" in promoted.stdout


def captain_token(brain: LiveBrain) -> str:
    return brain.tokens["captain"]
