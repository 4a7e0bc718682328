"""Open dashboards for bench_dashboard_kill.py, in their own process: what a browser's page does, one per token.

    python bench/_dashboard_clients.py BRAIN_URL APPROVER_TOKEN [APPROVER_TOKEN ...]

Each page logs in as the page does (`POST /session` with the token and the page's own Origin, the session cookie
kept), holds `GET /v1/dashboard/stream` (the page's EventSource) open and reads it, and polls what the page polls
every 5 s (status, tasks, pending decisions, the two KPI windows, usage). Prints `ready` once every page has its
stream open and its first polls answered, then one line when terminated (SIGTERM): the stream bytes read and the
slowest round of polls.
"""

from __future__ import annotations

import signal
import sys
import time

import anyio
import httpx

POLLS = ("/v1/status", "/v1/tasks", "/v1/decisions?state=pending", "/v1/kpi", "/v1/kpi?since_s=3600", "/v1/usage")
POLL_EVERY_S = 5.0


async def page(url: str, token: str, ready: list[int], received: list[int], slowest: list[float]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=None) as web:
        (await web.post("/session", json={"token": token}, headers={"Origin": url})).raise_for_status()
        async with web.stream("GET", "/v1/dashboard/stream") as stream:
            stream.raise_for_status()

            async def poll() -> None:
                first = True
                while True:
                    start = time.perf_counter()
                    for path in POLLS:
                        (await web.get(path)).raise_for_status()
                    slowest[0] = max(slowest[0], time.perf_counter() - start)
                    if first:
                        ready[0] += 1
                        first = False
                    await anyio.sleep(POLL_EVERY_S)

            async with anyio.create_task_group() as group:
                group.start_soon(poll)
                async for chunk in stream.aiter_bytes():
                    received[0] += len(chunk)
                group.cancel_scope.cancel()


async def main(url: str, tokens: list[str]) -> None:
    ready, received, slowest = [0], [0], [0.0]
    async with anyio.create_task_group() as group:
        for token in tokens:
            group.start_soon(page, url, token, ready, received, slowest)
        while ready[0] < len(tokens):
            await anyio.sleep(0.05)
        print("ready", flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                break
        group.cancel_scope.cancel()
    print(f"read {received[0]} stream bytes; slowest poll round {slowest[0] * 1000:.0f} ms", flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2:])
