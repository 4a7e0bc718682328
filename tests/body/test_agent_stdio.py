"""End to end: `swarm body --agent NAME` over real stdio, driven by the official MCP client as the runner drives
it, and a chain written before events had a logic version still verifying under this code."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from body_mcp import Admin, BodySettings, build_server
from body_mcp._db import StateDB
from body_mcp.state import StatePaths
from shared_protocol.config import SwarmConfig, render_config
from tests.cli.inprocess import swarm_in_process

from ..conftest import make_body
from .agent_helpers import agent_config, model_meta, profile
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio

LEGACY = Path(__file__).parent / "data" / "chain_before_agent_mode.json"


def _params(workspace: Path, home: Path, config: Path) -> StdioServerParameters:
    env = {**os.environ, "SWARM_HOME": str(home)}
    env.pop("SWARM_AGENT", None)
    args = ["-m", "swarm_cli", "body", "--workspace", str(workspace), "--agent", "w1", "--config", str(config)]
    return StdioServerParameters(command=sys.executable, args=args, env=env)


async def test_an_agents_body_over_stdio_records_its_name_logic_version_and_the_models_turn(
    tmp_path: Path, home: Path, workspace: Path
) -> None:
    config = agent_config()
    config_file = tmp_path / "swarm.toml"
    config_file.write_text(render_config(config))
    async with Client(_params(workspace, home, config_file)) as client:
        done = ok(
            await client.call_tool(
                "write_file",
                {"path": "notes.md", "content": "x\n", "rationale": "note it"},
                meta=model_meta(step=2, text="Writing the note.", tool_call_id="call_7"),
            )
        )
        refused(
            await client.call_tool("delete_file", {"path": "notes.md", "rationale": "rm"}, meta=model_meta()),
            "tool_not_allowed",
        )
        ok(await call(client, "delete_file", path="notes.md"))  # the runner's own call
    # (the reads run the CLI in the test's process, `tests/cli/inprocess.py`: the body above is the real process)
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_CONFIG": str(config_file)}
    explaining = await swarm_in_process(["audit", "explain", done["action_id"], "--agent", "w1"], env)
    assert explaining.returncode == 0, explaining.stderr
    explained = explaining.stdout
    assert "Model turn: step 2 — Writing the note." in explained and "(tool call call_7)" in explained
    assert "agent 'w1'" in explained and profile(config).logic_version in explained
    tailing = await swarm_in_process(["audit", "tail", "--agent", "w1"], env)
    assert tailing.returncode == 0, tailing.stderr
    tail = tailing.stdout
    assert "tool_not_allowed" in tail and tail.count(" w1 ") == 3
    assert not StatePaths(home=home, workspace=workspace).dir.exists()


def _write_legacy_chain(workspace: Path, home: Path) -> StatePaths:
    """The chain in `data/`, as a body before this change left it, put where this workspace's state is."""
    legacy = json.loads(LEGACY.read_text())
    paths = StatePaths(home=home, workspace=workspace)
    paths.ensure()
    StateDB(paths.db, durability="crash").close()  # (its schema, as this code makes it)
    paths.identity.write_text(json.dumps({**legacy["identity"], "workspace": str(workspace)}))
    paths.audit_key.write_bytes(base64.b64decode(legacy["key_b64"]))
    paths.audit_key.chmod(0o600)
    paths.anchor.write_text(legacy["anchor"])
    conn = sqlite3.connect(paths.db)
    with conn:
        conn.executemany(
            "INSERT INTO audit_events (seq, id, ts, decision_id, body, mac) VALUES (?, ?, ?, ?, ?, ?)",
            [tuple(row) for row in legacy["events"]],
        )
    conn.close()
    return paths


async def test_a_chain_written_before_logic_versions_verifies_and_grows_with_new_events(
    workspace: Path, home: Path
) -> None:
    _write_legacy_chain(workspace, home)
    settings = BodySettings(workspace=workspace, home=home, config=SwarmConfig())
    with Admin.open(settings, by="human:test") as admin:
        report = admin.verify()
        assert report.ok and report.events == 3, report.summary()
        old = admin.tail(3)
    assert [e.rationale for e in old] == ["legacy write", "legacy read", "legacy refusal"]
    assert all(e.logic_version is None and e.turn is None for e in old)

    body = make_body(workspace, home)
    try:
        assert body.audit.broken is None
        async with Client(build_server(body)) as client:
            ok(await client.call_tool("read_text_file", {"path": "README.md", "rationale": "new"}, meta=model_meta()))
    finally:
        body.close()
    with Admin.open(settings, by="human:test") as admin:
        report = admin.verify()
        newest = admin.tail(1)[0]
    assert report.ok and report.events == 4, report.summary()
    assert newest.turn is not None and newest.turn.text == "I will fix it."


def test_a_meta_that_is_not_an_object_is_refused_and_audited_over_raw_stdio(workspace: Path, home: Path) -> None:
    """The SDK would reject such a request whole (a protocol error the agent never reads): it is a refusal."""
    env = {**os.environ, "SWARM_HOME": str(home)}
    process = subprocess.Popen(
        [sys.executable, "-m", "swarm_cli", "body", "--workspace", str(workspace)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None

    def exchange(message: dict[str, object]) -> dict[str, object]:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(message) + "\n")
        process.stdin.flush()
        return json.loads(process.stdout.readline())

    try:
        hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
        exchange({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})
        process.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
        answers = []
        for number, meta in enumerate(("garbage", [1, 2], 7), start=2):
            params = {"name": "read_text_file", "arguments": {"path": "README.md", "rationale": "x"}, "_meta": meta}
            answers.append(exchange({"jsonrpc": "2.0", "id": number, "method": "tools/call", "params": params}))
    finally:
        process.stdin.close()
        assert process.wait(timeout=30) == 0
    for answer in answers:
        result = answer["result"]
        assert isinstance(result, dict) and result["isError"] is True
        refusal = result["structuredContent"]
        assert refusal["code"] == "invalid_arguments" and refusal["rule"] == "input.meta"
    with Admin.open(BodySettings(workspace=workspace, home=home, config=SwarmConfig()), by="human:test") as admin:
        events = [e for e in admin.tail(10) if e.kind == "tool_call"]
        assert admin.verify().ok
    assert [e.rule for e in events] == ["input.meta"] * 3 and "'garbage'" in (events[0].message or "")
