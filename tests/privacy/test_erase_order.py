"""`swarm privacy erase --brain` asks the brain first (#21): a brain that refuses (a body's token, not a captain's)
leaves the body's key as it was — the subject's data still exports on both, nothing is half-erased — and says so in
one line; run again with a captain's token, both erase; once more, nothing is held anywhere (exit 1). Random
personal data, planted through a real `swarm body` linked to a real brain."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from mcp import Client

from tests.brain.helpers import LiveBrain

from .plant import leaks, plant
from .stack import body, linked, one_line, plant_calls, swarm, until_shipped, verifies

pytestmark = pytest.mark.anyio


async def test_a_refused_brain_erasure_leaves_the_body_untouched_and_a_rerun_erases_both(
    tmp_path: Path, home: Path, live: LiveBrain
) -> None:
    p = plant()
    workspace, token, captain = await linked(tmp_path, live)
    async with Client(body(workspace, home, (live.url, token))) as client:
        await until_shipped(live.db, await plant_calls(client, p))
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:  # (held on the brain too, its keys)
        created = await http.post(
            "/v1/tasks",
            json={"title": f"mail {p.email}", "description": "", "value_usd": 1},
            headers={"Authorization": f"Bearer {captain}"},
        )
        assert created.status_code == 201, created.text
    scope = ["--workspace", str(workspace), "--brain", live.url]

    refused = await swarm(home, "privacy", "erase", p.email, *scope, "--token", token)
    one_line(refused)
    exported = await swarm(home, "privacy", "export", p.email, *scope, "--token", captain, "--json")
    assert exported.returncode == 0, exported.stderr
    held = json.loads(exported.stdout)
    assert {i["value"] for i in held["body"]} == {p.email}  # neither key was destroyed: nothing half-erased
    assert {i["value"] for i in held["brain"]} == {p.email}

    erased = await swarm(home, "privacy", "erase", p.email, *scope, "--token", captain)
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.splitlines() == ["body: erased (email)", "brain: erased (email)"]
    again = await swarm(home, "privacy", "erase", p.email, *scope, "--token", captain)
    assert again.returncode == 1, again.stderr
    assert [line.split(", ")[0] for line in again.stdout.splitlines()] == [
        "body: nothing held; erased before",
        "brain: nothing held; erased before",
    ]
    await verifies(home, workspace)
    assert leaks([home, live.db.parent], p.values()) == []
