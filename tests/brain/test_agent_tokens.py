"""A token bound to one agent when it is created (`swarm brain token create --role body --agent NAME`): the CLI, the
stored record (both engines; an older SQLite file's tokens stay bound to no agent), and what the brain lets each kind
of body token do: an agent's claims shadow or live work as that agent only and bills its own usage only; an IDE
body's (bound to no agent) claims IDE work only, never under the name of an agent that has a token, and bills none.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from brain_server import Brain, ConfigError, SqliteStateEngine, hash_token, issue_token
from brain_server.auth import BODY, authenticate
from brain_server.state._rules import iso
from brain_server.state._schema import MIGRATIONS, split_statements
from swarm_cli.brain_cmds import main

from .helpers import BrainClient, decision_request, ok, refused
from .state.records import NOW

pytestmark = pytest.mark.anyio

LV = "lv-0123456789abcdef"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "swarm-home"
    monkeypatch.setenv("SWARM_HOME", str(path))
    monkeypatch.delenv("SWARM_CONFIG", raising=False)
    return path


# -- the CLI -------------------------------------------------------------------------------------------------------


def test_token_create_binds_a_body_token_to_an_agent_and_list_shows_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["brain", "token", "create", "--role", "body", "--agent", "worker-1", "--label", "w1 runner"]) == 0
    created = capsys.readouterr()
    token = created.out.strip()
    assert created.out == token + "\n" and token.startswith("swb_")
    assert "for agent worker-1" in created.err
    assert main(["brain", "token", "create", "--role", "body", "--label", "laptop"]) == 0
    capsys.readouterr()

    assert main(["brain", "token", "list"]) == 0
    agent_line, ide_line = capsys.readouterr().out.splitlines()
    assert "  role=body  " in agent_line and "  agent=worker-1  body=-  " in agent_line
    assert agent_line.endswith("label=w1 runner") and token not in agent_line
    assert "  agent=-  body=-  " in ide_line and ide_line.endswith("label=laptop")
    conn = sqlite3.connect(home / "brain.db")
    try:
        rows = conn.execute("SELECT agent, token_hash FROM tokens ORDER BY rowid").fetchall()
    finally:
        conn.close()
    assert rows[0] == ("worker-1", hash_token(token)) and rows[1][0] is None


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--role", "body", "--agent", "bad name"], "an agent name is 1-64 letters"),
        (["--role", "body", "--agent=.w1"], "starting with a letter or digit"),
        (["--role", "body", "--agent", "w" * 65], "an agent name is 1-64 letters"),
        (["--role", "captain", "--agent", "w1"], "a captain token is a human's and is never bound to an agent"),
        (["--role", "approver", "--agent", "w1"], "--role body"),
    ],
)
def test_token_create_refuses_a_bad_agent_name_or_a_humans_role_with_one_line_and_writes_nothing(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    assert main(["brain", "token", "create", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("swarm: --agent ") and captured.err.count("\n") == 1 and says in captured.err
    assert not (home / "brain.db").exists(), "nothing created"


async def test_issue_token_checks_the_agent_too_and_both_engines_keep_it(brain: Brain) -> None:
    with pytest.raises(ConfigError, match="never bound to an agent"):
        await issue_token(brain.state, role="captain", label="alice", at=brain.now(), agent="w1")
    with pytest.raises(ConfigError, match="an agent name is"):
        await issue_token(brain.state, role="body", label="x", at=brain.now(), agent="a/b")
    before = len(await brain.state.tokens())
    secret = await issue_token(brain.state, role="body", label="w1", at=brain.now(), agent="w1")
    tokens = await brain.state.tokens()
    assert len(tokens) == before + 1 and tokens[-1].agent == "w1"
    who = await authenticate(brain.state, f"Bearer {secret}", BODY)
    assert (who.agent, who.body_id) == ("w1", None)
    (line,) = [e for e in await brain.state.log_entries() if e.target == tokens[-1].id]
    assert (line.action, line.detail) == ("token_create", {"agent": "w1"})


# -- the SQLite schema -----------------------------------------------------------------------------------------------


@pytest.mark.sqlite
async def test_tokens_of_a_database_from_before_agent_tokens_stay_bound_to_no_agent(tmp_path: Path) -> None:
    path = tmp_path / "brain.db"
    conn = sqlite3.connect(path)
    try:
        for migration in MIGRATIONS[:10]:  # v10: the schema before a token could be bound to an agent
            for statement in split_statements(migration):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 10")
        conn.execute(
            "INSERT INTO tokens (id, token_hash, role, label, created_at, body_id) VALUES (?, ?, ?, ?, ?, ?)",
            ("tok_old", hash_token("swb_old"), "body", "laptop", iso(NOW), "body-a"),
        )
        conn.commit()
    finally:
        conn.close()

    state = await SqliteStateEngine.open(path)
    try:
        who = await authenticate(state, "Bearer swb_old", BODY)
        assert (who.token_id, who.body_id, who.agent) == ("tok_old", "body-a", None)
        secret = await issue_token(state, role="body", label="w1", at=NOW, agent="w1")
        assert (await authenticate(state, f"Bearer {secret}", BODY)).agent == "w1"
    finally:
        await state.close()

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        for statement in (
            "UPDATE tokens SET agent = 'w2' WHERE agent = 'w1'",  # an agent's token stays that agent's
            "UPDATE tokens SET agent = 'w1' WHERE id = 'tok_old'",  # and an IDE body's is never made an agent's
        ):
            with pytest.raises(sqlite3.IntegrityError, match="a token only gains"):
                conn.execute(statement)
        conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = 'tok_old'", (iso(NOW),))  # revoking still works
    finally:
        conn.close()


# -- claims --------------------------------------------------------------------------------------------------------


async def queue(api: BrainClient, title: str = "ship it") -> dict[str, Any]:
    return ok(await api.post("/v1/tasks", {"title": title}, as_="approver"), 201)


def shadow(agent: str = "", **fields: Any) -> dict[str, Any]:
    return {"body_id": "agent-w1", "agent": agent, "mode": "shadow", "logic_version": LV, **fields}


async def test_an_agents_token_claims_as_its_agent_only_and_no_ide_work(api: BrainClient, brain: Brain) -> None:
    await queue(api)
    await api.add_token("w1", agent="w1")
    as_w2 = refused(await api.post("/v1/tasks/claim", shadow("w2"), as_="w1"), 403, "forbidden")
    assert "bound to agent 'w1'" in as_w2["message"] and "as agent 'w2'" in as_w2["message"]
    assert "swarm brain token create --role body --agent w2" in as_w2["message"]
    ide = {"body_id": "agent-w1", "agent": "w1", "mode": "ide"}
    as_ide = refused(await api.post("/v1/tasks/claim", ide, as_="w1"), 403, "forbidden")
    assert "shadow or live work, not ide" in as_ide["message"] and "swarm agent run --agent w1" in as_ide["message"]
    refusals = [e for e in await brain.state.log_entries() if e.action == "body_refused"]
    assert [e.detail for e in refusals] == [{"agent": "w2", "bound": "w1"}, {"agent": "w1", "bound": "w1"}]
    assert all(t.state == "queued" for t in await brain.state.tasks()), "nothing claimed"
    assert next(t for t in await brain.state.tokens() if t.agent == "w1").body_id is None, "nor the body bound"

    # No name: the token's agent.
    won = ok(await api.post("/v1/tasks/claim", shadow(), as_="w1"))
    assert won["task"]["claimed_by"] == {"body_id": "agent-w1", "agent": "w1"}


async def test_an_ide_bodys_token_claims_ide_work_only_and_never_as_an_agent_with_a_token(api: BrainClient) -> None:
    await queue(api, "one")
    await queue(api, "two")
    for mode in ("shadow", "live"):
        error = refused(await api.post("/v1/tasks/claim", shadow("w1", mode=mode), as_="body"), 403, "forbidden")
        assert f"bound to no agent, so it claims IDE work only, not {mode} work" in error["message"]
        assert "swarm brain token create --role body --agent w1" in error["message"]
    nameless = refused(
        await api.post("/v1/tasks/claim", {"body_id": "body-a", "mode": "ide"}, as_="body"), 422, "invalid_request"
    )
    assert nameless["field"] == "agent"
    await api.add_token("w1", agent="w1")
    posing = refused(
        await api.post("/v1/tasks/claim", {"body_id": "body-a", "agent": "w1"}, as_="body"), 403, "forbidden"
    )
    assert "'w1' is an agent with a token of its own" in posing["message"]
    claimed = ok(await api.post("/v1/tasks/claim", {"body_id": "body-a", "agent": "claude-code"}, as_="body"))
    assert claimed["task"]["claimed_by"] == {"body_id": "body-a", "agent": "claude-code"}
    assert claimed["task"]["claim_mode"] == "ide"


# -- usage and decisions -------------------------------------------------------------------------------------------


def usage(n: int, agent: str) -> dict[str, Any]:
    return {
        "id": f"use_{n}",
        "at": "2030-01-01T00:00:00Z",
        "agent": agent,
        "logic_version": LV,
        "task_id": None,
        "provider": "openai",
        "model": "gpt",
        "input_tokens": 10,
        "output_tokens": 1,
        "usd": 0.01,
        "outcome": "answered",
    }


async def test_usage_is_billed_to_the_tokens_agent_only_and_never_by_an_ide_bodys_token(
    api: BrainClient, brain: Brain
) -> None:
    await api.add_token("w1", agent="w1")
    ok(await api.post("/v1/tasks/claim", shadow(), as_="w1"))  # (binds body agent-w1; nothing queued)
    mixed = {"records": [usage(1, "w1"), usage(2, "w2")]}
    error = refused(await api.post("/v1/usage", mixed, as_="w1"), 422, "invalid_request")
    assert error["field"] == "records.1.agent" and "bound to agent 'w1'" in error["message"]
    error = refused(
        await api.post("/v1/usage", {"body_id": "body-a", "records": [usage(3, "claude")]}, as_="body"),
        422,
        "invalid_request",
    )
    assert error["field"] == "records.0.agent" and "bound to no agent" in error["message"]
    assert await brain.state.usage() == [], "nothing of a refused batch kept"
    assert next(t for t in await brain.state.tokens() if t.label == "body-1").body_id is None, "nor the body bound"
    assert ok(await api.post("/v1/usage", {"records": [usage(4, "w1")]}, as_="w1"))["stored"] == 1
    assert set(ok(await api.get("/v1/usage", as_="captain"))["by_agent"]) == {"w1"}


async def test_a_decision_is_asked_in_the_tokens_agents_name_only(api: BrainClient, brain: Brain) -> None:
    await api.add_token("w1", agent="w1")
    other = refused(
        await api.post("/v1/decisions", decision_request("agent-w1", agent="w2"), as_="w1"), 403, "forbidden"
    )
    assert "may not ask as agent 'w2'" in other["message"]
    ide = refused(await api.post("/v1/decisions", decision_request("body-a", agent="w1"), as_="body"), 403, "forbidden")
    assert "'w1' is an agent with a token of its own" in ide["message"]
    assert [e for e in await brain.state.log_entries() if e.action == "decision_create"] == []
    mine = ok(await api.post("/v1/decisions", decision_request("agent-w1", agent="w1"), as_="w1"), 201)
    theirs = ok(await api.post("/v1/decisions", decision_request("body-a", agent="claude"), as_="body"), 201)
    assert (mine["agent"], theirs["agent"]) == ("w1", "claude")
