"""A project's work through Swarm vs the same commands run bare: create the environment, install, run the tests,
commit.

    uv run python bench/bench_project_flow.py [--rounds 5]

Subject: a real body (`Body` + its tools, the machine's sandbox backend: bubblewrap) on a fresh clone of the small
Python project of tests/runner/project.py, each round with a fresh `$SWARM_HOME` (cold package cache):
`run_command(uv venv -q --python /usr/bin/python3 .venv)`, `run_command(uv pip install -q -r requirements.txt,
network=true)` through the body's counting proxy to a package index on 127.0.0.1 (its name pinned in `[sandbox]
pinned_hosts`), `run_command(python -m pytest -q -p no:cacheprovider tests)` (a test run of over a second), then
the fix made with `edit_file` and committed with `git_commit`.

Baseline, in the same run, alternating round by round (sandboxed first in even rounds, bare first in odd ones): the
same commands as plain subprocesses in another fresh clone, with a fresh uv cache, the index by its address, and
`git commit -qam` after writing the same fix. Prints each step's median wall time for both, the ratio, and the
overhead. Target (issue #18): under 1.5x for the test run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from body_mcp import Body, BodySettings
from shared_protocol.config import DEFAULT_SANDBOX_ENV, parse_config
from tests.runner.project import BUGGY, FIXED, INDEX_HOST, TESTS, make_project, project_index

TARGET = 1.5
VENV = ["uv", "venv", "-q", "--python", "/usr/bin/python3", ".venv"]
"""The same interpreter on both sides (the sandbox's `python3` is the system's; bare, uv would find pyenv's first)."""
STEPS = ("env create", "install", "test run", "commit")


def _body(ws: Path, home: Path, port: int) -> Body:
    config = parse_config(
        {
            "limits": {"calls_per_minute": 1_000_000, "file_mods_per_hour": 1_000_000},
            "sandbox": {"allowed_domains": [INDEX_HOST], "pinned_hosts": {INDEX_HOST: f"127.0.0.1:{port}"}},
        }
    )
    return Body(BodySettings(workspace=ws.resolve(), home=home, config=config))


async def _timed(body: Body, tool: str, args: dict[str, Any]) -> float:
    start = time.perf_counter()
    outcome = await body.call_tool(tool, {**args, "rationale": "bench"})
    took = time.perf_counter() - start
    assert not outcome.is_error, outcome.structured
    if "pytest" in str(args):  # (the project's bug: one test fails, on both sides)
        assert "1 failed, 2 passed" in str(outcome.structured.get("stdout")), outcome.structured
    else:
        assert outcome.structured.get("exit_code", 0) == 0, outcome.structured
    return took


async def sandboxed(root: Path, port: int) -> dict[str, float]:
    ws = make_project(root / "swarm-clone", port)
    body = _body(ws, root / "home", port)
    try:
        return {
            "env create": await _timed(body, "run_command", {"argv": VENV}),
            "install": await _timed(
                body,
                "run_command",
                {"argv": ["uv", "pip", "install", "-q", "-r", "requirements.txt"], "network": True, "timeout_s": 600},
            ),
            "test run": await _timed(body, "run_command", {"argv": ["sh", "-c", TESTS], "timeout_s": 600}),
            "commit": await _fix_and_commit(body),
        }
    finally:
        body.close()


async def _fix_and_commit(body: Body) -> float:
    edit = {"path": "calc.py", "edits": [{"old_text": BUGGY, "new_text": FIXED}]}
    outcome = await body.call_tool("edit_file", {**edit, "rationale": "bench"})
    assert not outcome.is_error, outcome.structured
    return await _timed(body, "git_commit", {"message": "calc: total() is the sum"})


def bare(root: Path, port: int) -> dict[str, float]:
    repo = make_project(root / "bare-clone", port, host=f"127.0.0.1:{port}")
    # What the sandbox's commands get (`[sandbox] env_allow`), the venv's bin first once it exists, a cache of
    # their own; never `uv run`'s own variables (`VIRTUAL_ENV`, `UV_*`: they would point uv at another interpreter).
    env = {name: os.environ[name] for name in DEFAULT_SANDBOX_ENV if name in os.environ}
    env |= {"HOME": str(root), "UV_CACHE_DIR": str(root / "bare-cache"), "UV_PYTHON_DOWNLOADS": "never"}
    env["PATH"] = f"{repo / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"

    def timed(argv: list[str]) -> float:
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=repo, env=env, check=False, capture_output=True, text=True)
        assert ("1 failed, 2 passed" in done.stdout) if "pytest" in str(argv) else done.returncode == 0, done.stderr
        return time.perf_counter() - start

    found = {
        "env create": timed(VENV),
        "install": timed(["uv", "pip", "install", "-q", "-r", "requirements.txt"]),
        "test run": timed(["sh", "-c", TESTS]),
    }
    (repo / "calc.py").write_text((repo / "calc.py").read_text().replace(BUGGY, FIXED))
    git = ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.com"]
    found["commit"] = timed([*git, "commit", "-qam", "calc: total() is the sum"])
    return found


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, project_index(Path(tmp)) as index:
        swarm: dict[str, list[float]] = {step: [] for step in STEPS}
        plain: dict[str, list[float]] = {step: [] for step in STEPS}
        for n in range(rounds):
            round_dir = Path(tmp) / f"round{n}"
            round_dir.mkdir()
            order = ("swarm", "bare") if n % 2 == 0 else ("bare", "swarm")
            for side in order:
                found = await sandboxed(round_dir, index.port) if side == "swarm" else bare(round_dir, index.port)
                for step, took in found.items():
                    (swarm if side == "swarm" else plain)[step].append(took)
        print(f"project flow, {rounds} rounds alternating sandboxed and bare (median wall time per step)")
        print(f"{'step':<12} {'swarm':>10} {'bare':>10} {'ratio':>7} {'overhead':>10}")
        for step in STEPS:
            s, b = statistics.median(swarm[step]), statistics.median(plain[step])
            print(f"{step:<12} {s * 1000:>8.0f}ms {b * 1000:>8.0f}ms {s / b:>6.2f}x {(s - b) * 1000:>8.0f}ms")
        s, b = statistics.median(swarm["test run"]), statistics.median(plain["test run"])
        verdict = "meets" if s / b < TARGET else "MISSES"
        print(f"test run (bare {b:.2f} s): {s / b:.2f}x through Swarm — {verdict} the target of < {TARGET}x")
        total_s = sum(statistics.median(swarm[step]) for step in STEPS)
        total_b = sum(statistics.median(plain[step]) for step in STEPS)
        print(f"whole flow: {total_s:.2f} s through Swarm, {total_b:.2f} s bare ({total_s / total_b:.2f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    anyio.run(main, parser.parse_args().rounds)
