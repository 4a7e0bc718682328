"""Kill fan-out to real body processes, measured as a refused mutating call: 32 bodies against 8.

    uv run python bench/bench_kill_fanout.py [--runs 3] [--trials 10] [--large 32] [--small 8] [--client raw|sdk]
        [--floor-cpu-ms 0,4] [--timeline]

Two real brains (`swarm brain serve`, SQLite, each its own process) on 127.0.0.1: one with 32 linked bodies, the
other with 8. Every body is a real `swarm body --workspace … --brain URL` process, driven over stdio by an MCP
client: `--client raw` (the default) writes and reads the JSON-RPC lines by hand (`bench/_raw_mcp_client.py`),
`--client sdk` is the official MCP client. All the clients live in this one process, so with the SDK's client (~1.5
ms of CPU a call, serialized by this process's GIL) 32 of them queue on each other, which an IDE's client, in a
process of its own, does not; the bench prints its own CPU per call, to say how much of a trial is the client. A
trial, on one brain: every body's client starts calling `write_file` (mutating) in a loop,
`--pace-ms` apart (an agent's pace; 0 hammers every body at once and measures a machine flat out), while
`POST /v1/kill` goes out; a body's time is from just before that POST to the reply of its first call
refused with `kill_switch_engaged` (the guard refusing a call, not a flag read in this process). Then `POST
/v1/resume`, and each body writes again before the next trial. Trials alternate between the two brains, so the
machine's slow moments fall on both alike.

Prints per run p50/p99/max of each fleet and p99(32)/p99(8), and this process's CPU per call (the client's); per
fleet, the kill's window (from just before the POST to every body's refusal read; median over the trials): the CPU
every body thread used in it (`/proc/PID/task/*/schedstat`), the calls in it, their CPU per call, and the brain's CPU
(a fleet's whole CPU in the window, over 2 cores, is a bound no kill path can beat); then min/median/max over the
runs.
Target (issue #22): p99 < 100 ms to 32 bodies.

The floor (`--floor-cpu-ms`, default `0,4`; issue #22 asks for a peer in the same run): for each value, a fleet of
`--large` bare Python processes (`bench/_kill_floor.py`: no Swarm, no audit, no sync) driven by the same raw client at
the same pace, each hearing the kill on a stream thread of its own from one tiny HTTP server process and refusing its
next call; a write burns that many ms of CPU first (0: the wake-ups alone; ~4: a real body's CPU per write on this VM,
which the bench prints per run for every fleet, from /proc). Their trials alternate with the bodies'; printed beside:
p99(bodies)/p99(floor). Whatever the floor's p99 is on these cores, no body can beat it.

`--timeline`: per run, the large fleet's slowest trial, hop by hop (ms after the POST was sent): the brain taking the
kill (its `at`), each body's stream thread hearing it (`kill_heard` in its refusal's audit event), the write in flight
then (sent, started and ended in the body by its audit event, its reply read), the refused call (sent, its audit event,
its reply read); the three slowest bodies and the medians.

`--against DIR` (a source tree of another version, e.g. `git worktree add DIR main`, or `git archive main | tar -x
-C DIR`): two more fleets of the same sizes whose brain and bodies run DIR's code (`PYTHONPATH=DIR`), their trials
alternating with this tree's in the same run, so a change is measured before and after under the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import anyio
import httpx
from _raw_mcp_client import RawClient
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from body_mcp.state import workspace_key
from brain_server import SqliteStateEngine, issue_token

KILLED = "kill_switch_engaged"
LIMITS = "[limits]\ncalls_per_minute = 1000000\nfile_mods_per_hour = 1000000\n[policy]\napproval_min_files = 1000000\n"
TARGET_MS = 100.0
ClientKind = Literal["raw", "sdk"]


class ToolResult(Protocol):
    @property
    def is_error(self) -> bool: ...
    @property
    def structured_content(self) -> dict[str, Any] | None: ...


class ToolClient(Protocol):
    """What a trial needs of a body's MCP client: the SDK's `Client`, or the bench's `RawClient`."""

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult: ...


class Calls:
    """How many calls this process made, and the CPU it used meanwhile (the clients')."""

    def __init__(self) -> None:
        self.count = 0
        self._cpu = time.process_time()

    def cpu_per_call_ms(self) -> float:
        """The CPU this process used per call since the last ask, in milliseconds (the count starts again)."""
        now = time.process_time()
        per = (now - self._cpu) * 1000 / max(self.count, 1)
        self._cpu, self.count = now, 0
        return per


CALLS = Calls()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Call:
    """One call of a trial, as the bench saw it (`time.perf_counter()`): sent, its reply read, its refusal code."""

    sent: float
    read: float
    code: str | None


@dataclass
class Trial:
    """One kill's trial on a fleet: each body's time to its first refusal (`times`, in the clients' order), and for
    the timeline, the POST's send and answer, the brain's kill time (wall clock), and each client's calls."""

    times: list[float]
    start: float
    start_wall: float
    answered: float
    kill_at: str | None
    calls: list[list[Call]]
    window_cpu_s: float = 0.0
    """The bodies' CPU (every thread, from `/proc/PID/task/*/schedstat`) from just before the POST until every body's
    refusal was read: the kill's window."""
    window_server_cpu_s: float = 0.0
    """The brain's (the floor's HTTP server's) CPU in the same window."""


@dataclass
class Fleet:
    name: str
    captain: httpx.AsyncClient
    clients: list[ToolClient]
    url: str = ""
    approvers: list[str] = field(default_factory=list[str])
    """Approver tokens issued with the fleet (`fleet(approvers=...)`), for dashboard logins."""
    pids: list[int] = field(default_factory=list[int])
    """The bodies' process ids (their CPU time is read from /proc)."""
    server_pid: int | None = None
    """The brain's process id (the floor's HTTP server's)."""
    calls: int = 0
    """How many calls this fleet's bodies answered."""
    state_dbs: list[Path] = field(default_factory=list[Path])
    """Each body's `state.db` (its audit trail), in the clients' order; empty for a floor."""
    heard_log: Path | None = None
    """Where a listener of the brain's stream, in a process of its own, notes when it read each kill (wall clock)."""


def threads_cpu_s(pids: list[int]) -> float:
    """The CPU time every thread of the processes `pids` has run so far, in seconds, to the nanosecond (each task's
    `/proc/PID/task/TID/schedstat`; `/proc/PID/stat` counts in clock ticks, 10 ms, too coarse for one kill)."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def body_cpu_s(pids: list[int]) -> float:
    """The CPU time (user + system) the processes `pids` used so far, in seconds (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # (utime, stime: the 14th and 15th of the line)
    return total / ticks


async def _write(client: ToolClient, n: int, fleet: Fleet | None = None, log: list[Call] | None = None) -> str | None:
    """One `write_file`; None when it was done, else the refusal's code."""
    sent = time.perf_counter()
    result = await client.call_tool(
        "write_file", {"path": f"bench/{n % 4}.txt", "content": f"v{n}", "rationale": "bench kill fan-out"}
    )
    read = time.perf_counter()
    CALLS.count += 1
    if fleet is not None:
        fleet.calls += 1
    code: str | None = None
    if result.is_error:
        data: Any = result.structured_content or {}
        code = str(data.get("code"))
    if log is not None:
        log.append(Call(sent, read, code))
    return code


async def _until_refused(
    client: ToolClient,
    start: float,
    out: list[float],
    deadline_s: float,
    pace_s: float,
    fleet: Fleet | None = None,
    log: list[Call] | None = None,
    slot: int = -1,
) -> None:
    n = 0
    with anyio.fail_after(deadline_s):
        while True:
            code = await _write(client, n, fleet, log)
            n += 1
            if code == KILLED:
                out[slot] = time.perf_counter() - start
                return
            if code is not None:
                raise RuntimeError(f"refused for another reason: {code}")
            await anyio.sleep(pace_s)


async def _until_writing(client: ToolClient, deadline_s: float, fleet: Fleet | None = None) -> None:
    n = 0
    with anyio.fail_after(deadline_s):
        while await _write(client, n, fleet) is not None:
            n += 1
            await anyio.sleep(0.01)


async def timed_trial(fleet: Fleet, pace_s: float, deadline_s: float = 60.0) -> Trial:
    """One kill and resume on `fleet`, every body's calls logged (`Trial`)."""
    times = [0.0] * len(fleet.clients)
    calls: list[list[Call]] = [[] for _ in fleet.clients]
    server = [fleet.server_pid] if fleet.server_pid is not None else []
    cpu_at, server_at = threads_cpu_s(fleet.pids), threads_cpu_s(server)
    start_wall, start = time.time(), time.perf_counter()
    answered, at = 0.0, cast(object, None)
    async with anyio.create_task_group() as group:
        for n, client in enumerate(fleet.clients):
            group.start_soon(_until_refused, client, start, times, deadline_s, pace_s, fleet, calls[n], n)
        response = await fleet.captain.post("/v1/kill", json={"reason": "bench"})
        response.raise_for_status()
        answered = time.perf_counter()
        body: Any = response.json()
        at = cast("dict[str, object]", body).get("at") if isinstance(body, dict) else None
    window_cpu, window_server = threads_cpu_s(fleet.pids) - cpu_at, threads_cpu_s(server) - server_at
    (await fleet.captain.post("/v1/resume", json={"reason": "bench"})).raise_for_status()
    async with anyio.create_task_group() as group:
        for client in fleet.clients:
            group.start_soon(_until_writing, client, deadline_s, fleet)
    return Trial(
        times, start, start_wall, answered, at if isinstance(at, str) else None, calls, window_cpu, window_server
    )


async def trial(fleet: Fleet, pace_s: float, deadline_s: float = 60.0) -> list[float]:
    return (await timed_trial(fleet, pace_s, deadline_s)).times


@asynccontextmanager
async def fleet(
    root: Path,
    name: str,
    size: int,
    python: str,
    approvers: int = 0,
    code: Path | None = None,
    client: ClientKind = "sdk",
    brain_nice: int = 0,
) -> AsyncGenerator[Fleet]:
    """A brain process and `size` body processes linked to it, each with its MCP client, the SDK's or the bench's
    raw one (and `approvers` approver tokens, issued before the brain starts); `code`: a source tree whose code they
    run instead."""
    root.mkdir()
    db, port = root / "brain.db", _free_port()
    state = await SqliteStateEngine.open(db)
    now = datetime.now(UTC)
    captain = await issue_token(state, role="captain", label="captain", at=now)
    tokens = [await issue_token(state, role="body", label=f"body {n}", at=now) for n in range(size)]
    approver_tokens = [
        await issue_token(state, role="approver", label=f"approver {n}", at=now) for n in range(approvers)
    ]
    listener_token = await issue_token(state, role="body", label="kill listener", at=now)
    await state.close()
    config = root / "swarm.toml"  # (limits raised: this measures the kill, not budgets)
    config.write_text(LIMITS)
    env = {**os.environ, "SWARM_HOME": str(root / "home"), "SWARM_CONFIG": str(config)}
    for key in ("SWARM_BRAIN_URL", "SWARM_TOKEN"):
        env.pop(key, None)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    log = (root / "brain.log").open("wb")
    brain = subprocess.Popen(
        [python, "-m", "swarm_cli", "brain", "serve", "--db", str(db), "--port", str(port)],
        env=env,
        preexec_fn=(lambda: os.setpriority(os.PRIO_PROCESS, 0, brain_nice)) if brain_nice else None,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {captain}"}) as http:
            with anyio.fail_after(120):
                while True:
                    try:
                        if (await http.get("/v1/status")).status_code < 500:
                            break
                    except httpx.TransportError:
                        pass
                    await anyio.sleep(0.2)
            async with AsyncExitStack() as stack:
                heard_log = root / "heard.log"
                script = str(Path(__file__).with_name("_kill_floor.py"))
                listener = subprocess.Popen(
                    [python, script, "listen", url, listener_token, str(heard_log)],
                    stdout=subprocess.DEVNULL,
                    stderr=(root / "listener.log").open("wb"),
                )
                stack.callback(listener.wait, 10)
                stack.callback(listener.terminate)
                clients: list[ToolClient] = []
                pids: list[int] = []
                dbs: list[Path] = []
                for n in range(size):
                    ws = root / f"ws{n}"
                    ws.mkdir()
                    argv = [python, "-m", "swarm_cli", "body", "--workspace", str(ws)]
                    body_env = {**env, "SWARM_BRAIN_URL": url, "SWARM_TOKEN": tokens[n]}
                    if client == "raw":
                        raw = await RawClient.start(argv, env=body_env, cwd=root, stderr=root / f"body{n}.log")
                        stack.push_async_callback(raw.aclose)
                        clients.append(cast(ToolClient, raw))
                        pids.append(raw.pid)
                    else:
                        params = StdioServerParameters(command=argv[0], args=argv[1:], env=body_env, cwd=str(root))
                        clients.append(cast(ToolClient, await stack.enter_async_context(Client(params))))
                    dbs.append(root / "home" / "workspaces" / workspace_key(ws.resolve()) / "state.db")
                the_fleet = Fleet(
                    name=name,
                    captain=http,
                    clients=clients,
                    url=url,
                    approvers=approver_tokens,
                    pids=pids,
                    server_pid=brain.pid,
                    state_dbs=dbs,
                    heard_log=heard_log,
                )
                # Linked (a body refuses a write, `brain_unreachable`, until its link is up) and obeying: writes
                # done, then one kill and resume each, not measured.
                async with anyio.create_task_group() as group:
                    for each in clients:
                        group.start_soon(_until_writing, each, 120)
                await trial(the_fleet, 0.01, deadline_s=120)
                yield the_fleet
    finally:
        brain.terminate()
        brain.wait(timeout=30)
        log.close()


@asynccontextmanager
async def floor_fleet(root: Path, name: str, size: int, python: str, cpu_ms: float) -> AsyncGenerator[Fleet]:
    """The floor (`_kill_floor.py`): one tiny HTTP server process in the brain's place and `size` bare Python
    processes in the bodies', each answering its own raw client's calls over stdio and hearing the kill on a stream
    thread of its own; a write burns `cpu_ms` of CPU first."""
    root.mkdir()
    port = _free_port()
    script = str(Path(__file__).with_name("_kill_floor.py"))
    log = (root / "server.log").open("wb")
    server = subprocess.Popen([python, script, "server", str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            with anyio.fail_after(60):
                while True:
                    try:
                        (await http.get("/v1/status")).raise_for_status()
                        break
                    except httpx.TransportError:
                        await anyio.sleep(0.1)
            async with AsyncExitStack() as stack:
                clients: list[ToolClient] = []
                pids: list[int] = []
                for n in range(size):
                    ws = root / f"ws{n}"
                    ws.mkdir()
                    argv = [python, script, "body", url, str(ws), str(cpu_ms)]
                    raw = await RawClient.start(argv, env=dict(os.environ), cwd=root, stderr=root / f"body{n}.log")
                    stack.push_async_callback(raw.aclose)
                    clients.append(cast(ToolClient, raw))
                    pids.append(raw.pid)
                the_fleet = Fleet(name=name, captain=http, clients=clients, url=url, pids=pids, server_pid=server.pid)
                await trial(the_fleet, 0.01, deadline_s=120)
                yield the_fleet
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _events(db: Path, after_wall: float) -> list[dict[str, Any]]:
    """The audit events of a body's trail dated at or after `after_wall` (wall clock), in order."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        rows = conn.execute("SELECT body FROM audit_events ORDER BY seq").fetchall()
    events = [cast("dict[str, Any]", json.loads(body)) for (body,) in rows]
    return [e for e in events if _wall(str(e["ts"])) >= after_wall - 1.0]


def _timeline_rows(fleet: Fleet, the: Trial) -> list[dict[str, float]]:
    """Per body of one trial, ms after the kill's POST was sent: its stream thread hearing the kill (`kill_heard`),
    its last call done before the refusal (sent, its write's start and end in the body, its reply read), the refused
    call (sent, its refusal's event, its reply read)."""
    t0 = the.start_wall

    def rel_perf(t: float) -> float:
        return (t - the.start) * 1000

    def rel_wall(t: float) -> float:
        return (t - t0) * 1000

    rows: list[dict[str, float]] = []
    for n, db in enumerate(fleet.state_dbs):
        events = _events(db, t0)
        refusal = next((e for e in events if e.get("code") == KILLED and _wall(str(e["ts"])) >= t0), None)
        calls = the.calls[n]
        refused = next((c for c in calls if c.code == KILLED), None)
        if refusal is None or refused is None:
            continue
        detail: Any = refusal.get("detail") or {}
        heard_at: Any = detail.get("kill_heard", {}).get("at")
        heard = rel_wall(_wall(heard_at)) if isinstance(heard_at, str) else float("nan")
        row = {
            "body": float(n),
            "heard": heard,
            "refused_sent": rel_perf(refused.sent),
            "refusal_event": rel_wall(_wall(str(refusal["ts"]))),
            "refused_read": rel_perf(refused.read),
        }
        before = [c for c in calls if c.code is None and c.read > the.start]
        if before:
            last = before[-1]
            row["last_sent"], row["last_read"] = rel_perf(last.sent), rel_perf(last.read)
            done = [
                e
                for e in events
                if e.get("tool") == "write_file" and e.get("outcome") == "ok" and e["seq"] < refusal["seq"]
            ]
            if done:
                end = rel_wall(_wall(str(done[-1]["ts"])))
                row["last_start"], row["last_end"] = end - float(done[-1].get("duration_ms", 0.0)), end
        rows.append(row)
    return rows


_KEYS = ["heard", "last_sent", "last_start", "last_end", "last_read", "refused_sent", "refusal_event", "refused_read"]


def _listened(fleet: Fleet, the: Trial) -> float:
    """When the fleet's bare listener read this trial's kill, ms after the POST was sent (nan: not known)."""
    if fleet.heard_log is None or not fleet.heard_log.exists():
        return float("nan")
    times = [float(line) for line in fleet.heard_log.read_text().split()]
    after = [t for t in times if t >= the.start_wall]
    return (min(after) - the.start_wall) * 1000 if after else float("nan")


def trial_summary(fleet: Fleet, the: Trial) -> str:
    """One line for one trial: the brain taking the kill, the bodies hearing it (first, median, last), their last
    writes' replies and their refusals' (median, last), ms after the POST was sent."""
    rows = _timeline_rows(fleet, the)
    if not rows:
        return "    (no audit events found for this trial)"
    kill_at = (_wall(the.kill_at) - the.start_wall) * 1000 if the.kill_at else float("nan")
    listened = _listened(fleet, the)

    def spread(key: str) -> str:
        values = sorted(r[key] for r in rows if key in r)
        return f"{values[0]:.0f}/{statistics.median(values):.0f}/{values[-1]:.0f}" if values else "-"

    return (
        f"    trial: brain took it +{kill_at:.0f}, a bare listener read it +{listened:.0f}, POST answered "
        f"+{(the.answered - the.start) * 1000:.0f}; bodies heard "
        f"{spread('heard')}; last write's reply read {spread('last_read')}; refusal sent {spread('refused_sent')}, "
        f"read {spread('refused_read')} (first/median/last, ms)"
    )


def timeline(fleet: Fleet, the: Trial, show: int = 3) -> list[str]:
    """Where one trial's time went (`_timeline_rows`): the brain's kill (`at`: its handler took it), the POST's
    answer, then the `show` slowest bodies' hops and the medians."""

    def rel_perf(t: float) -> float:
        return (t - the.start) * 1000

    rows = _timeline_rows(fleet, the)
    kill_at = (_wall(the.kill_at) - the.start_wall) * 1000 if the.kill_at else float("nan")
    out = [
        f"  timeline of {fleet.name}'s slowest trial (p99 {_pct([t * 1000 for t in the.times], 0.99):.0f} ms), "
        f"ms after POST /v1/kill was sent: brain took the kill +{kill_at:.1f}, a bare listener read it "
        f"+{_listened(fleet, the):.1f}, answered the POST "
        f"+{rel_perf(the.answered):.1f}"
    ]
    keys = _KEYS
    names = "heard | in flight: sent, body start, body end, read | refused: sent, event, read"

    def fmt(row: dict[str, float]) -> str:
        return "  ".join(f"{row[k]:6.1f}" if k in row else "     -" for k in keys)

    for row in sorted(rows, key=lambda r: -r["refused_read"])[:show]:
        out.append(f"    body {int(row['body']):2d}: {fmt(row)}   ({names})")
    medians = {k: statistics.median([r[k] for r in rows if k in r]) for k in keys if any(k in r for r in rows)}
    out.append(f"    median : {fmt(medians)}")
    return out


def _line(name: str, ms: list[float]) -> str:
    return f"{name}: p50 {statistics.median(ms):6.1f}  p99 {_pct(ms, 0.99):6.1f}  max {max(ms):6.1f} ms ({len(ms)})"


async def main(
    runs: int,
    trials: int,
    large: int,
    small: int,
    pace_ms: float,
    against: Path | None = None,
    client: ClientKind = "raw",
    brain_nice: int = 0,
    floor_cpu_ms: tuple[float, ...] = (),
    show_timeline: bool = False,
) -> None:
    versions: list[tuple[str, Path | None]] = [("", None)] if against is None else [("", None), ("against ", against)]
    print(
        f"load average {os.getloadavg()[0]:.1f}; {large} and {small} real body processes, "
        f"{2 * len(versions)} brains; calls {pace_ms:g} ms apart; client {client} "
        f"({'JSON-RPC lines by hand' if client == 'raw' else 'the official MCP SDK'}, all in this one process)"
        + ("" if against is None else f"; 'against' fleets run the code of {against}")
        + (f"; brains at nice {brain_nice} (deploy/swarm-brain.service's Nice=)" if brain_nice else "")
        + (
            f"; floors: {large} bare processes each, a write burning "
            + ", ".join(f"{ms:g}" for ms in floor_cpu_ms)
            + " ms of CPU (bench/_kill_floor.py)"
            if floor_cpu_ms
            else ""
        ),
        flush=True,
    )
    if floor_cpu_ms and client != "raw":
        raise SystemExit("the floor speaks to the bench's raw client only: --client raw")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-kill-") as tmp:
        root = Path(tmp)
        async with AsyncExitStack() as stack:
            pairs: list[tuple[Fleet, Fleet]] = []
            for n, (label, code) in enumerate(versions):
                big = await stack.enter_async_context(
                    fleet(
                        root / f"large{n}",
                        f"{label}{large} bodies",
                        large,
                        sys.executable,
                        code=code,
                        client=client,
                        brain_nice=brain_nice,
                    )
                )
                few = await stack.enter_async_context(
                    fleet(
                        root / f"small{n}",
                        f"{label}{small} bodies",
                        small,
                        sys.executable,
                        code=code,
                        client=client,
                        brain_nice=brain_nice,
                    )
                )
                pairs.append((big, few))
            floors: list[Fleet] = []
            for n, ms in enumerate(floor_cpu_ms):
                floors.append(
                    await stack.enter_async_context(
                        floor_fleet(
                            root / f"floor{n}", f"floor {large} ({ms:g} ms CPU a write)", large, sys.executable, ms
                        )
                    )
                )
            print(f"fleets up in {time.perf_counter() - started:.0f} s", flush=True)
            everyone = [side for pair in pairs for side in pair] + floors
            ratios: dict[str, list[float]] = {big.name: [] for big, _ in pairs}
            p99s: dict[str, list[float]] = {side.name: [] for side in everyone}
            floor_ratios: dict[tuple[str, str], list[float]] = {
                (big.name, floor.name): [] for big, _ in pairs for floor in floors
            }
            cpu: list[float] = []
            for run in range(runs):
                CALLS.cpu_per_call_ms()  # (from here: the run's calls)
                samples: dict[str, list[float]] = {name: [] for name in p99s}
                cpu_before = {side.name: body_cpu_s(side.pids) for side in everyone}
                for side in everyone:
                    side.calls = 0
                slowest: dict[str, Trial] = {}
                timed: dict[str, list[Trial]] = {big.name: [] for big, _ in pairs}
                window: dict[str, list[Trial]] = {side.name: [] for side in everyone}
                for _ in range(trials):
                    for side in everyone:
                        the = await timed_trial(side, pace_ms / 1000)
                        window[side.name].append(the)
                        samples[side.name] += [t * 1000 for t in the.times]
                        if side.name in timed:
                            timed[side.name].append(the)
                        if side.name not in slowest or max(the.times) > max(slowest[side.name].times):
                            slowest[side.name] = the
                cpu.append(CALLS.cpu_per_call_ms())
                print(f"run {run + 1}: the {client} client's CPU (this process) {cpu[-1]:.2f} ms a call", flush=True)
                for name, ms in samples.items():
                    p99s[name].append(_pct(ms, 0.99))
                for big, few in pairs:
                    ratio = _pct(samples[big.name], 0.99) / _pct(samples[few.name], 0.99)
                    ratios[big.name].append(ratio)
                    print(
                        f"run {run + 1}: {_line(big.name, samples[big.name])}; {_line(few.name, samples[few.name])}; "
                        f"p99({large})/p99({small}) {ratio:.2f}",
                        flush=True,
                    )
                for floor in floors:
                    versus: list[str] = []
                    for big, _ in pairs:
                        ratio = _pct(samples[big.name], 0.99) / _pct(samples[floor.name], 0.99)
                        floor_ratios[(big.name, floor.name)].append(ratio)
                        versus.append(f"p99({big.name})/p99(floor) {ratio:.2f}")
                    print(f"run {run + 1}: {_line(floor.name, samples[floor.name])}; " + "; ".join(versus), flush=True)
                print(
                    f"run {run + 1}: the bodies' CPU a call (all their calls: written and refused, the trials' and the "
                    "resumes' writes): "
                    + "; ".join(
                        f"{side.name} {(body_cpu_s(side.pids) - cpu_before[side.name]) / max(side.calls, 1) * 1e3:.2f}"
                        " ms"
                        for side in everyone
                    ),
                    flush=True,
                )
                print(
                    f"run {run + 1}: in the kill's window (the POST to every refusal read), per trial, median: "
                    + "; ".join(_window_line(side.name, window[side.name]) for side in everyone),
                    flush=True,
                )
                if show_timeline:
                    for big, _ in pairs:
                        print(f"  {big.name}, each trial:", flush=True)
                        for the in timed[big.name]:
                            print(trial_summary(big, the), flush=True)
                        for text in timeline(big, slowest[big.name]):
                            print(text, flush=True)
            print(f"over {runs} runs, min/median/max:")
            for name, values in p99s.items():
                print(f"  p99 {name}: {min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f} ms")
            for name, values in ratios.items():
                print(
                    f"  p99({large})/p99({small}) of '{name}': "
                    f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"
                )
            for (name, floor_name), values in floor_ratios.items():
                print(
                    f"  p99('{name}')/p99('{floor_name}'): "
                    f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"
                )
            spread = f"{min(cpu):.2f} / {statistics.median(cpu):.2f} / {max(cpu):.2f}"
            print(f"  the {client} client's CPU a call: {spread} ms")
            print(f"target: p99 < {TARGET_MS:.0f} ms to {large} bodies; load average after {os.getloadavg()[0]:.1f}")


def _window_line(name: str, trials: list[Trial]) -> str:
    """The kill's window of `trials` (medians over them): how much CPU the bodies and their server (brain or floor
    server) used, the calls in it, and the bodies' CPU per call there (what a saturated machine has to get through)."""
    cpu = statistics.median(t.window_cpu_s for t in trials) * 1000
    server = statistics.median(t.window_server_cpu_s for t in trials) * 1000
    calls = statistics.median(sum(len(c) for c in t.calls) for t in trials)
    per_call = statistics.median(t.window_cpu_s / max(sum(len(c) for c in t.calls), 1) for t in trials) * 1000
    return (
        f"{name}: bodies {cpu:.0f} ms of CPU over {calls:.0f} calls ({per_call:.2f} ms a call), server {server:.0f} ms"
    )


def run_bench(main: Callable[..., Awaitable[None]], *args: object) -> None:
    """`anyio.run(main, *args)`, a failure printed as one line (the leaves of the task groups' exceptions)."""
    try:
        anyio.run(main, *args)
    except BaseExceptionGroup as group:  # (the MCP clients nest task groups deeper than a traceback shows)
        leaves: list[BaseException] = []
        pending: list[BaseException] = [group]
        while pending:
            exc = pending.pop()
            inner: Any = getattr(exc, "exceptions", None)  # (a group's)
            if inner is not None:
                pending.extend(cast("tuple[BaseException, ...]", inner))
            else:
                leaves.append(exc)
        raise SystemExit("bench failed: " + "; ".join(f"{type(e).__name__}: {e}" for e in leaves)) from None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--large", type=int, default=32)
    parser.add_argument("--small", type=int, default=8)
    parser.add_argument(
        "--pace-ms",
        type=float,
        default=10.0,
        help="pause between a body's calls (0: back to back, the machine flat out)",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "sdk"),
        default="raw",
        help="the bodies' MCP client: JSON-RPC lines by hand (raw), or the official MCP SDK's (sdk)",
    )
    parser.add_argument(
        "--against",
        type=Path,
        default=None,
        help="a source tree of another version: fleets running its code alternate with this tree's",
    )
    parser.add_argument(
        "--brain-nice",
        type=int,
        default=0,
        help="the brains' nice value (deploy/swarm-brain.service runs the brain at Nice=-5; below 0 needs root)",
    )
    parser.add_argument(
        "--floor-cpu-ms",
        default="0,4",
        help="the floors, comma-separated: for each, --large bare processes (no Swarm) whose write burns that many ms "
        "of CPU, their trials alternating with the bodies' ('' for none)",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="per run, the timeline of the large fleet's slowest trial (from the bench's times and the audit trails)",
    )
    args = parser.parse_args()
    try:
        floor_cpu = tuple(float(ms) for ms in args.floor_cpu_ms.split(",") if ms.strip())
    except ValueError:
        parser.error(f"--floor-cpu-ms {args.floor_cpu_ms!r}: not a comma-separated list of milliseconds")
    if args.against is not None and not (args.against / "body_mcp").is_dir():
        parser.error(f"--against {args.against}: not a source tree of this project (no body_mcp/ in it)")
    run_bench(
        main,
        args.runs,
        args.trials,
        args.large,
        args.small,
        args.pace_ms,
        args.against,
        args.client,
        args.brain_nice,
        floor_cpu,
        args.timeline,
    )
