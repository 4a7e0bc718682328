"""The demo's second act: autonomy. Two agents with the `scripted` provider (no keys, no network) take tasks from
the brain with nobody typing, each through its own guarded body, in its own process (`swarm agent run`).

- worker-1 goes live on a readiness override a captain records (the summary names it): it takes a task, reads and
  edits files through its body, and the body re-runs the task's acceptance command; the outcome counts as
  succeeded only if that passes. Its spend comes from the brain's usage records.
- worker-2 (shadow: a throwaway copy) is stopped mid model call by the brain's kill switch: the demo measures how
  long the kill took to reach it and shows it makes no model call while killed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from shared_protocol.agents import agent_logic_version
from shared_protocol.config import load_config

ACCEPTANCE = (
    "python3 -c \"import sys; from shop.prices import total; sys.exit(0 if total(['widget'] * 10) == 90 else 1)\""
)
_OLD_TOTAL = "def total(items):\n    return sum(PRICES[i] for i in items)\n"
_NEW_TOTAL = (
    "def total(items):\n    amount = sum(PRICES[i] for i in items)\n"
    "    return amount * 0.9 if len(items) >= 10 else amount\n"
)
_TOOLS = ["read_text_file", "edit_file", "write_file", "list_directory", "run_command", "request_approval"]

_WORKER_1: list[dict[str, Any]] = [
    {
        "content": "I'll read the pricing code before changing it.",
        "tool_calls": [{"name": "read_text_file", "arguments": {"path": "shop/prices.py", "rationale": "see total()"}}],
        "usage": {"input_tokens": 1450, "output_tokens": 38},
    },
    {
        "content": "total() sums prices; a 10% discount for 10 or more items goes there.",
        "tool_calls": [
            {
                "name": "edit_file",
                "arguments": {
                    "path": "shop/prices.py",
                    "edits": [{"old_text": _OLD_TOTAL, "new_text": _NEW_TOTAL}],
                    "rationale": "the task asks for a bulk discount",
                },
            }
        ],
        "usage": {"input_tokens": 1720, "output_tokens": 96, "cache_read_tokens": 1400},
    },
    {
        "content": "Added a 10% discount on orders of 10 or more items in total().",
        "usage": {"input_tokens": 1850, "output_tokens": 21, "cache_read_tokens": 1700},
    },
]
_WORKER_2: list[dict[str, Any]] = [
    {
        "content": "Let me see what is in the shop first.",
        "tool_calls": [{"name": "list_directory", "arguments": {"path": "shop", "rationale": "orient myself"}}],
        "usage": {"input_tokens": 1300, "output_tokens": 25},
    },
    {"content": "(a slow model: the demo's kill switch cuts this call short)", "delay_s": 600},
]


def _say(step: str, text: str) -> None:
    print(f"  [{step}] {text}", flush=True)


def write_agents_config(home: Path) -> Path:
    """Add two scripted models and two agents to the demo's swarm.toml; the scripts beside it."""
    for name, turns in (("worker-1.jsonl", _WORKER_1), ("worker-2.jsonl", _WORKER_2)):
        (home / name).write_text("".join(json.dumps(turn) + "\n" for turn in turns))
    config = home / "swarm.toml"
    blocks: list[str] = []
    for n in (1, 2):
        blocks.append(
            f'\n[models.demo-{n}]\nprovider = "scripted"\nmodel = "gpt-4o-mini"\nscript = "worker-{n}.jsonl"\n'
        )
    for n in (1, 2):
        blocks.append(
            f'\n[[agents]]\nname = "worker-{n}"\nmodel = "demo-{n}"\n'
            'prompt = "You are a careful engineer on the Acme shop. Change only what the task asks."\n'
            f'tools = {json.dumps(_TOOLS)}\ntoken = "env:SWARM_DEMO_TOKEN_{n}"\n'
            f'pairing = "env:SWARM_DEMO_PAIRING_{n}"\nmax_usd_per_task = 0.5\n'
        )
    with config.open("a") as out:
        out.write("".join(blocks))
    load_config(config)  # fail here, loudly, if the demo wrote something the config does not accept
    return config


def make_repo(root: Path, sample: dict[str, str]) -> Path:
    """The sample shop as a git repository with one commit on `main`: an agent's live work goes on a branch of it."""
    repo = root / "shop-repo"
    for rel, text in sample.items():
        if rel == ".env":
            continue
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    _git(repo, "init", "--quiet", "-b", "main")
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "-m", "the sample shop")
    return repo


def _git(repo: Path, *args: str) -> str:
    """git in the demo's own repository (a fixed identity; no hooks, no global or system config)."""
    argv = ["git", "-c", "user.name=Swarm demo", "-c", "user.email=demo@swarm.invalid"]
    argv += ["-c", "core.hooksPath=/dev/null"]
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    done = subprocess.run([*argv, *args], cwd=repo, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {args[0]} in {repo}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _env(home: Path, url: str, tokens: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_CONFIG": str(home / "swarm.toml"), "SWARM_BRAIN_URL": url}
    env |= {"SWARM_DEMO_TOKEN_1": tokens["worker-1"], "SWARM_DEMO_TOKEN_2": tokens["worker-2"]}
    env |= {"SWARM_DEMO_PAIRING_1": tokens["worker-1:pairing"], "SWARM_DEMO_PAIRING_2": tokens["worker-2:pairing"]}
    env.pop("SWARM_TOKEN", None)
    env.pop("SWARM_PAIRING", None)
    return env


def _agent_argv(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "swarm_cli", "agent", "run", "--agent", name, *args]


async def _lines(process: Process, sink: list[str], seen: anyio.Event | None = None) -> None:
    assert process.stderr is not None
    buffer = ""
    async for chunk in TextReceiveStream(process.stderr):
        buffer += chunk
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            sink.append(line)
            _say("agent", line.removeprefix("swarm agent: "))
            if seen is not None:
                seen.set()


async def autonomy(
    root: Path, home: Path, url: str, captain: httpx.AsyncClient, tokens: dict[str, str], sample: dict[str, str]
) -> dict[str, Any]:
    """Run the act; what it found, for the summary."""
    repo = make_repo(root, sample)
    config = load_config(home / "swarm.toml")
    version = agent_logic_version(config, "worker-1")
    found: dict[str, Any] = {"override": version}
    answer = await captain.post(
        "/v1/readiness/overrides",
        json={"agent": "worker-1", "logic_version": version, "reason": "demo: no shadow period", "for_s": 3600},
    )
    answer.raise_for_status()
    _say("readiness", f"a captain overrides readiness for worker-1 ({version}) for an hour: it may work live")
    task = {
        "title": "Bulk discount",
        "description": "Orders of 10 or more items get 10% off.",
        "acceptance": ACCEPTANCE,
        "value_usd": 200,
        "repo": str(repo),
    }
    created = (await captain.post("/v1/tasks", json=task)).json()
    _say("brain", "the captain queues 'Bulk discount' (acceptance: a check that 10 widgets cost 90)")
    env = _env(home, url, tokens)
    lines: list[str] = []
    code = -1
    argv = _agent_argv("worker-1", "--once", "--live", "--wait", "20")
    _say("agent", "starting worker-1: `swarm agent run --agent worker-1 --once --live`, a process with its own body")
    async with await anyio.open_process(argv, env=env) as one, anyio.create_task_group() as group:
        group.start_soon(_lines, one, lines)
        with anyio.fail_after(120):
            code = await one.wait()
    done: dict[str, Any] = (await captain.get(f"/v1/tasks/{created['id']}")).json()
    verification: dict[str, Any] = done.get("verification") or {}
    spend: dict[str, Any] = done.get("spend") or {}
    evidence: dict[str, str] = done.get("evidence") or {}
    branch, commit = evidence.get("branch", ""), evidence.get("commit", "")
    on_branch = _git(repo, "show", f"{branch}:shop/prices.py") if branch else ""
    found |= {
        "worker1_exit": code,
        "task_state": done["state"],
        "verified": done.get("verified"),
        "exit_code": verification.get("exit_code"),
        "usd": spend.get("usd", 0.0),
        "price_changed": _NEW_TOTAL in on_branch,
        "branch": branch,
        "commit": commit,
        "checkout_untouched": _NEW_TOTAL not in (repo / "shop/prices.py").read_text(),
    }
    _say(
        "outcome",
        f"task {done['state']}; verified by the body re-running the acceptance command: {done.get('verified')} "
        f"(exit code {verification.get('exit_code')}); spend ${spend.get('usd', 0):.5f} over {spend.get('steps')} "
        "model turns",
    )
    if branch:
        subject = _git(repo, "log", "-1", "--format=%an: %s", branch).strip()
        _say("outcome", f"its work is on branch {branch}, commit {commit[:12]} ({subject}); main is untouched")
    if not done.get("verified") and shutil.which("bwrap") is None:
        _say("outcome", "(no bubblewrap here: the body cannot run the acceptance command, so nothing is verified)")

    # worker-2: mid model call when the captain presses stop.
    second = (
        await captain.post(
            "/v1/tasks", json={"title": "Tidy the README", "value_usd": 20, "repo": str(repo), "acceptance": "true"}
        )
    ).json()
    _say("brain", "the captain queues 'Tidy the README'; worker-2 takes it in shadow (a throwaway copy)")
    _say("agent", "starting worker-2: `swarm agent run --agent worker-2 --once` (shadow or live as its rollout says)")
    async with await anyio.open_process(_agent_argv("worker-2", "--once", "--wait", "20"), env=env) as two:
        heard: list[str] = []
        async with anyio.create_task_group() as group:
            group.start_soon(_lines, two, heard, None)
            with anyio.fail_after(60):
                while await _calls(captain, "worker-2") < 1:  # its first turn is settled: it is in the slow one
                    await anyio.sleep(0.05)
            await anyio.sleep(0.3)
            start = time.monotonic()
            await captain.post("/v1/kill", json={"reason": "demo: the captain presses stop"})
            _say("kill", "the captain engages the kill switch while worker-2 waits on its model")
            with anyio.fail_after(10):
                while not any("kill switch engaged" in line for line in heard):
                    await anyio.sleep(0.005)
            found["kill_ms"] = (time.monotonic() - start) * 1000
            await anyio.sleep(0.5)  # the cancelled call's settlement (at its reservation) reaches the brain
            calls = await _calls(captain, "worker-2")
            await anyio.sleep(1.0)
            found["calls_after_kill"] = await _calls(captain, "worker-2") - calls
            _say(
                "kill",
                f"the kill reached worker-2 in {found['kill_ms']:.0f} ms; its model call was cancelled and it made "
                f"{found['calls_after_kill']} model calls in the second after",
            )
            two.terminate()
            group.cancel_scope.cancel()
        await two.wait()
    await captain.post("/v1/resume", json={"reason": "demo: all clear"})
    _say("resume", "worker-2 is stopped; the captain resumes the brain; its task goes back to the queue at lease end")
    usage = (await captain.get("/v1/usage")).json()
    found["by_agent"] = {name: total["usd"] for name, total in usage["by_agent"].items()}
    by_agent = ", ".join(f"{name} ${usd:.5f}" for name, usd in found["by_agent"].items())
    _say("usage", f"model spend recorded by the brain: {by_agent} (GET /v1/usage)")
    found["second_task"] = second["id"]
    return found


async def _calls(captain: httpx.AsyncClient, agent: str) -> int:
    usage = (await captain.get("/v1/usage", params={"agent": agent})).json()
    return int(usage["by_agent"].get(agent, {}).get("calls", 0))
