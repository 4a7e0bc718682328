"""`swarm agent run` end to end: a real brain on 127.0.0.1, the real CLI in its own process, its body a real
`swarm body --agent` subprocess, the scripted provider; nobody presses Enter.

What is checked is what the brain, the repository and the agent's audit trail say afterwards, never the runner's
own word: the verification is the body's re-run of the acceptance command, the spend is what the brain recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from brain_server import Brain, BrainSettings, MemoryStateEngine, issue_token, serve_brain
from tests.brain.helpers import Clock

pytestmark = pytest.mark.anyio

TOOLS = ["read_text_file", "write_file", "edit_file", "list_directory", "run_command", "request_approval"]
FIX = [
    {
        "content": "Read the code first.",
        "tool_calls": [{"name": "read_text_file", "arguments": {"path": "app.py", "rationale": "see the bug"}}],
        "usage": {"input_tokens": 900, "output_tokens": 30},
    },
    {
        "content": "main() must return 2.",
        "tool_calls": [
            {
                "name": "edit_file",
                "arguments": {
                    "path": "app.py",
                    "edits": [{"old_text": "return 1", "new_text": "return 2"}],
                    "rationale": "the task asks for 2",
                },
            }
        ],
        "usage": {"input_tokens": 1000, "output_tokens": 60, "cache_read_tokens": 800},
    },
    {"content": "main() returns 2 now.", "usage": {"input_tokens": 1100, "output_tokens": 12}},
]
ACCEPTANCE = "python3 -c 'import app, sys; sys.exit(0 if app.main() == 2 else 1)'"


@dataclass
class Stack:
    url: str
    captain: httpx.AsyncClient
    agent_token: str
    home: Path
    repo: Path
    config: Path
    tmp: Path

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SWARM_HOME": str(self.home),
            "SWARM_CONFIG": str(self.config),
            "SWARM_BRAIN_URL": self.url,
            "WORKER_TOKEN": self.agent_token,
        }

    def script(self, turns: list[dict[str, Any]], name: str = "script.jsonl") -> None:
        (self.tmp / name).write_text("".join(json.dumps(t) + "\n" for t in turns))

    async def agent(self, *args: str, timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "swarm_cli", "agent", "run", "--agent", "worker-1", *args]
        with anyio.fail_after(timeout_s):
            done = await anyio.run_process(argv, env=self.env(), check=False)
        return subprocess.CompletedProcess(argv, done.returncode, done.stdout.decode(), done.stderr.decode())

    async def add_task(self, **fields: Any) -> dict[str, Any]:
        body = {"title": "make main() return 2", "acceptance": ACCEPTANCE, "repo": str(self.repo)} | fields
        answer = await self.captain.post("/v1/tasks", json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()

    async def task(self, task_id: str) -> dict[str, Any]:
        answer = await self.captain.get(f"/v1/tasks/{task_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()


@asynccontextmanager
async def stack(tmp_path: Path) -> AsyncGenerator[Stack]:
    state = MemoryStateEngine()
    brain = Brain(BrainSettings(host="127.0.0.1", port=0, database_url="memory://"), state=state, clock=Clock())
    captain_token = await issue_token(state, role="captain", label="captain", at=brain.now())
    agent_token = await issue_token(state, role="body", label="worker-1", at=brain.now())
    home, repo = tmp_path / "home", tmp_path / "repo"
    home.mkdir()
    repo.mkdir()
    (repo / "app.py").write_text("def main():\n    return 1\n")
    config = tmp_path / "swarm.toml"
    config.write_text(
        '[models.scripted]\nprovider = "scripted"\nmodel = "gpt-4o-mini"\nscript = "script.jsonl"\n\n'
        '[[agents]]\nname = "worker-1"\nmodel = "scripted"\nprompt = "You fix small bugs."\n'
        f'tools = {json.dumps(TOOLS)}\ntoken = "env:WORKER_TOKEN"\n'
    )
    urls: list[str] = []
    ready, stop = anyio.Event(), anyio.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: serve_brain(brain, on_ready=on_ready, stop=stop, loops=False))
        with anyio.fail_after(10):
            await ready.wait()
        headers = {"Authorization": f"Bearer {captain_token}"}
        async with httpx.AsyncClient(base_url=urls[0], headers=headers, timeout=30) as captain:
            try:
                yield Stack(urls[0], captain, agent_token, home, repo, config, tmp_path)
            finally:
                stop.set()


async def test_a_shadow_agent_works_a_task_in_a_copy_and_the_brain_records_a_verified_shadow_run(
    tmp_path: Path,
) -> None:
    async with stack(tmp_path) as s:
        s.script(FIX)
        task = await s.add_task()
        done = await s.agent("--once", "--wait", "10")
        assert done.returncode == 0, done.stderr
        assert "(shadow)" in done.stderr
        after = await s.task(task["id"])
        assert after["state"] == "queued", "a shadow run leaves the task for live work"
        (run,) = after["shadow_runs"]
        assert run["agent"] == "worker-1" and run["logic_version"].startswith("lv-")
        assert run["outcome"] == "succeeded" and run["verification"]["verified"] is True
        assert run["verification"]["exit_code"] == 0 and run["verification"]["command"] == ACCEPTANCE
        assert run["spend"]["usd"] > 0 and run["spend"]["steps"] == 3
        assert (s.repo / "app.py").read_text() == "def main():\n    return 1\n", "nothing left the copy"
        usage = (await s.captain.get("/v1/usage")).json()
        assert usage["by_agent"]["worker-1"]["calls"] == 3
        assert usage["by_task"][task["id"]]["usd"] == pytest.approx(run["spend"]["usd"])

        # The agent's audit trail holds the model's calls with their turns, under the agent's own state.
        trail = subprocess.run(
            [sys.executable, "-m", "swarm_cli", "audit", "tail", "--agent", "worker-1", "-n", "20"],
            env=s.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert trail.returncode == 0, trail.stderr
        assert "edit_file" in trail.stdout and "run_command" in trail.stdout


async def test_live_is_refused_by_the_brain_until_readiness_or_an_override(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        s.script(FIX)
        task = await s.add_task()
        refused = await s.agent("--once", "--live")
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
        done = await s.agent("--once", "--live")
        assert done.returncode == 0, done.stderr
        after = await s.task(task["id"])
        assert after["state"] == "succeeded" and after["verified"] is True
        assert after["verification"]["exit_code"] == 0
        assert "app.py" in after["evidence"]["files_changed"]
        assert (s.repo / "app.py").read_text() == "def main():\n    return 2\n"


async def test_outcomes_that_do_not_verify_are_failures(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        # The model says it is done without changing anything: the acceptance command says otherwise.
        s.script([{"content": "All done, trust me.", "usage": {"input_tokens": 500, "output_tokens": 8}}])
        task = await s.add_task()
        assert (await s.agent("--once", "--wait", "5")).returncode == 0
        (run,) = (await s.task(task["id"]))["shadow_runs"]
        assert run["outcome"] == "failed" and run["verification"]["verified"] is False
        assert run["verification"]["exit_code"] == 1

        # The script runs out mid-task: failed, saying so.
        s.script([FIX[0]])
        other = await s.add_task(title="second")
        assert (await s.agent("--once", "--wait", "5")).returncode == 0
        (run,) = (await s.task(other["id"]))["shadow_runs"]
        assert run["outcome"] == "failed" and "exhausted" in run["summary"]


async def test_no_task_exits_3_and_bad_input_is_one_line(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        s.script(FIX)
        none = await s.agent("--once", "--wait", "0.5")
        assert none.returncode == 3, none.stderr

        unknown = subprocess.run(
            [sys.executable, "-m", "swarm_cli", "agent", "run", "--agent", "nobody", "--once"],
            env=s.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert unknown.returncode == 1 and "worker-1" in unknown.stderr and "Traceback" not in unknown.stderr

        env = s.env()
        del env["WORKER_TOKEN"]
        missing = subprocess.run(
            [sys.executable, "-m", "swarm_cli", "agent", "run", "--agent", "worker-1", "--once"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert missing.returncode == 1 and "WORKER_TOKEN" in missing.stderr

        gone = await s.add_task(repo=str(tmp_path / "no-such-repo"))
        assert (await s.agent("--once", "--wait", "5")).returncode == 0
        (run,) = (await s.task(gone["id"]))["shadow_runs"]
        assert run["outcome"] == "failed" and "does not exist" in run["summary"]
