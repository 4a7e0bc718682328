"""`swarm readiness`: each item against real state, the drills against a real brain and body, the report and
overrides on the wire, exit codes and one-line errors. The drills run the real CLI as a process of its own; the
other commands run its entry point in the test's process (`tests/cli/inprocess.py`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncGenerator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from body_mcp import Admin, BodySettings
from body_mcp.settings import AgentProfile
from body_mcp.state import StatePaths
from brain_server import BrainSettings
from brain_server.state import sqlite_url
from shared_protocol.agents import agent_logic_version
from shared_protocol.brain import ReadinessStatus
from shared_protocol.config import ConsensusConfig, SwarmConfig, parse_config
from shared_protocol.secrets import Secrets
from swarm_cli import _context, _drill_records, _drills, _readiness
from swarm_cli._drill_records import DrillRecord, DrillRecords
from swarm_cli._readiness import ShadowFact
from swarm_cli.readiness_cmds import parse_duration

from ..brain.helpers import LiveBrain, live_brain
from ..fakes.ntfy import FakeNtfy
from ..fakes.serve import serve_app
from ..wake.test_wake_cli import public_key_hex
from .inprocess import swarm_as, swarm_here
from .test_cli import one_line_error

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _trail(home: Path, workspace: Path, *, events: int = 3) -> Admin:
    admin = Admin.open(BodySettings(workspace=workspace, home=home, config=SwarmConfig()), by="human:test")
    for n in range(events):
        admin.record(action="note", rationale=f"event {n}")
    return admin


@pytest.fixture
def trail(home: Path, workspace: Path) -> Iterator[Admin]:
    admin = _trail(home, workspace)
    yield admin
    admin.close()


# -- items against real state -------------------------------------------------------------------


def test_a_fresh_snapshot_holds_and_one_over_an_hour_old_fails(home: Path, workspace: Path, trail: Admin) -> None:
    states = _readiness.local_states(home, SwarmConfig())
    missing = _readiness.check_snapshots(states, now=datetime.now(UTC))
    assert not missing.ok and "no snapshot" in missing.detail and str(workspace) in missing.detail and missing.fix

    info = trail.snapshotter().create(reason="test")
    fresh = _readiness.check_snapshots(states, now=info.created_at + timedelta(minutes=59))
    assert fresh.ok and fresh.fix == ""
    old = _readiness.check_snapshots(states, now=info.created_at + timedelta(minutes=61))
    assert not old.ok and str(workspace) in old.detail and "swarm snapshot create" in old.fix


def test_nothing_to_check_fails_rather_than_passing_vacuously(home: Path) -> None:
    states = _readiness.local_states(home, SwarmConfig())
    for item in (
        _readiness.check_snapshots(states, now=NOW),
        _readiness.check_audit_chains(states, _context.open_admin),
        _readiness.check_restore_drill(states, DrillRecords(), now=NOW, max_age_s=86400),
    ):
        assert not item.ok and item.fix


def test_a_tampered_audit_chain_fails_the_item_and_names_the_workspace(
    home: Path, workspace: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for ws in (workspace, other):
        _trail(home, ws).close()
    states = _readiness.local_states(home, SwarmConfig())
    intact = _readiness.check_audit_chains(states, _context.open_admin)
    assert intact.ok and "2 audit chain(s)" in intact.detail

    db = next(s for s in states.found if s.workspace == workspace).paths.db
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER audit_events_no_update")
        conn.execute("UPDATE audit_events SET body = replace(body, 'event 1', 'event X') WHERE seq = 2")
    broken = _readiness.check_audit_chains(states, _context.open_admin)
    assert not broken.ok and str(workspace) in broken.detail and str(other) not in broken.detail
    assert "swarm audit" in broken.fix


def _agent_trail(home: Path, config: SwarmConfig, name: str, *, events: int = 2) -> StatePaths:
    """An agent's chain as its body keeps it (`swarm body --agent NAME`); `name` need not be in `config`."""
    if any(agent.name == name for agent in config.agents):
        profile = _context.agent_profile(config, name)
    else:
        profile = AgentProfile(name=name, logic_version=None)
    settings = BodySettings(workspace=None, home=home, config=config, agent_profile=profile)
    with Admin.open(settings, by="human:test") as admin:
        for n in range(events):
            admin.record(action="note", rationale=f"event {n}")
    return settings.paths


def _tamper(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER audit_events_no_update")
        conn.execute("UPDATE audit_events SET body = replace(body, 'event 1', 'event X') WHERE seq = 2")


def test_agents_chains_are_verified_too_and_a_tampered_one_fails_the_item_naming_the_agent(
    home: Path, trail: Admin
) -> None:
    config = parse_config(AGENTS)
    w1 = _agent_trail(home, config, "w1")
    gone = _agent_trail(home, config, "retired")  # its state stays after it is taken out of [[agents]]
    states = _readiness.local_states(home, config)
    assert [(a.name, a.configured) for a in states.agents] == [("retired", False), ("w1", True)]
    intact = _readiness.check_audit_chains(states, _context.open_admin)
    assert intact.ok and "3 audit chain(s)" in intact.detail, intact.detail
    assert "agent w1" in intact.detail and "agent retired (no longer in [[agents]])" in intact.detail

    _tamper(w1.db)
    broken = _readiness.check_audit_chains(states, _context.open_admin)
    assert not broken.ok and broken.detail.startswith("1 of 3 trails do not verify: agent w1: "), broken.detail
    assert "retired" not in broken.detail and "--agent NAME" in broken.fix
    _tamper(gone.db)
    both = _readiness.check_audit_chains(states, _context.open_admin)
    assert not both.ok and "2 of 3" in both.detail and "agent retired (no longer in [[agents]]): " in both.detail


def test_swarm_readiness_fails_on_a_tampered_agent_chain(home: Path, tmp_path: Path) -> None:
    config_path = _agents_toml(tmp_path)
    _tamper(_agent_trail(home, parse_config(AGENTS), "w1").db)
    result = swarm_here("readiness", "--json", "--config", str(config_path), home=home)
    items = {item["name"]: item for item in json.loads(result.stdout)["items"]}
    assert not items["audit_chains"]["ok"] and "agent w1" in items["audit_chains"]["detail"]
    assert "audit_chains" in one_line_error(result)


def test_an_agent_state_whose_identity_is_damaged_fails_the_audit_item(home: Path, trail: Admin) -> None:
    state = home / "agents" / "w1-0123"
    state.mkdir(parents=True)
    (state / "identity.json").write_text("{not json")
    item = _readiness.check_audit_chains(_readiness.local_states(home, SwarmConfig()), _context.open_admin)
    assert not item.ok and str(state) in item.detail and "unreadable or damaged" in item.detail


def test_limits_looser_than_the_specification_fail_and_tighter_ones_hold() -> None:
    assert _readiness.check_limits(SwarmConfig()).ok
    tighter = parse_config({"limits": {"max_files_per_action": 3, "usd_per_hour": 0}, "audit": {"retention_days": 365}})
    assert _readiness.check_limits(tighter).ok
    looser = parse_config(
        {
            "limits": {"max_files_per_action": 11, "usd_per_hour": 10.5},
            "policy": {"human_below_confidence": 0.5},
            "snapshots": {"interval_s": 0},
        }
    )
    item = _readiness.check_limits(looser)
    assert not item.ok and item.detail.startswith("4 setting(s)")
    for key in ("limits.max_files_per_action", "limits.usd_per_hour", "policy.human_below_confidence", "interval_s"):
        assert key in item.detail


def test_consensus_holds_with_the_embedded_rule_panel_and_with_reviewer_agents_on_it() -> None:
    item = _readiness.check_consensus(SwarmConfig())
    assert item.ok and "panel of 5 (5 rule reviewers, 0 reviewer agents, 0 humans), quorum 3" in item.detail
    reviewers = {
        **AGENTS,
        "agents": [*AGENTS["agents"], {**AGENTS["agents"][0], "name": "r1", "role": "reviewer"}],
        "consensus": {"panel": ["rules:cost", "r1", "human:alice"], "quorum": 2},
    }
    seated = _readiness.check_consensus(parse_config(reviewers))
    assert seated.ok and "1 rule reviewers, 1 reviewer agents, 1 humans), quorum 2" in seated.detail


def test_consensus_fails_when_its_panel_cannot_reach_its_quorum() -> None:
    # (the config refuses such a panel when it is read; a config built otherwise is checked here too)
    panel = ConsensusConfig.model_construct(panel=["rules:cost", "w1", "gone"], quorum=3, deadline_s=60)
    config = parse_config(AGENTS).model_copy(update={"consensus": panel})
    item = _readiness.check_consensus(config)
    assert not item.ok and "no reviewer or captain agent for w1, gone" in item.detail and "override" in item.fix
    lopsided = ConsensusConfig.model_construct(panel=["rules:cost", "rules:files"], quorum=1, deadline_s=60)
    assert not _readiness.check_consensus(SwarmConfig().model_copy(update={"consensus": lopsided})).ok


@pytest.mark.parametrize(
    ("record", "ok"),
    [
        (None, False),
        (DrillRecord(at=NOW - timedelta(hours=1), ok=True, seconds=0.02), True),
        (DrillRecord(at=NOW - timedelta(hours=1), ok=True, seconds=5.0), False),
        (DrillRecord(at=NOW - timedelta(days=8), ok=True, seconds=0.02), False),
        (DrillRecord(at=NOW - timedelta(hours=1), ok=False, detail="no refusal"), False),
    ],
)
def test_the_kill_drill_item_needs_a_recent_drill_under_five_seconds(record: DrillRecord | None, ok: bool) -> None:
    item = _readiness.check_kill_drill(DrillRecords(kill=record), now=NOW, max_age_s=7 * 86400)
    assert item.ok is ok and item.name == "kill_drill" and bool(item.fix) is not ok


def test_swarm_snapshot_drill_records_its_result_for_readiness(home: Path, workspace: Path, trail: Admin) -> None:
    states = _readiness.local_states(home, SwarmConfig())
    # (in the test's process: the same entry point, minus a new Python's start)
    failed = swarm_here("snapshot", "drill", "--workspace", str(workspace), home=home)
    one_line_error(failed)  # no snapshot yet: the drill fails, and that is recorded too
    item = _readiness.check_restore_drill(
        states, _drill_records.load_records(home), now=datetime.now(UTC), max_age_s=86400
    )
    assert not item.ok and "failed" in item.detail

    trail.snapshotter().create(reason="test")
    assert swarm_here("snapshot", "drill", "--workspace", str(workspace), home=home).returncode == 0
    records = _drill_records.load_records(home)
    assert records.restore[str(workspace)].ok
    assert _readiness.check_restore_drill(states, records, now=datetime.now(UTC), max_age_s=86400).ok
    later = datetime.now(UTC) + timedelta(days=2)
    assert not _readiness.check_restore_drill(states, records, now=later, max_age_s=86400).ok


def test_damaged_drill_records_are_an_error_naming_the_file(home: Path) -> None:
    path = _drill_records.records_file(home)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    error = one_line_error(swarm_here("readiness", home=home))
    assert str(path) in error


# -- the shadow period --------------------------------------------------------------------------

AGENTS: dict[str, Any] = {
    "models": {"m": {"provider": "openai", "model": "gpt-4.1", "api_key": "env:OPENAI_API_KEY"}},
    "agents": [{"name": "w1", "model": "m", "prompt": "work", "tools": ["read_text_file", "write_file"]}],
    "rollout": {"shadow_days": 7, "min_shadow_tasks": 3},
}


def _version(config: SwarmConfig) -> str:
    return agent_logic_version(config, config.agents[0].name)


def _runs(version: str, *, tasks: int, first: datetime, agent: str = "w1") -> list[ShadowFact]:
    return [
        ShadowFact(task_id=f"t{n}", agent=agent, logic_version=version, at=first + timedelta(hours=n))
        for n in range(tasks)
    ]


def test_the_shadow_period_needs_both_the_days_and_the_tasks_of_this_logic_version() -> None:
    config = parse_config(AGENTS)
    version = _version(config)
    (done,) = _readiness.check_shadow_periods(config, _runs(version, tasks=3, first=NOW - timedelta(days=8)), now=NOW)
    assert done.ok and done.name == "shadow_period:w1" and version in done.detail
    (few,) = _readiness.check_shadow_periods(config, _runs(version, tasks=2, first=NOW - timedelta(days=8)), now=NOW)
    assert not few.ok and "2 shadow tasks" in few.detail and "override" in few.fix
    (short,) = _readiness.check_shadow_periods(config, _runs(version, tasks=5, first=NOW - timedelta(days=6)), now=NOW)
    assert not short.ok
    others = _runs("lv-another", tasks=9, first=NOW - timedelta(days=30)) + _runs(
        version, tasks=9, first=NOW - timedelta(days=30), agent="w2"
    )
    (not_mine,) = _readiness.check_shadow_periods(config, others, now=NOW)
    assert not not_mine.ok and "0 shadow tasks" in not_mine.detail


def test_a_changed_prompt_is_a_new_logic_version_that_starts_its_shadow_period_again() -> None:
    config = parse_config(AGENTS)
    runs = _runs(_version(config), tasks=3, first=NOW - timedelta(days=8))
    changed = parse_config({**AGENTS, "agents": [{**AGENTS["agents"][0], "prompt": "work harder"}]})
    assert _version(changed) != _version(config)
    (item,) = _readiness.check_shadow_periods(changed, runs, now=NOW)
    assert not item.ok


def test_the_shadow_item_is_keyed_to_the_version_going_live_by_the_brains_rollout() -> None:
    config = parse_config(AGENTS)
    version = _version(config)
    live = {"w1": _readiness.RolloutFact(live_version=version)}
    (promoted,) = _readiness.check_shadow_periods(config, [], now=NOW, rollouts=live)
    assert promoted.ok and "live version" in promoted.detail  # rolled out: its shadow period is behind it
    other = {"w1": _readiness.RolloutFact(live_version="lv-old")}
    (candidate,) = _readiness.check_shadow_periods(config, [], now=NOW, rollouts=other)
    assert not candidate.ok and "0 shadow tasks" in candidate.detail
    back = {"w1": _readiness.RolloutFact(live_version="lv-old", rolled_back=(version,))}
    runs = _runs(version, tasks=9, first=NOW - timedelta(days=30))
    (rolled_back,) = _readiness.check_shadow_periods(config, runs, now=NOW, rollouts=back)
    assert not rolled_back.ok and "rolled this logic version back" in rolled_back.detail


def test_without_a_brain_or_agents_the_shadow_items_fail() -> None:
    (no_brain,) = _readiness.check_shadow_periods(parse_config(AGENTS), "no brain given", now=NOW)
    assert not no_brain.ok and "no brain given" in no_brain.detail
    (no_agents,) = _readiness.check_shadow_periods(SwarmConfig(), [], now=NOW)
    assert not no_agents.ok and no_agents.name == "shadow_period"


# -- escalation: configured and tested -----------------------------------------------------------


def _ntfy_config(server: str) -> SwarmConfig:
    return parse_config(
        {
            "brain": {"public_url": "https://brain.example.com"},
            "escalation": {"levels": [{"after_s": 0, "targets": ["ntfy"]}]},
            "discord": {"public_key": public_key_hex(), "application_id": "1", "user_ids": ["200"]},
            "ntfy": {"server": server, "topic": "env:SWARM_TEST_TOPIC"},
        }
    )


async def test_escalation_holds_once_configured_and_a_test_page_went_out() -> None:
    ntfy = FakeNtfy()
    secrets = Secrets.from_environ({"SWARM_TEST_TOPIC": "swarm-ops-7f3a"})
    async with serve_app(ntfy.app) as base, httpx.AsyncClient() as http:
        config = _ntfy_config(base)
        unconfigured = await _readiness.check_escalation(
            SwarmConfig(), secrets, http, DrillRecords(), now=NOW, max_age_s=1
        )
        assert not unconfigured.ok and "no wake-up channel" in unconfigured.detail
        untested = await _readiness.check_escalation(config, secrets, http, DrillRecords(), now=NOW, max_age_s=86400)
        assert not untested.ok and "never drilled" in untested.detail and "--drill" in untested.fix

        record = await _drills.send_test_page(config, secrets, http)
        assert record.ok and "ntfy" in record.detail and "swarm-ops-7f3a" not in record.detail
        (published,) = ntfy.published
        assert published["topic"] == "swarm-ops-7f3a" and "drill" in published["title"].lower()
        tested = await _readiness.check_escalation(
            config, secrets, http, DrillRecords(escalation=record), now=record.at, max_age_s=86400
        )
        assert tested.ok


async def test_a_test_page_the_channel_refuses_is_a_failed_drill() -> None:
    ntfy = FakeNtfy(token="right")
    secrets = Secrets.from_environ({"SWARM_TEST_TOPIC": "swarm-ops-7f3a"})
    async with serve_app(ntfy.app) as base, httpx.AsyncClient() as http:
        record = await _drills.send_test_page(_ntfy_config(base), secrets, http)
    assert not record.ok and "ntfy" in record.detail and ntfy.published == []


# -- the CLI, the drills and the brain ----------------------------------------------------------


def test_readiness_json_has_exactly_the_specified_shape_and_exits_1_when_an_item_fails(home: Path) -> None:
    result = swarm_here("readiness", "--json", home=home)
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert set(data) == {"ready", "items"} and data["ready"] is False
    assert all(set(item) == {"name", "ok", "detail", "fix"} for item in data["items"])
    names = [item["name"] for item in data["items"]]
    expected = ["kill_drill", "audit_chains", "snapshots", "restore_drill", "limits", "sandbox", "escalation"]
    assert names == [*expected, "consensus", "secrets", "robots_gate", "pii_redaction", "shadow_period"]
    failing = [item["name"] for item in data["items"] if not item["ok"]]
    line = one_line_error(result)
    assert line.startswith("swarm: not ready:") and all(name in line for name in failing)


def test_the_table_shows_each_failing_item_with_its_fix(home: Path) -> None:
    result = swarm_here("readiness", home=home)
    assert result.returncode == 1
    assert "FAIL  kill_drill" in result.stdout and "fix: " in result.stdout
    assert "ok    consensus" in result.stdout
    assert "ok    limits" in result.stdout


def test_the_drill_kills_a_drill_body_through_a_throwaway_brain_and_records_it(home: Path, workspace: Path) -> None:
    trail = _trail(home, workspace)
    trail.snapshotter().create(reason="test")
    trail.close()
    # (in the test's process: the same entry point; the drill's body is a `swarm body` process all the same)
    result = swarm_here("readiness", "--drill", home=home)
    assert result.returncode == 1  # the shadow period cannot hold yet
    assert "drill: kill passed" in result.stdout, result.stdout + result.stderr
    records = _drill_records.load_records(home)
    assert records.kill is not None and records.kill.ok and records.kill.seconds is not None
    assert 0 < records.kill.seconds < _readiness.KILL_DRILL_MAX_S
    assert records.restore[str(workspace)].ok
    after = json.loads(swarm_here("readiness", "--json", home=home).stdout)
    ok = {item["name"]: item["ok"] for item in after["items"]}
    assert ok["kill_drill"] and ok["restore_drill"] and ok["audit_chains"] and ok["snapshots"]
    # The drill ran on its own brain and home: this machine's state holds only the workspace's trail.
    assert [s.workspace for s in _readiness.local_states(home, SwarmConfig()).found] == [workspace]


def _agents_toml(tmp_path: Path, *, shadow_days: int = 7) -> Path:
    path = tmp_path / "swarm.toml"
    path.write_text(
        '[models.m]\nprovider = "openai"\nmodel = "gpt-4.1"\napi_key = "env:OPENAI_API_KEY"\n'
        '[[agents]]\nname = "w1"\nmodel = "m"\nprompt = "work"\ntools = ["read_text_file", "write_file"]\n'
        f"[rollout]\nshadow_days = {shadow_days}\nmin_shadow_tasks = 1\n"
    )
    return path


@asynccontextmanager
async def _brain_with_a_shadow_run(tmp_path: Path) -> AsyncGenerator[tuple[LiveBrain, str]]:
    """The real brain (`brain_server.run` on 127.0.0.1) where agent w1's current logic version has worked one task
    in shadow, through the routes its runner uses; also the task's id."""
    version = _version(parse_config(AGENTS))
    settings = BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"), durability="crash")
    async with live_brain(settings) as brain, httpx.AsyncClient(base_url=brain.url, timeout=10) as http:
        task = (await http.post("/v1/tasks", json={"title": "t"}, headers=_as(brain, "approver"))).json()
        await brain.add_token("w1", agent="w1")  # agent w1's own token, as its runner has
        body = {"body_id": "body-a", "agent": "w1", "mode": "shadow", "logic_version": version}
        claimed = (await http.post("/v1/tasks/claim", json=body, headers=_as(brain, "w1"))).json()
        outcome = {"claim_token": claimed["claim_token"], "outcome": "succeeded", "mode": "shadow"}
        ran = await http.post(
            f"/v1/tasks/{task['id']}/outcome", json={**outcome, "logic_version": version}, headers=_as(brain, "w1")
        )
        assert ran.status_code == 200, ran.text
        yield brain, task["id"]


def _as(brain: LiveBrain, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {brain.tokens[role]}"}


async def _stored(brain: LiveBrain) -> ReadinessStatus:
    async with httpx.AsyncClient(base_url=brain.url, timeout=10) as http:
        answer = await http.get("/v1/readiness", headers=_as(brain, "body"))
    assert answer.status_code == 200, answer.text
    return ReadinessStatus.model_validate_json(answer.content)


async def test_readiness_posts_its_report_and_reads_the_shadow_runs_from_the_brain(home: Path, tmp_path: Path) -> None:
    version = _version(parse_config(AGENTS))
    async with _brain_with_a_shadow_run(tmp_path) as (brain, _):
        captain = brain.tokens["captain"]
        # A week's shadow period: the brain's one shadow task (just now) is counted, but the period has not passed.
        week = _agents_toml(tmp_path, shadow_days=7)
        result = await swarm_as("readiness", "--json", "--brain", brain.url, home=home, config=week, token=captain)
        assert result.returncode == 1, result.stderr
        printed = json.loads(result.stdout)
        shadow = next(item for item in printed["items"] if item["name"] == "shadow_period:w1")
        assert not shadow["ok"] and f"{version}: 1 shadow tasks, the first 0.0 days ago" in shadow["detail"], shadow
        stored = await _stored(brain)
        assert (
            stored.report is not None and stored.report.model_dump(mode="json", include={"ready", "items"}) == printed
        )
        assert stored.report.drill_at is None and not stored.live_ready  # no kill drill has run here

        # No shadow days needed: the one task is enough; the table says what the brain made of the report.
        now = _agents_toml(tmp_path, shadow_days=0)
        table = await swarm_as("readiness", "--brain", brain.url, home=home, config=now, token=captain)
        assert table.returncode == 1 and "brain: report recorded; live work is refused" in table.stdout, table.stderr
        assert "ok    shadow_period:w1" in table.stdout and f"{version}: 1 shadow tasks" in table.stdout
        newer = await _stored(brain)
        assert newer.report is not None and newer.report.at > stored.report.at
        assert next(item for item in newer.report.items if item.name == "shadow_period:w1").ok


async def test_override_sends_the_agents_logic_version_and_duration_to_the_brain(home: Path, tmp_path: Path) -> None:
    config_path = _agents_toml(tmp_path)
    version = _version(parse_config(AGENTS))
    async with _brain_with_a_shadow_run(tmp_path) as (brain, _):
        args = ("readiness", "override", "--agent", "w1", "--reason", "launch", "--for", "12h", "--brain", brain.url)
        refused = await swarm_as(*args, home=home, config=config_path, token=brain.tokens["approver"])
        assert "403" in one_line_error(refused)  # only a captain may override
        before = datetime.now(UTC)
        result = await swarm_as(*args, home=home, config=config_path, token=brain.tokens["captain"])
        assert result.returncode == 0, result.stderr
        (kept,) = (await _stored(brain)).overrides
    assert (kept.agent, kept.logic_version, kept.reason) == ("w1", version, "launch")
    assert timedelta(hours=12) <= kept.expires_at - before <= timedelta(hours=12, minutes=1)
    assert "w1" in result.stdout and version in result.stdout and kept.by in result.stdout


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (("--agent", "w1", "--reason", "r", "--for", "12x"), "--for"),
        (("--agent", "w1", "--reason", "r", "--for", "31d"), "--for"),
        (("--agent", "nobody", "--reason", "r"), "nobody"),
        (("--agent", "w1", "--reason", "r"), "--brain"),
    ],
)
def test_override_refuses_bad_input_in_one_line_naming_it(
    home: Path, tmp_path: Path, args: tuple[str, ...], names: str
) -> None:
    config_path = _agents_toml(tmp_path)
    result = swarm_here("readiness", "override", *args, "--config", str(config_path), home=home)
    assert names in one_line_error(result)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


async def test_against_the_real_brain_the_report_gates_live_claims_until_a_captains_override(
    home: Path, tmp_path: Path
) -> None:
    config_path = _agents_toml(tmp_path, shadow_days=0)
    version = _version(parse_config(AGENTS))
    async with (
        _brain_with_a_shadow_run(tmp_path) as (brain, shadowed),
        httpx.AsyncClient(base_url=brain.url, timeout=10) as http,
    ):

        async def claim(mode: str, logic_version: str = version) -> httpx.Response:
            body = {"body_id": "body-a", "agent": "w1", "mode": mode, "logic_version": logic_version}
            return await http.post("/v1/tasks/claim", json=body, headers=_as(brain, "w1"))

        captain = brain.tokens["captain"]
        wrong = await swarm_as("readiness", "--json", "--brain", brain.url, home=home, config=config_path, token="x")
        assert json.loads(wrong.stdout)["ready"] is False and "401" in one_line_error(wrong)
        result = await swarm_as(
            "readiness", "--json", "--brain", brain.url, home=home, config=config_path, token=captain
        )
        assert result.returncode == 1, result.stderr  # no kill drill has run here
        items = {item["name"]: item for item in json.loads(result.stdout)["items"]}
        assert items["shadow_period:w1"]["ok"], items["shadow_period:w1"]
        stored = await _stored(brain)
        assert stored.report is not None and not stored.report.ready and not stored.live_ready
        refused = await claim("live")
        assert (refused.status_code, refused.json()["code"]) == (403, "not_ready")

        args = ("readiness", "override", "--agent", "w1", "--reason", "reviewed by hand", "--for", "1h")
        made = await swarm_as(*args, "--brain", brain.url, home=home, config=config_path, token=captain)
        assert made.returncode == 0, made.stderr
        live = await claim("live")  # (a shadow run leaves its task queued for live work)
        assert live.status_code == 200 and live.json()["task"]["id"] == shadowed, live.text
        other = await claim("live", logic_version="lv-another")
        assert other.status_code == 403, "the override is bound to the logic version"
