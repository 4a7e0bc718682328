"""What open dashboards' live streams cost the brain while bodies' audit events arrive: CPU seconds of the brain's
process with pages open minus closed, per second of the bodies' events; this tree against others, in one run.

    uv run python bench/profile_dashboard_stream.py [--against DIR ...] [--rounds 5] [--seconds 6] [--bodies 32]
        [--rate 30] [--ship-ms 100] [--pages 4]

One brain process per tree (this one, and each `--against DIR`: another version's source, e.g. `git archive main |
tar -x -C DIR`, imported with `PYTHONPATH=DIR`): the brain's own server (`serve_brain`: uvicorn, the dashboard
routes, its audit feed running) on a memory state engine, with, in the same process, `--bodies` bodies' audit events
handed to `brain.audit_feed.publish` as `Brain.ingest_audit` hands it each stored batch: every body writes `--rate`
events a second (a `write_file` the kill switch refused, as the kill benches' bodies write them: ~1 KB) and its batch
arrives every `--ship-ms`. The events are built before any phase, so a phase's CPU is the brain's stream work and
the timers that deliver the batches, nothing of ingesting them (the same with pages open or not). `--pages` streams
of `GET /v1/dashboard/stream` (an approver's token) are held open and read by this process, never the brain's.

A phase is `--seconds` of events (then 1.5 s for the last flush) on one brain, its pages open or closed; every round
runs each brain's two phases, in an order rotated each round, so the machine's slow moments (it is shared) fall on
all alike. The brain measures itself: CPU of the whole process and of its event loop's thread (`time.process_time`,
`time.thread_time`: CPU time, not wall time). Prints each phase, then per tree the median over rounds of what the
open pages cost (the phase with pages minus the one without, in the same round): CPU ms per second of events, and
the bytes each page was sent per second and the CPU this process spent reading them (what the pages' process of
bench_dashboard_kill.py spends; a browser parses each event too).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
from _rounds import alternating_rounds
from anyio.abc import Process

import brain_server  # (in a brain's process, the tree its PYTHONPATH names: `serve` says which)
from brain_server import Brain, BrainSettings, issue_token
from brain_server.daemon import serve_brain
from brain_server.state import open_engine
from shared_protocol import AuditEvent

TAIL_S = 1.5
"""After a phase's events: the last flush to the pages (the feed's flush is at most 1 s late)."""


# -- the brain's side (`--serve`, in its own process) ------------------------------------------------------------


def _events(body: int, count: int) -> list[AuditEvent]:
    body_id = f"body-{body:02d}"
    prev = f"genesis-{body_id}"
    events: list[AuditEvent] = []
    for seq in range(1, count + 1):
        mac = hashlib.sha256(f"{body_id}|{seq}".encode()).hexdigest()
        events.append(
            AuditEvent(
                seq=seq,
                id=f"act_{body_id}_{seq:012d}",
                ts=datetime.now(UTC).isoformat(timespec="microseconds"),
                kind="tool_call",
                body_id=body_id,
                agent="claude",
                session="ses_0123456789abcdef",
                tool="write_file",
                arguments={
                    "path": f"bench/{seq % 4}.txt",
                    "content": {"sha256": hashlib.sha256(str(seq).encode()).hexdigest(), "size": 10},
                    "rationale": "bench: an agent streaming",
                },
                rationale="bench: an agent streaming",
                outcome="refused",
                code="kill_switch_engaged",
                rule="kill_switch",
                message="the kill switch is engaged (by captain at 2030-01-01T00:00:00+00:00: bench); nothing runs "
                "until it is released",
                duration_ms=1.234,
                prev_mac=prev,
                mac=mac,
                attest=hashlib.sha256(mac.encode()).hexdigest(),
            )
        )
        prev = mac
    return events


async def serve(bodies: int, rate: float, ship_s: float, seconds: float) -> None:
    """A brain in this process; on each `phase` line of stdin, a phase of events, then `done PROCESS_S THREAD_S N`."""
    per_body = int(rate * seconds) + 1
    pool = [_events(n, per_body) for n in range(bodies)]
    settings = BrainSettings(database_url="memory://", host="127.0.0.1", port=0)
    state = await open_engine(settings.database_url)
    brain = Brain(settings, state=state)
    token = await issue_token(state, role="approver", label="page", at=brain.now())
    urls: list[str] = []
    ready, stop = anyio.Event(), anyio.Event()

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    async def body(events: list[AuditEvent], offset: float, sent: list[int]) -> None:
        start = time.perf_counter() + offset
        await anyio.sleep(offset)
        done = 0
        while (now := time.perf_counter()) < start + seconds:
            due = min(len(events), int(rate * (now - start)))
            if due > done:
                brain.audit_feed.publish(events[done:due])
                sent[0] += due - done
                done = due
            await anyio.sleep(max(0.0, ship_s - (time.perf_counter() - now)))

    lines = anyio.wrap_file(sys.stdin)
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: serve_brain(brain, on_ready=on_ready, stop=stop, loops=False))
        await ready.wait()
        print(f"ready {urls[0]} {token} {Path(brain_server.__file__).parent.parent}", flush=True)
        while (await lines.readline()).strip() == "phase":
            sent = [0]
            cpu0, thread0 = time.process_time(), time.thread_time()
            async with anyio.create_task_group() as load:
                for n, events in enumerate(pool):
                    load.start_soon(body, events, ship_s * n / bodies, sent)
            await anyio.sleep(TAIL_S)
            print(f"done {time.process_time() - cpu0} {time.thread_time() - thread0} {sent[0]}", flush=True)
        stop.set()
    await state.close()


# -- the driver's side (this process): the brains' processes, the pages, the phases ------------------------------


@dataclass
class Target:
    label: str
    process: Process
    url: str
    token: str
    buffer: bytes = b""

    async def line(self) -> str:
        assert self.process.stdout is not None
        with anyio.fail_after(120):
            while b"\n" not in self.buffer:
                self.buffer += await self.process.stdout.receive()
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode().strip()


@dataclass
class Phase:
    process_s: float
    thread_s: float
    events: int
    received: int
    reader_s: float
    """CPU of this process (the pages reading their streams, nothing else) over the phase."""


async def _start(label: str, code: Path | None, args: list[str]) -> Target:
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    process = await anyio.open_process(
        [sys.executable, __file__, "--serve", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    target = Target(label=label, process=process, url="", token="")
    words = (await target.line()).split()
    if words[0] != "ready":
        raise RuntimeError(f"{label}: said {' '.join(words)!r}")
    target.url, target.token = words[1], words[2]
    if code is not None and Path(words[3]).resolve() != code.resolve():
        raise RuntimeError(f"{label}: runs the code of {words[3]}, not {code}")
    return target


async def _page(web: httpx.AsyncClient, token: str, ready: list[int], received: list[int]) -> None:
    async with web.stream("GET", "/v1/dashboard/stream", headers={"Authorization": f"Bearer {token}"}) as stream:
        stream.raise_for_status()
        first = True
        async for chunk in stream.aiter_raw():
            received[0] += len(chunk)
            if first:
                ready[0] += 1
                first = False


async def phase(target: Target, pages: int) -> Phase:
    ready, received = [0], [0]
    words: list[str] = []
    reader = 0.0
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as web, anyio.create_task_group() as group:
        for _ in range(pages):
            group.start_soon(_page, web, target.token, ready, received)
        with anyio.fail_after(30):
            while ready[0] < pages:
                await anyio.sleep(0.02)
        await anyio.sleep(0.5)  # (the pages have read the backlog a stream starts with)
        received[0] = 0
        reader0 = time.process_time()
        assert target.process.stdin is not None
        await target.process.stdin.send(b"phase\n")
        words = (await target.line()).split()
        reader = time.process_time() - reader0
        group.cancel_scope.cancel()
    if not words or words[0] != "done":
        raise RuntimeError(f"{target.label}: said {' '.join(words)!r}")
    return Phase(float(words[1]), float(words[2]), int(words[3]), received[0], reader)


async def main(against: list[Path], rounds: int, seconds: float, args: list[str], pages: int) -> None:
    print(f"load average {os.getloadavg()[0]:.1f}; {' '.join(args)}; {pages} pages; {rounds} rounds", flush=True)
    trees: list[tuple[str, Path | None]] = [("this tree", None), *((str(p), p) for p in against)]
    targets = [await _start(label, code, args) for label, code in trees]
    try:
        runs = [(t, n) for t in targets for n in (0, pages)]
        results: dict[tuple[str, int], list[Phase]] = {(t.label, n): [] for t, n in runs}
        for r, (target, n) in alternating_rounds(rounds, runs):
            got = await phase(target, n)
            results[(target.label, n)].append(got)
            print(
                f"round {r + 1} {target.label}, {n} pages: CPU {got.process_s / seconds * 1000:.0f} ms/s "
                f"(event loop {got.thread_s / seconds * 1000:.0f}), {got.events / seconds:.0f} events/s, "
                f"{got.received / max(n, 1) / seconds / 1000:.0f} KB/s to each page "
                f"(read with {got.reader_s / seconds * 1000:.0f} ms/s of CPU)",
                flush=True,
            )
    finally:
        for target in targets:
            assert target.process.stdin is not None
            await target.process.stdin.aclose()
            with anyio.fail_after(30):
                await target.process.wait()
    print(f"what {pages} open pages cost the brain (median over {rounds} rounds of on minus off, same round):")
    for target in targets:
        on, off = results[(target.label, pages)], results[(target.label, 0)]
        cost = [(a.process_s - o.process_s) / seconds * 1000 for a, o in zip(on, off, strict=True)]
        loop = [(a.thread_s - o.thread_s) / seconds * 1000 for a, o in zip(on, off, strict=True)]
        sent = [a.received / pages / seconds / 1000 for a in on]
        idle = statistics.median(o.process_s for o in off) / seconds * 1000
        reading = statistics.median(a.reader_s - o.reader_s for a, o in zip(on, off, strict=True)) / seconds * 1000
        print(
            f"  {target.label}: {statistics.median(cost):+.1f} ms CPU per s of events "
            f"({', '.join(f'{x:+.0f}' for x in cost)}), event loop {statistics.median(loop):+.1f} ms/s; "
            f"{statistics.median(sent):.0f} KB/s to each page, read with {reading:+.0f} ms/s of the pages' process; "
            f"the brain with no page {idle:.0f} ms/s"
        )
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--against", type=Path, action="append", default=[], help="another version's source tree")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=6.0, help="a phase's events")
    parser.add_argument("--bodies", type=int, default=32)
    parser.add_argument("--rate", type=float, default=30.0, help="audit events a second of each body")
    parser.add_argument("--ship-ms", type=float, default=100.0, help="how often a body's batch arrives")
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # (a brain's process)
    a = parser.parse_args()
    if min(a.rounds, a.bodies, a.pages) < 1 or a.seconds <= 0 or a.rate <= 0 or a.ship_ms <= 0:
        parser.error("--rounds, --bodies and --pages must be at least 1; --seconds, --rate and --ship-ms above 0")
    brain_args = [f"--bodies={a.bodies}", f"--rate={a.rate:g}", f"--ship-ms={a.ship_ms:g}", f"--seconds={a.seconds:g}"]
    if a.serve:
        anyio.run(serve, a.bodies, a.rate, a.ship_ms / 1000, a.seconds)
    else:
        anyio.run(main, a.against, a.rounds, a.seconds, brain_args, a.pages)
