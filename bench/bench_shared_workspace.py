"""8 agents on one workspace against one agent alone: total tool calls per second, alternating, in one run.

    uv run python bench/bench_shared_workspace.py [--runs 3] [--seconds 4] [--bodies 8] [--durability power_loss]

Each side is real `swarm body` processes on one workspace and one `$SWARM_HOME` (so one audit
chain, one anchor flock, one journal: what several IDE bodies on a workspace share), each driven
by its own MCP client over stdio calling flat out for `--seconds`: a mix of `write_file` (each
body its own file) and `read_text_file`, 1 write in 2. One agent alone, then `--bodies` at once,
alternately, `--runs` times, so that the machine's load falls on both alike. Prints each side's
calls/s and the ratio (8 bodies' total over one's), then min/median/max of the ratio.
Target (issue #22): ≥ 1.0x — no agent waits on another's reply.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent


def _params(workspace: Path, home: Path, durability: str) -> StdioServerParameters:
    config = home / "bench.toml"
    config.write_text(
        "[limits]\ncalls_per_minute = 1000000\nfile_mods_per_hour = 1000000\n"
        f'[policy]\napproval_min_files = 1000000\n[audit]\ndurability = "{durability}"\n'
    )
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "swarm_cli", "body", "--workspace", str(workspace), "--config", str(config)],
        env={**os.environ, "SWARM_HOME": str(home)},
        cwd=str(ROOT),
    )


async def _side(clients: list[Client], seconds: float) -> float:
    """Total calls per second of `clients` calling flat out, together, for `seconds`."""
    counts = [0] * len(clients)

    async def drive(i: int, client: Client, until: float) -> None:
        n = 0
        while time.perf_counter() < until:
            if n % 2:
                args = {"path": f"f{i}.txt", "rationale": "bench"}
                result = await client.call_tool("read_text_file", args)
            else:
                args = {"path": f"f{i}.txt", "content": f"{n}\n" * 20, "rationale": "bench"}
                result = await client.call_tool("write_file", args)
            if result.is_error:
                raise SystemExit(f"body {i} failed: {result.structured_content}")
            n += 1
        counts[i] = n

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i, client in enumerate(clients):
            tg.start_soon(drive, i, client, start + seconds)
    return sum(counts) / (time.perf_counter() - start)


async def main(runs: int, seconds: float, bodies: int, durability: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workspace, home = Path(tmp, "ws"), Path(tmp, "home")
        workspace.mkdir()
        home.mkdir()
        params = _params(workspace, home, durability)
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(Client(params)) for _ in range(bodies)]
            for i, client in enumerate(clients):  # each body's file, and the warm-up
                for n in range(10):
                    await client.call_tool("write_file", {"path": f"f{i}.txt", "content": f"{n}", "rationale": "w"})
            ratios: list[float] = []
            print(f"{bodies} bodies on one workspace vs 1, {seconds:g} s a side, durability {durability}")
            for run in range(runs):
                one = await _side(clients[:1], seconds)
                many = await _side(clients, seconds)
                ratios.append(many / one)
                load = os.getloadavg()[0]
                print(
                    f"  run {run + 1}: 1 body {one:7.1f} calls/s   {bodies} bodies {many:7.1f} calls/s   "
                    f"ratio {many / one:.2f}x   (load average {load:.1f})"
                )
            spread = " / ".join(f"{v:.2f}" for v in (min(ratios), statistics.median(ratios), max(ratios)))
            print(f"ratio {bodies} bodies / 1 body, min / median / max over {runs} runs: {spread}x  (target ≥ 1.0x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--bodies", type=int, default=8)
    parser.add_argument("--durability", choices=("power_loss", "crash"), default="power_loss")
    parsed = parser.parse_args()
    anyio.run(main, parsed.runs, parsed.seconds, parsed.bodies, parsed.durability)
