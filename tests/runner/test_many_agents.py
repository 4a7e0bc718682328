"""Four agents against one brain work distinct tasks with nothing lost: 4 `swarm agent run --once --live` processes
at once (each with its own body token, body and audit chain), 4 tasks each in its own repository.

What is checked is the brain's record and each agent's audit chain, never the runners' word. Four, not the eight of
the README's claim: each agent is two Python processes (runner and body, some 7 s of CPU together), and 4 already
race for the same queue; the brain's side with 8 claimers at once is `tests/brain/test_live_server.py`'s
`test_eight_claimers_on_separate_connections_get_distinct_tasks`.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from tests.runner.stack import ACCEPTANCE, FIX, git, stack

pytestmark = pytest.mark.anyio

AGENTS = [f"worker-{n}" for n in range(1, 5)]


async def test_four_agents_against_one_brain_work_distinct_tasks_with_nothing_lost(tmp_path: Path) -> None:
    async with stack(tmp_path, agents=AGENTS) as s:
        s.script(FIX)
        repos = {f"repo-{n}": s.repo_with_bug(f"repo-{n}") for n in range(1, len(AGENTS) + 1)}
        tasks = [await s.add_task(title=f"fix {name}", repo=str(repo)) for name, repo in repos.items()]
        for agent in AGENTS:
            await s.override(agent)

        codes: dict[str, tuple[int, str]] = {}

        async def one(agent: str) -> None:
            # (one of them in the test's process, as only one runner may be, the others in processes of their own)
            done = await s.agent(
                agent, "--once", "--live", "--wait", "60", timeout_s=240, in_process=agent == AGENTS[0]
            )
            codes[agent] = (done.returncode, done.stderr)

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            for agent in AGENTS:
                group.start_soon(one, agent)
        elapsed = time.monotonic() - started
        print(f"{len(AGENTS)} agents, {len(AGENTS)} tasks: {elapsed:.1f} s")
        for agent, (code, stderr) in codes.items():
            assert code == 0, f"{agent}: {stderr}"

        usage = (await s.captain.get("/v1/usage")).json()
        workers: set[str] = set()
        for task in tasks:
            after = await s.task(task["id"])
            assert after["state"] == "succeeded" and after["verified"] is True, after
            assert after["verification"]["command"] == ACCEPTANCE and after["verification"]["exit_code"] == 0
            repo, branch = Path(after["repo"]), after["evidence"]["branch"]
            assert git(repo, "show", f"{branch}:app.py") == "def main():\n    return 2\n"
            assert branch == f"swarm/{after['history'][1]['agent']}/{task['id']}"
            kinds = [e["kind"] for e in after["history"]]
            # Claimed once, finished once: nobody else held it in between (no lease lost, no second claim).
            assert kinds == ["created", "claimed", "outcome", "verification"], kinds
            claim = after["history"][1]
            assert after["history"][2]["agent"] == claim["agent"]
            workers.add(claim["agent"])
            spend = after["spend"]
            assert spend["steps"] == 3 and spend["usd"] > 0
            # The usage the runner posted call by call adds up to the spend reported with the outcome.
            assert usage["by_task"][task["id"]]["calls"] == 3
            assert usage["by_task"][task["id"]]["usd"] == pytest.approx(spend["usd"])
            assert usage["by_agent"][claim["agent"]]["usd"] == pytest.approx(spend["usd"])
            assert usage["by_agent"][claim["agent"]]["input_tokens"] == spend["input_tokens"]
        assert workers == set(AGENTS), "each agent worked one task, each task one agent"
        assert usage["total"]["calls"] == 3 * len(AGENTS)

        # Each agent's own audit chain verifies (its identity and chain are per agent, whatever the workspace).
        for agent in AGENTS:
            verified = await s.swarm("audit", "verify", "--agent", agent)
            assert verified.returncode == 0, f"{agent}: {verified.stdout}{verified.stderr}"
