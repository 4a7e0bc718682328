"""The dashboard's cost on the kill switch: the refused-call kill to 32 real bodies, with and without open dashboards.

    uv run python bench/bench_dashboard_kill.py [--runs 3] [--trials 8] [--bodies 32] [--streaming 8] [--dashboards 4]
        [--page-client raw|httpx]

The fleet of bench_kill_fanout.py (its helpers, imported): one real brain (`swarm brain serve`, SQLite, its own
process) and `--bodies` real `swarm body` processes linked to it, each driven by the official MCP client over
stdio; a trial is that bench's: every body calls `write_file` `--pace-ms` apart while `POST /v1/kill` goes out, and
a body's time runs from just before the POST to the reply of its first call refused with `kill_switch_engaged`;
then `POST /v1/resume` and each body writes again. Throughout, `--streaming` of the bodies (8 agents) also write
every `--stream-ms`, so audit events flow to the brain (and to any open dashboard's stream) between trials too.

"Dashboard open": `--dashboards` pages in a separate process (bench/_dashboard_clients.py, started once, so no
interpreter start-up lands in a trial), each logged in with its own approver token (`POST /session`, the cookie),
holding `GET /v1/dashboard/stream` open and polling what the page polls every 5 s. `--page-client raw` (the default)
speaks HTTP/1.1 itself, the cheapest client on the brain's cores (a captain's browser runs on another machine);
`httpx` uses httpx.AsyncClient, on the same cores; the brain gets the same requests either way. Trials alternate
off/on (the order swapped every trial); for an "on" trial the pages are opened, the bench waits for their `ready`
(streams open, first polls answered), and they are closed after the trial. Both sides then wait `--settle-s` before
the kill, so the pages have read the backlog a stream starts with: the figure is a dashboard open, not one opening.

Prints per run p50/p99/max of each side, p99(on)/p99(off) and each trial's slowest body (with 32 bodies a trial's
samples move together, so a run's p99 is close to its worst trial's); then min/median/max over the runs, and the p99
of each side pooled over every trial of every run (the figure least moved by one slow trial). Acceptance (issue #20):
p99 with the dashboard at most 1.10x without.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from anyio.abc import Process
from bench_kill_fanout import Fleet, ToolClient, fleet, run_bench, trial

BENCH = Path(__file__).resolve().parent
ACCEPT = 1.10


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _line(name: str, ms: list[float]) -> str:
    return f"{name}: p50 {statistics.median(ms):6.1f}  p99 {_pct(ms, 0.99):6.1f}  max {max(ms):6.1f} ms ({len(ms)})"


async def _stream(client: ToolClient, n_body: int, every_s: float, calls: list[int]) -> None:
    """An agent writing at its pace; a refusal (the kill) is an audit event like any call, and is ignored."""
    n = 0
    while True:
        await client.call_tool(
            "write_file",
            {"path": f"stream/{n % 4}.txt", "content": f"b{n_body} v{n}", "rationale": "bench: an agent streaming"},
        )
        n += 1
        calls[0] += 1
        await anyio.sleep(every_s)


class _Pages:
    """The dashboard clients' process (bench/_dashboard_clients.py), started once: `open` and `close` its pages."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self._buffer = b""

    async def _line(self) -> str:
        assert self.process.stdout is not None
        with anyio.fail_after(60):
            while b"\n" not in self._buffer:
                try:
                    self._buffer += await self.process.stdout.receive()
                except anyio.EndOfStream:
                    code = await self.process.wait()
                    raise RuntimeError(f"the dashboard clients exited ({code})") from None
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode().strip()

    async def _say(self, command: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(f"{command}\n".encode())

    async def open(self) -> None:
        await self._say("open")
        if (line := await self._line()) != "ready":
            raise RuntimeError(f"the dashboard clients said {line!r}, not ready")

    async def close(self, received: list[int], slowest_poll: list[float], client_cpu: list[float]) -> None:
        await self._say("close")
        words = (await self._line()).split()
        if words[:2] != ["closed", "read"]:
            raise RuntimeError(f"the dashboard clients said {' '.join(words)!r}")
        received[0] += int(words[2])
        slowest_poll[0] = max(slowest_poll[0], float(words[4]))
        client_cpu[0] += float(words[6])


async def _dashboard_process(the_fleet: Fleet, page_client: str) -> Process:
    argv = [
        sys.executable,
        str(BENCH / "_dashboard_clients.py"),
        "--client",
        page_client,
        the_fleet.url,
        *the_fleet.approvers,
    ]
    return await anyio.open_process(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None)


async def main(
    runs: int,
    trials: int,
    bodies: int,
    streaming: int,
    dashboards: int,
    pace_ms: float,
    stream_ms: float,
    settle_s: float,
    page_client: str,
) -> None:
    print(
        f"load average {os.getloadavg()[0]:.1f}; one brain, {bodies} real body processes ({streaming} streaming "
        f"every {stream_ms:g} ms); {dashboards} dashboards in another process (page client: {page_client}); "
        f"calls {pace_ms:g} ms apart",
        flush=True,
    )
    started = time.perf_counter()
    calls, received, slowest_poll, client_cpu = [0], [0], [0.0], [0.0]
    open_s = [0.0]
    p99s: dict[str, list[float]] = {"off": [], "on": []}
    pooled: dict[str, list[float]] = {"off": [], "on": []}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-dash-kill-") as tmp:
        async with (
            fleet(Path(tmp) / "brain", f"{bodies} bodies", bodies, sys.executable, approvers=dashboards) as the_fleet,
            anyio.create_task_group() as agents,
        ):
            for n in range(streaming):
                agents.start_soon(_stream, the_fleet.clients[n], n, stream_ms / 1000, calls)
            pages = _Pages(await _dashboard_process(the_fleet, page_client))
            print(f"fleet up in {time.perf_counter() - started:.0f} s", flush=True)
            for run in range(runs):
                samples: dict[str, list[float]] = {"off": [], "on": []}
                worst: dict[str, list[float]] = {"off": [], "on": []}
                for n in range(trials):
                    for side in ("off", "on") if n % 2 == 0 else ("on", "off"):
                        opened = time.perf_counter()
                        if side == "on":
                            await pages.open()
                        await anyio.sleep(settle_s)
                        ms = [t * 1000 for t in await trial(the_fleet, pace_ms / 1000)]
                        samples[side] += ms
                        worst[side].append(max(ms))
                        if side == "on":
                            await pages.close(received, slowest_poll, client_cpu)
                            open_s[0] += time.perf_counter() - opened
                for side, ms in samples.items():
                    p99s[side].append(_pct(ms, 0.99))
                    pooled[side] += ms
                ratio = _pct(samples["on"], 0.99) / _pct(samples["off"], 0.99)
                ratios.append(ratio)
                print(
                    f"run {run + 1}: {_line('off', samples['off'])}; {_line('on', samples['on'])}; "
                    f"p99(on)/p99(off) {ratio:.2f}",
                    flush=True,
                )
                for side, values in worst.items():
                    print(f"  slowest body per trial, {side}: " + " ".join(f"{v:.0f}" for v in values), flush=True)
            assert pages.process.stdin is not None
            await pages.process.stdin.aclose()
            with anyio.fail_after(30):
                await pages.process.wait()
            agents.cancel_scope.cancel()
    print(
        f"over {runs} runs, min/median/max ({calls[0]:,} streamed calls; {received[0]:,} stream bytes read, "
        f"slowest round of a page's polls {slowest_poll[0]:.0f} ms; the page client's CPU "
        f"{client_cpu[0] / max(open_s[0], 1e-9) / 10:.1f} % of a core while open, {page_client}):"
    )
    for side, values in p99s.items():
        print(f"  p99 {side}: {min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f} ms")
    print(f"  p99(on)/p99(off): {min(ratios):.2f} / {statistics.median(ratios):.2f} / {max(ratios):.2f}")
    pooled_ratio = _pct(pooled["on"], 0.99) / _pct(pooled["off"], 0.99)
    print(
        f"pooled over every trial of every run: {_line('off', pooled['off'])}; {_line('on', pooled['on'])}; "
        f"p99(on)/p99(off) {pooled_ratio:.2f}"
    )
    print(f"acceptance: p99(on)/p99(off) <= {ACCEPT:.2f}; load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8, help="trials per side per run")
    parser.add_argument("--bodies", type=int, default=32)
    parser.add_argument("--streaming", type=int, default=8, help="bodies writing all along (agents streaming)")
    parser.add_argument("--dashboards", type=int, default=4)
    parser.add_argument("--pace-ms", type=float, default=10.0, help="pause between a body's calls in a trial")
    parser.add_argument("--stream-ms", type=float, default=100.0, help="pause between a streaming body's calls")
    parser.add_argument("--settle-s", type=float, default=2.0, help="wait before each kill (pages read events)")
    parser.add_argument(
        "--page-client", choices=("raw", "httpx"), default="raw", help="how the pages speak HTTP (raw: HTTP/1.1)"
    )
    args = parser.parse_args()
    if min(args.runs, args.trials, args.bodies, args.dashboards) < 1 or not 0 <= args.streaming <= args.bodies:
        parser.error("--runs, --trials, --bodies and --dashboards must be at least 1; --streaming 0 to --bodies")
    run_bench(
        main,
        args.runs,
        args.trials,
        args.bodies,
        args.streaming,
        args.dashboards,
        args.pace_ms,
        args.stream_ms,
        args.settle_s,
        args.page_client,
    )
