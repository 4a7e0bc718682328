"""`swarm agent run` end to end: a real brain on 127.0.0.1, the real CLI (in the test's process: its entry point),
its body a real `swarm body --agent` subprocess, the scripted provider; nobody presses Enter.

What is checked is what the brain, the repository and the agent's audit trail say afterwards, never the runner's
own word: the verification is the body's re-run of the acceptance command, the spend is what the brain recorded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.inprocess import swarm_in_process
from tests.runner.stack import ACCEPTANCE, FIX, git, stack, token_var

pytestmark = pytest.mark.anyio


async def test_a_shadow_agent_works_a_task_in_a_copy_and_the_brain_records_a_verified_shadow_run(
    tmp_path: Path,
) -> None:
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()
        s.script(FIX)
        task = await s.add_task(repo=str(repo))
        # (in the test's process, as the other runs here: `swarm agent run` as a process of its own, to its exit
        # status, is tests/runner/test_kill.py's and test_many_agents.py's)
        done = await s.agent("worker-1", "--once", "--wait", "10", in_process=True)
        assert done.returncode == 0, done.stderr
        assert "(shadow)" in done.stderr
        after = await s.task(task["id"])
        assert after["state"] == "queued", "a shadow run leaves the task for live work"
        (run,) = after["shadow_runs"]
        assert run["agent"] == "worker-1" and run["logic_version"].startswith("lv-")
        assert run["outcome"] == "succeeded" and run["verification"]["verified"] is True, str(run["verification"])
        assert run["verification"]["exit_code"] == 0 and run["verification"]["command"] == ACCEPTANCE
        assert run["spend"]["usd"] > 0 and run["spend"]["steps"] == 3
        assert (repo / "app.py").read_text() == "def main():\n    return 1\n", "nothing left the copy"
        usage = (await s.captain.get("/v1/usage")).json()
        assert usage["by_agent"]["worker-1"]["calls"] == 3
        assert usage["by_task"][task["id"]]["usd"] == pytest.approx(run["spend"]["usd"])

        # The agent's audit trail holds the model's calls with their turns, under the agent's own state.
        trail = s.here("audit", "tail", "--agent", "worker-1", "-n", "20")
        assert trail.returncode == 0, trail.stderr
        assert "edit_file" in trail.stdout and "run_command" in trail.stdout


async def test_live_is_refused_by_the_brain_until_readiness_or_an_override(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()
        s.script(FIX)
        task = await s.add_task(repo=str(repo))
        refused = await s.agent("worker-1", "--once", "--live", in_process=True)
        assert refused.returncode == 1
        assert "not_ready" in refused.stderr or "readiness" in refused.stderr
        assert refused.stderr.count("\n") <= 3, refused.stderr

        from shared_protocol.agents import agent_logic_version
        from shared_protocol.config import load_config

        version = agent_logic_version(load_config(s.config), "worker-1")
        answer = await s.captain.post(
            "/v1/readiness/overrides",
            json={"agent": "worker-1", "logic_version": version, "reason": "test", "for_s": 600},
        )
        assert answer.status_code in (200, 201), answer.text
        done = await s.agent("worker-1", "--once", "--live", in_process=True)
        assert done.returncode == 0, done.stderr
        after = await s.task(task["id"])
        assert after["state"] == "succeeded" and after["verified"] is True
        assert after["verification"]["exit_code"] == 0
        evidence = after["evidence"]
        assert "app.py" in evidence["files_changed"]
        # The work is on the task's own branch, committed by the body; the user's checkout is untouched and the
        # worktree, handed over, is gone.
        branch = f"swarm/worker-1/{task['id']}"
        assert (evidence["branch"], evidence["commits"], evidence["acceptance_exit_code"]) == (branch, "1", "0"), (
            done.stderr
        )
        assert evidence["acceptance"] == ACCEPTANCE and "worktree" not in evidence
        assert git(repo, "rev-parse", branch).strip() == evidence["commit"]
        assert git(repo, "show", f"{branch}:app.py") == "def main():\n    return 2\n"
        assert (repo / "app.py").read_text() == "def main():\n    return 1\n"
        assert git(repo, "status", "--porcelain") == ""
        message = git(repo, "log", "-1", "--format=%an%n%B", branch)
        assert message.startswith("swarm agent worker-1\nmake main() return 2\n"), message
        assert "main() returns 2 now." in message and f"(task {task['id']})" in message
        assert "Swarm-Agent: worker-1" in message and "Swarm-Logic-Version: lv-" in message
        assert "Swarm-Action: act_" in message
        assert not list((s.home.parent / "home-work" / "worker-1" / "worktrees").glob("*"))
        shown = await s.swarm("task", "show", task["id"], "--token", s.captain_token)
        assert shown.returncode == 0 and branch in shown.stdout and evidence["commit"] in shown.stdout, shown.stderr


async def test_outcomes_that_do_not_verify_are_failures(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()
        # The model says it is done without changing anything: the acceptance command says otherwise.
        s.script([{"content": "All done, trust me.", "usage": {"input_tokens": 500, "output_tokens": 8}}])
        task = await s.add_task(repo=str(repo))
        assert (await s.agent("worker-1", "--once", "--wait", "5", in_process=True)).returncode == 0
        (run,) = (await s.task(task["id"]))["shadow_runs"]
        assert run["outcome"] == "failed" and run["verification"]["verified"] is False
        assert run["verification"]["exit_code"] == 1

        # The script runs out mid-task: failed, saying so.
        s.script([FIX[0]])
        other = await s.add_task(title="second", repo=str(repo))
        assert (await s.agent("worker-1", "--once", "--wait", "5", in_process=True)).returncode == 0
        (run,) = (await s.task(other["id"]))["shadow_runs"]
        assert run["outcome"] == "failed" and "exhausted" in run["summary"]


async def test_no_task_exits_3_and_bad_input_is_one_line(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        s.script(FIX)
        none = await s.agent("worker-1", "--once", "--wait", "0.5", in_process=True)
        assert none.returncode == 3, none.stderr

        # (in the test's process: the same entry point; a process's own one-line errors: test_review17b_cli.py)
        unknown = await swarm_in_process(["agent", "run", "--agent", "nobody", "--once"], s.env())
        assert unknown.returncode == 1 and "worker-1" in unknown.stderr and "Traceback" not in unknown.stderr

        env = s.env()
        del env[token_var("worker-1")]
        missing = await swarm_in_process(["agent", "run", "--agent", "worker-1", "--once"], env)
        assert missing.returncode == 1 and token_var("worker-1") in missing.stderr

        gone = await s.add_task(repo=str(tmp_path / "no-such-repo"))
        assert (await s.agent("worker-1", "--once", "--wait", "5", in_process=True)).returncode == 0
        (run,) = (await s.task(gone["id"]))["shadow_runs"]
        assert run["outcome"] == "failed" and "does not exist" in run["summary"]
