"""Review of #18's proxy destinations: addresses that carry a loopback or private IPv4 inside an IPv6 form, and
spellings of loopback a resolver accepts (decimal, octal, a trailing dot), are refused like 127.0.0.1."""

from __future__ import annotations

import pytest

from body_mcp.proxy import CountingProxy, PinnedHosts, is_public_address

from .test_proxy_destinations import hello_server, status_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("address", "public"),
    [
        # Fixed in this review: these were counted public (Python's is_global says so for all of them).
        ("::7f00:1", False),  # IPv4-compatible ::127.0.0.1
        ("::ffff:0:7f00:1", False),  # IPv4-translated (SIIT) 127.0.0.1
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of the metadata service 169.254.169.254
        ("64:ff9b:1::a00:1", False),  # local-use NAT64 (RFC 8215)
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("fec0::1", False),  # site-local
        # Still public: the same forms around a public IPv4.
        ("64:ff9b::9765:df", True),
        ("2002:9765:df::1", True),
        ("::ffff:151.101.0.223", True),
    ],
)
def test_an_ipv6_form_is_public_only_if_the_ipv4_it_carries_is(address: str, public: bool) -> None:
    assert is_public_address(address) is public


async def test_loopback_in_disguise_is_refused_through_the_proxy() -> None:
    async with hello_server() as port:
        hosts = [b"[::7f00:1]", b"[::ffff:7f00:1]", b"[64:ff9b::7f00:1]", b"2130706433", b"0177.0.0.1", b"localhost."]
        allowed = ["::7f00:1", "::ffff:7f00:1", "64:ff9b::7f00:1", "2130706433", "0177.0.0.1", "localhost"]
        async with CountingProxy(allowed_domains=allowed, max_requests=10) as proxy:
            for host in hosts:
                status = await status_of(proxy, b"GET http://%s:%d/ HTTP/1.1\r\n\r\n" % (host, port))
                assert status in (400, 403), host
            assert await status_of(proxy, b"CONNECT [::7f00:1]:%d HTTP/1.1\r\n\r\n" % port) == 403
            assert await status_of(proxy, b"CONNECT 2130706433:%d HTTP/1.1\r\n\r\n" % port) == 403
    assert proxy.counted == 0


async def test_a_host_header_cannot_redirect_an_absolute_uri_request() -> None:
    """The proxy connects to the URI's host and rewrites Host from it: a Host naming a loopback changes nothing."""
    async with hello_server() as port, CountingProxy(allowed_domains=["pkgs.test"], max_requests=10) as proxy:
        request = b"GET http://pkgs.test:%d/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port)
        assert await status_of(proxy, request) == 502  # (pkgs.test resolves nowhere; 127.0.0.1 is not tried)
    assert [(r.host, r.status) for r in proxy.requests] == [("pkgs.test", 502)]


async def test_a_pin_with_a_port_reaches_only_that_port() -> None:
    async with hello_server() as port, hello_server() as other:
        pins = {"pkgs.test": f"127.0.0.1:{port}"}
        async with CountingProxy(allowed_domains=["pkgs.test"], pinned_hosts=pins, max_requests=10) as proxy:
            # Whatever port the request names, the pinned one is where it goes (the other service is never reached).
            assert await status_of(proxy, b"GET http://pkgs.test:%d/ HTTP/1.1\r\n\r\n" % other) == 200
            # The pinned address itself, asked for directly, is a private address like any other: refused.
            allowed_ip = CountingProxy(allowed_domains=["pkgs.test"], pinned_hosts=pins, max_requests=10)
            async with allowed_ip as direct:
                assert await status_of(direct, b"GET http://127.0.0.1:%d/ HTTP/1.1\r\n\r\n" % other) == 403
    assert proxy.counted == 1


async def test_a_pin_without_a_port_does_not_open_every_port_of_a_private_address() -> None:
    """Fixed (was low, a config footgun): a pin that names no port (`pkgs.internal = "10.0.0.5"`) with an allow-list
    entry without one serves ports 80 and 443 only, not ssh, redis or an admin API on that private address."""
    async with hello_server() as other_service:
        pins = {"pkgs.test": "127.0.0.1"}
        async with CountingProxy(allowed_domains=["pkgs.test"], pinned_hosts=pins, max_requests=10) as proxy:
            assert await status_of(proxy, b"GET http://pkgs.test:%d/ HTTP/1.1\r\n\r\n" % other_service) == 403
            assert await status_of(proxy, b"CONNECT pkgs.test:%d HTTP/1.1\r\n\r\n" % other_service) == 403
    assert proxy.counted == 0
    assert PinnedHosts(pins).lookup("pkgs.test", 443) == ("127.0.0.1", 443)
    assert not PinnedHosts(pins).refuses_port("pkgs.test", 80)
    # A pin that names the port on either side reaches that port, as before.
    assert not PinnedHosts({"pkgs.test:8080": "127.0.0.1"}).refuses_port("pkgs.test", 8080)
    assert PinnedHosts({"pkgs.test": "127.0.0.1:8080"}).lookup("pkgs.test", 9999) == ("127.0.0.1", 8080)
