"""Open dashboards for bench_dashboard_kill.py, in their own process: what a browser's page does, one per token.

    python bench/_dashboard_clients.py BRAIN_URL APPROVER_TOKEN [APPROVER_TOKEN ...]

Started once and left running, so that the cost of starting a Python process is never inside a trial; it takes
commands on stdin, one a line:

- `open`: each page logs in as the page does (`POST /session` with the token and the page's own Origin, the
  session cookie kept), holds `GET /v1/dashboard/stream` (the page's EventSource) open and reads it, and polls
  what the page polls every 5 s (status, tasks, pending decisions, the two KPI windows, usage). Prints `ready`
  once every page has its stream open and its first polls answered.
- `close`: the pages close their streams and stop polling (tabs closed); prints `closed read N round M`: the stream
  bytes read while open and the slowest round of polls (ms).

It exits at the end of stdin.
"""

from __future__ import annotations

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


def _say(line: str) -> None:
    print(line, flush=True)


async def main(url: str, tokens: list[str]) -> None:
    lines = anyio.wrap_file(sys.stdin)
    while True:
        command = (await lines.readline()).strip()
        if not command:
            return
        if command != "open":
            raise SystemExit(f"_dashboard_clients: expected 'open', got {command!r}")
        ready, received, slowest = [0], [0], [0.0]
        async with anyio.create_task_group() as pages:
            for token in tokens:
                pages.start_soon(page, url, token, ready, received, slowest)
            while ready[0] < len(tokens):
                await anyio.sleep(0.05)
            _say("ready")
            command = (await lines.readline()).strip()
            pages.cancel_scope.cancel()
        if command != "close":
            raise SystemExit(f"_dashboard_clients: expected 'close', got {command!r}")
        _say(f"closed read {received[0]} round {slowest[0] * 1000:.0f}")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2:])
