"""run_command(["true"]) phase by phase in a real in-process body, this checkout against another, alternating.

    uv run python bench/profile_run_command_phases.py --before DIR [--calls 30] [--files 100]

DIR is a checkout of the code to compare with (e.g. `git archive main | tar -x -C DIR`); both run with this
checkout's interpreter, each in a process of its own holding a body and the MCP SDK's in-memory client, each
on a workspace of its own. Each round, one call in each (the order swapped every round), so the machine's
slow moments fall on both alike. Phases are timed with `time.perf_counter_ns` by wrapping the functions the
two versions share (nothing of the code under test is changed): the scan (`WorkspaceScanner.current`), the
sandbox's planning (`_plan`), the set-up (from the plan to the launcher started: staging, cgroup, options and,
before, the server's fork), the launcher's set-up to bwrap's exec (`receive_areas`), the command until its
end is reported, what follows it in the sandbox (the cgroup's removal, bwrap's status, the staged changes),
and the rest of the call (the guards, building the spec, sorting, the audit event, the reply). The body's CPU
per call is the process's (all threads, the in-memory client included). Prints the median of each over the
calls, and how many runs a launcher made ahead served.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PHASES = ("total", "scan", "plan", "set_up", "to_exec", "command", "after", "rest", "cpu")


def _worker(workspace: Path, home: Path) -> None:
    """One body; a call per line on stdin, its phases (ms) as a JSON line on stdout."""
    import anyio
    from mcp import Client

    import sandbox._bwrap_backend as backend_module
    from body_mcp import Body, BodySettings, build_server
    from body_mcp.scan import WorkspaceScanner
    from shared_protocol.config import parse_config

    marks: dict[str, int] = {}

    def timed(owner: Any, name: str, start: str, end: str) -> None:
        original = getattr(owner, name)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            marks[start] = time.perf_counter_ns()
            try:
                return await original(*args, **kwargs)
            finally:
                marks[end] = time.perf_counter_ns()

        setattr(owner, name, wrapper)

    def timed_sync(owner: Any, name: str, start: str, end: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            marks[start] = time.perf_counter_ns()
            try:
                return original(*args, **kwargs)
            finally:
                marks[end] = time.perf_counter_ns()

        setattr(owner, name, wrapper)

    served = {"ahead": 0}
    if hasattr(backend_module.BwrapBackend, "_set_up_standby"):
        original_standby = backend_module.BwrapBackend._set_up_standby  # pyright: ignore[reportPrivateUsage]

        def counting(*args: Any, **kwargs: Any) -> Any:
            served["ahead"] += 1
            return original_standby(*args, **kwargs)

        backend_module.BwrapBackend._set_up_standby = counting  # type: ignore[method-assign]
    if hasattr(backend_module.BwrapBackend, "_release_ready"):
        original_ready = backend_module.BwrapBackend._release_ready  # pyright: ignore[reportPrivateUsage]

        def counting_ready(*args: Any, **kwargs: Any) -> Any:
            served["ahead"] += 1
            served["prepared"] = served.get("prepared", 0) + 1
            return original_ready(*args, **kwargs)

        backend_module.BwrapBackend._release_ready = counting_ready  # type: ignore[method-assign]

    timed(WorkspaceScanner, "current", "scan0", "scan1")
    timed(backend_module.BwrapBackend, "run", "run0", "run1")
    timed_sync(backend_module.BwrapBackend, "_plan", "plan0", "plan1")
    timed(backend_module, "run_contained", "rc0", "rc1")
    timed(backend_module, "receive_areas", "ra0", "ra1")

    config = parse_config(
        {
            "limits": {"calls_per_minute": 1_000_000, "file_mods_per_hour": 1_000_000},
            "policy": {"approval_min_files": 1_000_000},
        }
    )
    body = Body(BodySettings(workspace=workspace, home=home, config=config))

    async def main() -> None:
        async with Client(build_server(body)) as client:
            sys.stderr.write(f"worker: sandbox from {backend_module.__file__}\n")
            print("ready", flush=True)
            for line in sys.stdin:
                if line.strip() != "call":
                    break
                marks.clear()
                cpu0 = time.process_time_ns()
                t0 = time.perf_counter_ns()
                result = await client.call_tool("run_command", {"argv": ["true"], "rationale": "bench"})
                t1 = time.perf_counter_ns()
                cpu1 = time.process_time_ns()
                data: dict[str, Any] = result.structured_content or {}
                if result.is_error or data.get("exit_code") != 0:
                    raise SystemExit(f"run_command failed: {data}")
                ms = 1e-6
                phases = {
                    "total": (t1 - t0) * ms,
                    "scan": (marks["scan1"] - marks["scan0"]) * ms,
                    "plan": (marks["plan1"] - marks["plan0"]) * ms,
                    "set_up": (marks["rc0"] - marks["plan1"]) * ms,
                    # (a run prepared ahead into bwrap has no hand-over to wait for: its command starts at once)
                    "to_exec": (marks.get("ra1", marks["rc0"]) - marks["rc0"]) * ms,
                    "command": (marks["rc1"] - marks.get("ra1", marks["rc0"])) * ms,
                    "after": (marks["run1"] - marks["rc1"]) * ms,
                    "cpu": (cpu1 - cpu0) * ms,
                }
                phases["rest"] = phases["total"] - (marks["run1"] - marks["run0"]) * ms - phases["scan"]
                print(
                    json.dumps({**phases, "ahead": served["ahead"], "prepared": served.get("prepared", 0)}), flush=True
                )

    try:
        anyio.run(main)
    finally:
        body.close()


def _workspace(root: Path, files: int) -> Path:
    ws = root / "ws"
    for n in range(files):
        d = ws / f"pkg{n // 100}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{n}.py").write_text(f"X = {n}\n")
    (ws / ".gitignore").write_text("__pycache__/\n")
    (ws / ".env").write_text("TOKEN=bench\n")
    return ws


def _start(checkout: Path, root: Path, files: int) -> subprocess.Popen[str]:
    root.mkdir()
    ws, home = _workspace(root, files), root / "home"
    home.mkdir()
    env = {**os.environ, "PYTHONPATH": str(checkout), "SWARM_HOME": str(home)}
    process = subprocess.Popen(
        [sys.executable, __file__, "--worker", str(ws), str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=checkout,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise SystemExit(f"the body from {checkout} did not start")
    return process


def _call(process: subprocess.Popen[str]) -> dict[str, float]:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("call\n")
    process.stdin.flush()
    line = process.stdout.readline()
    if not line:
        raise SystemExit("a body ended")
    return json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=2, metavar=("WORKSPACE", "HOME"))
    parser.add_argument("--before", type=Path)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if args.worker:
        _worker(Path(args.worker[0]), Path(args.worker[1]))
        return
    if args.before is None:
        parser.error("--before DIR is needed")
    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="swarm-phases-") as tmp:
        bodies = {
            "before": _start(args.before.resolve(), Path(tmp) / "before", args.files),
            "after": _start(here, Path(tmp) / "after", args.files),
        }
        results: dict[str, list[dict[str, float]]] = {name: [] for name in bodies}
        try:
            for n in range(args.warmup + args.calls):
                order = list(bodies) if n % 2 == 0 else list(reversed(bodies))
                for name in order:
                    got = _call(bodies[name])
                    if n >= args.warmup:
                        results[name].append(got)
        finally:
            for process in bodies.values():
                assert process.stdin is not None
                process.stdin.close()
                process.wait(timeout=30)
    load = os.getloadavg()
    print(f"{args.calls} calls each, alternating, {args.files} files, load average {load[0]:.1f} {load[1]:.1f}")
    print(f"{'phase (ms, median)':<20}{'before':>10}{'after':>10}{'diff':>10}")
    for phase in PHASES:
        before = statistics.median(r[phase] for r in results["before"])
        after = statistics.median(r[phase] for r in results["after"])
        print(f"{phase:<20}{before:>10.2f}{after:>10.2f}{after - before:>+10.2f}")
    for name, rows in results.items():
        q1 = statistics.quantiles([r["total"] for r in rows], n=4)[0]
        served = rows[-1]["ahead"] - rows[0]["ahead"] + (1 if rows[0]["ahead"] else 0)
        prepared = rows[-1].get("prepared", 0) - rows[0].get("prepared", 0) + (1 if rows[0].get("prepared") else 0)
        print(
            f"{name}: total first quartile {q1:.2f} ms; runs served by a launcher made ahead: {served}/{len(rows)}"
            f" (by a run prepared into bwrap: {prepared})"
        )


if __name__ == "__main__":
    main()
