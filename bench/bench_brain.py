"""The brain under load: audit ingest from 8 bodies at once and task claims by 8 claimers, each against a bare
SQLite commit loop of the same row sizes, measured in the same run.

    uv run python bench/bench_brain.py [--runs 3] [--bodies 8] [--batch 50] [--batches 20] [--tasks 400]
        [--against DIR]

One real brain (`swarm brain serve`, SQLite, default durability `power_loss`: WAL, synchronous=FULL) on 127.0.0.1,
its own process. Its peers are in this process: a bare loop over a SQLite file with the same pragmas, the same
table shape and rows of the same size, with no HTTP, no validation, no chain linkage and no task state machine.

- Ingest: every body posts `--batches` batches of `--batch` chained events (`POST /v1/audit`), the 8 at once;
  the bare loop inserts the same number of rows of the same JSON size, one transaction per batch. Figure:
  events/s, and brain/bare.
- Claims: `--tasks` queued tasks, 8 claimers (`POST /v1/tasks/claim`, each its own body token) claiming until the
  queue is empty; the bare loop does the same claims as `BEGIN IMMEDIATE; SELECT … LIMIT 1; UPDATE; COMMIT` on a
  table of rows of the same size. Figures: claims/s, brain/bare, and the brain's claim latency p50/p99 (the
  target: p99 < 20 ms with 8 claimers); beside it, in the same run, the bare loop's p50/p99 (one claim after another)
  and the brain's with one claimer (up to 100 more tasks): claimers back to back wait for each other's claims, so
  with 8 of them a claim's latency is about 8 / the claim rate, whatever a claim alone costs.

The claimers speak HTTP/1.1 written by hand on one kept-alive connection each (`RawHttp`, `--client raw`): httpx
(`--client httpx`) costs ~1.5 ms of CPU a claim, as much as the brain's own claim, on the same cores, so with it
the figures measured the client about as much as the brain.

CPU per claim: the brain process's (all its threads, from /proc) and this process's (the claimers') are printed
beside each claims figure. The claimers share the machine's cores with the brain: where their CPU per claim is
near the brain's, they take a good part of the cores the brain would use, and the latencies say so much about the
client as about the brain (each line says how much).

`--against DIR` (a source tree of another version, e.g. `git archive main | tar -x -C DIR`): a second brain runs
DIR's code (`PYTHONPATH=DIR`, this environment's packages); in each run its ingest and claims (8 claimers, then
one) follow this tree's, on the same machine under the same load, so a change is measured before and after in one
run.

The subject and the baseline alternate within each run (the machine's speed drifts); min/median/max of each ratio
over the runs. The ratio says what the brain's per-request work costs over the storage it must do anyway: an HTTP
round trip, pydantic validation, the audit chain's linkage check (each batch reads the stored head and the seqs it
links to) and, for a claim, loading the task, its history and the audit head, the state machine, a log entry.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import httpx
from _rounds import alternating_rounds
from anyio.streams.buffered import BufferedByteReceiveStream
from bench_kill_fanout import _free_port, _pct  # pyright: ignore[reportPrivateUsage]

from brain_server import SqliteStateEngine, issue_token
from shared_protocol import AuditEvent

CLAIM_P99_TARGET_MS = 20.0
ALONE_TASKS = 100
"""Claims by one claimer after each run (what a claim costs when no other claimer waits ahead of it)."""


def _event(body_id: str, seq: int, prev_mac: str) -> AuditEvent:
    """A tool call event shaped like a body's write (the brain checks linkage; it never recomputes a body's MAC)."""
    mac = hashlib.sha256(f"{body_id}|{seq}|{prev_mac}".encode()).hexdigest()
    return AuditEvent(
        seq=seq,
        id=f"act_{body_id}_{seq}",
        ts=datetime.now(UTC).isoformat(timespec="microseconds"),
        kind="tool_call",
        body_id=body_id,
        agent="bench",
        session="ses_bench",
        tool="write_file",
        arguments={"path": f"src/module_{seq % 50}.py", "content_sha256": mac, "content_bytes": 1800},
        rationale="bench: the brain's ingest from several bodies at once",
        outcome="ok",
        files=[f"src/module_{seq % 50}.py"],
        duration_ms=1.5,
        prev_mac=prev_mac,
        mac=mac,
    )


@dataclass
class Chain:
    """One body's chain, shipped batch by batch."""

    body_id: str
    token: str
    seq: int = 0
    mac: str = ""

    def next_batch(self, size: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for _ in range(size):
            self.seq += 1
            event = _event(self.body_id, self.seq, self.mac or f"genesis-{self.body_id}")
            self.mac = event.mac
            out.append(event.model_dump(mode="json"))
        return out


@dataclass
class Brain:
    url: str
    captain: str
    chains: list[Chain]
    pid: int

    def cpu_s(self) -> float:
        """The brain process's CPU time so far (user + system, all its threads), in seconds."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class Claims:
    """One claims phase: claims/s, each claim's latency (ms), and CPU per claim (ms) of the brain and of the
    claimers (this process)."""

    rate: float
    latencies: list[float]
    brain_cpu_ms: float
    client_cpu_ms: float

    def line(self, claimers: int) -> str:
        return (
            f"{self.rate:6.0f}/s (p50 {statistics.median(self.latencies):.1f} ms, p99 "
            f"{_pct(self.latencies, 0.99):.1f} ms; CPU per claim: brain {self.brain_cpu_ms:.2f} ms, the "
            f"{claimers} claimer{'s' if claimers > 1 else ''} {self.client_cpu_ms:.2f} ms)"
        )


@asynccontextmanager
async def brain(root: Path, bodies: int, code: Path | None = None) -> AsyncGenerator[Brain]:
    db, port = root / "brain.db", _free_port()
    state = await SqliteStateEngine.open(db)
    now = datetime.now(UTC)
    captain = await issue_token(state, role="captain", label="captain", at=now)
    chains = [
        Chain(f"body-{n}", await issue_token(state, role="body", label=f"body {n}", at=now)) for n in range(bodies)
    ]
    await state.close()
    env = {**os.environ, "SWARM_HOME": str(root / "home")}
    for key in ("SWARM_BRAIN_URL", "SWARM_TOKEN", "SWARM_CONFIG"):
        env.pop(key, None)
    (root / "swarm.toml").write_text("")
    env["SWARM_CONFIG"] = str(root / "swarm.toml")
    if code is not None:
        env["PYTHONPATH"] = str(code)
    log = (root / "brain.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "swarm_cli", "brain", "serve", "--db", str(db), "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            with anyio.fail_after(120):
                while True:
                    try:
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await anyio.sleep(0.2)
            for chain in chains:
                registration = {"body_id": chain.body_id, "workspace": f"/w/{chain.body_id}", "hostname": "bench"}
                response = await http.post(
                    "/v1/bodies/register",
                    json={**registration, "version": "bench"},
                    headers={"Authorization": f"Bearer {chain.token}"},
                )
                response.raise_for_status()
        yield Brain(url=url, captain=captain, chains=chains, pid=process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _check(response: httpx.Response) -> None:
    if response.status_code != 200:
        request = response.request
        raise RuntimeError(f"{request.method} {request.url.path}: {response.status_code} {response.text}")


# --- ingest ------------------------------------------------------------------------------------


async def brain_ingest(target: Brain, batch: int, batches: int) -> tuple[float, int]:
    """All bodies ship their batches at once; (events/s, JSON bytes of one event)."""
    payloads = {chain.body_id: [chain.next_batch(batch) for _ in range(batches)] for chain in target.chains}
    size = len(json.dumps(payloads[target.chains[0].body_id][0][0], separators=(",", ":")))

    async def ship(chain: Chain, http: httpx.AsyncClient) -> None:
        for events in payloads[chain.body_id]:
            response = await http.post(
                "/v1/audit",
                json={"body_id": chain.body_id, "events": events},
                headers={"Authorization": f"Bearer {chain.token}"},
            )
            _check(response)
            stored = response.json()["stored_through"]
            if stored != events[-1]["seq"]:
                raise RuntimeError(f"{chain.body_id}: stored through {stored}, sent {events[-1]['seq']}")

    limits = httpx.Limits(max_connections=len(target.chains))
    async with httpx.AsyncClient(base_url=target.url, limits=limits, timeout=60) as http:
        start = time.perf_counter()
        async with anyio.create_task_group() as group:
            for chain in target.chains:
                group.start_soon(ship, chain, http)
        elapsed = time.perf_counter() - start
    return len(target.chains) * batch * batches / elapsed, size


def _bare_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def bare_ingest(path: Path, bodies: int, batch: int, batches: int, size: int, round_: int) -> float:
    """The same rows (same JSON size), one transaction per batch, bodies interleaved; events/s."""
    conn = _bare_db(path)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS audit_events (body_id TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, "
        "ts TEXT NOT NULL, mac TEXT NOT NULL, event TEXT NOT NULL, received_at TEXT NOT NULL, "
        "PRIMARY KEY (body_id, seq))"
    )
    payload = "x" * size
    start = time.perf_counter()
    for b in range(batches):
        for body in range(bodies):
            first = (round_ * batches + b) * batch + 1
            rows = [
                (f"body-{body}", seq, f"act_{body}_{seq}", "2026-12-06T00:00:00.000000+00:00", "m" * 64, payload, "t")
                for seq in range(first, first + batch)
            ]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return bodies * batch * batches / elapsed


# --- claims ------------------------------------------------------------------------------------


async def queue_tasks(target: Brain, count: int) -> int:
    """Queue `count` tasks (not timed); the JSON size of one task row as the brain returns it."""
    size = 0
    async with httpx.AsyncClient(
        base_url=target.url, headers={"Authorization": f"Bearer {target.captain}"}, timeout=60
    ) as http:
        for n in range(count):
            response = await http.post(
                "/v1/tasks",
                json={
                    "title": f"bench task {n}",
                    "description": "fix the failing refund test in billing/refunds.py",
                    "value_usd": float(n % 7),
                    "acceptance": "python3 -m pytest -q tests/test_refunds.py",
                },
            )
            response.raise_for_status()
            size = len(json.dumps(response.json(), separators=(",", ":")))
    return size


class RawHttp:
    """HTTP/1.1 on one kept-alive connection, requests written whole and replies read by their Content-Length: a
    claimer that costs ~0.1 ms of CPU a claim where httpx costs ~1.5 ms (as much as the brain's claim, on the same
    cores). The brain sees the same requests either way."""

    def __init__(self, stream: anyio.abc.SocketStream, host: str) -> None:
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._host = host

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str) -> AsyncGenerator[RawHttp]:
        parsed = httpx.URL(url)
        assert parsed.port is not None, url
        async with await anyio.connect_tcp(parsed.host, parsed.port) as stream:
            yield cls(stream, f"{parsed.host}:{parsed.port}")

    async def post(self, path: str, body: bytes, token: str) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        await self._stream.send(head.encode() + body)
        lines = (await self._reader.receive_until(b"\r\n\r\n", 65536)).split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            (int(line.split(b":", 1)[1]) for line in lines[1:] if line.lower().startswith(b"content-length:")), None
        )
        if length is None:
            raise RuntimeError(f"POST {path}: a reply without Content-Length ({lines[0]!r})")
        return status, await self._reader.receive_exactly(length)


async def brain_claims(target: Brain, count: int, claimers: int | None = None, *, client: str = "raw") -> Claims:
    """The first `claimers` bodies (all by default) claim until the queue is empty, over `client`: `raw` (`RawHttp`)
    or `httpx`."""
    latencies: list[float] = []
    claimed: set[str] = set()

    def took(status: int, reply: bytes) -> bool:
        if status != 200:
            raise RuntimeError(f"POST /v1/tasks/claim: {status} {reply.decode(errors='replace')}")
        task = json.loads(reply)["task"]
        if task is None:
            return False
        if task["id"] in claimed:
            raise RuntimeError(f"task {task['id']} claimed twice")
        claimed.add(task["id"])
        return True

    async def raw_claimer(chain: Chain) -> None:
        body = json.dumps({"body_id": chain.body_id, "agent": f"agent-{chain.body_id}"}).encode()
        async with RawHttp.connect(target.url) as http:
            while True:
                began = time.perf_counter()
                status, reply = await http.post("/v1/tasks/claim", body, chain.token)
                latencies.append((time.perf_counter() - began) * 1000)
                if not took(status, reply):
                    return

    async def httpx_claimer(chain: Chain, http: httpx.AsyncClient) -> None:
        while True:
            began = time.perf_counter()
            response = await http.post(
                "/v1/tasks/claim",
                json={"body_id": chain.body_id, "agent": f"agent-{chain.body_id}"},
                headers={"Authorization": f"Bearer {chain.token}"},
            )
            latencies.append((time.perf_counter() - began) * 1000)
            if not took(response.status_code, response.content):
                return

    chains = target.chains[: claimers or len(target.chains)]
    limits = httpx.Limits(max_connections=len(chains))
    async with httpx.AsyncClient(base_url=target.url, limits=limits, timeout=60) as http:
        brain_cpu, own_cpu = target.cpu_s(), _own_cpu_s()
        start = time.perf_counter()
        async with anyio.create_task_group() as group:
            for chain in chains:
                if client == "raw":
                    group.start_soon(raw_claimer, chain)
                else:
                    group.start_soon(httpx_claimer, chain, http)
        elapsed = time.perf_counter() - start
        brain_cpu, own_cpu = target.cpu_s() - brain_cpu, _own_cpu_s() - own_cpu
    if len(claimed) != count:
        raise RuntimeError(f"claimed {len(claimed)} of {count} tasks")
    return Claims(
        rate=count / elapsed,
        latencies=latencies[: -len(chains)] or latencies,  # (not the empty-queue answers)
        brain_cpu_ms=brain_cpu / (count + len(chains)) * 1000,
        client_cpu_ms=own_cpu / (count + len(chains)) * 1000,
    )


def bare_claims(path: Path, count: int, size: int) -> tuple[float, list[float]]:
    """The same claims on a bare table of rows of the same size, one after another: (claims/s, each claim's
    latency in ms)."""
    conn = _bare_db(path)
    conn.execute("DROP TABLE IF EXISTS tasks")
    conn.execute(
        "CREATE TABLE tasks (seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, state TEXT NOT NULL, "
        "value_usd REAL NOT NULL, body TEXT NOT NULL)"
    )
    conn.execute("CREATE INDEX tasks_state ON tasks (state, value_usd)")
    payload = "x" * size
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO tasks (id, state, value_usd, body) VALUES (?, 'queued', ?, ?)",
        [(f"tsk_{n}", float(n % 7), payload) for n in range(count)],
    )
    conn.execute("COMMIT")
    latencies: list[float] = []
    start = time.perf_counter()
    for _ in range(count):
        began = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(
            "SELECT id, body FROM tasks WHERE state = 'queued' ORDER BY value_usd DESC, seq LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE tasks SET state = 'claimed', body = ? WHERE id = ?", (row[1], row[0]))
        conn.execute("COMMIT")
        latencies.append((time.perf_counter() - began) * 1000)
    elapsed = time.perf_counter() - start
    conn.close()
    return count / elapsed, latencies


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


async def main(
    runs: int, bodies: int, batch: int, batches: int, tasks: int, against: Path | None = None, client: str = "raw"
) -> None:
    print(
        f"load average {os.getloadavg()[0]:.1f}; one brain process, {bodies} bodies shipping {batches} batches of "
        f"{batch} events each, {bodies} claimers ({client} HTTP client) over {tasks} tasks; {runs} runs"
        + ("" if against is None else f"; an 'against' brain runs the code of {against}, its claims alternating"),
        flush=True,
    )
    alone = min(tasks, ALONE_TASKS)
    with tempfile.TemporaryDirectory(prefix="bench-brain-") as tmp:
        root = Path(tmp)
        (root / "brain").mkdir()
        ingest_ratios: list[float] = []
        claim_ratios: list[float] = []
        p99s: list[float] = []
        alone_p99s: list[float] = []
        bare_p99s: list[float] = []
        before_p99s: list[float] = []
        before_alone_p99s: list[float] = []
        cpu: list[tuple[float, float]] = []
        before_cpu: list[tuple[float, float]] = []
        async with AsyncExitStack() as stack:
            target = await stack.enter_async_context(brain(root / "brain", bodies))
            old: Brain | None = None
            if against is not None:
                (root / "against").mkdir()
                old = await stack.enter_async_context(brain(root / "against", bodies, code=against))

            async def this_tree(run: int) -> None:
                subject, size = await brain_ingest(target, batch, batches)
                bare = await anyio.to_thread.run_sync(bare_ingest, root / "bare.db", bodies, batch, batches, size, run)
                ingest_ratios.append(subject / bare)
                task_size = await queue_tasks(target, tasks)
                claims = await brain_claims(target, tasks, client=client)
                bare_rate, bare_latencies = await anyio.to_thread.run_sync(
                    bare_claims, root / "bare.db", tasks, task_size
                )
                await queue_tasks(target, alone)
                lone = await brain_claims(target, alone, claimers=1, client=client)
                claim_ratios.append(claims.rate / bare_rate)
                p99s.append(_pct(claims.latencies, 0.99))
                alone_p99s.append(_pct(lone.latencies, 0.99))
                bare_p99s.append(_pct(bare_latencies, 0.99))
                cpu.append((claims.brain_cpu_ms, claims.client_cpu_ms))
                print(
                    f"run {run + 1}: ingest brain {subject:7.0f} events/s, bare {bare:7.0f} ({size} B rows), "
                    f"ratio {subject / bare:.3f}; claims brain {claims.line(bodies)}; {bodies} claimers back to back "
                    f"wait for each other: {bodies} / rate = {bodies / claims.rate * 1000:.1f} ms; bare "
                    f"{bare_rate:6.0f}/s (p50 {statistics.median(bare_latencies):.1f} ms, p99 {bare_p99s[-1]:.1f} ms, "
                    f"one claimer; {task_size} B rows), ratio {claims.rate / bare_rate:.3f}; the brain with one "
                    f"claimer over {alone} tasks: {lone.line(1)}; load average {os.getloadavg()[0]:.1f}",
                    flush=True,
                )

            async def other_tree(run: int, old: Brain) -> None:
                # (the same ingest first: its database then holds what this tree's does when it claims)
                old_ingest, _ = await brain_ingest(old, batch, batches)
                await queue_tasks(old, tasks)
                before = await brain_claims(old, tasks, client=client)
                await queue_tasks(old, alone)
                before_lone = await brain_claims(old, alone, claimers=1, client=client)
                before_p99s.append(_pct(before.latencies, 0.99))
                before_alone_p99s.append(_pct(before_lone.latencies, 0.99))
                before_cpu.append((before.brain_cpu_ms, before.client_cpu_ms))
                print(
                    f"run {run + 1}, against: ingest brain {old_ingest:7.0f} events/s; claims brain "
                    f"{before.line(bodies)}; one claimer: "
                    f"{before_lone.line(1)}; load average {os.getloadavg()[0]:.1f}",
                    flush=True,
                )

            trees: list[Callable[[int], Awaitable[None]]] = [this_tree]
            if old is not None:
                trees.append(partial(other_tree, old=old))
            # (the order alternates run by run: neither brain always claims right after the other's work)
            for run, tree in alternating_rounds(runs, trees):
                await tree(run)
        print(f"over {runs} runs, min/median/max:")
        print(f"  ingest brain/bare: {_spread(ingest_ratios)}")
        print(f"  claims brain/bare: {_spread(claim_ratios)}")
        print(f"  claim p99 (ms):    {_spread(p99s)}   target < {CLAIM_P99_TARGET_MS:.0f} ms ({bodies} claimers)")
        print(f"  claim p99, the brain with one claimer (ms): {_spread(alone_p99s)}")
        print(f"  claim p99, the bare loop (ms):              {_spread(bare_p99s)}")
        print(
            f"  CPU per claim ({bodies} claimers, ms): brain {_spread([c[0] for c in cpu])}, "
            f"the claimers (this process, on the same cores) {_spread([c[1] for c in cpu])}"
        )
        if against is not None:
            print(f"  against {against}:")
            print(f"    claim p99 (ms):    {_spread(before_p99s)}   ({bodies} claimers)")
            print(f"    claim p99, one claimer (ms): {_spread(before_alone_p99s)}")
            print(
                f"    CPU per claim ({bodies} claimers, ms): brain {_spread([c[0] for c in before_cpu])}, "
                f"the claimers {_spread([c[1] for c in before_cpu])}"
            )
            print(f"    p99 this tree / against: {_spread([a / b for a, b in zip(p99s, before_p99s, strict=True)])}")
        print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bodies", type=int, default=8)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument(
        "--against",
        type=Path,
        default=None,
        metavar="DIR",
        help="a source tree of another version (e.g. `git archive main | tar -x -C DIR`): its brain's claims "
        "alternate with this tree's",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="the claimers' HTTP client: raw (HTTP/1.1 written by hand, ~0.1 ms of CPU a claim) or httpx (~1.5 ms, "
        "as much as the brain, taken from the same cores)",
    )
    args = parser.parse_args()
    for name in ("runs", "bodies", "batch", "batches", "tasks"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.batch > 1000:
        parser.error("--batch must be at most 1000 (the brain's MAX_AUDIT_BATCH)")
    if args.against is not None and not (args.against / "brain_server").is_dir():
        parser.error(f"--against {args.against}: not a source tree of this project (no brain_server/ in it)")
    anyio.run(main, args.runs, args.bodies, args.batch, args.batches, args.tasks, args.against, args.client)
