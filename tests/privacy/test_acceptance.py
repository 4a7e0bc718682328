"""Acceptance (#21, PII): random personal data planted through every entry point — tool arguments, rationales,
model turns and command output over a real `swarm body` on stdio, an approval request it ships, and a task's text
over the brain's HTTP API — is found in clear, base64, hex, percent- or JSON-escaped form in no file under the
body's and the brain's state (SQLite files, WAL, journals, kept outputs, snapshots, backups). Export reads it back;
`swarm privacy erase` makes it unreadable on both, and both chains still verify. Every command here is a real `swarm`
process (the other #21 tests run the CLI in the test's process)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest
from mcp import Client

from brain_server.backup import backup_database
from tests.body.helpers import ok
from tests.body.test_brain_link import run_swarm
from tests.brain.helpers import LiveBrain

from .plant import Planted, leaks, plant
from .stack import body, brain_chain_links, linked, turn, until_registered, until_shipped

pytestmark = pytest.mark.anyio

# (The user's own file contents are out of scope: a file the agent writes holds no planted data here, or its
# snapshot copy would hold it, as the workspace does.)


async def _plant_through_the_body(client: Client, p: Planted) -> str:
    """Every body entry point; returns the last call's action id."""
    await until_registered(client, "write_file", {"path": "notes.txt", "content": "a note\n", "rationale": p.text()})
    ran = await client.call_tool(
        "run_command",
        {"argv": ["sh", "-c", f"echo '{p.text()}'; echo '{p.email}' >&2"], "rationale": f"greet {p.email}"},
        meta=turn(f"I will mail {p.email} and call {p.phone}"),
    )
    shown = ok(ran)
    assert p.email in json.dumps(shown)  # the agent itself sees its command's output as it was
    page = ok(
        await client.call_tool(
            "read_command_output", {"action_id": shown["action_id"], "stream": "stdout", "rationale": "read it back"}
        )
    )
    assert p.card in json.dumps(page)  # kept encrypted, served decrypted while the key exists
    asked = ok(
        await client.call_tool(
            "request_approval",
            {
                "summary": f"email {p.email} the invoice",
                "rationale": f"they called from {p.ip}",
                "confidence": 0.5,
                "options": [f"call {p.phone}"],
            },
        )
    )
    return str(asked["action_id"])


async def test_planted_personal_data_is_kept_nowhere_in_clear_and_erasure_shreds_it(
    tmp_path: Path, home: Path, live: LiveBrain
) -> None:
    p = plant()
    workspace, token, captain = await linked(tmp_path, live)
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        created = await http.post(
            "/v1/tasks",
            json={"title": f"Refund {p.email}", "description": p.text(), "value_usd": 1},
            headers={"Authorization": f"Bearer {captain}"},
        )
        assert created.status_code == 201, created.text
        task = created.json()
        assert task["title"] == f"Refund {p.email}"  # served as written (decrypted for who may read it)
        async with Client(body(workspace, home, (live.url, token))) as client:
            await until_shipped(live.db, await _plant_through_the_body(client, p))
        decisions = (await http.get("/v1/decisions", headers={"Authorization": f"Bearer {captain}"})).json()
        assert any(p.email not in d["summary"] and "[pii:email]" in d["summary"] for d in decisions)

        snap = await anyio.to_thread.run_sync(
            lambda: run_swarm(home, "snapshot", "create", "--workspace", str(workspace))
        )
        assert snap.returncode == 0, snap.stderr
        backup_database(live.db, live.db.parent / "backups", keep=2)

        state_roots = [home, live.db.parent]
        assert leaks(state_roots, p.values()) == []

        scope = ["--workspace", str(workspace), "--brain", live.url, "--token", captain]
        exported = await anyio.to_thread.run_sync(
            lambda: run_swarm(home, "privacy", "export", p.email, *scope, "--json")
        )
        assert exported.returncode == 0, exported.stderr
        held = json.loads(exported.stdout)
        assert {i["value"] for i in held["body"]} == {p.email}
        assert {i["value"] for i in held["brain"]} == {p.email}
        assert any(i["where"].startswith("audit ") for i in held["body"])
        assert any(i["where"].startswith("output ") for i in held["body"])
        assert any(i["where"].startswith(f"task {task['id']}") for i in held["brain"])

        erased = await anyio.to_thread.run_sync(
            lambda: run_swarm(home, "privacy", "erase", p.email.upper(), *scope, "--reason", f"asked by {p.email}")
        )
        assert erased.returncode == 0, erased.stderr
        assert erased.stdout.splitlines() == ["body: erased (email)", "brain: erased (email)"]

        again = await anyio.to_thread.run_sync(lambda: run_swarm(home, "privacy", "export", p.email, *scope))
        assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
        task_after = (await http.get(f"/v1/tasks/{task['id']}", headers={"Authorization": f"Bearer {captain}"})).json()
        assert task_after["title"] == "Refund [pii:email]"
        assert p.phone in task_after["description"]  # another subject's data is untouched

        verified = await anyio.to_thread.run_sync(
            lambda: run_swarm(home, "audit", "verify", "--workspace", str(workspace))
        )
        assert verified.returncode == 0, verified.stderr
        output = await anyio.to_thread.run_sync(
            lambda: run_swarm(home, "audit", "tail", "--workspace", str(workspace), "--json", "-n", "50")
        )
        assert output.returncode == 0, output.stderr
        assert "privacy.erase" in output.stdout
        assert leaks(state_roots, p.values()) == []
    brain_chain_links(live.db)
