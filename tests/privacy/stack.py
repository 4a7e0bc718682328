"""A real `swarm body` on stdio, and the CLI on its state, for the #21 end-to-end tests.

    async with Client(body(workspace, home, (live.url, token))) as client:
        last = await plant_calls(client, p)
        await until_shipped(live.db, last)
    migrated = await swarm(home, "privacy", "migrate", "--workspace", str(workspace))

The body is always a process of its own: what is planted goes through its real entry points. `swarm` runs the CLI
in the test's process (tests/cli/inprocess.py: the same entry point, minus the second a new Python spends importing
it); test_acceptance.py runs every command it needs as a real process, and test_migrate.py kills a real migration
midway.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.body.helpers import ok
from tests.brain.helpers import LiveBrain
from tests.cli.inprocess import swarm_in_process

from .plant import Planted

OFF = "[privacy]\nredaction = false\n"
"""A home's swarm.toml for a body as it was before #21: personal data kept in clear."""


def body(workspace: Path, home: Path, brain: tuple[str, str] | None = None) -> StdioServerParameters:
    """`swarm body` on `workspace` (its state under `home`), linked to `brain` (URL, body token) if given."""
    env = {**os.environ, "SWARM_HOME": str(home)}
    for name in ("SWARM_AGENT", "SWARM_BRAIN_URL", "SWARM_TOKEN"):
        env.pop(name, None)
    if brain is not None:
        env.update(SWARM_BRAIN_URL=brain[0], SWARM_TOKEN=brain[1])
    args = ["-m", "swarm_cli", "body", "--workspace", str(workspace)]
    return StdioServerParameters(command=sys.executable, args=args, env=env)


async def linked(tmp_path: Path, live: LiveBrain) -> tuple[Path, str, str]:
    """A new workspace for a body linked to `live`: the workspace, the body's token, a captain's token."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    return workspace, await live.add_token("ws-body"), live.tokens["captain"]


def turn(text: str) -> dict[str, Any]:
    """A call's `_meta`: made by the model, in a turn that said `text`."""
    return {"swarm/origin": "model", "swarm/turn": {"step": 1, "text": text, "tool_call_id": "call_1"}}


async def until_registered(client: Client, tool: str, arguments: dict[str, Any]) -> None:
    """Call `tool` until the body takes it: a linked body refuses (failsafe) until it has registered with its brain
    (refusals are audited too)."""
    with anyio.fail_after(20):
        while (await client.call_tool(tool, arguments)).is_error:
            await anyio.sleep(0.02)


async def plant_calls(client: Client, p: Planted) -> str:
    """Personal data in a rationale, a model turn, a command's output and arguments; the last call's action id."""
    await until_registered(client, "write_file", {"path": "notes.txt", "content": "a note\n", "rationale": p.text()})
    ran = ok(
        await client.call_tool(
            "run_command",
            {"argv": ["sh", "-c", f"echo '{p.text()}'"], "rationale": f"greet {p.email}"},
            meta=turn(f"I will mail {p.email} and call {p.phone}"),
        )
    )
    return str(ran["action_id"])


def shipped(db: Path, action_id: str) -> bool:
    """Whether the brain (its SQLite file `db`) holds the body's event `action_id`."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM audit_events WHERE id = ?", (action_id,)).fetchone()[0] == 1
    finally:
        conn.close()


async def until_shipped(db: Path, action_id: str) -> None:
    with anyio.fail_after(20):
        while not shipped(db, action_id):
            await anyio.sleep(0.02)


async def swarm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`swarm ARGS` on `home`, with no brain URL or token from the environment (a test passes them as flags)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SWARM_BRAIN_URL", "SWARM_TOKEN")}
    env["SWARM_HOME"] = str(home)
    return await swarm_in_process(args, env)


async def events(home: Path, workspace: Path) -> list[dict[str, Any]]:
    shown = await swarm(home, "audit", "tail", "--workspace", str(workspace), "--json", "-n", "500")
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]


async def verifies(home: Path, workspace: Path) -> None:
    verified = await swarm(home, "audit", "verify", "--workspace", str(workspace))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit chain OK" in verified.stdout


def one_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """A refusal: a non-zero exit and one line on stderr (no traceback) holding each of `words`."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def brain_chain_links(db: Path) -> None:
    """The brain's copy of each body's chain still links event to event (it holds ciphertext: erasure changed
    nothing in it)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT body_id, seq, mac, event FROM audit_events ORDER BY body_id, seq").fetchall()
    finally:
        conn.close()
    assert rows
    last: dict[str, tuple[int, str]] = {}
    for body_id, seq, mac, stored in rows:
        event = json.loads(stored)
        if body_id in last:
            prev_seq, prev_mac = last[body_id]
            assert seq == prev_seq + 1 and event["prev_mac"] == prev_mac
        last[body_id] = (seq, mac)
