"""run_command overhead: `run_command(["true"])` through `swarm body` over stdio vs a bare `bwrap` in the same run.

    uv run python bench/bench_run_command.py [--runs 3] [--calls 30] [--sizes 100,10000,100000]

For each workspace size, starts `swarm body` as a real process and talks to it with the official MCP
client over stdio (as an IDE would). Each run alternates one `run_command(["true"])` with one bare
`bwrap --ro-bind / / true` started from the same event loop, `--calls` of each, so that the machine's
slow moments fall on both alike; a run's figure is the median of each. Prints, over the runs, the
min/median/max of the ratio (subject / bwrap) and of the overhead (subject - bwrap, in ms).

Start-up is reported apart: the body's time from spawn to an answered `initialize`, and its first
`run_command`, which waits for the initial workspace scan (the scan that decides which secrets a
command's sandbox hides) when it is not done yet. Target (issue #22): at most 10 ms over bare bwrap,
flat from 100 to 100k files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent


def _workspace(root: Path, files: int) -> Path:
    ws = root / f"ws{files}"
    for n in range(files):
        d = ws / f"pkg{n // 100}"
        if n % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{n}.py").write_text(f"X = {n}\n")
    (ws / ".gitignore").write_text("__pycache__/\n")
    (ws / ".env").write_text("TOKEN=bench\n")  # a secret the sandbox hides
    return ws


def _params(ws: Path, home: Path) -> StdioServerParameters:
    config = home / "bench.toml"
    config.write_text(
        "[limits]\ncalls_per_minute = 1000000\nfile_mods_per_hour = 1000000\n[policy]\napproval_min_files = 1000000\n"
    )
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "swarm_cli", "body", "--workspace", str(ws), "--config", str(config)],
        env={**os.environ, "SWARM_HOME": str(home)},
        cwd=str(ROOT),
    )


async def _command(client: Client) -> float:
    start = time.perf_counter()
    result = await client.call_tool("run_command", {"argv": ["true"], "rationale": "bench"})
    elapsed = time.perf_counter() - start
    assert not result.is_error and isinstance(result.structured_content, dict), result.structured_content
    assert result.structured_content["exit_code"] == 0, result.structured_content
    return elapsed


async def _bwrap(bwrap: str) -> float:
    start = time.perf_counter()
    await anyio.run_process([bwrap, "--ro-bind", "/", "/", "true"], check=True)
    return time.perf_counter() - start


async def _size(root: Path, files: int, runs: int, calls: int, bwrap: str) -> None:
    ws = _workspace(root, files)
    home = root / f"home{files}"
    home.mkdir()
    spawned = time.perf_counter()
    async with Client(_params(ws, home)) as client:
        initialized = time.perf_counter() - spawned
        first = await _command(client)
        ratios: list[float] = []
        overheads: list[float] = []
        for _ in range(runs):
            subject: list[float] = []
            baseline: list[float] = []
            for _ in range(calls):
                subject.append(await _command(client))
                baseline.append(await _bwrap(bwrap))
            s, b = statistics.median(subject) * 1000, statistics.median(baseline) * 1000
            ratios.append(s / b)
            overheads.append(s - b)
            print(f"    run: run_command {s:7.2f} ms   bare bwrap {b:6.2f} ms   ratio {s / b:5.2f}x   +{s - b:6.2f} ms")
    print(
        f"  {files:>6} files: ratio min/median/max {min(ratios):.2f}/{statistics.median(ratios):.2f}/{max(ratios):.2f}x"
        f"   overhead min/median/max {min(overheads):+.2f}/{statistics.median(overheads):+.2f}/{max(overheads):+.2f} ms"
    )
    print(f"  {'':>6}        start-up: initialize {initialized * 1000:.0f} ms, first run_command {first * 1000:.0f} ms")


async def main(runs: int, calls: int, sizes: list[int]) -> None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        sys.exit("bench_run_command: bwrap not found (apt-get install bubblewrap)")
    print(f"run_command(['true']) over stdio vs bare `bwrap --ro-bind / / true`: {runs} runs x {calls} calls each")
    with tempfile.TemporaryDirectory() as tmp:
        for files in sizes:
            await _size(Path(tmp), files, runs, calls, bwrap)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--sizes", default="100,10000,100000")
    options = parser.parse_args()
    if options.runs < 1 or options.calls < 1:
        sys.exit("bench_run_command: --runs and --calls must be at least 1")
    anyio.run(main, options.runs, options.calls, [int(s) for s in options.sizes.split(",")])
