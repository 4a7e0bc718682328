"""A real brain on 127.0.0.1 and a swarm.toml of agents, for end-to-end runner tests that start the real CLI.

    async with stack(tmp_path, agents=["worker-1", "worker-2"]) as s:
        s.script(FIX)
        task = await s.add_task(repo=s.repo_with_bug("one"))
        await s.override("worker-1")                    # a captain's readiness override: --live is allowed
        done = await s.agent("worker-1", "--once", "--live")

Each agent has its own body token, bound to it (`swarm brain token create --role body --agent NAME`; in the config
`[[agents]] token = "env:<NAME>_TOKEN"`); the brain's clock stands still until a test moves it (`s.clock.advance`,
then `await s.brain.sweep()` for what is due).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from brain_server import Brain, BrainSettings, MemoryStateEngine, StateEngine, issue_token, serve_brain
from shared_protocol.agents import agent_logic_version
from shared_protocol.config import approval_thresholds, load_config
from tests.brain.helpers import Clock
from tests.cli.inprocess import run_swarm, swarm_in_process
from tests.tool_definitions import seed_tool_definitions

TOOLS = ["read_text_file", "write_file", "edit_file", "list_directory", "run_command", "request_approval"]
FIX: list[dict[str, Any]] = [
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
SCRIPTED = '[models.scripted]\nprovider = "scripted"\nmodel = "gpt-4o-mini"\nscript = "script.jsonl"\n'


def git(repo: Path, *args: str) -> str:
    """git in a test's repository, as its user (a fixed identity, no hooks of the host's config)."""
    argv = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args]
    return subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=True).stdout


def commit_all(repo: Path) -> None:
    """Commit whatever the test wrote into its repository since (nothing: nothing is committed)."""
    git(repo, "add", "--all")
    if git(repo, "status", "--porcelain"):
        git(repo, "commit", "--quiet", "-m", "the test's files")


def token_var(agent: str) -> str:
    return agent.upper().replace("-", "_").replace(".", "_") + "_TOKEN"


@dataclass
class Stack:
    url: str
    captain: httpx.AsyncClient
    tokens: dict[str, str]
    """Each agent's body token, by agent name."""
    home: Path
    config: Path
    tmp: Path
    extra_env: dict[str, str]
    captain_token: str
    brain: Brain
    clock: Clock
    watch: LoopWatch

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SWARM_HOME": str(self.home),
            "SWARM_CONFIG": str(self.config),
            "SWARM_BRAIN_URL": self.url,
            **{token_var(name): token for name, token in self.tokens.items()},
            **self.extra_env,
        }

    def script(self, turns: list[dict[str, Any]], name: str = "script.jsonl") -> None:
        (self.tmp / name).write_text("".join(json.dumps(t) + "\n" for t in turns))

    def repo_with_bug(self, name: str = "repo") -> Path:
        """A git repository whose main() returns 1, committed on `main`."""
        repo = self.tmp / name
        repo.mkdir()
        (repo / "app.py").write_text("def main():\n    return 1\n")
        git(repo, "init", "--quiet", "-b", "main")
        git(repo, "add", "app.py")
        git(repo, "commit", "--quiet", "-m", "main() returns 1")
        return repo

    def argv(self, agent: str, *args: str) -> list[str]:
        return self.cli_argv("agent", "run", "--agent", agent, *args)

    def log(self, name: str) -> Path:
        """A file for a process's stderr (read it once the process is done)."""
        return self.tmp / f"{name}.stderr"

    async def agent(
        self, agent: str, *args: str, timeout_s: float = 120, in_process: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """`swarm agent run --agent AGENT ARGS` to its end. `in_process`: the runner runs in the test's process
        (`tests/cli/inprocess.py`: the same entry point, its body still a process of its own), which spares a new
        Python's start; one at a time (it has the process's environment and standard streams), so not for agents
        that must run at once."""
        argv = self.argv(agent, *args)
        with anyio.fail_after(timeout_s):
            if in_process:
                return await anyio.to_thread.run_sync(_run_here, argv[3:], self.env(), abandon_on_cancel=True)
            done = await anyio.run_process(argv, env=self.env(), check=False)
        return subprocess.CompletedProcess(argv, done.returncode, done.stdout.decode(), done.stderr.decode())

    def cli_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "swarm_cli", *args]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`swarm ARGS` as a process of its own (for what only a process shows: a body's start, its exit)."""
        return subprocess.run(self.cli_argv(*args), env=self.env(), capture_output=True, text=True, check=False)

    def here(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`swarm ARGS` in the test's process (`tests/cli/inprocess.py`), blocking: for commands that need no brain
        (the audit trail is the body's, on this host), as the test's event loop, which serves the brain, waits."""
        return run_swarm(args, self.env())

    async def swarm(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        """`swarm ARGS` in the test's process (`tests/cli/inprocess.py`: the same entry point, minus a new Python's
        start), with the stack's environment and `token` as SWARM_TOKEN; the test's event loop keeps serving the
        brain meanwhile."""
        return await swarm_in_process(args, self.env() | ({"SWARM_TOKEN": token} if token else {}))

    async def add_task(self, *, dirty: bool = False, **fields: Any) -> dict[str, Any]:
        """Queue a task; its `repo`, as a user hands one over, has what the test wrote into it committed (unless
        `dirty`: an agent refuses a repository with uncommitted changes)."""
        if fields.get("repo") and not dirty and (Path(fields["repo"]) / ".git").is_dir():
            # In a thread: this loop serves the brain (a git started from a loaded process's loop held it 1-1.7 s).
            await anyio.to_thread.run_sync(commit_all, Path(fields["repo"]))
        body = {"title": "make main() return 2", "acceptance": ACCEPTANCE} | fields
        answer = await self.captain.post("/v1/tasks", json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()

    async def task(self, task_id: str) -> dict[str, Any]:
        answer = await self.captain.get(f"/v1/tasks/{task_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def override(self, agent: str) -> None:
        """A captain's readiness override for the agent's logic version: the brain allows its --live claims (a
        reviewer or captain agent's: its first votes count, without a shadow period)."""
        version = agent_logic_version(load_config(self.config), agent)
        answer = await self.captain.post(
            "/v1/readiness/overrides",
            json={"agent": agent, "logic_version": version, "reason": "end-to-end test", "for_s": 600},
        )
        assert answer.status_code in (200, 201), answer.text

    async def wait_for(
        self, task_id: str, state: str, *, timeout_s: float = 60, log: Path | None = None
    ) -> dict[str, Any]:
        """The task once it is in `state`; past `timeout_s`, a failure that says why it may not be (`explain`, with
        the runner's `log`)."""
        task: dict[str, Any] = {}
        with anyio.move_on_after(timeout_s):
            while (task := await self.task(task_id))["state"] != state:
                await anyio.sleep(0.1)
            return task
        history = [f"{line.get('kind')}: {line.get('detail')}" for line in task.get("history", [])[-6:]]
        raise AssertionError(
            f"task {task_id} not {state} after {timeout_s:g} s: {task.get('state')}; its last history: {history}\n"
            + self.explain(log)
        )

    def explain(self, log: Path | None = None) -> str:
        """What a failed end-to-end test needs to be explained: the tail of the runner's `log` (its body writes there
        too: `brain link: failing closed …` says what the body last heard), every body's link record, and each time
        the test's own event loop, which serves the brain, stood still."""
        parts: list[str] = []
        if log is not None and log.exists():
            lines = log.read_text(errors="replace").splitlines()
            parts.append(f"-- the last {min(len(lines), 40)} lines of {log.name}:\n" + "\n".join(lines[-40:]))
        for record in sorted(self.tmp.rglob("brain-link.json")):
            parts.append(f"-- {record.relative_to(self.tmp)}: {record.read_text(errors='replace')}")
        parts.append(
            "-- the brain's event loop (the test's) " + ("\n".join(self.watch.stalls) or "never stood still over 1 s")
        )
        return "\n".join(parts)


class LoopWatch:
    """The test's event loop (which serves the brain) watched from a thread of its own: every stretch longer than
    `min_s` in which it ran nothing else, with what each thread of the process was doing meanwhile."""

    def __init__(self, log: Path, *, min_s: float = 1.0) -> None:
        self.log = log
        self.min_s = min_s
        self.stalls: list[str] = []
        self._ticked = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()

    async def run(self) -> None:
        self._loop_thread = threading.get_ident()
        watcher = threading.Thread(target=self._watch, name="loop-watch", daemon=True)
        watcher.start()
        try:
            while not self._stop.is_set():
                self._ticked = time.monotonic()
                await anyio.sleep(0.05)
        finally:
            self._stop.set()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        seen: list[str] = []
        began = 0.0
        while not self._stop.wait(0.05):
            now = time.monotonic()
            late = now - self._ticked
            if late > self.min_s:
                if not seen:
                    began = self._ticked
                if len(seen) < 5 and (not seen or late > self.min_s * (len(seen) + 1)):
                    seen.append(self._sample(late))
            elif seen:
                said = f"the test's loop stood still {self._ticked - began:.1f}s:\n" + "\n".join(seen)
                self.stalls.append(said)
                with self.log.open("a") as out:
                    out.write(said + "\n")
                seen = []

    def _sample(self, late: float) -> str:
        names = {t.ident: t.name for t in threading.enumerate()}
        lines = [f"-- at {late:.1f}s:"]
        for ident, frame in sys._current_frames().items():  # pyright: ignore[reportPrivateUsage]
            if ident == threading.get_ident():
                continue
            mark = " (the loop)" if ident == self._loop_thread else ""
            lines.append(f"thread {names.get(ident, ident)}{mark}:\n" + "".join(traceback.format_stack(frame)[-12:]))
        return "\n".join(lines)


def _run_here(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`run_swarm`, with what its child processes (the body) write to their stderr after the runner's, as a process
    of its own would have it. A child writes to the descriptor it was given: 2, or the stream the MCP client took as
    its stderr when it was imported (the test's `sys.stderr`, which pytest may capture to a file of its own); both
    point at one file for the run."""
    targets = {2}
    with contextlib.suppress(AttributeError, OSError, ValueError):
        targets.add(sys.stderr.fileno())
    with tempfile.TemporaryFile() as children:
        saved = {fd: os.dup(fd) for fd in targets}
        for fd in targets:
            os.dup2(children.fileno(), fd)
        try:
            done = run_swarm(args, env)
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
        children.seek(0)
        said = children.read().decode(errors="replace")
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout, done.stderr + said)


def agents_toml(
    agents: Sequence[str], *, model: str = "scripted", extra: str = "", tools: Sequence[str] = TOOLS
) -> str:
    return "".join(
        f'\n[[agents]]\nname = "{name}"\nmodel = "{model}"\nprompt = "You fix small bugs."\n'
        f'tools = {json.dumps(list(tools))}\ntoken = "env:{token_var(name)}"\n{extra}'
        for name in agents
    )


@asynccontextmanager
async def stack(
    tmp_path: Path,
    *,
    agents: Sequence[str] = ("worker-1",),
    models: str = SCRIPTED,
    model: str = "scripted",
    extra_toml: str = "",
    extra_env: dict[str, str] | None = None,
    bind_tokens: bool = True,
    tools: Sequence[str] = TOOLS,
    state: StateEngine | None = None,
) -> AsyncGenerator[Stack]:
    """`state`: the brain's state engine (default: a new memory one)."""
    home = tmp_path / "home"
    home.mkdir()
    seed_tool_definitions(home)
    config = tmp_path / "swarm.toml"
    config.write_text(models + extra_toml + agents_toml(agents, model=model, tools=tools))
    # The brain classifies decisions by the same [policy] and [limits] as the bodies, as in a deployment, and takes
    # their [consensus].
    swarm = load_config(config)
    settings = BrainSettings(
        host="127.0.0.1",
        port=0,
        database_url="memory://",
        thresholds=approval_thresholds(swarm),
        consensus=swarm.consensus,
        captain_agents=[a.name for a in swarm.agents if a.role == "captain"],
        rollout=swarm.rollout,
    )
    state = MemoryStateEngine() if state is None else state
    clock = Clock()
    brain = Brain(settings, state=state, clock=clock)
    captain_token = await issue_token(state, role="captain", label="captain", at=brain.now())
    tokens = {
        name: await issue_token(state, role="body", label=name, at=brain.now(), agent=name if bind_tokens else None)
        for name in agents
    }
    urls: list[str] = []
    ready, stop = anyio.Event(), anyio.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    async with anyio.create_task_group() as group:
        watch = LoopWatch(tmp_path / "loop-stalls.log")
        group.start_soon(watch.run)
        group.start_soon(lambda: serve_brain(brain, on_ready=on_ready, stop=stop, loops=False))
        with anyio.fail_after(10):
            await ready.wait()
        headers = {"Authorization": f"Bearer {captain_token}"}
        async with httpx.AsyncClient(base_url=urls[0], headers=headers, timeout=30) as captain:
            try:
                yield Stack(
                    urls[0],
                    captain,
                    tokens,
                    home,
                    config,
                    tmp_path,
                    extra_env or {},
                    captain_token,
                    brain,
                    clock,
                    watch,
                )
            finally:
                stop.set()
                watch.stop()
