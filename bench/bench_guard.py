"""Guard overhead: tool-call latency over real stdio, guard on vs off, in one run.

    uv run python bench/bench_guard.py [--calls 1000]

Starts three servers side by side — the unguarded baseline (bench/_unguarded_server.py), the body
with crash durability and the body with power-loss durability (limits raised in this bench's own
config so it measures the guard, not refusals) — and times `write_file` and `read_text_file`
through the official MCP client, one call to each server in turn, so that the machine's slow
moments fall on all three alike. Prints median and p99 per server, and the guard's added median and
the ratio against the baseline; "paired" is the median of the differences between calls of the
same round (guarded minus baseline), which a slow moment of the machine shifts less.
Targets (issue #2): +0.5 ms median write with crash durability, +1 ms with power-loss.
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


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(clients: dict[str, Client], calls: int) -> dict[str, dict[str, list[float]]]:
    """Round-robin over the servers, one call each in turn: a slow moment of the machine hits them all alike."""
    times: dict[str, dict[str, list[float]]] = {name: {"write_file": [], "read_text_file": []} for name in clients}
    for client in clients.values():
        for n in range(50):  # warm-up
            await client.call_tool(
                "write_file", {"path": f"w/{n % 10}.txt", "content": f"warm {n}", "rationale": "bench"}
            )
    for tool in ("write_file", "read_text_file"):
        for n in range(calls):
            if tool == "write_file":
                args = {"path": f"w/{n % 20}.txt", "content": f"line {n}\n" * 20, "rationale": "bench write"}
            else:
                args = {"path": f"w/{n % 20}.txt", "rationale": "bench read"}
            for name, client in clients.items():
                start = time.perf_counter()
                result = await client.call_tool(tool, args)
                times[name][tool].append(time.perf_counter() - start)
                assert not result.is_error, result.structured_content
    return times


def _body_params(workspace: Path, home: Path, durability: str) -> StdioServerParameters:
    config = home / f"bench-{durability}.toml"
    config.write_text(
        f"[limits]\ncalls_per_minute = 1000000\nfile_mods_per_hour = 1000000\n"
        # (the approval threshold over a session's recent files still runs its check, with a threshold raised)
        f'[policy]\napproval_min_files = 1000000\n[audit]\ndurability = "{durability}"\n'
    )
    env = {**os.environ, "SWARM_HOME": str(home)}
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "swarm_cli", "body", "--workspace", str(workspace), "--config", str(config)],
        env=env,
        cwd=str(ROOT),
    )


async def main(calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        params: dict[str, StdioServerParameters] = {}
        for name in ("guard off (baseline)", "guard on, crash durability", "guard on, power-loss durability"):
            workspace, home = Path(tmp, name.replace(" ", "_"), "ws"), Path(tmp, name.replace(" ", "_"), "home")
            workspace.mkdir(parents=True)
            home.mkdir()
            if name.startswith("guard off"):
                params[name] = StdioServerParameters(
                    command=sys.executable,
                    args=[str(ROOT / "bench" / "_unguarded_server.py"), str(workspace)],
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            else:
                params[name] = _body_params(workspace, home, "crash" if "crash" in name else "power_loss")
        async with contextlib.AsyncExitStack() as stack:
            clients = {name: await stack.enter_async_context(Client(p)) for name, p in params.items()}
            results = await _measure(clients, calls)
        print(f"tool-call latency over stdio, {calls} calls each (ms)")
        base = results["guard off (baseline)"]
        for tool in ("write_file", "read_text_file"):
            base_median = statistics.median(base[tool]) * 1000
            print(f"\n{tool}")
            for name, times in results.items():
                median, p99 = statistics.median(times[tool]) * 1000, _pct(times[tool], 0.99) * 1000
                line = f"  {name:<34} median {median:7.3f}  p99 {p99:7.3f}"
                if name != "guard off (baseline)":
                    line += f"   guard adds {median - base_median:+.3f} ms median  (ratio {median / base_median:.2f}x)"
                    # The same round's calls met the same moment of the machine: their difference is steadier.
                    paired = statistics.median(g - b for g, b in zip(times[tool], base[tool], strict=True)) * 1000
                    line += f"; paired {paired:+.3f}"
                print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    anyio.run(main, parser.parse_args().calls)
