"""Acceptance (#21, PII) through a real agent runner: random personal data planted in a task's title and text, in
the model's turns, in a command's output and in the held call's arguments of a task the runner parks on a decision
is found in clear, base64, hex, percent- or JSON-escaped form in no file under the agent's work dir (its parked
state, its transcript, the task's shadow copy), the agent body's state, or the runner's stderr (a service's
journal). `swarm privacy export --agent` lists the runner's copies; `swarm privacy erase --agent`, run while the
runner waits on the decision with the key store open, makes them unreadable; approved afterwards, the task is
given up, as its held call names the erased subject and can no longer run as it was approved."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from agent_runner.parked import load_parked, parked_path
from body_mcp.state import StatePaths
from shared_protocol.privacy import KEY_STORE_FILE, PrivacyConfig, Protector, SqliteSubjectKeys
from swarm_cli.agent_cmds import work_root
from tests.cli.inprocess import run_swarm
from tests.runner.stack import Stack, stack
from tests.runner.test_park import BOTH, POLICY, WRITE_TWO, parked

from .plant import Planted, leaks, plant

pytestmark = pytest.mark.anyio


def _script(p: Planted) -> list[dict[str, Any]]:
    return [
        {
            "content": f"I will write to {p.email} and call {p.phone}.",
            "tool_calls": [
                {"name": "run_command", "arguments": {"argv": ["echo", p.text()], "rationale": f"greet {p.email}"}}
            ],
            "usage": {"input_tokens": 700, "output_tokens": 40},
        },
        {
            "content": "Now both files, in one go.",
            "tool_calls": [
                {
                    "name": "run_command",
                    "arguments": {
                        "argv": ["python3", "-c", f"{WRITE_TWO}; print('{p.email}')"],
                        "rationale": f"the task, for {p.phone}",
                    },
                }
            ],
            "usage": {"input_tokens": 900, "output_tokens": 40},
        },
        {"content": "a.txt and b.txt are written.", "usage": {"input_tokens": 900, "output_tokens": 10}},
    ]


async def _swarm(s: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI on the agent's body state only (no brain: the brain's side of #21 has its own tests)."""
    env = {k: v for k, v in s.env().items() if k not in ("SWARM_BRAIN_URL", "SWARM_TOKEN")}
    return await anyio.to_thread.run_sync(run_swarm, list(args), env)


async def test_a_parked_tasks_personal_data_is_nowhere_in_clear_in_the_runners_files_and_erasure_reaches_them(
    tmp_path: Path,
) -> None:
    p = plant()
    async with stack(tmp_path, extra_toml=POLICY) as s:
        s.script(_script(p))
        work = work_root(s.home) / "worker-1"
        repo = s.repo_with_bug()
        task = await s.add_task(title=f"Refund {p.email}", description=p.text(), acceptance=BOTH, repo=str(repo))
        log = s.log("worker-1")
        with log.open("w") as stderr:
            agent = await anyio.open_process(s.argv("worker-1", "--once"), env=s.env(), stderr=stderr)
        async with agent:
            try:
                decision_id = await parked(s, task["id"], agent)
                saved, transcript = parked_path(work, task["id"]), work / "transcripts" / f"{task['id']}.jsonl"
                assert saved.is_file() and transcript.is_file() and (work / "shadow" / task["id"]).is_dir()
                assert p.email in (await s.task(task["id"]))["title"]  # (the brain serves it decrypted to a captain)
                # Nothing in clear: the runner's files, the shadow copy, the agent body's state, the runner's stderr.
                assert leaks([work, s.home, log], p.values()) == []

                exported = await _swarm(s, "privacy", "export", p.email, "--agent", "worker-1", "--json")
                assert exported.returncode == 0, exported.stderr
                held = {i["where"] for i in json.loads(exported.stdout)["body"]}
                assert {f"runner parked/{task['id']}.json", f"runner transcripts/{task['id']}.jsonl"} <= held, held
                assert any(where.startswith("audit ") for where in held)  # (the body's own copies, as before)

                # Erased while the runner waits on the decision, its key store open in that process.
                erased = await _swarm(s, "privacy", "erase", p.email.upper(), "--agent", "worker-1")
                assert erased.returncode == 0 and erased.stdout.splitlines() == ["body: erased (email)"], erased.stderr
                again = await _swarm(s, "privacy", "export", p.email, "--agent", "worker-1")
                assert again.returncode == 1
                keys = SqliteSubjectKeys(StatePaths.for_agent(s.home, "worker-1").dir / KEY_STORE_FILE)
                try:
                    back = load_parked(saved, privacy=Protector(PrivacyConfig(), keys))
                finally:
                    keys.close()
                assert back.task.title == "Refund [pii:email:erased]" and back.held_call_erased
                assert p.phone in back.task.description  # another subject's data still reads back

                # Approved now, the held call cannot run as it was approved: the task is given up, and nothing is left.
                answered = await s.captain.post(f"/v1/decisions/{decision_id}/approve", json={"reason": "go on"})
                assert answered.status_code == 200, answered.text
                with anyio.fail_after(120):
                    code = await agent.wait()
            finally:
                if agent.returncode is None:  # (a failed check: the runner would wait for ever)
                    agent.kill()
        said = log.read_text()
        assert code == 0, said
        after = await s.task(task["id"])
        (run,) = after["shadow_runs"]
        assert (after["state"], run["outcome"]) == ("queued", "abandoned"), json.dumps(after, indent=1)
        assert "erased" in run["summary"], run["summary"]
        assert not saved.exists() and not (work / "shadow" / task["id"]).exists()
        assert not (repo / "a.txt").exists()
        assert "[pii:email]" in said  # (the runner's progress lines name the task redacted)
        assert leaks([work, s.home, log], p.values()) == []
