"""The dashboard's cost on the kill switch: kill propagation with and without open dashboards, in one run.

    uv run python bench/bench_dashboard_kill.py [--trials 100] [--bodies 32] [--dashboards 2] [--call-every 5]

A real brain (uvicorn, SQLite) on 127.0.0.1 and `--bodies` bodies linked to it over loopback HTTP, in one
process. Trials alternate in blocks of 10 between "off" (no dashboard) and "on": `--dashboards` pages each
holding `GET /v1/dashboard/stream` open and reading it, and polling what the page polls (status, tasks, pending
decisions, two KPI windows, usage) every 5 s as the page does, while every body keeps making calls (a directory
listing every `--call-every` seconds), shipped as audit events (which the streams carry). Each trial engages
the kill with `POST /v1/kill` and times until every body's guard would refuse a mutating call, then resumes.
Prints p50/p99/max for both, and the on/off p99 ratio (issue #20's acceptance: at most 1.10).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx

from body_mcp import Body, BodySettings
from brain_server import BrainSettings, SqliteStateEngine, issue_token, run
from brain_server.state import sqlite_url
from shared_protocol.config import parse_config

_PAGE_POLLS = ("/v1/status", "/v1/tasks", "/v1/decisions?state=pending", "/v1/kpi", "/v1/kpi?since_s=3600", "/v1/usage")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait(predicate: object, timeout: float = 20) -> None:
    assert callable(predicate)
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.0005)


async def _dashboard(url: str, token: str, received: list[int]) -> None:
    """One open page: its stream, read to the end, and its polls every 5 s."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=None) as page:

        async def poll() -> None:
            while True:
                for path in _PAGE_POLLS:
                    (await page.get(path)).raise_for_status()
                await anyio.sleep(5)

        async with anyio.create_task_group() as group:
            group.start_soon(poll)
            async with page.stream("GET", "/v1/dashboard/stream") as response:
                async for chunk in response.aiter_bytes():
                    received[0] += len(chunk)


async def main(trials: int, n_bodies: int, n_dashboards: int, call_every_s: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db, port = root / "brain.db", _free_port()
        state = await SqliteStateEngine.open(db)
        captain = await issue_token(state, role="captain", label="captain", at=datetime.now(UTC))
        body_tokens = [
            await issue_token(state, role="body", label=f"body {n}", at=datetime.now(UTC)) for n in range(n_bodies)
        ]
        await state.close()
        url = f"http://127.0.0.1:{port}"
        stop, ready = anyio.Event(), anyio.Event()
        settings = BrainSettings(host="127.0.0.1", port=port, database_url=sqlite_url(db), durability="crash")
        bodies: list[Body] = []
        for n in range(n_bodies):
            ws = root / f"ws{n}"
            ws.mkdir()
            config = parse_config({})
            bodies.append(
                Body(
                    BodySettings(
                        workspace=ws, home=root / "home", config=config, brain_url=url, brain_token=body_tokens[n]
                    )
                )
            )
        times: dict[str, list[float]] = {"off": [], "on": []}
        received = [0]
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: run(settings, on_ready=lambda _u: ready.set(), stop=stop, handle_signals=False))
            await ready.wait()
            for body in bodies:
                assert body.link is not None
                tg.start_soon(body.link.run)
            await _wait(lambda: all(b.brain_state == "connected" and not b.kill_switch.state().engaged for b in bodies))

            async def activity() -> None:
                """Every body lists its workspace every `call_every_s`: audit events for the streams to carry (a read,
                which the kill does not refuse, so no breaker opens)."""
                while True:
                    for body in bodies:
                        await body.call_tool("list_directory", {"path": ".", "rationale": "load"})
                    await anyio.sleep(call_every_s)

            tg.start_soon(activity)
            headers = {"Authorization": f"Bearer {captain}"}
            async with httpx.AsyncClient(base_url=url, headers=headers) as client:
                for block in range(0, trials, 10):
                    for side in ("off", "on"):
                        async with anyio.create_task_group() as pages:
                            if side == "on":
                                for _ in range(n_dashboards):
                                    pages.start_soon(_dashboard, url, captain, received)
                                await anyio.sleep(0.5)
                            for trial in range(block, min(trials, block + 10)):
                                start = time.perf_counter()
                                (await client.post("/v1/kill", json={"reason": "bench"})).raise_for_status()
                                await _wait(lambda: all(b.kill_switch.state().engaged for b in bodies))
                                times[side].append(time.perf_counter() - start)
                                (await client.post("/v1/resume", json={"reason": f"bench {trial}"})).raise_for_status()
                                await _wait(lambda: not any(b.kill_switch.state().engaged for b in bodies))
                            pages.cancel_scope.cancel()
            stop.set()
            tg.cancel_scope.cancel()
        for body in bodies:
            body.close()
    print(
        f"kill propagation, POST /v1/kill -> all {n_bodies} bodies refusing, {trials} trials each, "
        f"without and with {n_dashboards} open dashboards ({received[0]:,} stream bytes read) (ms)"
    )
    p99s: dict[str, float] = {}
    for side, measured in times.items():
        ms = sorted(t * 1000 for t in measured)
        p99s[side] = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        print(f"  {side:<4} p50 {statistics.median(ms):7.2f}   p99 {p99s[side]:7.2f}   max {ms[-1]:7.2f}")
    print(f"  p99 with / without the dashboard: {p99s['on'] / p99s['off']:.2f}x (acceptance: at most 1.10)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--bodies", type=int, default=32)
    parser.add_argument("--dashboards", type=int, default=2)
    parser.add_argument("--call-every", type=float, default=5.0, help="seconds between each body's calls")
    args = parser.parse_args()
    anyio.run(main, args.trials, args.bodies, args.dashboards, args.call_every)
