"""run_command overhead: `run_command(["true"])` through `swarm body` over stdio vs a bare `bwrap` in the same run.

    uv run python bench/bench_run_command.py [--runs 3] [--calls 30] [--sizes 100,10000,100000] [--before DIR]

For each workspace size, starts `swarm body` as a real process and talks to it with the official MCP
client over stdio (as an IDE would). Each run alternates one `run_command(["true"])` with one bare
`bwrap --ro-bind / / true` started from the same event loop, and one bwrap given the sandbox's own options
for `true` on the same workspace (its namespaces, mounts and hidden paths; the default toolchain, the workspace
bound as it is: no overlay, no launcher, no body), `--calls` of each, so that the machine's slow moments fall
on all alike; a run's figure is the median of each. Prints, over the runs, the min/median/max of the ratio
(subject / bwrap) and of the overhead (subject - bwrap, in ms), against each. With `--before DIR`
(a checkout of an earlier commit, e.g. `git archive main | tar -x -C DIR`, run with this checkout's interpreter),
a second body from there takes its turn in each round too, on a workspace of its own.

Start-up is reported apart: the body's time from spawn to an answered `initialize`, and its first
`run_command`, which waits for the initial workspace scan (the scan that decides which secrets a
command's sandbox hides) when it is not done yet. Target (issue #22): at most 10 ms over bare bwrap,
flat from 100 to 100k files.
"""

from __future__ import annotations

import argparse
import contextlib
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


def _params(ws: Path, home: Path, root: Path) -> StdioServerParameters:
    config = home / "bench.toml"
    config.write_text(
        "[limits]\ncalls_per_minute = 1000000\nfile_mods_per_hour = 1000000\n[policy]\napproval_min_files = 1000000\n"
    )
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "swarm_cli", "body", "--workspace", str(ws), "--config", str(config)],
        env={**os.environ, "SWARM_HOME": str(home)},
        cwd=str(root),  # (`-m` imports from the working directory first: that checkout's code)
    )


async def _command(client: Client) -> float:
    start = time.perf_counter()
    result = await client.call_tool("run_command", {"argv": ["true"], "rationale": "bench"})
    elapsed = time.perf_counter() - start
    assert not result.is_error and isinstance(result.structured_content, dict), result.structured_content
    assert result.structured_content["exit_code"] == 0, result.structured_content
    return elapsed


async def _bwrap(argv: list[str], pass_fds: tuple[int, ...] = ()) -> float:
    start = time.perf_counter()
    await anyio.run_process(argv, check=True, pass_fds=pass_fds)
    return time.perf_counter() - start


def _sandbox_bwrap(bwrap: str, ws: Path, tmp: Path, status_fd: int) -> list[str]:
    """The sandbox's own bwrap command line for `true` on `ws`: what bwrap itself costs for the isolation."""
    from sandbox import BwrapOverlaySandbox, SandboxSpec, default_toolchain_paths
    from sandbox._bwrap import BwrapLayout, bwrap_options

    area = tmp / f"bwrap-{ws.name}"
    (area / "tmp").mkdir(parents=True)
    (area / "empty").touch(mode=0o444)
    spec = SandboxSpec(
        workspace=ws.resolve(),
        argv=["true"],
        env={"PATH": "/usr/bin:/bin"},
        toolchain_paths=default_toolchain_paths(),
        hidden_paths=[".env"],
    )
    plan = BwrapOverlaySandbox(staging_root=area / "staging")._plan(spec)
    layout = BwrapLayout(
        workspace=spec.workspace,
        workspace_source=spec.workspace,
        tmp_source=area / "tmp",
        cwd=plan.cwd,
        toolchain=plan.toolchain,
        hidden=plan.hidden,
        empty_file=area / "empty",
        env=plan.env,
        status_fd=status_fd,
        writable=plan.writable,
        commands=plan.commands,
    )
    return [bwrap, *bwrap_options(layout), "--", "true"]


async def _size(tmp: Path, files: int, runs: int, calls: int, bwrap: str, checkouts: dict[str, Path]) -> None:
    ws = _workspace(tmp, files)
    status_fd = os.open(os.devnull, os.O_WRONLY)
    labels = {"bwrap": "bare bwrap", "options": "the sandbox's bwrap"}
    baselines = {
        "bwrap": ([bwrap, "--ro-bind", "/", "/", "true"], ()),
        "options": (_sandbox_bwrap(bwrap, ws, tmp, status_fd), (status_fd,)),
    }
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, Client] = {}
        for name, root in checkouts.items():
            home = tmp / f"home-{name}-{files}"
            home.mkdir()
            copy = ws if not clients else tmp / f"ws-{name}-{files}"
            if copy != ws:
                shutil.copytree(ws, copy)
            spawned = time.perf_counter()
            clients[name] = await stack.enter_async_context(Client(_params(copy, home, root)))
            initialized = time.perf_counter() - spawned
            first = await _command(clients[name])
            print(
                f"  {files:>6} files, {name}: start-up: initialize {initialized * 1000:.0f} ms, first run_command "
                f"{first * 1000:.0f} ms"
            )
        ratios: dict[tuple[str, str], list[float]] = {(n, b): [] for n in clients for b in baselines}
        overheads: dict[tuple[str, str], list[float]] = {(n, b): [] for n in clients for b in baselines}
        for _ in range(runs):
            times: dict[str, list[float]] = {name: [] for name in [*clients, *baselines]}
            for _ in range(calls):
                for name, client in clients.items():
                    times[name].append(await _command(client))
                for name, (argv, fds) in baselines.items():
                    times[name].append(await _bwrap(argv, fds))
            base = {b: statistics.median(times[b]) * 1000 for b in baselines}
            line = f"    run: bare bwrap {base['bwrap']:6.2f} ms, the sandbox's bwrap {base['options']:6.2f} ms"
            for name in clients:
                s = statistics.median(times[name]) * 1000
                line += f"   {name} {s:7.2f} ms"
                for b, value in base.items():
                    ratios[(name, b)].append(s / value)
                    overheads[(name, b)].append(s - value)
                line += f" ({s / base['bwrap']:5.2f}x, {s - base['bwrap']:+6.2f} ms over bare bwrap)"
            print(line)
    os.close(status_fd)
    for name in clients:
        for b in baselines:
            r, o = ratios[(name, b)], overheads[(name, b)]
            print(
                f"  {files:>6} files, {name} vs {labels[b]}: ratio min/median/max "
                f"{min(r):.2f}/{statistics.median(r):.2f}/{max(r):.2f}x   overhead min/median/max "
                f"{min(o):+.2f}/{statistics.median(o):+.2f}/{max(o):+.2f} ms"
            )


async def main(runs: int, calls: int, sizes: list[int], before: Path | None) -> None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        sys.exit("bench_run_command: bwrap not found (apt-get install bubblewrap)")
    print(
        f"run_command(['true']) over stdio vs bare `bwrap --ro-bind / / true` and the sandbox's own bwrap: "
        f"{runs} runs x {calls} calls each"
    )
    checkouts = {"this": ROOT} | ({"before": before} if before is not None else {})
    with tempfile.TemporaryDirectory() as tmp:
        for files in sizes:
            await _size(Path(tmp), files, runs, calls, bwrap, checkouts)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--sizes", default="100,10000,100000")
    parser.add_argument("--before", type=Path, default=None, help="a checkout of an earlier commit to run alongside")
    options = parser.parse_args()
    if options.runs < 1 or options.calls < 1:
        sys.exit("bench_run_command: --runs and --calls must be at least 1")
    if options.before is not None and not (options.before / "swarm_cli").is_dir():
        sys.exit(f"bench_run_command: --before {options.before} is not a checkout of this project")
    sizes = [int(s) for s in options.sizes.split(",")]
    anyio.run(main, options.runs, options.calls, sizes, options.before.resolve() if options.before else None)
