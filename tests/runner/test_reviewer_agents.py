"""Reviewer agents end to end (#19): a worker's 6-file change needs the panel; three `swarm agent run` reviewer
processes (role reviewer, scripted models, reviewer tokens) wait on the brain's event stream, ask their models and
vote. Three approvals apply the change; three denials do not. Their rationales are on the decision and in the
brain's log, and their model spend is charged to the proposing task."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from brain_server import MemoryStateEngine, issue_token
from tests.runner.stack import Stack, git, stack, token_var

pytestmark = pytest.mark.anyio

REVIEWERS = ("rev-a", "rev-b", "rev-c")
FILES = [f"f{n}.txt" for n in range(6)]
WRITE_SIX = "; ".join(f"open('{name}', 'w').write('{n}')" for n, name in enumerate(FILES))
ALL_SIX = "python3 -c 'import os, sys; sys.exit(0 if all(os.path.exists(f\"f{n}.txt\") for n in range(6)) else 1)'"
WORKER: list[dict[str, Any]] = [
    {
        "content": "Write the six files in one go.",
        "tool_calls": [
            {"name": "run_command", "arguments": {"argv": ["python3", "-c", WRITE_SIX], "rationale": "the task"}}
        ],
        "usage": {"input_tokens": 700, "output_tokens": 40},
    },
    {"content": "The six files are written.", "usage": {"input_tokens": 900, "output_tokens": 10}},
]


def verdict(value: str, why: str) -> list[dict[str, Any]]:
    content = json.dumps({"vote": value, "rationale": why})
    return [{"content": content, "usage": {"input_tokens": 1500, "output_tokens": 30}}]


def reviewers_toml() -> str:
    panel = json.dumps([*REVIEWERS, "human:nobody-1", "human:nobody-2"])
    entries = "".join(
        f'\n[[agents]]\nname = "{name}"\nrole = "reviewer"\nmodel = "judge"\n'
        f'prompt = "You review changes for scope and safety."\ntools = ["read_text_file"]\n'
        f'token = "env:{token_var(name)}"\n'
        for name in REVIEWERS
    )
    judge = '\n[models.judge]\nprovider = "scripted"\nmodel = "gpt-4o-mini"\nscript = "judge.jsonl"\n'
    return f"{judge}\n[consensus]\npanel = {panel}\nquorum = 3\n{entries}"


async def reviewer_tokens(state: MemoryStateEngine) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        token_var(name): await issue_token(state, role="reviewer", label=name, at=now, agent=name) for name in REVIEWERS
    }


async def panel_run(
    s: Stack, value: str, why: str
) -> tuple[dict[str, Any], dict[str, Any], Path, list[tuple[int, str]]]:
    s.script(WORKER)
    s.script(verdict(value, why), name="judge.jsonl")
    repo = s.repo_with_bug()
    task = await s.add_task(title="write six files", acceptance=ALL_SIX, repo=str(repo))
    await s.override("worker-1")
    for name in REVIEWERS:  # a human captain lets each reviewer's configured version vote live (no shadow period)
        await s.override(name)
    results: list[tuple[int, str]] = []

    async def reviewer(name: str) -> None:
        done = await s.agent(name, "--once", "--wait", "90", timeout_s=150)
        results.append((done.returncode, done.stderr))

    workers: list[tuple[int, str]] = []
    async with anyio.create_task_group() as group:
        for name in REVIEWERS:
            group.start_soon(reviewer, name)
        # (the worker in the test's process, as only one runner may be; the reviewers in processes of their own)
        worker = await s.agent("worker-1", "--once", "--live", timeout_s=150, in_process=True)
        workers.append((worker.returncode, worker.stderr))
    assert workers[0][0] == 0, workers[0][1]
    after = await s.task(task["id"])
    decision_id = next(e["detail"]["decision_id"] for e in after["history"] if e["kind"] == "parked")
    decision = (await s.captain.get(f"/v1/decisions/{decision_id}")).json()
    return after, decision, repo, results


async def test_three_reviewer_agents_approve_a_six_file_change_and_it_applies(tmp_path: Path) -> None:
    state = MemoryStateEngine()
    tokens = await reviewer_tokens(state)
    async with stack(tmp_path, extra_toml=reviewers_toml(), extra_env=tokens, state=state) as s:
        after, decision, repo, results = await panel_run(s, "approve", "in scope: six new text files, nothing else")
        assert all(code == 0 for code, _ in results), results
        assert decision["needs"] == "consensus" and decision["state"] == "approved", json.dumps(decision, indent=1)
        assert decision["task_id"] == after["id"]
        assert sorted((v["voter"], v["value"], v["role"]) for v in decision["votes"]) == [
            (name, "approve", "reviewer") for name in REVIEWERS
        ]
        assert {v["rationale"] for v in decision["votes"]} == {"in scope: six new text files, nothing else"}
        assert all(v["logic_version"] for v in decision["votes"])
        assert decision["answers"][-1]["by"] == "panel"
        assert after["state"] == "succeeded" and after["verified"] is True, json.dumps(after, indent=1)
        branch = after["evidence"]["branch"]
        assert [git(repo, "show", f"{branch}:{name}") for name in FILES] == [str(n) for n in range(6)]

        votes = [e for e in await state.log_entries() if e.action == "vote" and e.target == decision["id"]]
        assert sorted((e.by, e.reason) for e in votes) == [
            (name, "in scope: six new text files, nothing else") for name in REVIEWERS
        ]
        # each review's model call is charged to the proposing task (the worker's own calls are there too)
        usage = (await s.captain.get("/v1/usage")).json()
        assert set(REVIEWERS) <= set(usage["by_agent"]), usage
        for name in REVIEWERS:
            assert usage["by_agent"][name]["calls"] == 1 and usage["by_agent"][name]["usd"] > 0
        task_usage = usage["by_task"][after["id"]]
        assert task_usage["calls"] == 2 + 3, task_usage


async def test_three_reviewer_agents_deny_a_six_file_change_and_it_does_not_apply(tmp_path: Path) -> None:
    state = MemoryStateEngine()
    tokens = await reviewer_tokens(state)
    async with stack(tmp_path, extra_toml=reviewers_toml(), extra_env=tokens, state=state) as s:
        after, decision, repo, results = await panel_run(s, "deny", "six files at once is more than the task needs")
        assert all(code == 0 for code, _ in results), results
        assert decision["state"] == "denied", json.dumps(decision, indent=1)
        assert sorted((v["voter"], v["value"]) for v in decision["votes"]) == [(name, "deny") for name in REVIEWERS]
        assert "the panel denied" in decision["answers"][-1]["reason"]
        assert after["state"] == "abandoned" and after["verified"] is False
        assert not any((repo / name).exists() for name in FILES)
        assert all(name not in git(repo, "log", "--all", "--name-only", "--format=") for name in FILES)
