"""The whole flow of issue #18, end to end: from a clean clone of a small real Python project, an agent (the scripted
provider playing the model) gets its environment built by the task's setup (a virtualenv, the project's dependency
and pytest installed through the body's proxy from a package index on 127.0.0.1, its address pinned), runs the tests
in the sandbox, fixes the code, runs them again, commits on its branch; the runner rebuilds the environment afresh
for its acceptance re-run, which passes, and the brain confirms it. A real brain, the real CLI, body and sandbox."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.cli.inprocess import run_swarm
from tests.conftest import require_binary
from tests.runner.project import (
    BUGGY,
    DEPENDENCY,
    FIXED,
    INDEX_HOST,
    SANDBOX_TOML,
    SETUP,
    TESTS,
    make_project,
    project_index,
)
from tests.runner.stack import TOOLS, Stack, stack

pytestmark = pytest.mark.anyio

FLOW_TOOLS = [*TOOLS, "git_status", "git_diff", "git_log", "git_commit"]


def turn(text: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "content": text,
        "tool_calls": [{"name": name, "arguments": arguments}],
        "usage": {"input_tokens": 500, "output_tokens": 40},
    }


def run(argv: list[str], why: str, *, network: bool = False) -> dict[str, Any]:
    return {"argv": argv, "rationale": why, "timeout_s": 300, "network": network}


FLOW: list[dict[str, Any]] = [
    turn("Run the tests first.", "run_command", run(["sh", "-c", TESTS], "see what fails")),
    turn(
        "Make sure the requirements are installed.",
        "run_command",
        run(["uv", "pip", "install", "-q", "-r", "requirements.txt"], "install the dependencies", network=True),
    ),
    turn(
        "total() adds one too many.",
        "edit_file",
        {"path": "calc.py", "edits": [{"old_text": BUGGY, "new_text": FIXED}], "rationale": "total() must be the sum"},
    ),
    turn("Run the tests again.", "run_command", run(["sh", "-c", TESTS], "check the fix")),
    turn(
        "Commit the fix.",
        "git_commit",
        {"message": "calc: total() is the sum of the values", "rationale": "hand over the fix on the task's branch"},
    ),
    {"content": "total() returns the sum now; the tests pass.", "usage": {"input_tokens": 600, "output_tokens": 12}},
]


async def cli(s: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as the captain, in the test's process (`tests/cli/inprocess.py`), run without blocking the stack's
    event loop (its brain serves the call)."""
    return await s.swarm(*args, token=s.captain_token)


def swarm(s: Stack, *args: str) -> str:
    """The CLI once the stack is down (the audit trail is the agent's body's, on this host), in the test's process
    (`tests/cli/inprocess.py`)."""
    done = run_swarm(args, s.env())
    assert done.returncode == 0, done.stderr
    return done.stdout


def outputs(s: Stack) -> dict[str, str]:
    """Each audited call's reason → all that was kept of its output (run_command) or its line."""
    found: dict[str, str] = {}
    for line in swarm(s, "audit", "tail", "--agent", "worker-1", "-n", "50").splitlines():
        action, reason = line.split()[2], line.split(" — ", 1)[-1]
        shown = swarm(s, "audit", "output", action, "--agent", "worker-1") if " run_command ok " in line else line
        found[reason] = shown
    return found


async def test_an_agent_takes_a_clean_clone_through_install_test_fix_and_commit_verified_on_a_fresh_env(
    tmp_path: Path,
) -> None:
    require_binary("bwrap", "bubblewrap")
    require_binary("uv", "uv")
    with project_index(tmp_path) as index:
        async with stack(
            tmp_path, extra_toml=SANDBOX_TOML.format(host=INDEX_HOST, port=index.port), tools=FLOW_TOOLS
        ) as s:
            repo = make_project(tmp_path / "calc", index.port, slow_rounds=0)
            s.script(FLOW)
            added = await cli(
                s, "task", "add", "--title", "fix total()", "--repo", str(repo), "--acceptance", TESTS, "--setup", SETUP
            )
            assert added.returncode == 0, added.stderr
            task_id = added.stdout.strip().splitlines()[-1]
            assert f"setup: {SETUP}" in added.stdout
            await s.override("worker-1")
            done = await s.agent("worker-1", "--once", "--live", "--wait", "10", timeout_s=600, in_process=True)
            assert done.returncode == 0, done.stderr
            with anyio.fail_after(60):
                while not (task := await s.task(task_id))["verified"]:
                    assert task["state"] == "succeeded", (task["outcome_summary"], done.stderr)
                    await anyio.sleep(0.2)
            shown = await cli(s, "task", "show", task_id)
    assert shown.returncode == 0, shown.stderr
    assert f"setup:        {SETUP}" in shown.stdout and "VERIFIED" in shown.stdout

    # The runner's setup built the model's environment before its first step: its first test run found pytest and
    # the dependency (one test failed), its install went through the proxy to the pinned index, its second run
    # passed; the runner built the check's environment afresh and the re-run passed on it.
    ran = outputs(s)
    assert "1 failed, 2 passed" in ran["see what fails"] and "3 passed" in ran["check the fix"]
    reasons = list(ran)
    assert reasons.index(next(r for r in reasons if "environment for the model" in r)) < reasons.index("see what fails")
    fresh = next(r for r in reasons if "environment for the acceptance re-run, into fresh env dirs" in r)
    verify = next(r for r in reasons if "re-run its acceptance command" in r)
    assert reasons.index("check the fix") < reasons.index(fresh) < reasons.index(verify)
    assert "3 passed" in ran[verify]
    assert f"/simple/{DEPENDENCY}/" in index.asked and "/simple/pytest/" in index.asked

    # The branch and the commit: the fix, by the agent, with its logic version and the model's reason.
    evidence = task["evidence"]
    branch, commit = evidence["branch"], evidence["commit"]
    assert branch == f"swarm/worker-1/{task_id}"
    assert (
        subprocess.run(["git", "rev-parse", branch], cwd=repo, capture_output=True, text=True).stdout.strip() == commit
    )
    log = subprocess.run(
        ["git", "log", "--format=%an%n%B", f"main..{branch}"], cwd=repo, capture_output=True, text=True
    )
    assert "swarm agent worker-1" in log.stdout
    assert "calc: total() is the sum of the values" in log.stdout
    assert "Swarm-Agent: worker-1" in log.stdout and f"Swarm-Logic-Version: {task['logic_version']}" in log.stdout
    changed = subprocess.run(
        ["git", "diff", "--name-only", f"main..{branch}"], cwd=repo, capture_output=True, text=True
    )
    assert changed.stdout.split() == ["calc.py"]
    assert (
        FIXED in subprocess.run(["git", "show", f"{branch}:calc.py"], cwd=repo, capture_output=True, text=True).stdout
    )
    assert evidence["acceptance"] == TESTS and evidence["acceptance_exit_code"] == "0"
    assert not (repo / ".venv").exists()  # nothing installed in the repository

    # The check ran on an environment of its own, built afresh: the model's and the check's are apart.
    envs = (
        list(s.home.glob("agents/*/workspaces/*/env/.venv")),
        list(s.home.glob("agents/*/workspaces/*/check/env/.venv")),
    )
    assert envs[0] and envs[1], envs
    assert list(envs[1][0].glob("lib/python3*/site-packages/pytest/__init__.py"))


async def test_a_setup_that_fails_fails_the_task_before_the_model_and_leaves_no_branch(tmp_path: Path) -> None:
    require_binary("bwrap", "bubblewrap")
    with project_index(tmp_path) as index:
        async with stack(tmp_path, extra_toml=SANDBOX_TOML.format(host=INDEX_HOST, port=index.port)) as s:
            repo = make_project(tmp_path / "calc", index.port, slow_rounds=0)
            s.script(FLOW)
            task = await s.add_task(repo=str(repo), acceptance=TESTS, setup="uv pip install -q no-such-package")
            await s.override("worker-1")
            done = await s.agent("worker-1", "--once", "--live", "--wait", "10", timeout_s=300, in_process=True)
            assert done.returncode == 0, done.stderr
            after = await s.task(task["id"])
    assert after["state"] == "failed" and after["verified"] is False
    assert "setup `uv pip install -q no-such-package` failed at the start of the task" in after["outcome_summary"]
    assert "branch" not in after["evidence"]
    assert subprocess.run(["git", "branch", "--list", "swarm/*"], cwd=repo, capture_output=True, text=True).stdout == ""
    assert not list((tmp_path / "home-work").glob("**/worktrees/*"))
    assert after["spend"]["steps"] == 0  # the model was never asked


async def test_what_the_model_planted_in_its_env_is_not_what_the_check_runs_on(tmp_path: Path) -> None:
    """The model rewrites pytest in its own env so that any run passes; the runner's check is built afresh by the
    setup, from the index, and fails on the unfixed code."""
    require_binary("bwrap", "bubblewrap")
    require_binary("uv", "uv")
    plant = "for f in .venv/lib/python3*/site-packages/pytest/__main__.py; do echo 'raise SystemExit(0)' > $f; done"
    script = [
        turn("Make every run pass.", "run_command", run(["sh", "-c", plant], "cheat")),
        turn("See: it passes.", "run_command", run(["sh", "-c", TESTS], "show the cheat works here")),
        {"content": "The tests pass.", "usage": {"input_tokens": 600, "output_tokens": 12}},
    ]
    with project_index(tmp_path) as index:
        async with stack(tmp_path, extra_toml=SANDBOX_TOML.format(host=INDEX_HOST, port=index.port)) as s:
            repo = make_project(tmp_path / "calc", index.port, slow_rounds=0)
            s.script(script)
            task = await s.add_task(repo=str(repo), acceptance=TESTS, setup=SETUP)
            await s.override("worker-1")
            done = await s.agent("worker-1", "--once", "--live", "--wait", "10", timeout_s=600, in_process=True)
            assert done.returncode == 0, done.stderr
            after = await s.task(task["id"])
    ran = outputs(s)
    shown = ran["show the cheat works here"]
    assert "passed" not in shown and "failed" not in shown, shown  # (the planted pytest ran no test)
    assert after["state"] == "failed" and after["verified"] is False
    assert after["verification"]["exit_code"] == 1
    verify = next(r for r in ran if "re-run its acceptance command" in r)
    assert "1 failed, 2 passed" in ran[verify]
