"""IDE hook latency: `swarm hook claude-code` as the IDE runs it (a new process per tool call), vs `python -c pass`.

    uv run python bench/bench_hook.py [--runs 3] [--rounds 20]

The command is the one `swarm init --ide` writes: the installed `swarm` console script beside this interpreter
(`python -m swarm_cli` only when there is none; `-m` costs the `runpy` machinery on top, ~8 ms here). Its
modules' bytecode is compiled first, as `pip install` does: with `PYTHONDONTWRITEBYTECODE` set (as in some
shells here) an editable checkout would otherwise compile the hook's client from source on every call.

Each round runs, in turn, the bare interpreter (`python -c pass`, the floor of any Python hook), then the
hook through the warm hook server (the default), then the hook with `SWARM_HOOK_SERVER=0` (the whole CLI
imported in the hook's process, as before the server), for three events: a body tool (allowed, not
audited), a built-in `Read` inside the workspace (allowed, audited) and a built-in `Write` (denied,
audited). The machine's slow moments thus fall on all alike. Every answer is checked.

Prints, per run, the medians, and over the runs min/median/max of the ratio of the medians (hook / bare
interpreter). Target (issue #22): < 50 ms median per hook call.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _event(workspace: Path, tool: str, tool_input: dict[str, object]) -> bytes:
    return json.dumps(
        {
            "session_id": "ses-bench",
            "cwd": str(workspace),
            "hook_event_name": "PreToolUse",
            "tool_name": tool,
            "tool_input": tool_input,
        }
    ).encode()


def _time(argv: list[str], stdin: bytes, env: dict[str, str], expect: str | None) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    if expect is not None:
        verdict = json.loads(done.stdout)["hookSpecificOutput"]["permissionDecision"]
        if verdict != expect:
            raise SystemExit(f"expected {expect}, got {done.stdout!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-hook-") as tmp:
        workspace = Path(tmp, "ws")
        workspace.mkdir()
        (workspace / "a.py").write_text("print('a')\n")
        home = Path(tmp, "home")
        env = {**os.environ, "SWARM_HOME": str(home)}
        env.pop("SWARM_CONFIG", None)
        cold_env = {**env, "SWARM_HOOK_SERVER": "0"}
        script = Path(sys.executable).with_name("swarm")
        launcher = [str(script)] if script.is_file() else [sys.executable, "-m", "swarm_cli"]
        swarm = [*launcher, "hook", "claude-code", "--workspace", str(workspace)]
        for package in ("swarm_cli", "body_mcp", "shared_protocol", "sandbox", "brain_server", "agent_runner"):
            compileall.compile_dir(ROOT / package, quiet=1)
        bare = [sys.executable, "-c", "pass"]
        events = {
            "body tool": (_event(workspace, "mcp__swarm__read_text_file", {"path": "a.py"}), "allow"),
            "Read (audited)": (_event(workspace, "Read", {"file_path": str(workspace / "a.py")}), "allow"),
            "Write (denied, audited)": (_event(workspace, "Write", {"file_path": "b.py", "content": "x"}), "deny"),
        }
        # The first call finds no server and starts one; wait until it answers.
        _time(swarm, events["body tool"][0], env, "allow")
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run(
                swarm, input=events["body tool"][0], capture_output=True, env={**env, "SWARM_HOOK_SERVER": "only"}
            )
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the hook server did not start: {probe.stderr.decode()}")
            time.sleep(0.2)

        ratios: dict[str, list[float]] = {name: [] for name in events}
        cold_ratios: list[float] = []
        load = os.getloadavg()[0]
        print(
            f"{shlex.join(launcher)} hook claude-code; {args.runs} runs x {args.rounds} rounds; load average {load:.1f}"
        )
        for run in range(args.runs):
            base: list[float] = []
            warm: dict[str, list[float]] = {name: [] for name in events}
            cold: list[float] = []
            for n in range(args.rounds):
                base.append(_time(bare, b"", env, None))
                for name, (stdin, expect) in events.items():
                    warm[name].append(_time(swarm, stdin, env, expect))
                if n % 4 == 0:  # the old path is slow: a quarter of the rounds
                    cold.append(_time(swarm, events["Read (audited)"][0], cold_env, "allow"))
            floor = statistics.median(base)
            line = [f"run {run + 1}: python -c pass {floor * 1000:.1f} ms"]
            for name, times in warm.items():
                med = statistics.median(times)
                ratios[name].append(med / floor)
                line.append(f"{name} {med * 1000:.1f} ms ({med / floor:.2f}x)")
            cold_med = statistics.median(cold)
            cold_ratios.append(cold_med / floor)
            line.append(f"in-process Read {cold_med * 1000:.0f} ms ({cold_med / floor:.1f}x)")
            print("; ".join(line), flush=True)
        print("ratio of medians to `python -c pass`, min/median/max over runs:")
        for name, values in [*ratios.items(), ("in-process Read (SWARM_HOOK_SERVER=0)", cold_ratios)]:
            print(f"  {name:40s} {min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
