"""A plain HTTP server on 127.0.0.1 answering GET and HEAD from a function of the path, in a thread: for the
tests that send real requests from the sandbox through the body's proxy (package indexes, registries, robots.txt).

    with serve_static(lambda path: Reply(200, b"hello")) as site:
        site.port, site.asked    # the paths requested, in order (HEADs included)
"""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
from collections.abc import Callable, Generator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain"
    headers: Mapping[str, str] = field(default_factory=dict[str, str])


NOT_FOUND = Reply(404)


@dataclass
class Site:
    port: int
    asked: list[str] = field(default_factory=list[str])
    """The paths requested, in order."""


def routes(table: Mapping[str, Reply]) -> Callable[[str], Reply]:
    """Answer a fixed table of paths (the query string ignored); 404 for the rest."""
    return lambda path: table.get(path.split("?")[0], NOT_FOUND)


@contextmanager
def serve_static(
    answer: Callable[[str], Reply], *, keep_alive: bool = False, tls: ssl.SSLContext | None = None
) -> Generator[Site]:
    """Serve `answer(path)` for every GET and HEAD until the block ends. `keep_alive`: HTTP/1.1 connections that
    stay open between requests (for tests of what one connection may carry). `tls`: HTTPS, with that server
    context."""
    site = Site(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

        def do_GET(self) -> None:
            body = self._head()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # (a client that hung up)
                self.wfile.write(body)

        def do_HEAD(self) -> None:  # (uv asks before it fetches a wheel)
            self._head()

        def _head(self) -> bytes:
            site.asked.append(self.path)
            reply = answer(self.path)
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            return reply.body

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    site.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
