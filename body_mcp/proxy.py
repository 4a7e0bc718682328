"""The counting proxy: the only way a sandboxed command reaches the network.

A command run with network sees `HTTP(S)_PROXY` pointing at a forwarder inside its sandbox, which relays
each TCP connection to the unix socket this proxy listens on (`sandbox.ProxyNetwork`). Every request, each
`CONNECT` tunnel and each plain HTTP request, is one API call: checked against the domain allow-list, the
compliance gate (`compliance.Compliance`: a site's terms, its per-minute cap, and for plain HTTP its
robots.txt), then against the budget, recorded, and only then sent on. TLS is tunnelled, never intercepted,
so an HTTPS client's requests are counted by tunnel, and a tunnel must carry TLS (plain HTTP goes as a proxy
request, whose path robots.txt is checked for). The TLS records' headers are in clear: each application-data
record the client sends counts as a call, and a tunnel is cut after `max_exchanges_per_tunnel` of them or
`max_tunnel_s`, so one keep-alive connection cannot carry unlimited requests past the budget, pipelined or not;
to a site with a per-minute cap, each record after the first counts against the cap too (`_TlsRecords` says what
this bounds).

Where a request goes is decided here, not by the command: the host is resolved by the proxy, and a name
or literal that leads to a loopback, private, link-local or otherwise non-public address is refused (a
command must not reach the host's own services, or the cloud's metadata endpoint, through an allowed name
that resolves there). `pinned_hosts` is the exception: a host pinned to an address is connected to that
address, with no DNS, whatever kind of address it is (a local package index); a pin that names no port serves
ports 80 and 443 only.

    async with CountingProxy(allowed_domains=["pypi.org", "*.pythonhosted.org"], max_requests=1000) as proxy:
        spec = SandboxSpec(..., network=ProxyNetwork(socket_path=proxy.socket_path))
        ...
    proxy.counted, proxy.refused, proxy.requests
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Self, cast
from urllib.parse import urlsplit

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteStream

from shared_protocol.config import DOMAIN_PRESETS, PRESET_PREFIX, expand_domains, split_host_port

from .compliance import Compliance
from .exceptions import ConfigError, UserError

logger = logging.getLogger(__name__)

_MAX_HEAD = 64 * 1024
_MAX_LINE = 4096
_CLOSE_GRACE_S = 0.5
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_REQUEST_LINE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) (HTTP/1\.[01])")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-9][0-9]{2})(?: .*)?")
_HOSTNAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})(?:[ \t]*;.*)?")
# Meant for this hop only: proxy credentials must not leak upstream, and we decide the connection's fate.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authorization", "proxy-authenticate", "proxy-connection"})
_REQUEST_DROPPED = _HOP_BY_HOP | {"host", "te", "upgrade"}
# A peer that vanished or spoke garbage: the connection is dropped, nothing else is wrong.
_DISCONNECTS = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, anyio.IncompleteRead, OSError)


@dataclass(kw_only=True, frozen=True)
class ProxyRequest:
    """One request a command made through the proxy. No bodies or query strings are kept; a path only when
    robots.txt refused it (what was refused)."""

    method: str
    host: str
    port: int
    allowed: bool
    """Sent on (it counts as an API call); False when the allow-list, the budget or a failure refused it."""
    status: int | None
    """What the client was answered (the upstream status for plain HTTP); None if it left before an answer."""
    ts: float
    rule: str | None = None
    """What refused it or cut it: `allow_list`, `address`, `resolve`, `budget`, `terms`, `rate`, `robots`,
    `proxy`; `tunnel_cap` for a tunnel cut after its application-data records or lifetime, `rate` for one cut at a
    record its site's per-minute cap refused (or could not count), `tunnel_tls` for one that did not carry TLS
    (each recorded as a second entry)."""
    path: str | None = None
    """The refused path (without its query), for a robots.txt refusal."""
    reason: str | None = None
    """For a refusal that is not the request's doing (503: the proxy's or the gate's own trouble, a rates file busy
    or damaged), what the client was answered: the rule alone does not say it."""


_Refusal = tuple[int, str, str]
"""(status, the reason answered to the command, the rule: `ProxyRequest.rule`)."""


class _BadMessage(Exception):
    """A request or response that is not well-formed HTTP/1.x."""


class AllowList:
    """Where commands may connect: `host` exactly, `*.domain` for its subdomains only, either with `:port`.

    Matching ignores case and a trailing dot. IP literals match only an identical listed literal, never a
    wildcard. `preset:NAME` stands for a package registry's hosts (`DOMAIN_PRESETS`). An empty list allows
    nothing.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self._rules: list[tuple[str, bool, int | None]] = []
        unknown = [p for p in patterns if p.startswith(PRESET_PREFIX) and p[len(PRESET_PREFIX) :] not in DOMAIN_PRESETS]
        if unknown:
            known = ", ".join(PRESET_PREFIX + name for name in DOMAIN_PRESETS)
            raise ConfigError(f"network allow-list entry {unknown[0]!r}: unknown preset (known: {known})")
        for raw in expand_domains(list(patterns)):
            text = raw.strip().lower()
            wildcard = text.startswith("*.")
            try:
                host, port = _split_host_port(text[2:] if wildcard else text)
            except _BadMessage as exc:
                raise ConfigError(f"network allow-list entry {raw!r}: {exc}") from None
            self._rules.append((host, wildcard, port))

    def allows(self, host: str, port: int) -> bool:
        """Whether `host` (as normalised by the proxy) may be reached on `port`."""
        is_ip = _is_ip(host)
        for rule_host, wildcard, rule_port in self._rules:
            if rule_port is not None and rule_port != port:
                continue
            if (host.endswith("." + rule_host) and not is_ip) if wildcard else host == rule_host:
                return True
        return False


PINNED_DEFAULT_PORTS = (80, 443)
"""The ports a pin without one (on either side) serves."""


class PinnedHosts:
    """Host (or host:port) -> the address the proxy connects to for it, without DNS (`[sandbox] pinned_hosts`)."""

    def __init__(self, pins: Mapping[str, str]) -> None:
        self._pins: dict[tuple[str, int | None], tuple[str, int | None]] = {}
        for host, address in pins.items():
            try:
                key = _split_host_port(host.strip().lower())
                ip, port = split_host_port(address)
                ip = ipaddress.ip_address(ip).compressed
            except (_BadMessage, ValueError) as exc:
                raise ConfigError(f"pinned host {host!r} = {address!r}: {exc}") from None
            self._pins[key] = (ip, port)

    def lookup(self, host: str, port: int) -> tuple[str, int] | None:
        """Where to connect for `host:port` when it is pinned (the pin's port, else the request's)."""
        pinned = self._pins.get((host, port)) or self._pins.get((host, None))
        if pinned is None:
            return None
        return pinned[0], pinned[1] or port

    def refuses_port(self, host: str, port: int) -> bool:
        """A pin that names no port on either side (`pkgs.internal = "10.0.0.5"`) serves the web's ports only
        (`PINNED_DEFAULT_PORTS`): it must not open every port of a private address (ssh, redis, an admin API)."""
        if (host, port) in self._pins:
            return False
        pinned = self._pins.get((host, None))
        return pinned is not None and pinned[1] is None and port not in PINNED_DEFAULT_PORTS


def is_public_address(address: str) -> bool:
    """Whether an IP address is a public one: not loopback, private, link-local, shared, reserved or multicast."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            return is_public_address(str(ip.sixtofour))
        elif ip in _NAT64:
            # (a NAT64 gateway turns it into the IPv4 address it carries: public only if that one is)
            return is_public_address(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        elif any(ip in net for net in _EMBEDS_IPV4) or ip.is_site_local:
            # (IPv4-compatible, IPv4-translated and local-use NAT64 forms carry an IPv4 address a translator or
            # an old stack may turn back into 127.0.0.1 or 10.x; site-local is private in all but name)
            return False
    return ip.is_global and not ip.is_multicast


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_EMBEDS_IPV4 = tuple(ipaddress.IPv6Network(net) for net in ("::/96", "::ffff:0:0:0/96", "64:ff9b:1::/48"))


@dataclass(kw_only=True, frozen=True)
class _Request:
    method: str
    host: str
    port: int
    upstream_head: bytes = b""
    """For plain HTTP: the head to send upstream (origin-form, hop-by-hop headers dropped)."""
    path: str = ""
    """For plain HTTP: the origin-form target (path and query)."""
    content_length: int = 0
    chunked: bool = False


class CountingProxy:
    """An HTTP(S) proxy on a private unix socket for the duration of one command; counts and limits requests.

    `max_requests` is the budget of API calls (requests sent on); the request that would exceed it gets 429.
    A host off the allow-list gets 403, and so does one that resolves to no public address (unless pinned);
    one that does not resolve 502; malformed requests 400. With `compliance`, its refusals too (403 for terms
    and robots.txt, 429 for a per-minute cap, 503 when the cap could not be counted), each answered with the
    reason as body. `on_request` sees each request once its outcome is known. Nothing a client does raises here:
    a broken connection is logged and dropped.
    """

    def __init__(
        self,
        *,
        allowed_domains: Sequence[str],
        max_requests: int,
        pinned_hosts: Mapping[str, str] | None = None,
        connect_timeout_s: float = 10,
        on_request: Callable[[ProxyRequest], None] | None = None,
        compliance: Compliance | None = None,
        max_exchanges_per_tunnel: int = 100,
        max_tunnel_s: float = 300,
    ) -> None:
        if max_requests < 0 or connect_timeout_s <= 0 or max_exchanges_per_tunnel < 1 or max_tunnel_s <= 0:
            raise UserError(
                "max_requests must be >= 0, max_exchanges_per_tunnel >= 1, connect_timeout_s and max_tunnel_s > 0"
            )
        self._compliance = compliance
        self._max_exchanges = max_exchanges_per_tunnel
        self._max_tunnel_s = max_tunnel_s
        self._allow = AllowList(allowed_domains)
        self._pins = PinnedHosts(pinned_hosts or {})
        self._max_requests = max_requests
        self._connect_timeout_s = connect_timeout_s
        self._on_request = on_request
        self._requests: list[ProxyRequest] = []
        self._counted = 0
        self._pending = 0
        """Calls checked against the budget whose per-minute window is being taken (an await): held in the budget."""
        self._failed = False
        self._stack: AsyncExitStack | None = None
        self._active = 0
        self._all_closed = anyio.Event()
        self._socket_path: Path | None = None

    @property
    def socket_path(self) -> Path:
        """Where the proxy listens once entered (in a private temporary directory); removed on exit."""
        if self._socket_path is None:
            raise UserError("the CountingProxy has not been started: use `async with proxy:`")
        return self._socket_path

    @property
    def requests(self) -> list[ProxyRequest]:
        """Every request seen so far, in the order their outcome was known."""
        return list(self._requests)

    @property
    def counted(self) -> int:
        """API calls: requests allowed and sent on (an unreachable upstream still counts: it was attempted)."""
        return self._counted

    @property
    def refused(self) -> int:
        """Requests not sent on (allow-list, budget or proxy failure)."""
        return sum(not r.allowed for r in self._requests)

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise UserError("this CountingProxy is already running")
        async with AsyncExitStack() as stack:
            # mkdtemp makes the directory 0700 and ours alone: no other local user can reach the socket.
            directory = Path(tempfile.mkdtemp(prefix="swarm-proxy-"))
            stack.callback(shutil.rmtree, directory, ignore_errors=True)
            self._socket_path = directory / "proxy.sock"
            listener = await anyio.create_unix_listener(self._socket_path, mode=0o600)
            stack.push_async_callback(listener.aclose)
            group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(group.cancel_scope.cancel)
            group.start_soon(self._accept_loop, listener, group)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            # A command that exited has closed its connections: let them finish rather than cancel a read
            # racing the peer's close (anyio on asyncio then reports an error from the event loop).
            if self._active and exc is None:
                with anyio.move_on_after(_CLOSE_GRACE_S):
                    await self._all_closed.wait()
        finally:
            await stack.__aexit__(exc_type, exc, tb)

    async def _accept_loop(self, listener: anyio.abc.SocketListener, group: anyio.abc.TaskGroup) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError:  # out of file descriptors, say: keep serving rather than take the body down
                logger.warning("proxy: accept failed", exc_info=True)
                await anyio.sleep(0.1)
                continue
            group.start_soon(self._handle, stream)

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        if not self._active:
            self._all_closed = anyio.Event()
        self._active += 1
        try:
            async with stream:
                await self._serve(BufferedByteStream(stream))
        except Exception as exc:  # the per-connection boundary: one connection never takes the body down
            if _is_disconnect(exc):
                logger.debug("proxy: connection dropped: %r", exc)
            else:
                logger.exception("proxy: connection failed")
        finally:
            self._active -= 1
            if not self._active:
                self._all_closed.set()

    async def _serve(self, client: BufferedByteStream) -> None:
        try:
            request = _parse_request(await client.receive_until(b"\r\n\r\n", _MAX_HEAD))
        except anyio.IncompleteRead:
            return
        except (anyio.DelimiterNotFound, _BadMessage) as exc:
            await _answer(client, 400, f"malformed proxy request: {exc}")
            _discard_pending(client)
            return
        ts = time.time()
        refusal = self._refusal(request)
        destinations: list[tuple[str, int]] = []
        if refusal is None:
            destinations, refusal = await self._destinations(request)
        if refusal is None:
            refusal = await self._robots(request, destinations)
        # (checked again after the awaits above: the budget must hold when we count)
        refusal = refusal or self._refusal(request) or await self._count(request)
        if refusal is not None:
            status, text, rule = refusal
            path = request.path.split("?")[0] if rule == "robots" else None
            reason = text if status == HTTPStatus.SERVICE_UNAVAILABLE else None
            self._record(request, ts, allowed=False, status=status, rule=rule, path=path, reason=reason)
            await _answer(client, status, text)
            return
        recorded = False

        def finish(status: int | None) -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                self._record(request, ts, allowed=True, status=status)

        try:
            upstream = await self._connect(client, request, destinations, finish)
            if upstream is None:
                return
            async with upstream:
                if request.method == "CONNECT":
                    await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    finish(200)
                    await self._tunnel(client, upstream, request)
                else:
                    await self._forward(client, request, BufferedByteStream(upstream), finish)
        finally:
            finish(None)

    def _refusal(self, request: _Request) -> _Refusal | None:
        if self._failed:
            return 503, "the proxy stopped forwarding after an internal error", "proxy"
        if not self._allow.allows(request.host, request.port):
            return 403, f"{request.host}:{request.port} is not on the network allow-list", "allow_list"
        if self._compliance is not None and (verdict := self._compliance.terms(request.host)) is not None:
            return verdict.status, verdict.reason, verdict.rule
        return self._budget_spent()

    def _budget_spent(self) -> _Refusal | None:
        if self._counted + self._pending >= self._max_requests:
            return 429, f"the budget of {self._max_requests} API calls for this command is spent", "budget"
        return None

    async def _count(self, request: _Request) -> _Refusal | None:
        """The last checks, and the call counted when they pass: the budget, then the host's per-minute cap. The
        cap is taken off the event loop (an await): meanwhile the call holds its place in the budget, so concurrent
        requests cannot overrun it (one refused by its cap gives the place back)."""
        if (refusal := self._budget_spent()) is not None:
            return refusal
        verdict = None
        if self._compliance is not None:
            self._pending += 1
            try:
                verdict = await self._compliance.admit(request.host)
            finally:
                self._pending -= 1
        if verdict is not None:
            return verdict.status, verdict.reason, verdict.rule
        self._counted += 1  # (no await since the budget check above, which counted the pending ones)
        return None

    async def _robots(self, request: _Request, destinations: Sequence[tuple[str, int]]) -> _Refusal | None:
        if self._compliance is None or request.method == "CONNECT":
            return None
        verdict = await self._compliance.robots(
            request.host, request.port, request.path or "/", destinations, self._resolve_for_gate
        )
        return None if verdict is None else (verdict.status, verdict.reason, verdict.rule)

    async def _resolve_for_gate(self, host: str, port: int) -> list[tuple[str, int]]:
        """Where the gate's own fetch (a robots.txt redirected to another host or port) may connect: as for a
        command's request, its pin or its public addresses (never the allow-list: robots.txt is the site's own
        answer, RFC 9309 2.3.1.2 follows redirects across authorities)."""
        try:
            host = _split_host_port(host)[0]
        except _BadMessage as exc:
            raise OSError(str(exc)) from None
        destinations, refusal = await self._destinations(_Request(method="GET", host=host, port=port))
        if refusal is not None:
            raise OSError(refusal[1])
        return destinations

    async def _tunnel(self, client: BufferedByteStream, upstream: anyio.abc.SocketStream, request: _Request) -> None:
        """Relay a tunnel both ways until either side closes, the client has sent `max_exchanges_per_tunnel`
        application-data records, or it has lived `max_tunnel_s`: then it is cut, and the cut recorded.

        A tunnel carries TLS or nothing: its first bytes must be a TLS handshake record (a ClientHello), and what
        the client sends is read as TLS records (their 5-byte headers are in clear). Anything else is refused
        (`tunnel_tls`), and a client that spoke plain HTTP is answered 403 saying to send it as a proxy request,
        whose path robots.txt is checked for. Each application-data record the client sends is counted as a call
        (a request needs at least one unless the client writes several in one record: see `_TlsRecords`); to a
        site with a per-minute cap, each after the tunnel's first is counted against it too (`rate`), and against the
        command's budget of API calls (`budget`: the CONNECT counted the first)."""
        records = _TlsRecords()
        calls = 0
        cut: str | None = None
        reason: str | None = None

        async def up(scope: anyio.CancelScope) -> None:
            nonlocal calls, cut, reason
            held = b""  # (a record header not yet whole: sent on with the rest of it, once read)
            async for received in client:
                chunk, held = held + received, b""
                try:
                    new_calls = records.feed(received)
                except _BadMessage as exc:
                    cut = "tunnel_tls"
                    if records.forwarded == 0 and records.looks_like_http:
                        await _answer(
                            client,
                            403,
                            f"a CONNECT tunnel must carry TLS ({exc}); send plain HTTP as a proxy request "
                            "(GET http://host/path), which robots.txt is checked for",
                        )
                        _discard_pending(client)
                    scope.cancel()
                    return
                for _ in range(new_calls):
                    calls += 1
                    if calls > self._max_exchanges:
                        cut = "tunnel_cap"
                    elif calls > 1 and (refusal := await self._count(request)) is not None:
                        # (the CONNECT counted the first; each record after it is a call of the command's budget,
                        # and of its site's per-minute cap: `budget` or `rate`)
                        cut = refusal[2]
                        reason = refusal[1] if refusal[0] == HTTPStatus.SERVICE_UNAVAILABLE else None
                    if cut is not None:
                        scope.cancel()
                        return
                if records.partial:
                    chunk, held = chunk[: -records.partial], chunk[-records.partial :]
                if chunk:
                    await upstream.send(chunk)
                    records.forwarded += len(chunk)
            await upstream.send_eof()

        async def down() -> None:
            async for chunk in upstream:
                await client.send(chunk)
            await client.send_eof()

        with anyio.move_on_after(self._max_tunnel_s) as lifetime:
            async with anyio.create_task_group() as group:
                group.start_soon(up, group.cancel_scope)
                group.start_soon(down)
        if cut is not None or lifetime.cancelled_caught:
            why = {
                "tunnel_cap": f"{self._max_exchanges} application-data records",
                "rate": "its site's per-minute cap (reached, or its rates file unusable)",
                "budget": f"the budget of {self._max_requests} API calls",
                "tunnel_tls": "bytes that are not TLS",
            }.get(cut or "", f"{self._max_tunnel_s:g} s")
            logger.info("proxy: tunnel to %s:%d cut after %s", request.host, request.port, why)
            self._record(request, time.time(), allowed=False, status=None, rule=cut or "tunnel_cap", reason=reason)

    async def _destinations(self, request: _Request) -> tuple[list[tuple[str, int]], _Refusal | None]:
        """The addresses to connect to for an allowed request: its pin, else its public addresses. Resolved here
        and connected to by address, so a name cannot resolve to a public address now and a private one later."""
        if self._pins.refuses_port(request.host, request.port):
            return [], (
                403,
                f"{request.host} is pinned without a port: it serves ports "
                f"{' and '.join(map(str, PINNED_DEFAULT_PORTS))} only, not {request.port} "
                "(pin host:port or IP:port in [sandbox] pinned_hosts for another)",
                "address",
            )
        pinned = self._pins.lookup(request.host, request.port)
        if pinned is not None:
            return [pinned], None
        where = f"{request.host}:{request.port}"
        if _is_ip(request.host):
            addresses = [request.host]
        else:
            try:
                with anyio.fail_after(self._connect_timeout_s):
                    infos = await anyio.getaddrinfo(request.host, request.port, type=socket.SOCK_STREAM)
            except (OSError, TimeoutError) as exc:
                return [], (502, f"cannot resolve {where}: {exc}", "resolve")
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        public = [address for address in addresses if is_public_address(address)]
        if not public:
            return [], (
                403,
                f"{where} leads to a loopback, private or link-local address ({', '.join(addresses)}); "
                "only a host pinned in [sandbox] pinned_hosts may",
                "address",
            )
        return [(address, request.port) for address in public], None

    def _record(
        self,
        request: _Request,
        ts: float,
        *,
        allowed: bool,
        status: int | None,
        rule: str | None = None,
        path: str | None = None,
        reason: str | None = None,
    ) -> None:
        record = ProxyRequest(
            method=request.method,
            host=request.host,
            port=request.port,
            allowed=allowed,
            status=status,
            ts=ts,
            rule=rule,
            path=path,
            reason=reason,
        )
        self._requests.append(record)
        if self._on_request is None:
            return
        try:
            self._on_request(record)
        except Exception:  # an unrecorded request would go uncounted: fail closed, refuse the rest
            logger.exception("proxy: on_request failed; refusing further requests")
            self._failed = True

    async def _connect(
        self,
        client: BufferedByteStream,
        request: _Request,
        destinations: Sequence[tuple[str, int]],
        finish: Callable[[int], None],
    ) -> anyio.abc.SocketStream | None:
        status, text = 502, f"cannot connect to {request.host}:{request.port}"
        try:
            with anyio.fail_after(self._connect_timeout_s):
                for address, port in destinations:
                    try:
                        return await anyio.connect_tcp(address, port)
                    except OSError as exc:
                        text = f"cannot connect to {request.host}:{request.port}: {exc}"
        except TimeoutError:
            status, text = 504, f"connecting to {request.host}:{request.port} timed out"
        finish(status)
        await _answer(client, status, text)
        return None

    async def _forward(
        self, client: BufferedByteStream, request: _Request, upstream: BufferedByteStream, finish: Callable[[int], None]
    ) -> None:
        await upstream.send(request.upstream_head)
        async with anyio.create_task_group() as group:
            # The body goes up while the answer comes down: a server may answer early, or ask `100 Continue`.
            group.start_soon(_send_body, client, upstream, request)
            while True:
                try:
                    status, head = _response_head(await upstream.receive_until(b"\r\n\r\n", _MAX_HEAD))
                except (anyio.IncompleteRead, anyio.DelimiterNotFound, _BadMessage):
                    finish(502)
                    await _answer(client, 502, "the upstream server sent no valid HTTP response")
                    group.cancel_scope.cancel()
                    return
                await client.send(head)
                if not (100 <= status < 200 and status != 101):
                    break
            finish(status)
            async for chunk in upstream:
                await client.send(chunk)
            group.cancel_scope.cancel()


_TLS_CHANGE_CIPHER_SPEC, _TLS_HANDSHAKE, _TLS_APPLICATION_DATA = 20, 22, 23
_TLS_CONTENT_TYPES = frozenset({_TLS_CHANGE_CIPHER_SPEC, 21, _TLS_HANDSHAKE, _TLS_APPLICATION_DATA})
"""change_cipher_spec, alert, handshake, application_data (RFC 8446 5.1; heartbeat, 24, is refused)."""
_TLS_MAX_RECORD = 2**14 + 2048
"""A TLSCiphertext's largest length (RFC 5246 6.2.3; TLS 1.3 allows less)."""


class _TlsRecords:
    """The TLS record layer of what a tunnel's client sends, read from the records' clear 5-byte headers (content
    type, version, length): the first must be a handshake record (ClientHello), every one a known type of TLS 1.x
    no longer than TLS allows, else `_BadMessage`. `feed` says how many application-data records begin in a chunk:
    each is counted as a call, except the one right after the client's ChangeCipherSpec, once (TLS 1.3's encrypted
    Finished: after it a ChangeCipherSpec is fatal, so it cannot excuse a request). That is an upper bound on the
    requests of a client that writes each request (an HTTP/1.1 request, an HTTP/2 stream's frames) as its own TLS
    write, as clients do, and over-counts a little (an HTTP/2 SETTINGS or WINDOW_UPDATE, and an upload's body, one
    per 16 KiB record, count too); a client
    that writes several requests in one write puts them in one record, so it is bounded by what a record holds
    (16 KiB of requests per counted call)."""

    def __init__(self) -> None:
        self._header = bytearray()
        self._left = 0
        self._seen = 0
        self._after_cipher_spec = False
        self._finished_skipped = False
        self.forwarded = 0
        """Bytes sent on upstream so far (set by the tunnel)."""
        self.looks_like_http = False

    @property
    def partial(self) -> int:
        """How many bytes of a record's header the last chunk ended with (held back until it is whole)."""
        return len(self._header)

    def feed(self, chunk: bytes) -> int:
        calls = 0
        at = 0
        while at < len(chunk):
            if self._left:
                step = min(self._left, len(chunk) - at)
                self._left -= step
                at += step
                continue
            take = min(5 - len(self._header), len(chunk) - at)
            self._header += chunk[at : at + take]
            at += take
            if self._seen == 0 and self._header[0] != _TLS_HANDSHAKE:
                self.looks_like_http = bool(_TOKEN.match(bytes(self._header).decode("latin-1")))
                raise _BadMessage("its first bytes are not a TLS handshake")
            if len(self._header) < 5:
                break
            kind, major, length = self._header[0], self._header[1], int.from_bytes(self._header[3:5])
            if kind not in _TLS_CONTENT_TYPES or major != 3 or not 0 < length <= _TLS_MAX_RECORD:
                raise _BadMessage("a record that is not TLS")
            self._seen += 1
            self._left = length
            self._header.clear()
            if kind == _TLS_APPLICATION_DATA and self._after_cipher_spec and not self._finished_skipped:
                self._finished_skipped = True  # (TLS 1.3's Finished, once: a ChangeCipherSpec later is fatal)
            else:
                calls += kind == _TLS_APPLICATION_DATA
            self._after_cipher_spec = kind == _TLS_CHANGE_CIPHER_SPEC
        return calls


def _split_host_port(text: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 literal, normalised for matching and connecting."""
    rest = ""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or ":" not in host:
            raise _BadMessage(f"bad bracketed address {text!r}")
    elif text.count(":") > 1:
        host = text
    else:
        host, colon, port_text = text.partition(":")
        rest = colon + port_text
    port: int | None = None
    if rest:
        if not (rest.startswith(":") and rest[1:].isdigit() and 0 < int(rest[1:]) < 65536):
            raise _BadMessage(f"bad port in {text!r}")
        port = int(rest[1:])
    host = host.lower().removesuffix(".")
    try:
        return ipaddress.ip_address(host).compressed, port
    except ValueError:
        if not _HOSTNAME.fullmatch(host) or len(host) > 253:
            raise _BadMessage(f"bad host name {host!r}") from None
        return host, port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _parse_request(head: bytes) -> _Request:
    lines = head.decode("latin-1").split("\r\n")
    line = _REQUEST_LINE.fullmatch(lines[0]) if lines[0].isascii() else None
    if line is None:
        raise _BadMessage("bad request line")
    method, target, version = line.groups()
    headers: list[tuple[str, str]] = []
    for raw in lines[1:]:
        name, colon, value = raw.partition(":")
        value = value.strip(" \t")
        # A name with spaces (or a folded line) and a value with CR, LF or NUL are how requests get smuggled.
        if not colon or not _TOKEN.fullmatch(name) or any(c in value for c in "\r\n\0"):
            raise _BadMessage("bad header line")
        headers.append((name, value))
    if method == "CONNECT":
        host, port = _split_host_port(target)
        if port is None:
            raise _BadMessage("CONNECT needs host:port")
        return _Request(method=method, host=host, port=port)
    url = urlsplit(target)
    if url.scheme.lower() != "http" or not url.netloc or "@" in url.netloc:
        raise _BadMessage("a proxy request needs an absolute http:// URI without credentials")
    host, port = _split_host_port(url.netloc)
    port = port or 80
    lengths = {value for name, value in headers if name.lower() == "content-length"}
    encodings = [value.lower() for name, value in headers if name.lower() == "transfer-encoding"]
    if len(lengths) > 1 or (lengths and not next(iter(lengths)).isdigit()) or (lengths and encodings):
        raise _BadMessage("bad or conflicting Content-Length")
    if encodings not in ([], ["chunked"]):
        raise _BadMessage("unsupported Transfer-Encoding")
    connection_named = {
        token.strip().lower() for name, value in headers if name.lower() == "connection" for token in value.split(",")
    }
    authority = f"[{host}]" if ":" in host else host
    authority += "" if port == 80 else f":{port}"
    kept = [
        f"{name}: {value}\r\n"
        for name, value in headers
        if name.lower() not in _REQUEST_DROPPED and name.lower() not in connection_named
    ]
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    out = f"{method} {path} {version}\r\nHost: {authority}\r\n{''.join(kept)}Connection: close\r\n\r\n"
    return _Request(
        method=method,
        host=host,
        port=port,
        upstream_head=out.encode("latin-1"),
        path=path,
        content_length=int(next(iter(lengths))) if lengths else 0,
        chunked=bool(encodings),
    )


def _response_head(head: bytes) -> tuple[int, bytes]:
    """The status, and the head to relay: upstream's own connection headers replaced by `Connection: close`."""
    lines = head.split(b"\r\n")
    status = _STATUS_LINE.fullmatch(lines[0])
    if status is None:
        raise _BadMessage("bad status line")
    kept = [line for line in lines[1:] if line.partition(b":")[0].strip().lower().decode("latin-1") not in _HOP_BY_HOP]
    return int(status[1]), b"\r\n".join([lines[0], *kept, b"Connection: close", b"", b""])


async def _send_body(client: BufferedByteStream, upstream: BufferedByteStream, request: _Request) -> None:
    """Send exactly the request's body, no further: bytes after it would be requests nobody counted."""
    if not request.chunked:
        await _copy_exactly(client, upstream, request.content_length)
        return
    while True:
        line = await client.receive_until(b"\r\n", _MAX_LINE)
        size = _CHUNK_SIZE.fullmatch(line)
        if size is None:
            raise _BadMessage("bad chunk size line")
        await upstream.send(line + b"\r\n")
        if int(size[1], 16) == 0:
            break
        await _copy_exactly(client, upstream, int(size[1], 16))
        if await client.receive_exactly(2) != b"\r\n":
            raise _BadMessage("chunk not followed by CRLF")
        await upstream.send(b"\r\n")
    while line := await client.receive_until(b"\r\n", _MAX_LINE):  # trailers, up to the empty line
        await upstream.send(line + b"\r\n")
    await upstream.send(b"\r\n")


async def _copy_exactly(source: BufferedByteStream, sink: anyio.abc.ByteSendStream, size: int) -> None:
    while size > 0:
        chunk = await source.receive(min(size, 65536))
        size -= len(chunk)
        await sink.send(chunk)


async def _answer(client: anyio.abc.ByteSendStream, status: int, text: str) -> None:
    body = f"swarm proxy: {text}\n".encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    await client.send(head.encode() + body)


def _discard_pending(stream: anyio.abc.ByteReceiveStream) -> None:
    """Drop input already received: closing a unix socket with unread input resets it, losing our answer."""
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    with contextlib.suppress(OSError):
        while sock.recv(65536, socket.MSG_DONTWAIT):
            pass


def _is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_disconnect(inner) for inner in cast("BaseExceptionGroup[BaseException]", exc).exceptions)
    return isinstance(exc, (*_DISCONNECTS, _BadMessage))


__all__ = ["AllowList", "CountingProxy", "PinnedHosts", "ProxyRequest", "is_public_address"]
