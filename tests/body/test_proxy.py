"""The counting proxy: allow-list, budget and relaying, against real servers on 127.0.0.1 and the real sandbox."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from body_mcp.exceptions import ConfigError
from body_mcp.proxy import AllowList, CountingProxy, ProxyRequest
from sandbox import BwrapOverlaySandbox, ProxyNetwork, SandboxSpec, default_toolchain_paths

from ..conftest import require_binary

pytestmark = pytest.mark.anyio

Handler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


class Origin:
    """An HTTP server that records request heads and echoes the request body (a keep-alive answer, then closes)."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            head = await reader.receive_until(b"\r\n\r\n", 65536)
            self.heads.append(head)
            body = b""
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    body = await reader.receive_exactly(int(value))
                elif name.lower() == b"transfer-encoding":
                    body = await reader.receive_until(b"\r\n0\r\n\r\n", 65536) + b"\r\n0\r\n\r\n"
            reply = b"echo:" + body
            await stream.send(
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(reply), reply)
            )


async def echo(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        async for chunk in stream:
            await stream.send(chunk)


@asynccontextmanager
async def serving(handler: Handler) -> AsyncGenerator[int]:
    """A TCP server on 127.0.0.1 for the block; yields its port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, handler)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        group.cancel_scope.cancel()


async def exchange(proxy: CountingProxy, request: bytes) -> tuple[int, bytes]:
    """Send one request to the proxy's socket; return the status and everything answered until it closed."""
    with anyio.fail_after(5):
        async with await anyio.connect_unix(proxy.socket_path) as stream:
            await stream.send(request)
            answer = b""
            async for chunk in stream:
                answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def get(port: int, path: str = "/", extra: bytes = b"") -> bytes:
    return b"GET http://127.0.0.1:%d%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (port, path.encode(), extra)


def proxy_for(
    *ports: int, max_requests: int = 100, on_request: Callable[[ProxyRequest], None] | None = None
) -> CountingProxy:
    # A loopback address is refused unless pinned: these tests' servers are all on 127.0.0.1, each port pinned (a
    # pin without a port serves 80 and 443 only).
    pins = {f"127.0.0.1:{port}": "127.0.0.1" for port in ports}
    return CountingProxy(
        allowed_domains=["127.0.0.1"], pinned_hosts=pins, max_requests=max_requests, on_request=on_request
    )


@pytest.mark.parametrize(
    ("patterns", "host", "port", "allowed"),
    [
        (["pypi.org"], "pypi.org", 443, True),
        (["PyPI.org."], "pypi.org", 80, True),
        (["pypi.org"], "files.pypi.org", 443, False),
        (["*.pythonhosted.org"], "files.pythonhosted.org", 443, True),
        (["*.pythonhosted.org"], "pythonhosted.org", 443, False),
        (["*.pythonhosted.org"], "evilpythonhosted.org", 443, False),
        (["pypi.org:443"], "pypi.org", 443, True),
        (["pypi.org:443"], "pypi.org", 80, False),
        (["*.0.1"], "127.0.0.1", 80, False),
        (["127.0.0.1"], "127.0.0.1", 8080, True),
        (["[::1]:8080"], "::1", 8080, True),
        ([], "pypi.org", 443, False),
    ],
)
def test_the_allow_list_matches_hosts_wildcards_and_ports(
    patterns: list[str], host: str, port: int, allowed: bool
) -> None:
    assert AllowList(patterns).allows(host, port) is allowed


@pytest.mark.parametrize("pattern", ["*", "*.", "pypi.org:0", "pypi.org:http", "bad host", "[::1"])
def test_an_invalid_allow_list_entry_is_a_config_error(pattern: str) -> None:
    with pytest.raises(ConfigError):
        AllowList([pattern])


async def test_allowed_plain_http_is_forwarded_in_origin_form_and_counted() -> None:
    origin = Origin()
    seen: list[ProxyRequest] = []
    async with serving(origin.handle) as port, proxy_for(port, on_request=seen.append) as proxy:
        extra = b"Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n"
        status, answer = await exchange(proxy, get(port, "/simple?q=1", extra))
    assert status == 200
    assert answer.endswith(b"\r\n\r\necho:")
    assert b"Connection: close\r\n" in answer and b"Keep-Alive" not in answer
    head = origin.heads[0].split(b"\r\n")
    assert head[0] == b"GET /simple?q=1 HTTP/1.1"
    assert {line.partition(b":")[0].lower() for line in head[1:]} == {b"host", b"x-kept", b"connection"}
    assert b"Host: 127.0.0.1:%d" % port in head and b"Connection: close" in head
    assert proxy.counted == 1 and proxy.refused == 0
    assert seen == proxy.requests
    assert [(r.method, r.host, r.port, r.allowed, r.status) for r in seen] == [("GET", "127.0.0.1", port, True, 200)]


@pytest.mark.parametrize(
    ("headers", "body"),
    [(b"Content-Length: 5\r\n", b"hello"), (b"Transfer-Encoding: chunked\r\n", b"5;x=y\r\nhello\r\n0\r\n\r\n")],
)
async def test_a_request_body_is_forwarded_exactly(headers: bytes, body: bytes) -> None:
    origin = Origin()
    async with serving(origin.handle) as port, proxy_for(port) as proxy:
        request = b"POST http://127.0.0.1:%d/up HTTP/1.1\r\n%s\r\n%s" % (port, headers, body)
        status, answer = await exchange(proxy, request)
    assert status == 200
    assert answer.endswith(b"echo:" + body)
    assert proxy.counted == 1


HELLO = b"\x16\x03\x01\x00\x04ping"
"""A TLS handshake record (type 22, TLS 1.0 on the wire as a ClientHello's is, 4 bytes)."""
DATA = b"\x17\x03\x03\x00\x04pong"
"""A TLS application-data record."""


async def test_connect_to_an_allowed_host_relays_bytes_both_ways() -> None:
    async with serving(echo) as port, proxy_for(port) as proxy:
        with anyio.fail_after(5):
            async with await anyio.connect_unix(proxy.socket_path) as stream:
                reader = BufferedByteReceiveStream(stream)
                # Bytes sent right behind the CONNECT head must reach the upstream too. (A tunnel carries TLS: the
                # bytes are TLS records, a handshake one first, as far as the proxy reads them: their headers.)
                await stream.send(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n%s" % (port, HELLO))
                assert (await reader.receive_until(b"\r\n\r\n", 4096)).split(b" ")[1] == b"200"
                assert await reader.receive_exactly(len(HELLO)) == HELLO
                await stream.send(DATA)
                assert await reader.receive_exactly(len(DATA)) == DATA
                await stream.send_eof()
                with pytest.raises(anyio.EndOfStream):
                    await reader.receive()
    assert [(r.method, r.allowed, r.status) for r in proxy.requests] == [("CONNECT", True, 200)]
    assert proxy.counted == 1


@pytest.mark.parametrize(
    ("after_hello", "echoed", "rule"),
    [
        # Records trickled a byte at a time are still read by their headers: the third DATA is the cap's third.
        (DATA * 3, HELLO + DATA * 2, "tunnel_cap"),
        # A heartbeat, an SSLv2-looking version, a record longer than TLS allows: not TLS, cut where it starts.
        (DATA + b"\x18\x03\x03\x00\x01x", HELLO + DATA, "tunnel_tls"),
        (b"\x17\x02\x00\x00\x01x", HELLO, "tunnel_tls"),
        (b"\x17\x03\x03\x48\x01", HELLO, "tunnel_tls"),
    ],
    ids=["capped-byte-by-byte", "heartbeat", "not-tls-version", "too-long"],
)
async def test_a_tunnel_reads_its_tls_records_and_cuts_what_is_not_tls_or_over_its_cap(
    after_hello: bytes, echoed: bytes, rule: str
) -> None:
    async with serving(echo) as port:
        proxy = CountingProxy(
            allowed_domains=["127.0.0.1"],
            pinned_hosts={f"127.0.0.1:{port}": "127.0.0.1"},
            max_requests=10,
            max_exchanges_per_tunnel=2,
        )
        async with proxy:
            with anyio.fail_after(5):
                async with await anyio.connect_unix(proxy.socket_path) as stream:
                    reader = BufferedByteReceiveStream(stream)
                    await stream.send(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % port)
                    await reader.receive_until(b"\r\n\r\n", 4096)
                    with contextlib.suppress(anyio.BrokenResourceError, OSError):
                        for byte in HELLO + after_hello:
                            await stream.send(bytes([byte]))
                            await anyio.sleep(0)  # (let each byte be a chunk of its own)
                    got = b""
                    with contextlib.suppress(anyio.BrokenResourceError, OSError):
                        async for chunk in reader:
                            got += chunk
    assert got == echoed
    assert [r.rule for r in proxy.requests] == [None, rule]


async def test_hosts_off_the_allow_list_get_403_and_are_recorded_as_refused() -> None:
    origin = Origin()
    async with serving(origin.handle) as port, proxy_for(port) as proxy:
        assert (await exchange(proxy, b"CONNECT pypi.org:443 HTTP/1.1\r\n\r\n"))[0] == 403
        # localhost is 127.0.0.1, but only names on the list count.
        assert (await exchange(proxy, b"GET http://localhost:%d/ HTTP/1.1\r\n\r\n" % port))[0] == 403
    assert origin.heads == []
    assert [(r.host, r.allowed, r.status) for r in proxy.requests] == [
        ("pypi.org", False, 403),
        ("localhost", False, 403),
    ]
    assert proxy.counted == 0 and proxy.refused == 2


async def test_the_request_past_the_budget_gets_429() -> None:
    origin = Origin()
    async with serving(origin.handle) as port, proxy_for(port, max_requests=2) as proxy:
        statuses = [(await exchange(proxy, get(port)))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert len(origin.heads) == 2
    assert proxy.counted == 2 and proxy.refused == 1


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"garbage\r\n\r\n",
        b"GET /relative HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET https://127.0.0.1/ HTTP/1.1\r\n\r\n",
        b"GET http://user:pw@127.0.0.1/ HTTP/1.1\r\n\r\n",
        b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",
        b"GET http://127.0.0.1/ HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET http://127.0.0.1/ HTTP/1.1\r\n folded\r\n\r\n",
        b"POST http://127.0.0.1/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST http://127.0.0.1/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET http://127.0.0.1/ HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
)
async def test_malformed_requests_get_400_and_count_nothing(request_bytes: bytes) -> None:
    async with proxy_for() as proxy:
        assert (await exchange(proxy, request_bytes))[0] == 400
    assert proxy.requests == [] and proxy.counted == 0


async def test_an_unreachable_upstream_gets_502_and_still_counts() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    async with proxy_for(port) as proxy:
        assert (await exchange(proxy, get(port)))[0] == 502
    assert [(r.allowed, r.status) for r in proxy.requests] == [(True, 502)]
    assert proxy.counted == 1


async def test_a_failing_on_request_callback_makes_the_proxy_refuse_the_rest() -> None:
    def fail(_record: ProxyRequest) -> None:
        raise RuntimeError("the audit store is gone")

    origin = Origin()
    async with serving(origin.handle) as port, proxy_for(port, on_request=fail) as proxy:
        statuses = [(await exchange(proxy, get(port)))[0] for _ in range(2)]
    assert statuses == [200, 503]
    assert len(origin.heads) == 1


async def test_broken_clients_are_dropped_and_open_tunnels_closed_on_exit() -> None:
    origin = Origin()
    async with serving(echo) as echo_port, serving(origin.handle) as port:
        proxy = proxy_for(echo_port, port)
        async with proxy:
            async with await anyio.connect_unix(proxy.socket_path) as stream:
                await stream.send(b"GET http://127.0.0.1/ HTT")  # then vanish mid-head
            tunnel = await anyio.connect_unix(proxy.socket_path)
            await tunnel.send(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % echo_port)
            reader = BufferedByteReceiveStream(tunnel)
            assert (await reader.receive_until(b"\r\n\r\n", 4096)).split(b" ")[1] == b"200"
            assert (await exchange(proxy, get(port)))[0] == 200
            socket_path = proxy.socket_path
            assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
            assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
        with anyio.fail_after(2):
            # The proxy closed the open tunnel on its way out.
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await reader.receive()
        await tunnel.aclose()
    assert not socket_path.exists() and not socket_path.parent.exists()
    assert proxy.counted == 2


FETCH = """
import socket, sys, urllib.error, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/inside", timeout=10).read().decode())
try:
    urllib.request.urlopen("http://example.com/", timeout=10)
except urllib.error.HTTPError as error:
    print(error.code)
with socket.create_connection(("127.0.0.1", 3128), timeout=10) as tunnel:
    tunnel.sendall(f"CONNECT 127.0.0.1:{sys.argv[2]} HTTP/1.1\\r\\n\\r\\n".encode())
    answer = b""
    while not answer.endswith(b"\\r\\n\\r\\n"):
        answer += tunnel.recv(1)
    tunnel.sendall(b"\\x16\\x03\\x01\\x00\\x04ping")  # (a TLS handshake record: a tunnel carries TLS)
    tunnel.shutdown(socket.SHUT_WR)
    echoed = b""
    while chunk := tunnel.recv(4096):
        echoed += chunk
    print(answer.split()[1].decode(), echoed[5:].decode())
"""


@pytest.mark.bwrap
async def test_a_sandboxed_command_reaches_allowed_hosts_only_through_the_proxy(tmp_path: Path) -> None:
    require_binary("bwrap", "bubblewrap")
    sandbox = BwrapOverlaySandbox(staging_root=tmp_path)
    availability = sandbox.available()
    if not availability.ok:
        if os.environ.get("CI") == "true":
            pytest.fail(availability.reason)
        pytest.skip(availability.reason)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    # The venv's interpreter lives under the repository, which the sandbox does not expose; the base one does.
    python = str(Path(sys.base_prefix) / "bin" / "python3")
    origin = Origin()
    async with serving(origin.handle) as port, serving(echo) as echo_port, proxy_for(port, echo_port) as proxy:
        spec = SandboxSpec(
            workspace=workspace.resolve(),
            argv=[python, "-c", FETCH, str(port), str(echo_port)],
            env={"PATH": "/usr/local/bin:/usr/bin:/bin"},
            toolchain_paths=default_toolchain_paths(),
            hidden_paths=[],
            timeout_s=20,
            network=ProxyNetwork(socket_path=proxy.socket_path),
        )
        async with await sandbox.run(spec) as staged:
            assert staged.result.exit_code == 0, staged.result.stderr
            assert staged.result.stdout.splitlines() == ["echo:", "403", "200 ping"]
    assert [(r.method, r.host, r.allowed, r.status) for r in proxy.requests] == [
        ("GET", "127.0.0.1", True, 200),
        ("GET", "example.com", False, 403),
        ("CONNECT", "127.0.0.1", True, 200),
    ]
    assert proxy.counted == 2
