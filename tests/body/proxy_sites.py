"""What the compliance gate's tests share: a site on 127.0.0.1 with a robots.txt, a plain-HTTP request through the
proxy, and a gate made from config (`tests/body/test_compliance.py`, the #21 reviews in `tests/privacy/`)."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from urllib.parse import urlsplit

import anyio

from body_mcp.compliance import Compliance
from body_mcp.proxy import CountingProxy
from shared_protocol.config import ComplianceConfig
from tests.fakes.static_http import Reply, Tls, serve_static

ROBOTS = b"User-agent: *\nDisallow: /private/\nAllow: /private/open\n\nUser-agent: OtherBot\nDisallow: /\n"


@contextmanager
def site(robots: Reply | bytes | int = ROBOTS, tls: Tls | None = None) -> Generator[tuple[int, list[str]]]:
    """An HTTP/1.1 server (keep-alive; HTTPS with `tls`) on 127.0.0.1: `/robots.txt` answers `robots` (a reply, a
    body served with 200, or a bare status), every other path 200 with the path as body; yields its port and the
    paths asked, in order."""
    if isinstance(robots, int):
        robots = Reply(robots)
    elif isinstance(robots, bytes):
        robots = Reply(200, robots)
    answer_robots = robots

    def answer(path: str) -> Reply:
        return answer_robots if path == "/robots.txt" else Reply(200, path.encode())

    with serve_static(answer, keep_alive=True, tls=None if tls is None else tls.server) as served:
        yield served.port, served.asked


async def get(proxy: CountingProxy, url: str) -> tuple[int, bytes]:
    """A plain-HTTP request through the proxy (the URL sent exactly as written, `Host` its host): status and body."""
    with anyio.fail_after(10):
        async with await anyio.connect_unix(proxy.socket_path) as stream:
            await stream.send(f"GET {url} HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n\r\n".encode())
            received = b""
            async for chunk in stream:
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def gate(clock: list[float] | None = None, **config: object) -> Compliance:
    """A gate from `[compliance]` settings (`clock[0]` its wall clock, if given)."""
    settings = ComplianceConfig.model_validate(config)
    if clock is None:
        return Compliance(settings)
    return Compliance(settings, clock=lambda: clock[0])
