"""What a guarded `write_file` costs the body process beyond the unguarded SDK server, in measures the machine's
load does not distort: CPU time (all threads, from `/proc`), context switches, and (with `--strace`) syscalls.

    uv run python bench/profile_write_cost.py [--calls 200] [--rounds 3] [--strace] [--against DIR]
        [--tool read_text_file] [--policy "cumulative_window_s = 0"] [--brain] [--pace-ms 0]

One MCP client over stdio against `swarm body` (power-loss durability, the bench's raised limits) and
`bench/_unguarded_server.py`, each on its own workspace under /tmp (a real disk: its syncs are real), the same
writes to both, one call to each in turn. Per round it prints, per write and per server: the process's CPU
(user + system, every thread), its voluntary and involuntary context switches (thread wake-ups), and the median
call and its p99. With `--strace` each server runs under `strace -f -c` and its syscall counts are printed (strace
slows every syscall: use it for counts, not times). `--against DIR` adds a third server, "before": `swarm body` run
from another tree (`git archive main | tar -x -C DIR`), in the same rounds. `--tool read_text_file` reads instead.
`--brain`: the bodies are linked to a real brain (`swarm brain serve`, one process for the round, each body with a
token of its own), so their CPU includes the link's (audit shipping, heartbeats, the event stream), and the brain's
CPU per call is printed too. `--pace-ms`: a pause after each round of calls (an agent's pace; 0: back to back).
`--no-bare` (with `--against`): the two bodies alone, each called every other call (nearer flat out).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import anyio
import httpx
from bench_kill_fanout import _free_port  # pyright: ignore[reportPrivateUsage]
from bench_tool_calls import _params, _seed  # pyright: ignore[reportPrivateUsage]
from mcp import Client
from mcp.client.stdio import StdioServerParameters

SERVERS = ("body", "bare")
"""With `--against DIR`, a third: "before", `swarm body` run from another tree (`git archive` of a commit)."""
_TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _python_under(pid: int, marker: str, *, exclude: set[int]) -> int:
    """The server process (a python whose command line holds `marker`) among `pid`'s descendants."""
    todo = [pid]
    while todo:
        current = todo.pop()
        for child in _children(current):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
                if marker in cmdline and "strace" not in cmdline.split("\0")[0] and child not in exclude:
                    return child
            todo.append(child)
    raise SystemExit(f"no server process with {marker!r} found")


def _usage(pid: int) -> tuple[float, int, int]:
    """CPU seconds (user + system, every thread) and voluntary / involuntary context switches (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICK
    voluntary = involuntary = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    involuntary += int(line.split()[1])
    return cpu, voluntary, involuntary


def _traced(params: StdioServerParameters, out: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command="strace",
        args=["-f", "-c", "-o", str(out), params.command, *params.args],
        env=params.env,
        cwd=params.cwd,
    )


def _args(tool: str, n: int) -> dict[str, str]:
    if tool == "read_text_file":
        return {"path": f"d/f{n % 50}.txt", "rationale": "bench read"}
    return {"path": f"d/f{n % 50}.txt", "content": f"line {n}\n" * 20, "rationale": "bench write"}


@contextlib.asynccontextmanager
async def _brain(tmp: Path, bodies: int) -> AsyncGenerator[tuple[str, list[str], int]]:
    """A real brain process on 127.0.0.1 and `bodies` body tokens: its URL, the tokens, its pid."""
    from datetime import UTC, datetime

    from brain_server import SqliteStateEngine, issue_token

    db, port = tmp / "brain.db", _free_port()
    state = await SqliteStateEngine.open(db)
    tokens = [await issue_token(state, role="body", label=f"body {n}", at=datetime.now(UTC)) for n in range(bodies)]
    await state.close()
    url = f"http://127.0.0.1:{port}"
    with (tmp / "brain.log").open("wb") as log:
        brain = subprocess.Popen(
            [sys.executable, "-m", "swarm_cli", "brain", "serve", "--db", str(db), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
        try:
            async with httpx.AsyncClient(base_url=url) as http:
                with anyio.fail_after(120):
                    while True:
                        with contextlib.suppress(httpx.TransportError):
                            if (await http.get("/v1/status")).status_code < 500:
                                break
                        await anyio.sleep(0.2)
            yield url, tokens, brain.pid
        finally:
            brain.terminate()
            brain.wait(timeout=30)


async def _round(
    tmp: Path,
    calls: int,
    strace: bool,
    extra: str,
    against: Path | None,
    tool: str,
    brain: tuple[str, list[str], int] | None,
    pace_s: float,
    no_bare: bool,
) -> None:
    params: dict[str, StdioServerParameters] = {}
    servers = (*SERVERS, "before") if against is not None else SERVERS
    if no_bare:
        servers = tuple(name for name in servers if name != "bare")
    for name in servers:
        workspace, home = tmp / name / "ws", tmp / name / "home"
        _seed(workspace)
        home.mkdir()
        p = _params("body" if name == "before" else name, workspace, home, "power_loss")
        if name == "before":
            assert against is not None
            p = StdioServerParameters(
                command=p.command, args=p.args, env={**(p.env or {}), "PYTHONPATH": str(against)}, cwd=str(against)
            )
        if name in ("body", "before") and extra:
            config = home / "bench.toml"
            config.write_text(config.read_text().replace("[policy]\n", "[policy]\n" + extra + "\n"))
        if name in ("body", "before") and brain is not None:
            url, tokens, _ = brain
            token = tokens[0 if name == "body" else 1]
            p = StdioServerParameters(
                command=p.command,
                args=p.args,
                env={**(p.env or {}), "SWARM_BRAIN_URL": url, "SWARM_TOKEN": token},
                cwd=p.cwd,
            )
        params[name] = _traced(p, tmp / f"{name}.strace") if strace else p
    markers = {"body": "swarm_cli", "bare": "_unguarded_server.py", "before": "swarm_cli"}
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, Client] = {}
        pids: dict[str, int] = {}
        for name, p in params.items():  # (one at a time: two `swarm body` processes told apart by their start)
            clients[name] = await stack.enter_async_context(Client(p))
            known = {*pids.values(), *([brain[2]] if brain is not None else [])}  # (the brain runs `swarm_cli` too)
            pids[name] = _python_under(os.getpid(), markers[name], exclude=known)
        if brain is not None:  # (a linked body refuses writes, `brain_unreachable`, until its link is up)
            with anyio.fail_after(60):
                for client in clients.values():
                    while (await client.call_tool(tool, _args(tool, 0))).is_error:
                        await anyio.sleep(0.1)
        for n in range(-30, 0):  # warm-up
            for client in clients.values():
                await client.call_tool(tool, _args(tool, n))
        await anyio.sleep(0.2)  # (the body's deferred settle of the warm-up's last write)
        before = {name: _usage(pid) for name, pid in pids.items()}
        brain_before = _usage(brain[2])[0] if brain is not None else 0.0
        times: dict[str, list[float]] = {name: [] for name in servers}
        for n in range(calls):
            for name, client in clients.items():
                start = time.perf_counter()
                result = await client.call_tool(tool, _args(tool, n))
                times[name].append(time.perf_counter() - start)
                if result.is_error:
                    raise SystemExit(f"{name} failed: {result.content}")
            if pace_s:
                await anyio.sleep(pace_s)
        await anyio.sleep(0.6)  # (the deferred settle, and with a brain the last shipping round: counted)
        after = {name: _usage(pid) for name, pid in pids.items()}
        brain_after = _usage(brain[2])[0] if brain is not None else 0.0
    for name in servers:
        cpu = (after[name][0] - before[name][0]) / calls * 1000
        vol = (after[name][1] - before[name][1]) / calls
        invol = (after[name][2] - before[name][2]) / calls
        median = statistics.median(times[name]) * 1000
        switches = f"{vol:.1f} vol + {invol:.1f} invol"
        p99 = sorted(times[name])[int(0.99 * len(times[name]))] * 1000
        print(f"  {name}: CPU {cpu:.2f} ms/call, context switches {switches}, median {median:.2f} ms, p99 {p99:.2f} ms")
    if brain is not None:
        linked = sum(1 for name in servers if name != "bare")
        print(f"  brain: CPU {(brain_after - brain_before) / (calls * linked) * 1000:.2f} ms per linked body's call")
    if strace:
        for name in servers:
            print(f"  {name} syscalls (whole run, {calls + 30} calls + start-up):")
            lines = (tmp / f"{name}.strace").read_text().splitlines()
            rows = [line for line in lines[2:] if line.strip() and not line.startswith("-")]
            for line in rows[:25]:
                print("    " + line)


async def main(
    calls: int,
    rounds: int,
    strace: bool,
    extra: str,
    against: Path | None,
    tool: str,
    linked: bool,
    pace_ms: float,
    no_bare: bool,
) -> None:
    print(f"load average {os.getloadavg()[0]:.2f}")
    for r in range(rounds):
        print(f"round {r + 1}:")
        with tempfile.TemporaryDirectory(prefix="swarm-write-cost-") as tmp:
            async with contextlib.AsyncExitStack() as stack:
                brain = await stack.enter_async_context(_brain(Path(tmp), 2)) if linked else None
                await _round(Path(tmp), calls, strace, extra, against, tool, brain, pace_ms / 1000, no_bare)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--strace", action="store_true")
    parser.add_argument("--tool", choices=("write_file", "read_text_file"), default="write_file")
    parser.add_argument("--against", type=Path, help="another tree (`git archive`), its body measured as 'before'")
    parser.add_argument("--policy", default="", help="a line for the body's [policy] table: cumulative_window_s = 0")
    parser.add_argument("--brain", action="store_true", help="the bodies linked to a real brain (its CPU printed)")
    parser.add_argument("--pace-ms", type=float, default=0.0, help="a pause after each round of calls")
    parser.add_argument("--no-bare", action="store_true", help="without the unguarded server (the bodies alone)")
    opts = parser.parse_args()
    if opts.no_bare and opts.against is None:
        parser.error("--no-bare leaves only the body: give --against DIR to compare it with another tree")
    with contextlib.suppress(subprocess.SubprocessError):
        anyio.run(
            main,
            opts.calls,
            opts.rounds,
            opts.strace,
            opts.policy,
            opts.against,
            opts.tool,
            opts.brain,
            opts.pace_ms,
            opts.no_bare,
        )
    sys.exit(0)
