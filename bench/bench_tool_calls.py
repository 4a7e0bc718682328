"""Tool calls against the servers users would pick instead: read, write and list over real stdio, alternating.

    uv run python bench/bench_tool_calls.py [--runs 3] [--calls 300] [--durability power_loss|crash]

One MCP client (the official Python SDK's `Client`) over stdio against four servers, started
afresh for each run, each on its own workspace of the same 50 files:

- `swarm body` (the guard, the audit trail with the configured durability: the default is
  `power_loss`; limits raised in the bench's own config so it measures the guard, not refusals);
- the reference filesystem server, `@modelcontextprotocol/server-filesystem` on Node (the peer);
- `bare`, `bench/_unguarded_server.py`: the same three tools on the Python MCP SDK's serving path
  with no guard at all (the floor the SDK sets);
- `ours`, `bench/_unguarded_server.py --ours`: the same unguarded tools on the body's own serving
  path (its stdin reader and reply writer, tool calls answered on its direct path, not through the
  SDK's request machinery).

Each round calls one server after the other with the same arguments, so that the machine's slow
moments fall on all four alike. Per run it prints median and p99 per server and tool; then, over
the runs, min/median/max of body/peer (median and p99) and of the guard's cost (reads and lists as
a ratio, writes as added milliseconds) twice: against `bare` (what issue #22 names: the unguarded
Python SDK server; since the body serves calls faster than the SDK does, this understates the
guard) and against `ours` (the guard alone, the serving path the same on both sides).
Targets (issue #22): body/peer ≤ 2.0x for read, write and list, p99 no worse than the peer's; the
guard ≤ 1.25x for reads and ≤ +0.5 ms for writes.

The peer is installed from `bench/node/package-lock.json`: `npm ci --prefix bench/node`.
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
from typing import Any

import anyio
from bench_shared_workspace import _params as body_params  # pyright: ignore[reportPrivateUsage]
from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent
NODE_SERVER = (
    ROOT / "bench" / "node" / "node_modules" / "@modelcontextprotocol" / "server-filesystem" / "dist" / "index.js"
)
TOOLS = ("read_text_file", "write_file", "list_directory")
SERVERS = ("body", "peer", "bare", "ours")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _seed(workspace: Path) -> None:
    (workspace / "d").mkdir(parents=True)
    for n in range(50):
        (workspace / "d" / f"f{n}.txt").write_text(f"line {n}\n" * 20)


def _params(name: str, workspace: Path, home: Path, durability: str) -> StdioServerParameters:
    if name == "peer":
        return StdioServerParameters(command="node", args=[str(NODE_SERVER), str(workspace)], cwd=str(workspace))
    if name in ("bare", "ours"):
        return StdioServerParameters(
            command=sys.executable,
            args=[
                str(ROOT / "bench" / "_unguarded_server.py"),
                str(workspace),
                *(["--ours"] if name == "ours" else []),
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    return body_params(workspace, home, durability)


def _args(server: str, workspace: Path, tool: str, n: int) -> dict[str, Any]:
    # The peer takes paths inside its allowed directory (absolute here) and has no `rationale`; the others take
    # workspace-relative paths, and the body requires a rationale (the unguarded servers ignore it).
    rel = "d" if tool == "list_directory" else f"d/f{n % 50}.txt"
    path = str(workspace / rel) if server == "peer" else rel
    args: dict[str, Any] = {"path": path}
    if tool == "write_file":
        args["content"] = f"line {n}\n" * 20
    if server != "peer":
        args["rationale"] = "bench"
    return args


async def _run(tmp: Path, calls: int, durability: str) -> dict[str, dict[str, list[float]]]:
    workspaces = {name: tmp / name / "ws" for name in SERVERS}
    params: dict[str, StdioServerParameters] = {}
    for name, workspace in workspaces.items():
        _seed(workspace)
        home = tmp / name / "home"
        home.mkdir()
        params[name] = _params(name, workspace, home, durability)
    times: dict[str, dict[str, list[float]]] = {name: {tool: [] for tool in TOOLS} for name in SERVERS}
    async with contextlib.AsyncExitStack() as stack:
        clients = {name: await stack.enter_async_context(Client(p)) for name, p in params.items()}
        for tool in TOOLS:
            for n in range(-30, calls):  # the first 30: warm-up, not kept
                for name, client in clients.items():
                    args = _args(name, workspaces[name], tool, n)
                    start = time.perf_counter()
                    result = await client.call_tool(tool, args)
                    took = time.perf_counter() - start
                    if result.is_error:
                        raise SystemExit(f"{name} {tool} failed: {result.content}")
                    if n >= 0:
                        times[name][tool].append(took)
    return times


def _spread(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


async def main(runs: int, calls: int, durability: str) -> int:
    if not NODE_SERVER.exists():
        print(
            "the peer is not installed: run `npm ci --prefix bench/node` (the reference filesystem server, "
            "@modelcontextprotocol/server-filesystem, from bench/node/package-lock.json)",
            file=sys.stderr,
        )
        return 1
    if shutil.which("node") is None:
        print("node is not on PATH: the peer (the reference filesystem server) runs on Node", file=sys.stderr)
        return 1
    ratios: dict[str, dict[str, list[float]]] = {tool: {} for tool in TOOLS}
    print(f"tool calls over stdio, {calls} calls per tool and server per run, body durability {durability} (ms)")
    for run in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            times = await _run(Path(tmp), calls, durability)
        print(f"\nrun {run + 1}, load average {os.getloadavg()[0]:.1f}")
        for tool in TOOLS:
            med = {name: statistics.median(times[name][tool]) * 1000 for name in SERVERS}
            p99 = {name: _pct(times[name][tool], 0.99) * 1000 for name in SERVERS}
            cells = "   ".join(f"{name} {med[name]:6.3f} (p99 {p99[name]:6.3f})" for name in SERVERS)
            print(f"  {tool:<15} {cells}")
            got = ratios[tool]
            got.setdefault("body/peer", []).append(med["body"] / med["peer"])
            got.setdefault("body/peer p99", []).append(p99["body"] / p99["peer"])
            got.setdefault("body/bare", []).append(med["body"] / med["bare"])
            got.setdefault("body-bare ms", []).append(med["body"] - med["bare"])
            got.setdefault("bare/peer", []).append(med["bare"] / med["peer"])
            got.setdefault("body/ours", []).append(med["body"] / med["ours"])
            got.setdefault("body-ours ms", []).append(med["body"] - med["ours"])
            got.setdefault("ours/peer", []).append(med["ours"] / med["peer"])
            got.setdefault("ours/peer p99", []).append(p99["ours"] / p99["peer"])
            got.setdefault("bare/peer p99", []).append(p99["bare"] / p99["peer"])
    print(f"\nover {runs} runs, min / median / max")
    for tool in TOOLS:
        got = ratios[tool]
        print(f"  {tool}")
        print(f"    body/peer median   {_spread(got['body/peer'], '.2f')}x   (target ≤ 2.0x)")
        print(f"    body/peer p99      {_spread(got['body/peer p99'], '.2f')}x   (target ≤ 1.0x)")
        guard = "≤ +0.5 ms" if tool == "write_file" else "≤ 1.25x" if tool == "read_text_file" else "—"
        added = _spread(got["body-bare ms"], "+.3f")
        print(f"    guard vs the SDK's serving path: body/bare   {_spread(got['body/bare'], '.2f')}x   ", end="")
        print(f"body-bare {added} ms   (target {guard})")
        added = _spread(got["body-ours ms"], "+.3f")
        print(f"    guard alone, on our serving path: body/ours  {_spread(got['body/ours'], '.2f')}x   ", end="")
        print(f"body-ours {added} ms   (target {guard})")
        print(
            f"    floor: bare/peer   {_spread(got['bare/peer'], '.2f')}x   p99 {_spread(got['bare/peer p99'], '.2f')}x"
        )
        print(
            f"    floor: ours/peer   {_spread(got['ours/peer'], '.2f')}x   p99 {_spread(got['ours/peer p99'], '.2f')}x"
        )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--durability", choices=("power_loss", "crash"), default="power_loss")
    parsed = parser.parse_args()
    sys.exit(anyio.run(main, parsed.runs, parsed.calls, parsed.durability))
