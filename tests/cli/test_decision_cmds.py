"""`swarm decisions list`, `swarm vote`, `swarm override --veto|--force` and reviewer tokens, run as the operator runs
them (a process) against a real brain on 127.0.0.1 with a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from brain_server import BrainSettings
from brain_server.state import sqlite_url
from shared_protocol.config import ConsensusConfig
from tests.brain.helpers import REVIEWER_LV, LiveBrain, decision_request, live_brain, live_reviewers, ok
from tests.cli.inprocess import swarm_on as swarm

pytestmark = pytest.mark.anyio

REVIEWERS = ["rev-a", "rev-b", "rev-c", "rev-d", "rev-e"]
LV = ("--logic-version", REVIEWER_LV)
CONFIG = """
[models.demo]
provider = "scripted"
model = "claude-sonnet-4-5"
script = "turns.jsonl"

[[agents]]
name = "rev-a"
role = "reviewer"
model = "demo"
prompt = "You review."
tools = ["read_text_file"]

[[agents]]
name = "w1"
model = "demo"
prompt = "You work."
tools = ["read_text_file"]
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    settings = BrainSettings(
        database_url=sqlite_url(tmp_path / "brain.db"),
        consensus=ConsensusConfig(panel=REVIEWERS, quorum=3, deadline_s=600),
    )
    async with live_brain(settings) as brain:
        for name in REVIEWERS:
            await brain.add_token(name, "reviewer", agent=name)
        await brain.add_token("captain-2", "captain")
        await brain.add_token("claude-body", "body", agent="claude")
        async with brain.client() as api:
            await live_reviewers(api, REVIEWERS)  # (their REVIEWER_LV votes live: a human captain's overrides)
        yield brain


def one_line(code: int, stderr: str) -> str:
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


async def propose(live: LiveBrain, **changes: Any) -> dict[str, Any]:
    request = decision_request(
        "body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py", "src/b.py"], **changes
    )
    async with live.client() as api:
        return ok(await api.post("/v1/decisions", request, as_="claude-body"), 201)


async def test_the_inbox_shows_the_explanation_and_three_cli_votes_approve(live: LiveBrain, tmp_path: Path) -> None:
    decision = await propose(live)
    code, out, err = await swarm(live, "decisions", "list", "--pending", home=tmp_path)
    assert code == 0, err
    assert decision["id"] in out and "rewrite the billing module" in out
    assert "6 files" in out and "confidence 0.90" in out and "src/a.py, src/b.py" in out
    assert "3 of rev-a, rev-b, rev-c, rev-d, rev-e" in out

    for name in ("rev-a", "rev-b"):
        code, out, err = await swarm(
            live, "vote", decision["id"], "approve", "--reason", "fine", *LV, home=tmp_path, as_=name
        )
        assert code == 0, err
        assert "pending" in out
    code, out, err = await swarm(
        live, "vote", decision["id"], "approve", "--reason", "tests cover it", *LV, home=tmp_path, as_="rev-c"
    )
    assert code == 0 and "it is approved" in out, err

    code, out, err = await swarm(live, "decisions", "list", "--json", home=tmp_path)
    assert code == 0, err
    (listed,) = json.loads(out)
    assert listed["state"] == "approved"
    assert [(v["voter"], v["rationale"]) for v in listed["votes"]][-1] == ("rev-c", "tests cover it")
    code, out, err = await swarm(live, "decisions", "list", "--pending", "--json", home=tmp_path)
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = await swarm(live, "decisions", "list", "--pending", home=tmp_path)
    assert (code, out.strip()) == (0, "no pending decisions")

    # a vote on a settled decision: one line, nothing written
    code, _, err = await swarm(
        live, "vote", decision["id"], "deny", "--reason", "late", *LV, home=tmp_path, as_="rev-d"
    )
    assert "not_pending" in one_line(code, err) or "not pending" in one_line(code, err)


async def test_bad_votes_are_refused_in_one_line(live: LiveBrain, tmp_path: Path) -> None:
    decision = await propose(live)
    code, _, err = await swarm(live, "vote", decision["id"], "approve", "--reason", "  ", home=tmp_path)
    assert "--reason" in one_line(code, err)
    code, _, err = await swarm(live, "vote", "dec_nope", "approve", "--reason", "x", home=tmp_path)
    assert "dec_nope" in one_line(code, err)
    code, _, err = await swarm(live, "vote", decision["id"], "approve", "--reason", "x", home=tmp_path, as_="body")
    assert "cannot vote" in one_line(code, err) or "may not" in one_line(code, err)
    code, _, err = await swarm(None, "vote", decision["id"], "approve", "--reason", "x", home=tmp_path)
    assert "--brain" in one_line(code, err)
    code, _, err = await swarm(live, "vote", decision["id"], "maybe", "--reason", "x", home=tmp_path)
    assert code != 0 and "invalid choice" in err
    code, _, err = await swarm(live, "vote", decision["id"], "approve", "--reason", "x", home=tmp_path, as_="rev-a")
    assert "logic version" in one_line(code, err)  # a reviewer agent's vote names its version
    async with live.client() as api:
        assert ok(await api.get(f"/v1/decisions/{decision['id']}", as_="approver"))["votes"] == []


async def test_a_vote_by_a_reviewers_new_logic_version_is_shown_in_shadow(live: LiveBrain, tmp_path: Path) -> None:
    decision = await propose(live)
    new = ("--logic-version", "lv-changedprompt1")
    for name in ("rev-a", "rev-b", "rev-c"):
        code, out, err = await swarm(
            live, "vote", decision["id"], "approve", "--reason", "fine", *new, home=tmp_path, as_=name
        )
        assert code == 0, err
        assert "in shadow: kept, not counted" in out and "it is pending" in out, out
    code, out, err = await swarm(live, "decisions", "list", "--pending", home=tmp_path)
    assert code == 0, err
    votes = [line for line in out.splitlines() if line.startswith("  vote:")]
    assert len(votes) == 3 and all("(lv-changedprompt1): approve [shadow: not counted]" in v for v in votes), out
    assert any("rev-a, rev-b, rev-c, rev-d, rev-e" in line for line in out.splitlines() if "answer with" in line)


async def test_a_captain_vetoes_and_another_captain_forces_from_the_command_line(
    live: LiveBrain, tmp_path: Path
) -> None:
    decision = await propose(live)
    code, out, err = await swarm(
        live, "override", decision["id"], "--veto", "--reason", "freeze week", home=tmp_path, as_="captain"
    )
    assert code == 0 and "overridden" in out, err
    code, _, err = await swarm(
        live, "override", decision["id"], "--force", "--reason", "undo mine", home=tmp_path, as_="captain"
    )
    assert "another human captain" in one_line(code, err)
    code, out, err = await swarm(
        live, "override", decision["id"], "--force", "--reason", "release", home=tmp_path, as_="captain-2"
    )
    assert code == 0 and "approved" in out, err
    code, _, err = await swarm(live, "override", decision["id"], "--reason", "", home=tmp_path, as_="captain")
    assert "--reason" in one_line(code, err)
    code, _, err = await swarm(None, "override", decision["id"], "--force", "--reason", "x", home=tmp_path)
    assert "--brain" in one_line(code, err)


async def test_the_captain_agents_veto_from_the_command_line_names_its_logic_version(tmp_path: Path) -> None:
    """`swarm override --logic-version LV` with the captain agent's reviewer token: without it, at a version not
    live, or overlong, one line on stderr and nothing changes; at its live version the decision is overridden."""
    settings = BrainSettings(
        database_url=sqlite_url(tmp_path / "brain.db"),
        consensus=ConsensusConfig(panel=REVIEWERS, quorum=3, deadline_s=600),
        captain_agents=["cap"],
    )
    async with live_brain(settings) as live:
        await live.add_token("cap", "reviewer", agent="cap")
        await live.add_token("claude-body", "body", agent="claude")
        async with live.client() as api:
            await live_reviewers(api, ["cap"])
        decision = await propose(live)
        veto = ("override", decision["id"], "--veto", "--reason", "too risky")
        code, _, err = await swarm(live, *veto, home=tmp_path, as_="cap")
        assert "logic version" in one_line(code, err)
        code, _, err = await swarm(live, *veto, "--logic-version", "lv-brandnew", home=tmp_path, as_="cap")
        assert "shadow" in one_line(code, err)
        code, _, err = await swarm(live, *veto, "--logic-version", "x" * 201, home=tmp_path, as_="cap")
        assert "--logic-version" in one_line(code, err)
        async with live.client() as api:
            assert ok(await api.get(f"/v1/decisions/{decision['id']}", as_="approver"))["state"] == "pending"
        code, out, err = await swarm(live, *veto, "--logic-version", REVIEWER_LV, home=tmp_path, as_="cap")
        assert code == 0 and "overridden" in out, err


async def test_a_reviewer_token_is_bound_to_a_configured_reviewer_agent(tmp_path: Path) -> None:
    home, db = tmp_path / "home", tmp_path / "brain.db"
    config = tmp_path / "swarm.toml"
    config.write_text(CONFIG)
    base = ["brain", "token", "create", "--db", str(db), "--config", str(config)]
    code, out, err = await swarm(None, *base, "--role", "reviewer", "--agent", "rev-a", home=home)
    assert code == 0 and out.strip().startswith("swb_"), err
    for flags, says in (
        (["--role", "reviewer"], "--agent"),
        (["--role", "reviewer", "--agent", "ghost"], "ghost"),
        (["--role", "reviewer", "--agent", "w1"], "worker"),
        (["--role", "approver", "--agent", "rev-a"], "human"),
    ):
        code, _, err = await swarm(None, *base, *flags, home=home)
        assert says in one_line(code, err), (flags, err)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT role, agent FROM tokens").fetchall() == [("reviewer", "rev-a")]
    finally:
        conn.close()


async def test_decisions_list_task_ranks_the_competing_proposals(live: LiveBrain, tmp_path: Path) -> None:
    async with live.client() as c:
        task = ok(await c.post("/v1/tasks", {"title": "fix refunds", "value_usd": 40}, as_="approver"), 201)
        claim = {"body_id": "body-c", "agent": "claude", "mode": "shadow", "logic_version": "lv-1"}
        assert ok(await c.post("/v1/tasks/claim", claim, as_="claude-body"))["task"]["id"] == task["id"]
        ids: list[str] = []
        for name in ("A", "B", "C"):
            request = decision_request("body-c", summary=f"plan {name}", impact={"files": 6, "api_calls": 0, "usd": 0})
            ids.append(ok(await c.post("/v1/decisions", request, as_="claude-body"), 201)["id"])
    a, b, c_id = ids
    said = {
        a: {"rev-a": "approve", "rev-b": "approve", "rev-c": "deny", "rev-d": "approve"},
        b: {"rev-a": "approve", "rev-b": "deny", "rev-c": "approve", "rev-d": "abstain", "rev-e": "approve"},
        c_id: {"rev-a": "deny", "rev-b": "approve", "rev-c": "approve", "rev-d": "deny"},
    }
    for decision_id, votes in said.items():
        for seat, value in votes.items():
            code, _, err = await swarm(live, "vote", decision_id, value, "--reason", "r", *LV, home=tmp_path, as_=seat)
            assert code == 0, err
    # the ballots (approved > abstained or silent > denied, ties averaged) give A 5.5, B 6, C 3.5; C has 2 approvals
    code, out, err = await swarm(live, "decisions", "list", "--task", task["id"], "--json", home=tmp_path)
    assert code == 0, err
    ranked = json.loads(out)
    assert ranked["winner"] == b
    assert [(p["rank"], p["decision_id"], p["borda"], p["acceptable"]) for p in ranked["proposals"]] == [
        (1, b, 6.0, True),
        (2, a, 5.5, True),
        (3, c_id, 3.5, False),
    ]
    code, out, err = await swarm(live, "decisions", "list", "--task", task["id"], home=tmp_path, as_="rev-a")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"task {task['id']}: 3 proposals, 5 voters, acceptable at 3 approvals"
    assert "tie-break:" in out and "approved above abstained or not voted above denied" in out
    assert [line.split()[:5] for line in lines if line.lstrip().startswith("#")] == [
        ["#1", b, "borda", "6", "3"],
        ["#2", a, "borda", "5.5", "3"],
        ["#3", c_id, "borda", "3.5", "2"],
    ]
    assert "not acceptable  pending  by claude: plan C" in out
    assert f"winner:     {b}" in out

    code, _, err = await swarm(live, "decisions", "list", "--task", "task_nope", home=tmp_path)
    assert "task_nope" in one_line(code, err)
    code, _, err = await swarm(live, "decisions", "list", "--task", task["id"], home=tmp_path, as_="claude-body")
    assert "403" in one_line(code, err) or "forbidden" in one_line(code, err).lower()
    code, _, err = await swarm(live, "decisions", "list", "--task", task["id"], "--pending", home=tmp_path)
    assert "--pending" in one_line(code, err)
