"""The kill fan-out's floor for bench_kill_fanout.py: no Swarm, the same shape of kill on the same machine.

    python bench/_kill_floor.py server PORT
    python bench/_kill_floor.py body URL WORKSPACE CPU_MS
    python bench/_kill_floor.py listen BRAIN_URL BODY_TOKEN OUT

`server`: one tiny HTTP server process (asyncio, HTTP/1.1 by hand) in the brain's place. `GET /events` holds a
server-sent event stream open; `POST /v1/kill` writes `event: kill` to every open stream, then answers (the brain
publishes before it answers too); `POST /v1/resume` writes `event: resume`. Nothing is stored.

`body`: a bare Python process in a body's place, spoken to over stdio by the bench's own raw MCP client
(`_raw_mcp_client.py`: `initialize`, `notifications/initialized`, `tools/call`). A thread of its own holds the
server's event stream (a plain socket, blocking reads: the Swarm body's stream thread, without httpx) and sets the
kill flag; the main thread answers each `tools/call` in order: refused (`kill_switch_engaged`) when the flag is set,
else the file written (open, write, close; no sync) after `CPU_MS` of CPU burnt (0: a write and nothing more; a
body's measured CPU per write: what that CPU alone costs a fan-out on these cores). Nothing is audited, nothing is
synced: this is the floor, not a body.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class _Server:
    def __init__(self) -> None:
        self.streams: set[asyncio.StreamWriter] = set()

    async def publish(self, event: str) -> None:
        frame = f"event: {event}\ndata: {{}}\n\n".encode()
        for writer in list(self.streams):
            writer.write(frame)
        for writer in list(self.streams):
            try:
                await writer.drain()
            except ConnectionError:
                self.streams.discard(writer)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                if method == "GET" and target.startswith("/events"):
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n"
                    )
                    await writer.drain()
                    self.streams.add(writer)
                    await reader.read()  # (until the body goes)
                    self.streams.discard(writer)
                    return
                if method == "POST" and target in ("/v1/kill", "/v1/resume"):
                    await self.publish("kill" if target == "/v1/kill" else "resume")
                    body = b'{"ok":true}'
                    status = b"200 OK"
                elif method == "GET" and target == "/v1/status":
                    body, status = b'{"ok":true}', b"200 OK"
                else:
                    body, status = b'{"error":"not found"}', b"404 Not Found"
                writer.write(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _serve(port: int) -> None:
    server = _Server()
    listening = await asyncio.start_server(server.serve, "127.0.0.1", port)
    async with listening:
        await listening.serve_forever()


class _Body:
    def __init__(self, url: str, workspace: Path, cpu_ms: float) -> None:
        self.killed = False
        self.connected = threading.Event()
        self.workspace = workspace
        self.cpu_s = cpu_ms / 1000
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)

    def listen(self) -> None:
        """The stream thread: the kill flag set or cleared as each event is read."""
        with socket.create_connection(self.address) as sock:
            sock.sendall(b"GET /events HTTP/1.1\r\nhost: floor\r\naccept: text/event-stream\r\n\r\n")
            stream = sock.makefile("rb")
            while stream.readline() not in (b"\r\n", b""):
                pass  # (the response's head)
            self.connected.set()
            for line in stream:
                if line.startswith(b"event: "):
                    self.killed = line[7:].strip() == b"kill"

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        method = request.get("method")
        if method == "initialize":
            return {
                "protocolVersion": request["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "kill-floor", "version": "0"},
            }
        if method != "tools/call":
            return {}
        if self.killed:
            refusal = {"code": "kill_switch_engaged", "message": "the kill switch is engaged"}
            return {
                "content": [{"type": "text", "text": json.dumps(refusal)}],
                "structuredContent": refusal,
                "isError": True,
            }
        arguments: dict[str, Any] = request["params"].get("arguments") or {}
        until = time.thread_time() + self.cpu_s
        while time.thread_time() < until:
            pass
        path = self.workspace / str(arguments.get("path", "out.txt"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(arguments.get("content", "")))
        done = {"written": str(path.relative_to(self.workspace))}
        return {"content": [{"type": "text", "text": json.dumps(done)}], "structuredContent": done, "isError": False}

    def serve(self) -> None:
        threading.Thread(target=self.listen, name="floor-stream", daemon=True).start()
        if not self.connected.wait(30):
            raise SystemExit("the floor's server did not answer")
        out = sys.stdout.buffer
        for line in sys.stdin.buffer:
            request = json.loads(line)
            if "id" not in request:
                continue  # (a notification)
            reply = {"jsonrpc": "2.0", "id": request["id"], "result": self.answer(request)}
            out.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
            out.flush()


def listen(url: str, token: str, out: Path) -> None:
    """A listener on the real brain's stream (a body token of its own, naming no real body), in a process of its
    own: the wall time each `kill` event was read, one a line in `out` (the timeline's "published" hop)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80)) as sock, out.open("a") as log:
        sock.sendall(
            f"GET /v1/events?body_id=kill-listener HTTP/1.1\r\nhost: brain\r\naccept: text/event-stream\r\n"
            f"authorization: Bearer {token}\r\n\r\n".encode()
        )
        for line in sock.makefile("rb"):
            if line.startswith(b"event: kill"):
                log.write(f"{time.time():.6f}\n")
                log.flush()


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "server":
        asyncio.run(_serve(int(argv[1])))
    elif len(argv) == 4 and argv[0] == "listen":
        listen(argv[1], argv[2], Path(argv[3]))
    elif len(argv) == 4 and argv[0] == "body":
        _Body(argv[1], Path(argv[2]), float(argv[3])).serve()
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
