"""Adversarial review of #21 (the compliance gate, `body_mcp.compliance` behind the real `CountingProxy`): paths an
origin server reads as a disallowed one, robots.txt answers that are odd, and what one tunnel may carry past a
site's per-minute cap. Real HTTP servers on 127.0.0.1, reached by a pinned name."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Generator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSStream

from body_mcp.compliance import WINDOWS_FILE, Compliance
from body_mcp.proxy import CountingProxy
from shared_protocol.config import ComplianceConfig
from tests.body.proxy_sites import gate, get, site
from tests.fakes.static_http import Reply, Tls, self_signed, serve_static

pytestmark = pytest.mark.anyio

HOST = "site.test"


def proxy_for(port: int, compliance: Compliance, *, max_exchanges_per_tunnel: int = 100) -> CountingProxy:
    pins = {HOST: f"127.0.0.1:{port}"}
    return CountingProxy(
        allowed_domains=[HOST],
        pinned_hosts=pins,
        max_requests=100,
        compliance=compliance,
        max_exchanges_per_tunnel=max_exchanges_per_tunnel,
    )


READ_AS_PRIVATE = ["/pub/../private/x", "//private/x", "/./private/x", "/pub/%2e%2e/private/x", "/pub/%2E%2E/private/x"]


async def test_a_path_the_server_reads_as_a_disallowed_one_is_refused() -> None:
    """Was a hole (medium): robots.txt was matched against the path as the command wrote it, and `protego` does not
    resolve dot segments or doubled slashes, so `curl --path-as-is http://site/pub/../private/x` (or `//private/x`,
    `/pub/%2e%2e/private/x`) passed a `Disallow: /private` while the server (nginx, Apache: RFC 3986 5.2.4, merged
    slashes) served `/private/x`. Fixed in `Compliance.robots`: the path is also matched with its dot segments
    removed (`%2e` read as `.`) and its slashes merged (`compliance.read_as`); any form disallowed refuses it (the
    request is sent as written)."""
    with site(Reply(200, b"User-agent: *\nDisallow: /private\n")) as (port, asked):
        proxy = proxy_for(port, gate())
        async with proxy:
            answers = {path: await get(proxy, f"http://{HOST}{path}") for path in READ_AS_PRIVATE}
            assert (await get(proxy, f"http://{HOST}/pub/../pub/ok"))[0] == 200, "a harmless dot segment still passes"
    assert {path: status for path, (status, _) in answers.items()} == dict.fromkeys(READ_AS_PRIVATE, 403)
    assert all(b"robots.txt disallows" in reason for _, reason in answers.values())
    assert asked == ["/robots.txt", "/pub/../pub/ok"]


async def test_a_robots_txt_saved_with_a_byte_order_mark_still_applies() -> None:
    """Was a hole (medium): robots.txt was decoded as plain UTF-8, so one saved with a byte order mark (as Windows
    editors do) began with U+FEFF: `protego` did not read its first line as `User-agent`, the group was lost and
    every path allowed. Reproduce: serve EF BB BF, `User-agent: *`, `Disallow: /private`; `GET /private/x` was
    served. Fixed in `Compliance._fetch`: decoded as `utf-8-sig` (the mark dropped, as Google's parser does)."""
    with site(Reply(200, b"\xef\xbb\xbfUser-agent: *\nDisallow: /private\n")) as (port, asked):
        proxy = proxy_for(port, gate())
        async with proxy:
            status, reason = await get(proxy, f"http://{HOST}/private/x")
    assert status == 403, reason
    assert asked == ["/robots.txt"]


def redirecting(location: str, *, hops: int = 1) -> Callable[[str], Reply]:
    """`/robots.txt` redirected (through `hops` - 1 more redirects on the same host) to `location`, which
    disallows `/private`; other paths 200."""

    def answer(path: str) -> Reply:
        if path == "/robots.txt":
            return Reply(301, headers={"Location": "/hop/1" if hops > 1 else location})
        if path.startswith("/hop/"):
            n = int(path.removeprefix("/hop/"))
            return Reply(302, headers={"Location": f"/hop/{n + 1}" if n + 1 < hops else location})
        if path == "/robots/real.txt":
            return Reply(200, b"User-agent: *\nDisallow: /private\n")
        return Reply(200, path.encode())

    return answer


async def test_a_robots_txt_moved_on_its_host_is_followed() -> None:
    """Was a hole (medium): RFC 9309 2.3.1.2: a crawler SHOULD follow at least five redirects for robots.txt; the
    gate took any 3xx as "no robots.txt" (allow all), so a site whose `/robots.txt` redirects to another path had
    its `Disallow` ignored. Reproduce: `/robots.txt` 301 to `/robots/real.txt` (through up to five hops) that
    disallows `/private`; `GET http://site/private/x` was served. Fixed in `compliance._follow_robots`: redirects on
    the same host and port over plain HTTP are followed, five at most (a sixth counts as none, as the RFC allows)."""
    for hops, expected in ((1, 403), (5, 403), (6, 200)):
        with serve_static(redirecting("/robots/real.txt", hops=hops), keep_alive=True) as served:
            proxy = proxy_for(served.port, gate())
            async with proxy:
                status, _ = await get(proxy, f"http://{HOST}/private/x")
        assert status == expected, f"{hops} hops: served past a redirected robots.txt; asked {served.asked}"


async def test_a_robots_txt_redirected_to_https_is_not_read_as_none() -> None:
    """Was a hole (low): the commonest robots.txt redirect, `http://site/robots.txt` -> `https://site/robots.txt`,
    was not followed (the gate spoke plain HTTP only) and was read as no robots.txt: every plain-HTTP path of such a
    site was allowed whatever its rules. Fixed in `compliance._follow_robots`: redirects are followed wherever they
    lead (RFC 9309 2.3.1.2), https over verified TLS; here port 443 is pinned to the plain server, so the
    handshake fails and robots.txt is unreachable (disallow all), never none. A redirect followed to real
    https is `test_a_robots_txt_redirected_to_https_or_another_host_is_followed`."""
    with serve_static(redirecting(f"https://{HOST}/robots.txt"), keep_alive=True) as served:
        proxy = proxy_for(served.port, gate())
        async with proxy:
            status, reason = await get(proxy, f"http://{HOST}/private/x")
            public, _ = await get(proxy, f"http://{HOST}/public")
    assert status == 403, f"served past a robots.txt redirected to https; asked {served.asked}"
    assert public == 403 and b"robots.txt could not be fetched" in reason, reason


@pytest.fixture
def trusted_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server context for `site.test` and `other.test`, its self-signed certificate the only one trusted by
    `ssl.create_default_context()` (`SSL_CERT_FILE`), as a real CA's would be."""
    tls = self_signed(tmp_path, HOST, "other.test")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.cert))
    return tls.server


async def test_a_robots_txt_redirected_to_https_or_another_host_is_followed(trusted_tls: ssl.SSLContext) -> None:
    """RFC 9309 2.3.1.2: redirects are followed even across authorities, five in a row: to https on the same host
    (verified TLS), to another host (its pin, checked as a request's address is), to `http://site.test:80/` (the
    default port written out, which the old check read as another authority). A redirect to a host that leads to
    a loopback address is not fetched: unreachable (disallow all), as is a certificate for another name."""
    disallow = Reply(200, b"User-agent: *\nDisallow: /private\n")
    with (
        serve_static(lambda path: disallow if path == "/robots/real.txt" else Reply(404), tls=trusted_tls) as tls_site,
        serve_static(lambda path: disallow if path == "/robots/real.txt" else Reply(404)) as other,
    ):
        cases = {
            f"https://{HOST}/robots/real.txt": 403,
            f"https://{HOST}:443/robots/real.txt": 403,
            "http://other.test/robots/real.txt": 403,
            f"http://{HOST}:80/robots/real.txt": 403,
            f"http://{HOST}/robots/none.txt": 200,
        }
        location = [""]
        # (one site redirecting where `location` says; robots.txt kept 0 s, so each case fetches it anew)
        with serve_static(lambda path: redirecting(location[0])(path), keep_alive=True) as served:
            pins = {
                HOST: f"127.0.0.1:{served.port}",
                f"{HOST}:443": f"127.0.0.1:{tls_site.port}",
                "other.test": f"127.0.0.1:{other.port}",
            }
            proxy = CountingProxy(
                allowed_domains=[HOST], pinned_hosts=pins, max_requests=10, compliance=gate(robots_ttl_s=0)
            )
            async with proxy:
                for location[0], expected in cases.items():
                    status, reason = await get(proxy, f"http://{HOST}/private/x")
                    assert status == expected, f"redirected to {location[0]}: {reason!r}; asked {served.asked}"
        # (a redirect to a host that resolves to loopback: the gate does not fetch it, as a request would not)
        with serve_static(redirecting("http://localhost/robots/real.txt"), keep_alive=True) as served:
            proxy = proxy_for(served.port, gate())
            async with proxy:
                status, reason = await get(proxy, f"http://{HOST}/public")
        assert status == 403 and b"could not be fetched" in reason, reason
    assert tls_site.asked == ["/robots/real.txt", "/robots/real.txt"]
    assert other.asked == ["/robots/real.txt"]


@contextmanager
def trickle(chunk: bytes, *, headers: bytes, every_s: float) -> Generator[int]:
    """A server whose every answer is `headers` then `chunk` again and again, one each `every_s`, never ending."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(4096)
                try:
                    conn.sendall(headers)
                    while not stop.wait(every_s):
                        conn.sendall(chunk)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()


@pytest.mark.parametrize("every_s", [0.0, 0.05], ids=["endless-fast", "slow-drip"])
async def test_an_endless_or_dripping_robots_txt_disallows_all_within_its_timeout(every_s: float) -> None:
    """Withstood: a robots.txt that never ends (fast: the read stops at 576 KiB, then RFC 9309's first 500 KiB are
    parsed; `Disallow: /` is in them) or drips a byte at a time (the fetch times out: unreachable, disallow all)."""
    head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nUser-agent: *\nDisallow: /\n"
    with trickle(b"#" * (64 * 1024 if every_s == 0 else 1), headers=head, every_s=every_s) as port:
        proxy = proxy_for(port, gate(robots_timeout_s=0.3))
        async with proxy:
            with anyio.fail_after(5):
                status, reason = await get(proxy, f"http://{HOST}/anything")
    assert status == 403, reason
    assert [r.rule for r in proxy.requests] == ["robots"]


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return self_signed(tmp_path, HOST)


async def connect(proxy: CountingProxy, port: int, tls: Tls) -> tuple[TLSStream, BufferedByteReceiveStream]:
    """A CONNECT tunnel to the site, and TLS inside it, as an HTTPS client makes them."""
    raw = await anyio.connect_unix(proxy.socket_path)
    head = BufferedByteReceiveStream(raw)
    await raw.send(f"CONNECT {HOST}:{port} HTTP/1.1\r\n\r\n".encode())
    assert (await head.receive_until(b"\r\n\r\n", 4096)).startswith(b"HTTP/1.1 200")
    stream = await TLSStream.wrap(raw, hostname=HOST, ssl_context=tls.client, standard_compatible=False)
    return stream, BufferedByteReceiveStream(stream)


async def read_answers(stream: BufferedByteReceiveStream, n: int, on_each: Callable[[], object] = lambda: None) -> int:
    """Read up to `n` HTTP answers from a tunnel; how many came before it closed."""
    for got in range(n):
        try:
            head = await stream.receive_until(b"\r\n\r\n", 4096)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
            return got
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await stream.receive_exactly(length)
        on_each()
    return n


async def test_a_sites_per_minute_cap_holds_inside_a_tunnel(tls: Tls) -> None:
    """Was a hole (medium): a site's terms rule `max_requests_per_minute = 2` was counted per CONNECT, and one
    keep-alive tunnel carries up to `max_exchanges_per_tunnel` (100) requests, so an HTTPS client made 5 (or 100)
    calls a minute to a site whose terms allow 2. Fixed in `CountingProxy._tunnel`: to a host with a per-minute
    cap, each TLS application-data record after a tunnel's first (TLS 1.3's Finished aside) is counted against it
    too, and the tunnel is cut (recorded `rate`) at the record the cap refuses. (Real TLS in the tunnel: a tunnel
    carries TLS or nothing.)"""
    with site(Reply(404), tls) as (port, asked):
        proxy = proxy_for(port, gate(robots=False, domains={HOST: {"max_requests_per_minute": 2}}))
        async with proxy:
            with anyio.fail_after(10):
                stream, reader = await connect(proxy, port, tls)
                async with stream:
                    answered = 0
                    for n in range(5):
                        try:
                            await stream.send(f"GET /call/{n} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                        except (anyio.BrokenResourceError, OSError):
                            break
                        if await read_answers(reader, 1) == 0:
                            break
                        answered += 1
    assert len(asked) <= 2, f"the site was called {len(asked)} times in a minute past its cap of 2: {asked}"
    assert answered == 2
    assert [r.rule for r in proxy.requests] == [None, "rate"]


async def test_pipelined_requests_in_one_exchange_are_bounded(tls: Tls) -> None:
    """Was a hole (medium): the tunnel cap counted exchanges (the client speaking again after the server
    answered), so a client that pipelines (HTTP/1.1 requests back to back, HTTP/2 streams in one flight) sent any
    number of calls as one exchange: with `max_exchanges_per_tunnel = 3`, 50 pipelined requests all reached the
    server through one CONNECT that counted once. Fixed in `CountingProxy._tunnel` (`_TlsRecords`): a tunnel
    must carry TLS, and each application-data record the client sends is a call, so 50 requests written one by one
    without waiting are cut after 3. The harness changed with the design: the pipeline the old test wrote as plain
    HTTP through the tunnel is now refused at its first bytes (a 403 saying to send it as a proxy request), and the
    pipeline is sent over real TLS, each request its own write (as HTTP/1.1 and HTTP/2 clients write them); one
    write of many requests is one record, bounded by what a record holds (16 KiB), as the README says."""
    pipeline = [f"GET /p/{n} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode() for n in range(50)]
    with site(Reply(404), tls) as (port, asked):
        proxy = proxy_for(port, gate(robots=False), max_exchanges_per_tunnel=3)
        async with proxy:
            with anyio.fail_after(10):
                stream, reader = await connect(proxy, port, tls)
                async with stream:
                    with contextlib.suppress(anyio.BrokenResourceError, OSError):
                        for request in pipeline:
                            await stream.send(request)
                    answered = await read_answers(reader, 50)
                raw = await anyio.connect_unix(proxy.socket_path)
                async with raw:
                    head = BufferedByteReceiveStream(raw)
                    await raw.send(f"CONNECT {HOST}:{port} HTTP/1.1\r\n\r\n".encode() + b"".join(pipeline))
                    assert (await head.receive_until(b"\r\n\r\n", 4096)).startswith(b"HTTP/1.1 200")
                    refusal = await head.receive_until(b"\r\n\r\n", 4096)
                    body = await head.receive(4096)
    assert len(asked) <= 3, f"{len(asked)} requests reached the server through one tunnel capped at 3 records"
    assert answered <= len(asked), "no more answers than requests that reached the server"
    assert refusal.startswith(b"HTTP/1.1 403") and b"must carry TLS" in body, (refusal, body)
    assert [r.rule for r in proxy.requests] == [None, "tunnel_cap", None, "tunnel_tls"]


async def test_a_request_pipelined_behind_an_allowed_one_and_an_escaped_path_are_not_let_through() -> None:
    """Withstood: plain HTTP is one request per connection (the proxy sends exactly the first request's body,
    then `Connection: close`), so a disallowed request written right behind an allowed one never leaves; a path
    whose letters are percent-escaped (`/%70rivate`) is the path robots.txt disallows (`protego` decodes them);
    robots.txt paths are case-sensitive (RFC 9309 2.2.2), so `/PRIVATE` is another path."""
    with site(Reply(200, b"User-agent: *\nDisallow: /private\n")) as (port, asked):
        proxy = proxy_for(port, gate())
        async with proxy:
            with anyio.fail_after(10):
                async with await anyio.connect_unix(proxy.socket_path) as stream:
                    await stream.send(
                        f"GET http://{HOST}/public HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
                        f"GET http://{HOST}/private/x HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
                    )
                    received = b""
                    async for chunk in stream:
                        received += chunk
            escaped, _ = await get(proxy, f"http://{HOST}/%70rivate/x")
            upper, _ = await get(proxy, f"http://{HOST}/PRIVATE/x")
    assert received.startswith(b"HTTP/1.1 200") and received.count(b"HTTP/1.") == 1, received
    assert (escaped, upper) == (403, 200)
    assert asked == ["/robots.txt", "/public", "/PRIVATE/x"], "the pipelined request never reached the server"


async def test_a_sites_per_minute_cap_holds_across_the_agents_of_one_machine(tmp_path: Path) -> None:
    """Was a hole (low): `Compliance` (the per-minute windows of `[compliance.domains]`) is made once per body
    (`Body.__init__`), and `swarm agents up` runs one body per agent, so with a site's terms at
    `max_requests_per_minute = 2` and three agents the site was called 6 times a minute from this machine. Fixed in
    `compliance.RateWindows`: the windows are a SQLite table in `$SWARM_HOME/compliance-rates.sqlite`, which
    every body's `Compliance` opens (`Body` passes `windows=`), counted in one `BEGIN IMMEDIATE` transaction. The
    harness now gives each of the three gates that file, as `Body` does (a gate made without one keeps a private
    window: it stands for one body alone); a fourth gate opened on the file later (a restarted body) is refused
    too."""
    config = ComplianceConfig.model_validate({"robots": False, "domains": {HOST: {"max_requests_per_minute": 2}}})
    windows = tmp_path / WINDOWS_FILE
    statuses: list[int] = []
    with site(Reply(404)) as (port, asked):
        for _agent in range(3):
            proxy = proxy_for(port, Compliance(config, windows=windows))
            async with proxy:
                for n in range(2):
                    statuses.append((await get(proxy, f"http://{HOST}/call/{n}"))[0])
        restarted = Compliance(config, windows=windows)
        assert await restarted.admit(HOST) is not None, "a restarted body starts with the minute's calls counted"
    assert len(asked) <= 2, f"the site was called {len(asked)} times in a minute, past its cap of 2"
    assert statuses == [200, 200, 429, 429, 429, 429]
