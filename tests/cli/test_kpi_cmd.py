"""`swarm kpi` against a real brain on 127.0.0.1, run as the operator runs it (a process); `[metrics]` config."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from body_mcp.exceptions import ConfigError as FileConfigError
from brain_server import BrainSettings
from brain_server.exceptions import ConfigError
from brain_server.state import sqlite_url
from swarm_cli.brain_cmds import load_settings, serve_settings
from tests.brain.helpers import LiveBrain, batch, live_brain, ok, registration, rerun_event
from tests.cli.test_task_cmds import one_line, swarm

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    async with live_brain(BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"))) as brain:
        yield brain


async def test_kpi_prints_the_report_and_its_json(live: LiveBrain, tmp_path: Path) -> None:
    async with live.client() as api:
        task = {"title": "t", "value_usd": 40, "acceptance": "true"}
        task_id = ok(await api.post("/v1/tasks", task, as_="approver"), 201)["id"]
        claim = {"body_id": "body-a", "agent": "w1", "task_id": task_id}
        token = ok(await api.post("/v1/tasks/claim", claim, as_="body"))["claim_token"]
        ok(await api.post("/v1/bodies/register", registration("body-a"), as_="body"))
        # The body's audited re-run of the acceptance command, which the brain checks the verification against.
        rerun = rerun_event("body-a", 1, "genesis", action_id="act_v", at=time.time(), argv=["true"], task_id=task_id)
        ok(await api.post("/v1/audit", batch("body-a", [rerun]), as_="body"))
        verification = {"command": "true", "exit_code": 0, "action_id": "act_v", "verified": True}
        outcome = {"claim_token": token, "outcome": "succeeded", "verification": verification}
        ok(await api.post(f"/v1/tasks/{task_id}/outcome", outcome, as_="body"))

    code, out, err = await swarm(live, "kpi", "--json", home=tmp_path)
    assert code == 0, err
    report = json.loads(out)
    assert (report["tasks_finished"], report["tasks_verified_succeeded"], report["task_success_rate"]) == (1, 1, 1.0)
    assert report["roi"] is None, "nothing spent: no ROI, not an infinite one"
    code, out, err = await swarm(live, "kpi", "--since", "12h", home=tmp_path, as_="captain")
    assert code == 0, err
    assert "task success rate:  100.0% (1 verified of 1 finished)" in out
    assert "ROI:                n/a" in out


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--since", "7x"], "--since"),
        (["--since", "0d"], "--since"),
        (["--since", "400d"], "--since"),
        (["--since", ""], "--since"),
    ],
)
async def test_kpi_refuses_a_bad_window_in_one_line(
    live: LiveBrain, tmp_path: Path, args: list[str], names: str
) -> None:
    code, _, err = await swarm(live, "kpi", *args, home=tmp_path)
    assert names in one_line(code, err)


async def test_kpi_needs_a_brain_and_a_human_token(live: LiveBrain, tmp_path: Path) -> None:
    code, _, err = await swarm(live, "kpi", home=tmp_path, brain=False)
    assert "--brain" in one_line(code, err)
    code, _, err = await swarm(live, "kpi", home=tmp_path, as_="body")
    assert "(403 forbidden)" in one_line(code, err)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "swarm-home"
    monkeypatch.setenv("SWARM_HOME", str(path))
    monkeypatch.delenv("SWARM_CONFIG", raising=False)
    return path


def test_metrics_public_telemetry_retention_and_the_hourly_limit_reach_the_brain(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "swarm.toml"
    config.write_text(
        "[brain]\ntelemetry_retention_days = 3\n\n[metrics]\npublic = true\n\n[limits]\nusd_per_hour = 4.5\n"
    )
    settings, swarm_config = serve_settings(config=str(config))
    assert (settings.metrics_public, settings.telemetry_retention_days, settings.usd_per_hour) == (True, 3, 4.5)
    assert swarm_config.metrics.public is True
    default, _ = serve_settings(config=None)
    assert (default.metrics_public, default.telemetry_retention_days) == (False, 30)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[metrics]\npublic = "maybe"\n', "metrics.public"),
        ("[metrics]\nopen = true\n", "metrics.open"),
        ("[brain]\ntelemetry_retention_days = 0\n", "brain.telemetry_retention_days"),
    ],
)
def test_a_bad_metrics_or_telemetry_key_is_an_error_naming_it(home: Path, tmp_path: Path, text: str, key: str) -> None:
    config = tmp_path / "swarm.toml"
    config.write_text(text)
    with pytest.raises((ConfigError, FileConfigError), match=key.replace(".", r"\.")):
        serve_settings(config=str(config))
    if key.startswith("brain."):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_settings(config=str(config))
