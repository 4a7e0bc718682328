"""`swarm body` start-up: spawn -> `initialize` answered -> first `tools/list` answered, vs `python -c pass`.

    uv run python bench/bench_body_start.py [--runs 10] [--against DIR]

What an IDE (and every end-to-end test and agent task) waits for before its first tool call. Each run starts, in
turn, the bare interpreter (the floor), this tree's body and, with `--against DIR`, the body of another source
tree (for example a worktree of main) run by this same interpreter with DIR first on `sys.path`; so the machine's
slow moments fall on all alike. Bytecode is compiled first (site-packages and the trees), as an install has
it. Each body gets a fresh SWARM_HOME and workspace under /dev/shm (or the temp dir).
The client writes JSON-RPC lines by hand (no SDK in the timing), reads each answer and checks it.

Prints min/median/max in milliseconds of: the bare interpreter's run, spawn -> initialize answered, spawn ->
tools/list answered.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent_runner", "body_mcp", "brain_server", "sandbox", "shared_protocol", "swarm_cli")
PROTOCOL_VERSION = "2025-11-25"
_START = "import sys; sys.path.insert(0, sys.argv.pop(1)); from swarm_cli.entry import main; sys.exit(main())"


def _send(stdin: IO[bytes], message: dict[str, Any]) -> None:
    stdin.write(json.dumps(message).encode() + b"\n")
    stdin.flush()


def _answer(stdout: IO[bytes], want_id: int) -> dict[str, Any]:
    while True:
        line = stdout.readline()
        if not line:
            raise SystemExit(f"the body closed its stdout before answering request {want_id}")
        message = json.loads(line)
        if message.get("id") == want_id:
            if "error" in message:
                raise SystemExit(f"request {want_id} answered with an error: {message['error']}")
            return message["result"]


def _body_times(tree: Path, scratch: Path) -> tuple[float, float]:
    home = Path(tempfile.mkdtemp(prefix="home-", dir=scratch))
    workspace = Path(tempfile.mkdtemp(prefix="ws-", dir=scratch))
    env = {**os.environ, "SWARM_HOME": str(home)}
    argv = [sys.executable, "-c", _START, str(tree), "body", "--workspace", str(workspace)]
    try:
        start = time.perf_counter()
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=workspace
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            _send(
                process.stdin,
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": PROTOCOL_VERSION,
                        "capabilities": {},
                        "clientInfo": {"name": "swarm-bench-start", "version": "0"},
                    },
                },
            )
            _answer(process.stdout, 1)
            initialized = time.perf_counter() - start
            _send(process.stdin, {"jsonrpc": "2.0", "method": "notifications/initialized"})
            _send(process.stdin, {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})
            tools = _answer(process.stdout, 2)["tools"]
            listed = time.perf_counter() - start
            if not tools:
                raise SystemExit("tools/list answered no tools")
        finally:
            process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return initialized, listed
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(workspace, ignore_errors=True)


def _compile(trees: Iterable[Path]) -> None:
    """Bytecode for every module a body may import, as an installed package has it: with `PYTHONDONTWRITEBYTECODE`
    set (as in some shells here) nothing is cached, and each start compiles ~530 modules from source (over a
    second here), which is not what a user's body pays."""
    for directory in site.getsitepackages():
        compileall.compile_dir(directory, quiet=1, workers=2)
    for tree in trees:
        for package in PACKAGES:
            if (tree / package).is_dir():
                compileall.compile_dir(tree / package, quiet=1)


def _bare() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def _line(label: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return f"  {label:<34} min {min(ms):7.1f}  median {statistics.median(ms):7.1f}  max {max(ms):7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description="swarm body start-up vs python -c pass")
    parser.add_argument("--runs", type=int, default=10, help="runs of each (at least 3)")
    parser.add_argument("--against", type=Path, help="another source tree to time alternately (e.g. main's)")
    args = parser.parse_args()
    if args.runs < 3:
        parser.error("--runs must be at least 3")
    trees: dict[str, Path] = {"this tree": ROOT}
    if args.against is not None:
        against = args.against.resolve()
        if not (against / "swarm_cli" / "entry.py").is_file():
            parser.error(f"--against {against}: no swarm_cli/entry.py there")
        trees[f"against {against.name}"] = against
    scratch_root = "/dev/shm" if Path("/dev/shm").is_dir() else None
    scratch = Path(tempfile.mkdtemp(prefix="bench-body-start-", dir=scratch_root))
    bare: list[float] = []
    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in trees}
    try:
        _compile(trees.values())
        for tree in trees.values():  # a warm-up each (page cache filled): not counted
            _body_times(tree, scratch)
        for _ in range(args.runs):
            bare.append(_bare())
            for name, tree in trees.items():
                initialized, listed = _body_times(tree, scratch)
                results[name][0].append(initialized)
                results[name][1].append(listed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.runs} runs, alternating; {sys.executable}")
    print(_line("python -c pass", bare))
    for name, (initialized, listed) in results.items():
        print(f"{name}:")
        print(_line("spawn -> initialize answered", initialized))
        print(_line("spawn -> tools/list answered", listed))
    # Each run's ratio, its two sides measured one right after the other (the machine's speed drifts within minutes).
    names = list(results)
    print("ratios, run by run (spawn -> tools/list answered):")
    print(_ratios(f"{names[0]} / python -c pass", results[names[0]][1], bare))
    if len(names) > 1:
        print(_ratios(f"{names[0]} / {names[1]}", results[names[0]][1], results[names[1]][1]))
    return 0


def _ratios(label: str, subject: list[float], baseline: list[float]) -> str:
    ratios = [a / b for a, b in zip(subject, baseline, strict=True)]
    return f"  {label:<34} min {min(ratios):7.2f}x median {statistics.median(ratios):6.2f}x max {max(ratios):6.2f}x"


if __name__ == "__main__":
    sys.exit(main())
