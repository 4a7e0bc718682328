"""run_command overhead: `true` through the guarded body vs a plain tool call vs a bare subprocess.

    uv run python bench/bench_run_command.py [--runs 60]

All in one run, on this machine's sandbox backend (bubblewrap + overlay). Then the same
`run_command(["true"])` on workspaces of 100 and 10,000 files, to show how staging cost
grows with workspace size. Target (issue #3): at most 30 ms median overhead, flat in
workspace size.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import anyio

from body_mcp import Body, BodySettings
from shared_protocol.config import parse_config


def _workspace(root: Path, files: int) -> Path:
    ws = root / f"ws{files}"
    for n in range(files):
        d = ws / f"pkg{n // 100}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{n}.py").write_text(f"X = {n}\n")
    (ws / ".gitignore").write_text("__pycache__/\n")
    return ws


def _body(ws: Path, home: Path) -> Body:
    config = parse_config({"limits": {"calls_per_minute": 1_000_000, "file_mods_per_hour": 1_000_000}})
    return Body(BodySettings(workspace=ws.resolve(), home=home, config=config))


async def _median_ms(body: Body, tool: str, args: dict[str, object], runs: int) -> float:
    times: list[float] = []
    for _ in range(runs + 3):
        start = time.perf_counter()
        outcome = await body.call_tool(tool, {**args, "rationale": "bench"})
        times.append(time.perf_counter() - start)
        assert not outcome.is_error, outcome.structured
    return statistics.median(times[3:]) * 1000


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bare: list[float] = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(["true"], check=True)
            bare.append(time.perf_counter() - start)
        bare_ms = statistics.median(bare) * 1000
        results: dict[int, tuple[float, float]] = {}
        for files in (100, 10_000):
            ws = _workspace(root, files)
            home = root / f"home{files}"
            home.mkdir()
            body = _body(ws, home)
            try:
                plain = await _median_ms(body, "read_text_file", {"path": ".gitignore"}, runs)
                command = await _median_ms(body, "run_command", {"argv": ["true"]}, runs)
                results[files] = (plain, command)
            finally:
                body.close()
        print(f"median over {runs} runs (ms), sandbox backend: bubblewrap + overlay")
        print(f"  bare subprocess `true`                         {bare_ms:7.2f}")
        for files, (plain, command) in results.items():
            print(
                f"  workspace of {files:>6} files: plain tool call {plain:6.2f}   run_command(['true']) {command:7.2f}"
                f"   overhead vs bare {command - bare_ms:6.2f}  (ratio {command / bare_ms:.1f}x)"
            )
        small, large = results[100][1], results[10_000][1]
        print(f"  10,000 vs 100 files: {large - small:+.2f} ms ({large / small:.2f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    anyio.run(main, parser.parse_args().runs)
