"""Adversarial review of #17: a malicious or broken model (the scripted provider replays it) against the real CLI,
body and brain on 127.0.0.1: the runner's own tools, tools outside the subset, money past the task budget, garbage."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner.stack import Stack, stack

pytestmark = pytest.mark.anyio


def audit(s: Stack) -> str:
    trail = s.here("audit", "tail", "--agent", "worker-1", "-n", "50")
    assert trail.returncode == 0, trail.stderr
    return trail.stdout


async def test_review17_the_model_cannot_call_the_runners_tools_or_tools_outside_its_subset(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()
        s.script(
            [
                {
                    "content": "I will finish this myself.",
                    "tool_calls": [
                        {"name": "report_outcome", "arguments": {"outcome": "succeeded", "rationale": "done"}},
                        {"name": "next_task", "arguments": {"rationale": "more"}},
                        {"name": "delete_file", "arguments": {"path": "app.py", "rationale": "tidy"}},
                    ],
                    "usage": {"input_tokens": 100, "output_tokens": 10},
                },
                {"content": "done", "usage": {"input_tokens": 100, "output_tokens": 5}},
            ]
        )
        task = await s.add_task(repo=str(repo))
        done = await s.agent("worker-1", "--once", "--wait", "10", in_process=True)
        assert done.returncode == 0, done.stderr
        (run,) = (await s.task(task["id"]))["shadow_runs"]
        assert run["outcome"] == "failed", "the acceptance command still fails: nothing the model said made it pass"
        trail = audit(s)
        for tool in ("report_outcome", "next_task", "delete_file"):
            assert any(tool in line and "tool_not_allowed" in line for line in trail.splitlines()), (tool, trail)


async def test_review17_a_model_reporting_huge_usage_is_stopped_at_the_task_budget(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()
        s.config.write_text(s.config.read_text() + "max_usd_per_task = 0.05\n")
        heavy = {"input_tokens": 5_000_000, "output_tokens": 10}  # gpt-4o-mini: $0.75 a call
        s.script(
            [
                {
                    "content": "look",
                    "tool_calls": [{"name": "list_directory", "arguments": {"path": ".", "rationale": "look"}}],
                    "usage": heavy,
                }
            ]
            * 5
        )
        task = await s.add_task(repo=str(repo))
        done = await s.agent("worker-1", "--once", "--wait", "10", in_process=True)
        assert done.returncode == 0, done.stderr
        (run,) = (await s.task(task["id"]))["shadow_runs"]
        assert run["outcome"] == "failed" and "max_usd_per_task" in run["summary"], run
        usage = (await s.captain.get("/v1/usage")).json()
        assert usage["by_task"][task["id"]]["calls"] == 1, "a call was made after the task's budget was spent"


async def test_review17_garbage_in_the_script_fails_the_task_with_a_clear_reason(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()
        (s.tmp / "script.jsonl").write_text('{"content": "ok", "tool_calls": "not a list"}\n{not json\n')
        task = await s.add_task(repo=str(repo))
        done = await s.agent("worker-1", "--once", "--wait", "10", in_process=True)
        assert "Traceback" not in done.stderr, done.stderr
        after = await s.task(task["id"])
        runs = after["shadow_runs"]
        assert done.returncode in (0, 1), done.stderr
        if done.returncode == 0:
            (run,) = runs
            assert run["outcome"] == "failed" and "script" in run["summary"], run
        else:
            assert len(done.stderr.strip().splitlines()) == 1 and "script" in done.stderr, done.stderr
            assert after["state"] == "queued", "nothing lost: the task is back for another agent"
