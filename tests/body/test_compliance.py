"""The compliance gate on outbound requests: robots.txt for plain HTTP (fetched once per host, presets exempt), a
site's terms (not allowed, no automated access, a per-minute cap) for every request, and a cap on what one HTTPS
tunnel carries. Real HTTP servers on 127.0.0.1, reached through the proxy by a pinned name."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSStream
from mcp import Client

from body_mcp import build_server
from body_mcp.compliance import WINDOWS_FILE, Compliance, RateWindows, preset_hosts
from body_mcp.proxy import CountingProxy
from shared_protocol.config import ComplianceConfig, ConfigInvalid, parse_config
from tests.fakes.static_http import self_signed

from ..conftest import make_body, require_binary
from .helpers import call, ok
from .proxy_sites import gate, get, site

pytestmark = pytest.mark.anyio


async def test_a_path_robots_txt_disallows_is_refused_and_an_allowed_one_goes_through() -> None:
    with site() as (port, asked):
        pins = {"site.test": f"127.0.0.1:{port}"}
        proxy = CountingProxy(allowed_domains=["site.test"], pinned_hosts=pins, max_requests=10, compliance=gate())
        async with proxy:
            assert await get(proxy, "http://site.test/public/page?q=1") == (200, b"/public/page?q=1")
            status, reason = await get(proxy, "http://site.test/private/data?token=abc")
            assert status == 403 and b"robots.txt disallows /private/data for SwarmBot" in reason
            assert b"token=abc" not in reason
            assert (await get(proxy, "http://site.test/private/open"))[0] == 200, "the longest match wins"
    assert asked == ["/robots.txt", "/public/page?q=1", "/private/open"], "robots.txt fetched once, refused unsent"
    assert proxy.counted == 2
    refused = [r for r in proxy.requests if not r.allowed]
    assert [(r.rule, r.path, r.status) for r in refused] == [("robots", "/private/data", 403)]


async def test_robots_txt_rules_for_our_user_agent_apply_and_other_agents_rules_do_not() -> None:
    with site(b"User-agent: swarmbot\nDisallow: /\n\nUser-agent: *\nAllow: /\n") as (port, _):
        pins = {"site.test": f"127.0.0.1:{port}"}
        for agent, expected in (("SwarmBot", 403), ("OtherBot", 200)):
            compliance = gate(user_agent=agent)
            proxy = CountingProxy(
                allowed_domains=["site.test"], pinned_hosts=pins, max_requests=10, compliance=compliance
            )
            async with proxy:
                assert (await get(proxy, "http://site.test/anything"))[0] == expected


@pytest.mark.parametrize(("robots", "expected"), [(404, 200), (503, 403)], ids=["no-robots", "robots-5xx"])
async def test_no_robots_txt_allows_all_and_an_unreachable_one_disallows_all(robots: int, expected: int) -> None:
    """RFC 9309 2.3.1.3 and 2.3.1.4: a 4xx means no rules; a 5xx means assume complete disallow."""
    with site(robots) as (port, _):
        pins = {"site.test": f"127.0.0.1:{port}"}
        proxy = CountingProxy(allowed_domains=["site.test"], pinned_hosts=pins, max_requests=10, compliance=gate())
        async with proxy:
            assert (await get(proxy, "http://site.test/page"))[0] == expected


async def test_package_registry_presets_skip_robots_txt() -> None:
    assert {"pypi.org", "files.pythonhosted.org"} <= preset_hosts(["preset:pypi", "example.com"])
    with site(b"User-agent: *\nDisallow: /\n") as (port, asked):
        pins = {"pypi.org": f"127.0.0.1:{port}"}
        compliance = Compliance(ComplianceConfig(), exempt_hosts=preset_hosts(["preset:pypi"]))
        proxy = CountingProxy(
            allowed_domains=["preset:pypi"], pinned_hosts=pins, max_requests=10, compliance=compliance
        )
        async with proxy:
            assert (await get(proxy, "http://pypi.org/simple/swarm/"))[0] == 200
    assert asked == ["/simple/swarm/"], "robots.txt never asked"


async def test_a_sites_terms_refuse_it_and_cap_its_rate_body_wide() -> None:
    clock = [1000.0]
    terms = {
        "closed.test": {"allowed": False},
        "*.nobots.test": {"automated_access": False, "terms_url": "https://nobots.test/tos"},
        "site.test": {"max_requests_per_minute": 2},
    }
    compliance = gate(clock, domains=terms, robots=False)
    with site() as (port, _):
        pins = {name: f"127.0.0.1:{port}" for name in ("closed.test", "api.nobots.test", "site.test")}
        allowed = ["closed.test", "*.nobots.test", "site.test"]
        for _command in range(2):  # (a proxy per command; the gate is the body's)
            proxy = CountingProxy(allowed_domains=allowed, pinned_hosts=pins, max_requests=10, compliance=compliance)
            async with proxy:
                assert (await get(proxy, "http://closed.test/"))[0] == 403
                status, reason = await get(proxy, "http://api.nobots.test/")
                assert status == 403 and b"forbid automated access (https://nobots.test/tos)" in reason
                assert await status_of_connect(proxy, "api.nobots.test:443") == 403
            assert [r.rule for r in proxy.requests] == ["terms", "terms", "terms"]
        proxy = CountingProxy(allowed_domains=allowed, pinned_hosts=pins, max_requests=10, compliance=compliance)
        async with proxy:
            assert (await get(proxy, "http://site.test/1"))[0] == 200
            assert (await get(proxy, "http://site.test/2"))[0] == 200
            assert (await get(proxy, "http://site.test/3"))[0] == 429
            clock[0] += 61
            assert (await get(proxy, "http://site.test/4"))[0] == 200
    assert [r.rule for r in proxy.requests] == [None, None, "rate", None]
    assert proxy.counted == 3


async def test_requests_waiting_for_their_sites_window_hold_their_place_in_the_budget(tmp_path: Path) -> None:
    """The per-minute window is taken in a worker thread (an await): six requests at once to a capped site with room
    for them all, through a proxy whose budget is 2, send 2 and refuse 4 for the budget, however they interleave."""
    compliance = Compliance(
        ComplianceConfig.model_validate({"robots": False, "domains": {"site.test": {"max_requests_per_minute": 60}}}),
        windows=tmp_path / WINDOWS_FILE,
    )
    statuses: list[int] = []

    async def one(proxy: CountingProxy, n: int) -> None:
        statuses.append((await get(proxy, f"http://site.test/{n}"))[0])

    with site() as (port, asked):
        pins = {"site.test": f"127.0.0.1:{port}"}
        proxy = CountingProxy(allowed_domains=["site.test"], pinned_hosts=pins, max_requests=2, compliance=compliance)
        async with proxy, anyio.create_task_group() as group:
            for n in range(6):
                group.start_soon(one, proxy, n)
    assert sorted(statuses) == [200, 200, 429, 429, 429, 429]
    assert proxy.counted == 2 and len(asked) == 2
    assert sorted(str(r.rule) for r in proxy.requests) == ["None", "None", "budget", "budget", "budget", "budget"]


def test_a_sites_cap_is_shared_by_the_bodies_of_one_home_and_old_entries_are_pruned(tmp_path: Path) -> None:
    """Three bodies' gates (three agents, each its own `Compliance` and SQLite connection on one `$SWARM_HOME`'s
    file) admit 20 requests each, at once, to a site capped at 10 a minute: 10 go in all, however their
    transactions interleave. A gate opened later (a restarted body) sees them; entries older than a minute are
    dropped."""
    windows = tmp_path / WINDOWS_FILE
    config = ComplianceConfig.model_validate({"domains": {"site.test": {"max_requests_per_minute": 10}}})
    gates = [Compliance(config, windows=windows) for _ in range(3)]
    start = threading.Barrier(3)

    async def admit_20(gate: Compliance) -> int:
        return sum([await gate.admit("site.test") is None for _ in range(20)])

    def admit_many(gate: Compliance) -> int:
        start.wait(5)
        return anyio.run(admit_20, gate)  # (each agent's body has its own event loop)

    with ThreadPoolExecutor(3) as pool:
        admitted = list(pool.map(admit_many, gates))
    assert sum(admitted) == 10, admitted
    with sqlite3.connect(windows) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    clock = [time.time()]
    later = RateWindows(windows, clock=lambda: clock[0])
    assert not later.take("site.test", 10), "the minute's calls are still counted"
    clock[0] += 61
    assert later.take("site.test", 10), "a minute later the window is open again"
    later.close()
    with sqlite3.connect(windows) as db:
        assert db.execute("SELECT count(*) FROM rate_hits").fetchone() == (1,), "old entries are pruned"


async def status_of_connect(proxy: CountingProxy, target: str) -> int:
    with anyio.fail_after(10):
        async with await anyio.connect_unix(proxy.socket_path) as stream:
            await stream.send(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
            line = await BufferedByteReceiveStream(stream).receive_until(b"\r\n", 4096)
    return int(line.split(b" ", 2)[1])


async def test_a_keep_alive_tunnel_is_cut_after_its_exchanges(tmp_path: Path) -> None:
    """What goes through a CONNECT is TLS, whose records the proxy counts as calls (each application-data record
    the client sends, TLS 1.3's Finished aside; the CONNECT counted the first), so it carries at most
    `max_exchanges_per_tunnel` of them: the request after them finds the tunnel closed, and the cut is recorded."""
    tls = self_signed(tmp_path, "site.test")
    with site(tls=tls) as (port, asked):
        pins = {"site.test": f"127.0.0.1:{port}"}
        proxy = CountingProxy(
            allowed_domains=["site.test"], pinned_hosts=pins, max_requests=10, max_exchanges_per_tunnel=3
        )
        async with proxy:
            with anyio.fail_after(10):
                async with await anyio.connect_unix(proxy.socket_path) as unix:
                    await unix.send(f"CONNECT site.test:{port} HTTP/1.1\r\n\r\n".encode())
                    head = await BufferedByteReceiveStream(unix).receive_until(b"\r\n\r\n", 4096)
                    assert head.startswith(b"HTTP/1.1 200")
                    raw = await TLSStream.wrap(unix, hostname="site.test", ssl_context=tls.client)
                    stream = BufferedByteReceiveStream(raw)
                    for n in range(3):
                        await raw.send(f"GET /call/{n} HTTP/1.1\r\nHost: site.test\r\n\r\n".encode())
                        head = await stream.receive_until(b"\r\n\r\n", 4096)
                        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                        assert await stream.receive_exactly(length) == f"/call/{n}".encode()
                    await raw.send(b"GET /call/3 HTTP/1.1\r\nHost: site.test\r\n\r\n")
                    with pytest.raises((anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError)):
                        await stream.receive_until(b"\r\n\r\n", 4096)
    assert asked == ["/call/0", "/call/1", "/call/2"], "the fourth request never left"
    assert proxy.counted == 3  # (each record a call of the budget too: the CONNECT counted the first)
    assert [(r.method, r.allowed, r.rule) for r in proxy.requests] == [
        ("CONNECT", True, None),
        ("CONNECT", False, "tunnel_cap"),
    ]


async def test_a_tunnel_is_cut_when_its_lifetime_is_over() -> None:
    with site() as (port, _):
        pins = {"site.test": f"127.0.0.1:{port}"}
        proxy = CountingProxy(allowed_domains=["site.test"], pinned_hosts=pins, max_requests=10, max_tunnel_s=0.5)
        async with proxy:
            with anyio.fail_after(10):
                async with await anyio.connect_unix(proxy.socket_path) as raw:
                    stream = BufferedByteReceiveStream(raw)
                    await raw.send(f"CONNECT site.test:{port} HTTP/1.1\r\n\r\n".encode())
                    await stream.receive_until(b"\r\n\r\n", 4096)
                    with pytest.raises(anyio.EndOfStream):
                        await stream.receive()  # (an idle tunnel: closed by the proxy when its time is up)
    assert [r.rule for r in proxy.requests] == [None, "tunnel_cap"]


def test_compliance_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigInvalid, match=r"compliance\.robot\b"):
        parse_config({"compliance": {"robot": True}})
    with pytest.raises(ConfigInvalid, match=r"compliance\.domains"):
        parse_config({"compliance": {"domains": {"not a host": {}}}})
    with pytest.raises(ConfigInvalid, match=r"compliance\.domains\.site\.test\.max_requests_per_minute"):
        parse_config({"compliance": {"domains": {"site.test": {"max_requests_per_minute": -1}}}})
    with pytest.raises(ConfigInvalid, match=r"compliance\.max_exchanges_per_tunnel"):
        parse_config({"compliance": {"max_exchanges_per_tunnel": 0}})


async def test_a_sandboxed_commands_disallowed_request_is_refused_with_a_reason_and_audited(
    workspace: Path, home: Path
) -> None:
    """End to end: a real command in the sandbox, the body's proxy and its audit trail; the site's per-minute cap
    (2) is counted in the home's windows, with another agent's body that had made one call (the first request
    passes, and then that other body is at the cap)."""
    require_binary("bwrap", "bubblewrap")
    capped = {"domains": {"site.test": {"max_requests_per_minute": 2}}}
    other_agent = Compliance(ComplianceConfig.model_validate(capped), windows=home / WINDOWS_FILE)
    assert await other_agent.admit("site.test") is None
    with site() as (port, asked):
        sandbox = {"allowed_domains": ["site.test"], "pinned_hosts": {"site.test": f"127.0.0.1:{port}"}}
        body = make_body(workspace, home, {"sandbox": sandbox, "compliance": capped})
        code = (
            "import urllib.request, urllib.error\n"
            "for path in ('/docs/page', '/private/page?key=k'):\n"
            "    try:\n"
            "        print(urllib.request.urlopen('http://site.test' + path, timeout=10).status)\n"
            "    except urllib.error.HTTPError as exc:\n"
            "        print(exc.code, exc.read().decode().strip())\n"
        )
        try:
            async with Client(build_server(body)) as client:
                data = ok(await call(client, "run_command", argv=["python3", "-c", code], network=True))
                lines = data["stdout"].splitlines()
                assert lines[0] == "200", data["stderr"]
                assert lines[1].startswith("403 swarm proxy: site.test's robots.txt disallows /private/page")
                event = body.audit.get(data["action_id"])
        finally:
            body.close()
    assert event is not None and event.impact.api_calls == 1
    requests = event.detail["requests"]
    assert [(r["allowed"], r.get("rule"), r.get("path")) for r in requests] == [
        (True, None, None),
        (False, "robots", "/private/page"),
    ]
    assert "key=k" not in str(event.detail)
    assert asked == ["/robots.txt", "/docs/page"]
    assert await other_agent.admit("site.test") is not None, "the body's call was counted in the home's windows"
