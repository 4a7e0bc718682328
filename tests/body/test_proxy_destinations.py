"""The proxy decides where a request goes: registry presets, no loopback/private/link-local destination
(after resolution) unless the host is pinned in config."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from body_mcp.exceptions import ConfigError
from body_mcp.proxy import AllowList, CountingProxy, is_public_address
from shared_protocol.config import DOMAIN_PRESETS, ConfigInvalid, parse_config

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def hello_server() -> AsyncGenerator[int]:
    """An HTTP server on 127.0.0.1 answering every request with 200 `hello`; yields its port."""

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                await stream.receive()
            except anyio.EndOfStream:
                return  # (a tunnel closed unused)
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, handle)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        group.cancel_scope.cancel()


async def status_of(proxy: CountingProxy, request: bytes) -> int:
    with anyio.fail_after(10):
        async with await anyio.connect_unix(proxy.socket_path) as stream:
            await stream.send(request)
            # The status line only: a tunnel stays open for as long as we would keep it.
            line = await BufferedByteReceiveStream(stream).receive_until(b"\r\n", 4096)
    return int(line.split(b" ", 2)[1])


def test_presets_name_the_registries_hosts() -> None:
    config = parse_config({"sandbox": {"allowed_domains": ["preset:pypi", "preset:npm", "example.com"]}})
    assert config.sandbox.allowed_domains == ["preset:pypi", "preset:npm", "example.com"]
    allow = AllowList(config.sandbox.allowed_domains)
    for host in (*DOMAIN_PRESETS["pypi"], *DOMAIN_PRESETS["npm"], "example.com"):
        assert allow.allows(host, 443)
    assert {"pypi.org", "files.pythonhosted.org", "registry.npmjs.org"} <= {
        h for hosts in DOMAIN_PRESETS.values() for h in hosts
    }
    assert not allow.allows("evil.pypi.org", 443) and not allow.allows("npmjs.org", 443)


def test_an_unknown_preset_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigInvalid, match="preset:cargo"):
        parse_config({"sandbox": {"allowed_domains": ["preset:cargo"]}})
    with pytest.raises(ConfigError, match="preset:cargo"):
        AllowList(["preset:cargo"])


def test_pinned_hosts_must_be_addresses_of_allowed_hosts() -> None:
    ok = parse_config({"sandbox": {"allowed_domains": ["pkgs.test"], "pinned_hosts": {"pkgs.test": "127.0.0.1:81"}}})
    assert ok.sandbox.pinned_hosts == {"pkgs.test": "127.0.0.1:81"}
    for pins in ({"pkgs.test": "pkgs.example"}, {"pkgs.test": "127.0.0.1:99999"}, {"other.test": "127.0.0.1"}):
        with pytest.raises(ConfigInvalid, match="pinned_hosts"):
            parse_config({"sandbox": {"allowed_domains": ["pkgs.test"], "pinned_hosts": pins}})


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("172.16.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
        ("151.101.0.223", True),
        ("2a04:4e42::223", True),
    ],
)
def test_only_public_addresses_count_as_public(address: str, public: bool) -> None:
    assert is_public_address(address) is public


async def test_loopback_private_and_link_local_destinations_are_refused_even_by_name() -> None:
    async with hello_server() as port:
        # localhost is allowed by name, but it resolves to 127.0.0.1: refused all the same.
        allowed = ["127.0.0.1", "localhost", "10.0.0.1", "169.254.169.254"]
        async with CountingProxy(allowed_domains=allowed, max_requests=10) as proxy:
            for host in (b"127.0.0.1", b"localhost", b"10.0.0.1", b"169.254.169.254"):
                assert await status_of(proxy, b"GET http://%s:%d/ HTTP/1.1\r\n\r\n" % (host, port)) == 403
            assert await status_of(proxy, b"CONNECT localhost:%d HTTP/1.1\r\n\r\n" % port) == 403
    assert proxy.counted == 0 and proxy.refused == 5
    assert {r.status for r in proxy.requests} == {403}


async def test_a_pinned_host_reaches_its_pinned_address_and_is_counted() -> None:
    async with hello_server() as port:
        pins = {"pkgs.test": f"127.0.0.1:{port}"}
        allowed = ["pkgs.test", "other.test"]
        async with CountingProxy(allowed_domains=allowed, pinned_hosts=pins, max_requests=10) as proxy:
            # The pin holds for the host on any port; a name not pinned resolves (here: not at all) as usual.
            assert await status_of(proxy, b"GET http://pkgs.test/simple/ HTTP/1.1\r\n\r\n") == 200
            assert await status_of(proxy, b"CONNECT pkgs.test:443 HTTP/1.1\r\n\r\n") == 200
            assert await status_of(proxy, b"GET http://other.test/ HTTP/1.1\r\n\r\n") == 502
    assert [(r.host, r.allowed, r.status) for r in proxy.requests] == [
        ("pkgs.test", True, 200),
        ("pkgs.test", True, 200),
        ("other.test", False, 502),
    ]
    assert proxy.counted == 2
