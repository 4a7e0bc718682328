"""Review of #21's newest fix (attack 21f): a CONNECT tunnel must carry TLS, and each application-data record the
client sends is a call against `max_exchanges_per_tunnel` and its site's per-minute cap (`_TlsRecords`,
`CountingProxy._tunnel`). Real proxies on a unix socket, a real echo server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from body_mcp.compliance import WINDOWS_FILE, Compliance
from body_mcp.proxy import CountingProxy, _TlsRecords  # pyright: ignore[reportPrivateUsage]
from shared_protocol.config import ComplianceConfig
from tests.body.test_proxy import echo, serving

pytestmark = pytest.mark.anyio


def record(kind: int, length: int) -> bytes:
    """A TLS record: its 5-byte clear header (type, TLS 1.2, length) and `length` bytes of payload."""
    return bytes([kind, 3, 3]) + length.to_bytes(2, "big") + b"x" * length


HELLO = record(22, 4)
DATA = record(23, 4)
CCS = record(20, 1)
ALERT = record(21, 2)


def proxy_to(port: int, **options: object) -> CountingProxy:
    return CountingProxy(
        allowed_domains=["127.0.0.1"],
        pinned_hosts={f"127.0.0.1:{port}": "127.0.0.1"},
        **options,  # pyright: ignore[reportArgumentType]
    )


async def through(
    proxy: CountingProxy, port: int, payload: bytes, *, bytewise: bool = False, host: str = "127.0.0.1"
) -> bytes:
    """What the echo upstream sent back for `payload` sent through a CONNECT tunnel to `host` (pinned to the echo
    server; byte by byte, if asked)."""
    got = b""
    with anyio.fail_after(5):
        async with await anyio.connect_unix(proxy.socket_path) as stream:
            reader = BufferedByteReceiveStream(stream)
            await stream.send(b"CONNECT %s:%d HTTP/1.1\r\n\r\n" % (host.encode(), port))
            assert (await reader.receive_until(b"\r\n\r\n", 4096)).split(b" ")[1] == b"200"
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                for piece in [bytes([b]) for b in payload] if bytewise else [payload]:
                    await stream.send(piece)
                    await anyio.sleep(0)
                await stream.send_eof()
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                async for chunk in reader:
                    got += chunk
    return got


async def test_records_split_at_every_byte_boundary_count_as_when_whole() -> None:
    """Held: a stream of records fed in two or three pieces, cut anywhere (in a header, at its edge, in a maximal
    record's payload), counts the same application-data records as when fed whole."""
    stream = HELLO + CCS + record(23, 5) + record(23, 2**14 + 2048) + ALERT + record(23, 1) + record(22, 7) + DATA
    whole = _TlsRecords().feed(stream)
    assert whole == 3  # (the one right after the ChangeCipherSpec is TLS 1.3's Finished: not counted)
    for cut in range(1, len(stream)):
        records = _TlsRecords()
        assert records.feed(stream[:cut]) + records.feed(stream[cut:]) == whole, cut
    for first in range(1, 40):
        for second in range(first + 1, 60):
            records = _TlsRecords()
            pieces = (stream[:first], stream[first:second], stream[second:])
            assert sum(records.feed(piece) for piece in pieces) == whole, (first, second)


@pytest.mark.parametrize(
    ("length", "passes"), [(2**14 + 2048, True), (2**14 + 2049, False), (0, False)], ids=["max", "max+1", "zero"]
)
async def test_a_record_of_the_largest_length_passes_and_a_longer_or_empty_one_cuts(length: int, passes: bool) -> None:
    """Held: a record as long as TLS allows goes through; one byte longer, or zero-length, is not TLS (cut)."""
    async with serving(echo) as port, proxy_to(port, max_requests=10, max_exchanges_per_tunnel=2) as proxy:
        got = await through(proxy, port, HELLO + record(23, length))
    assert (got == HELLO + record(23, length)) is passes
    assert [r.rule for r in proxy.requests] == ([None] if passes else [None, "tunnel_tls"])


async def test_a_change_cipher_spec_excuses_one_record_per_tunnel_only() -> None:
    """Held: a ChangeCipherSpec before each application-data record excuses the first alone (TLS 1.3's
    Finished); with a cap of 2, the fourth record is cut, byte by byte or whole."""
    payload = HELLO + (CCS + DATA) * 4
    async with serving(echo) as port, proxy_to(port, max_requests=10, max_exchanges_per_tunnel=2) as proxy:
        got = await through(proxy, port, payload, bytewise=True)
    assert got.count(DATA) == 3  # (one excused, two counted)
    assert [r.rule for r in proxy.requests] == [None, "tunnel_cap"]


async def test_tls_then_plain_http_in_the_same_tunnel_is_cut_where_it_stops_being_tls() -> None:
    """Held: a tunnel that sends TLS records, then a plain HTTP request, is cut at the request: the upstream gets
    the records and never the request; alerts do not count."""
    async with serving(echo) as port, proxy_to(port, max_requests=10, max_exchanges_per_tunnel=5) as proxy:
        got = await through(proxy, port, HELLO + ALERT + DATA + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytewise=True)
    assert got == HELLO + ALERT + DATA
    assert [r.rule for r in proxy.requests] == [None, "tunnel_tls"]


async def test_a_bad_tunnel_leaves_the_others_working() -> None:
    """Held: a tunnel cut for garbage and one cut at its cap leave a third tunnel of the same proxy relaying."""
    async with serving(echo) as port, proxy_to(port, max_requests=10, max_exchanges_per_tunnel=1) as proxy:
        async with anyio.create_task_group() as group:
            group.start_soon(through, proxy, port, HELLO + b"\x18\x03\x03\x00\x01x")
            group.start_soon(through, proxy, port, HELLO + DATA * 3)
        assert await through(proxy, port, HELLO + DATA) == HELLO + DATA
    assert sorted(str(r.rule) for r in proxy.requests) == ["None", "None", "None", "tunnel_cap", "tunnel_tls"]


async def test_each_record_of_a_tunnel_counts_against_the_budget() -> None:
    """Was a hole (high), fixed: max_requests=1, one CONNECT tunnel carrying 5 application-data records: all 5
    reached the upstream and `proxy.counted` was 1 (records after the first counted against
    `max_exchanges_per_tunnel` and the site's per-minute cap, never the budget). So the 1,000-call blast radius was
    1,000 tunnels x 100 records = 100,000 requests, and the audit's count showed 1,000. Now each record after the
    first counts against the budget too, and the tunnel is cut (`budget`) once it is spent."""
    async with serving(echo) as port, proxy_to(port, max_requests=1, max_exchanges_per_tunnel=100) as proxy:
        got = await through(proxy, port, HELLO + DATA * 5)
    assert got.count(DATA) <= 1, f"{got.count(DATA)} records went through on a budget of 1"
    assert proxy.counted >= got.count(DATA)


async def status_of(proxy: CountingProxy, request: bytes) -> tuple[int, float]:
    """The status a request to the proxy is answered, and how long the answer took."""
    start = time.monotonic()
    with anyio.fail_after(5):
        async with await anyio.connect_unix(proxy.socket_path) as stream:
            await stream.send(request)
            line = await BufferedByteReceiveStream(stream).receive_until(b"\r\n", 4096)
    return int(line.split(b" ")[1]), time.monotonic() - start


async def test_a_locked_rates_file_refuses_the_capped_requests_and_stalls_nothing_else(tmp_path: Path) -> None:
    """Was a hole (medium), fixed: a CONNECT to a capped site ran `RateWindows.take` synchronously on the proxy's
    event loop, with sqlite's busy timeout of 10 s, so a rates file another process held locked froze every tunnel
    and request of the body (and the body's MCP server) for as long; past 10 s `take` raised, and the client got no
    answer and no `ProxyRequest` recorded it. Now the count is taken in a worker thread within 1 s
    (`RateWindows.timeout_s`), and a capped request it could not count is refused (503, `rate`) and recorded.

    Here another connection (as another body's process would) holds `BEGIN IMMEDIATE` on
    `$SWARM_HOME/compliance-rates.sqlite` throughout: the capped CONNECT and plain GET are refused 503 once the
    second is over, while an uncapped tunnel through the same proxy relays at once and a heartbeat on the same loop
    never stands still."""
    windows = tmp_path / WINDOWS_FILE
    config = ComplianceConfig.model_validate(
        {"robots": False, "domains": {"127.0.0.1": {"max_requests_per_minute": 9}}}
    )
    compliance = Compliance(config, windows=windows)
    holder = sqlite3.connect(windows, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    gaps: list[float] = []
    capped: list[tuple[int, float]] = []

    async def heartbeat() -> None:
        last = time.monotonic()
        while True:
            await anyio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def ask(request: bytes) -> None:
        capped.append(await status_of(proxy, request))

    try:
        async with serving(echo) as port:
            proxy = CountingProxy(
                allowed_domains=["127.0.0.1", "uncapped.test"],
                pinned_hosts={f"127.0.0.1:{port}": "127.0.0.1", f"uncapped.test:{port}": "127.0.0.1"},
                max_requests=10,
                compliance=compliance,
            )
            async with proxy, anyio.create_task_group() as group:
                group.start_soon(heartbeat)
                async with anyio.create_task_group() as requests:
                    requests.start_soon(ask, b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n" % port)
                    requests.start_soon(ask, b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\n\r\n" % port)
                    with anyio.fail_after(2):
                        while proxy._pending < 2:  # pyright: ignore[reportPrivateUsage]
                            await anyio.sleep(0.005)  # (both capped requests wait for the rates file)
                    start = time.monotonic()
                    uncapped = await through(proxy, port, HELLO + DATA, host="uncapped.test")
                    uncapped_s = time.monotonic() - start
                    assert uncapped == HELLO + DATA and uncapped_s < 0.5, f"the uncapped tunnel took {uncapped_s:.2f} s"
                    assert not capped, "the uncapped tunnel waited for the capped requests"
                group.cancel_scope.cancel()
    finally:
        holder.close()
    assert [status for status, _ in capped] == [503, 503]
    assert all(took < 3 for _, took in capped), capped
    assert max(gaps) < 0.5, f"the event loop stood still for {max(gaps):.2f} s"
    assert sorted((r.host, r.allowed, r.status, str(r.rule)) for r in proxy.requests) == [
        ("127.0.0.1", False, 503, "rate"),
        ("127.0.0.1", False, 503, "rate"),
        ("uncapped.test", True, 200, "None"),
    ]
    assert proxy.counted == 1
    assert all(WINDOWS_FILE in str(r.reason) for r in proxy.requests if not r.allowed), "the record says why"
