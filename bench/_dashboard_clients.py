"""Open dashboards for bench_dashboard_kill.py, in their own process: what a browser's page does, one per token.

    python bench/_dashboard_clients.py [--client raw|httpx] BRAIN_URL APPROVER_TOKEN [APPROVER_TOKEN ...]

Started once and left running, so that the cost of starting a Python process is never inside a trial; it takes
commands on stdin, one a line:

- `open`: each page logs in as the page does (`POST /session` with the token and the page's own Origin, the
  session cookie kept), holds `GET /v1/dashboard/stream` (the page's EventSource) open and reads it, and polls
  what the page polls every 5 s (status, a page of tasks and those held or failed, pending decisions, the
  two KPI windows, usage). Prints `ready`
  once every page has its stream open and its first polls answered.
- `close`: the pages close their streams and stop polling (tabs closed); prints `closed read N round M cpu C`: the
  stream bytes read while open, the slowest round of polls (ms) and this process's CPU while open (ms: what the
  pages cost the cores the brain shares).

It exits at the end of stdin.

`--client raw` (the default): each page speaks HTTP/1.1 itself, as bench_brain.py's claimers do: the same requests
(the login with its Origin, the cookie on every request, the stream held open and read, each poll on one kept-alive
connection as a browser keeps it), a reply read by its Content-Length and a stream's bytes counted as they arrive
(chunk framing included). A browser runs on the captain's machine, not on the brain's cores: httpx in this process
costs those cores more than the brain's own answers do. `--client httpx`: httpx.AsyncClient, as before. It says
which on stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import httpx
from anyio.streams.buffered import BufferedByteReceiveStream

POLLS = (
    "/v1/status",
    "/v1/tasks?limit=100&offset=0",
    "/v1/tasks?state=claimed",
    "/v1/tasks?state=waiting_approval",
    "/v1/tasks?state=failed&limit=20",
    "/v1/decisions?state=pending",
    "/v1/kpi",
    "/v1/kpi?since_s=3600",
    "/v1/usage?by_task=false",
)
"""What an open page polls every 5 s: `static/app.js` `refreshAll`."""
POLL_EVERY_S = 5.0


async def _poll(get: Callable[[str], Awaitable[None]], ready: list[int], slowest: list[float]) -> None:
    """A page's polls, every POLL_EVERY_S: the slowest round kept, `ready` counted after the first."""
    first = True
    while True:
        start = time.perf_counter()
        for path in POLLS:
            await get(path)
        slowest[0] = max(slowest[0], time.perf_counter() - start)
        if first:
            ready[0] += 1
            first = False
        await anyio.sleep(POLL_EVERY_S)


async def httpx_page(url: str, token: str, ready: list[int], received: list[int], slowest: list[float]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=None) as web:
        (await web.post("/session", json={"token": token}, headers={"Origin": url})).raise_for_status()
        async with web.stream("GET", "/v1/dashboard/stream") as stream:
            stream.raise_for_status()

            async def get(path: str) -> None:
                (await web.get(path)).raise_for_status()

            async with anyio.create_task_group() as group:
                group.start_soon(_poll, get, ready, slowest)
                async for chunk in stream.aiter_bytes():
                    received[0] += len(chunk)
                group.cancel_scope.cancel()


class _Connection:
    """One kept-alive HTTP/1.1 connection to the brain; requests written whole, replies read by Content-Length."""

    def __init__(self, stream: anyio.abc.SocketStream, host: str) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)
        self.host = host

    async def send(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", *(f"{k}: {v}" for k, v in headers.items())]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        await self.stream.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def head(self, what: str) -> list[bytes]:
        lines = (await self.reader.receive_until(b"\r\n\r\n", 65536)).split(b"\r\n")
        if int(lines[0].split()[1]) not in (200, 201):
            raise RuntimeError(f"{what}: {lines[0].decode()}")
        return lines[1:]

    async def reply(self, what: str) -> tuple[list[bytes], bytes]:
        headers = await self.head(what)
        length = next((int(h.split(b":", 1)[1]) for h in headers if h.lower().startswith(b"content-length:")), None)
        if length is None:
            raise RuntimeError(f"{what}: a reply without Content-Length")
        return headers, await self.reader.receive_exactly(length)


async def raw_page(url: str, token: str, ready: list[int], received: list[int], slowest: list[float]) -> None:
    parsed = httpx.URL(url)
    assert parsed.port is not None, url
    host, port = parsed.host, parsed.port
    async with (
        await anyio.connect_tcp(host, port) as polls,
        await anyio.connect_tcp(host, port) as events,
    ):
        web = _Connection(polls, f"{host}:{port}")
        login = f'{{"token": "{token}"}}'.encode()
        await web.send("POST", "/session", {"Origin": url, "Content-Type": "application/json"}, login)
        headers, _ = await web.reply("POST /session")
        cookie = next(
            h.split(b":", 1)[1].split(b";", 1)[0].strip() for h in headers if h.lower().startswith(b"set-cookie:")
        )
        session = {"Cookie": cookie.decode(), "Accept": "application/json"}
        stream = _Connection(events, web.host)
        await stream.send("GET", "/v1/dashboard/stream", {**session, "Accept": "text/event-stream"})
        await stream.head("GET /v1/dashboard/stream")
        received[0] += len(stream.reader.buffer)

        async def get(path: str) -> None:
            nonlocal web
            try:
                await web.send("GET", path, session)
                await web.reply(f"GET {path}")
            except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                # The brain closes a connection kept idle past its keep-alive (uvicorn: 5 s, the polls' pace):
                # a browser opens a new one and sends the request again, and so does the page here.
                await web.stream.aclose()
                web = _Connection(await anyio.connect_tcp(host, port), web.host)
                await web.send("GET", path, session)
                await web.reply(f"GET {path}")

        async with anyio.create_task_group() as group:
            group.start_soon(_poll, get, ready, slowest)
            async for chunk in stream.reader.receive_stream:  # (past what the head's read buffered)
                received[0] += len(chunk)
            group.cancel_scope.cancel()
        await web.stream.aclose()


def _say(line: str) -> None:
    print(line, flush=True)


async def main(client: str, url: str, tokens: list[str]) -> None:
    page = raw_page if client == "raw" else httpx_page
    print(f"_dashboard_clients: {len(tokens)} pages, client {client}", file=sys.stderr, flush=True)
    lines = anyio.wrap_file(sys.stdin)
    while True:
        command = (await lines.readline()).strip()
        if not command:
            return
        if command != "open":
            raise SystemExit(f"_dashboard_clients: expected 'open', got {command!r}")
        ready, received, slowest = [0], [0], [0.0]
        cpu = time.process_time()
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
        cpu = time.process_time() - cpu
        _say(f"closed read {received[0]} round {slowest[0] * 1000:.0f} cpu {cpu * 1000:.0f}")


if __name__ == "__main__":
    argv = sys.argv[1:]
    client = "raw"
    if argv[:1] == ["--client"]:
        client, argv = argv[1], argv[2:]
    if client not in ("raw", "httpx") or len(argv) < 2:
        raise SystemExit("usage: _dashboard_clients.py [--client raw|httpx] BRAIN_URL APPROVER_TOKEN [...]")
    anyio.run(main, client, argv[0], argv[1:])
