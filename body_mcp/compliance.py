"""The compliance gate: what the counting proxy checks, beyond the allow-list, before a command's request goes out.

    [compliance]                                   (shared_protocol.config.ComplianceConfig)
    robots = true                                  plain HTTP: the path checked against the host's robots.txt
    user_agent = "SwarmBot"
    [compliance.domains."api.example.com"]         a site's terms
    automated_access = false                       "no automated access": refused
    max_requests_per_minute = 30

`Compliance` lives as long as the body (one per body, shared by its commands' proxies), so the robots.txt cache
spans commands; the per-minute windows are in a SQLite file under `$SWARM_HOME` (`RateWindows`), shared by every
body of the home, so a site's cap holds for the machine, not per agent, and across restarts. Its checks, in the
proxy's order:

1. `terms(host)`: a host whose rule says `allowed = false` or `automated_access = false` is refused (403); the rule
   is the host's own entry, else the longest `*.domain` entry that covers it.
2. `robots(host, port, path, destinations)`: plain HTTP only (HTTPS is a tunnel: its paths are never seen), not for
   package-registry presets (they are APIs, not crawls). robots.txt is fetched once per host and kept
   `robots_ttl_s`, from the address the proxy resolved (so it goes where the request would), and matched with
   `protego` (RFC 9309: longest match, `*` and `$`), the path as written and as a server reads it (`read_as`:
   dot segments removed, slashes merged). As RFC 9309 says: 2xx is parsed; 4xx (none) allows
   everything; 5xx or no answer disallows everything (kept a minute, then asked again); up to five consecutive
   redirects are followed wherever they lead (https: verified TLS; another host: its pin or public addresses, from
   the proxy's `resolve`), a sixth counts as none (unavailable), one that cannot be followed as no answer.
3. `admit(host)`: the per-minute cap of the host's rule, counted when a request passes (home-wide), and by the
   proxy for each exchange after a tunnel's first (a keep-alive tunnel must not carry calls past it). The count is
   taken in a worker thread, never on the proxy's event loop, within `RateWindows.timeout_s` (1 s): a rates file
   another process holds locked longer refuses the capped request (503, `rate`) rather than stall the body's other
   requests, or send one uncounted; so does a damaged one (the reason names it and says to remove it), which a body
   opens only for a capped request, so it never stops a body from starting.

A refusal is a `Verdict` (status, reason, rule); the proxy answers it to the command as an HTTP error with the reason
as body and records it (`ProxyRequest.rule`), which `run_command` puts in its audit event.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import anyio
import anyio.abc
import anyio.to_thread
from protego import Protego

from shared_protocol.config import DOMAIN_PRESETS, PRESET_PREFIX, ComplianceConfig, DomainTerms
from shared_protocol.fileid import file_identity

from .exceptions import StateUnusable

_MAX_ROBOTS = 512 * 1024
"""RFC 9309: a parser must read at least 500 KiB; what is beyond it is ignored."""
_UNREACHABLE_TTL_S = 60.0
_MINUTE_S = 60.0


@dataclass(kw_only=True, frozen=True)
class Verdict:
    """A request refused by the gate: what the command is answered, and the rule that refused it."""

    status: int
    reason: str
    rule: str
    """`terms`, `rate` or `robots`."""


@dataclass(kw_only=True, frozen=True)
class _Robots:
    parser: Protego | None
    """None: nothing to match (no robots.txt: all allowed, unless `disallow_all`)."""
    disallow_all: bool
    expires: float
    note: str


class Compliance:
    """The gate's rules and state for one body (see the module docstring)."""

    def __init__(
        self,
        config: ComplianceConfig,
        *,
        exempt_hosts: Collection[str] = (),
        windows: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._exempt = frozenset(host.lower() for host in exempt_hosts)
        self._clock = clock
        self._windows = RateWindows(windows, clock=clock)
        self._robots: dict[tuple[str, int], _Robots] = {}
        self._locks: dict[tuple[str, int], anyio.Lock] = {}

    @property
    def config(self) -> ComplianceConfig:
        return self._config

    def rule_for(self, host: str) -> tuple[str, DomainTerms] | None:
        """The host's own `[compliance.domains]` entry, else the longest `*.domain` one covering it."""
        domains = self._config.domains
        if host in domains:
            return host, domains[host]
        covering = [name for name in domains if name.startswith("*.") and host.endswith(name[1:])]
        if not covering:
            return None
        name = max(covering, key=len)
        return name, domains[name]

    def terms(self, host: str) -> Verdict | None:
        """Refuse a host its terms rule closes (`allowed = false`, `automated_access = false`)."""
        found = self.rule_for(host)
        if found is None:
            return None
        name, rule = found
        where = f" ({rule.terms_url})" if rule.terms_url else ""
        if not rule.allowed:
            return Verdict(
                status=403, reason=f"{host}: [compliance.domains] {name} is not allowed{where}", rule="terms"
            )
        if not rule.automated_access:
            return Verdict(status=403, reason=f"{host}: the site's terms forbid automated access{where}", rule="terms")
        return None

    async def admit(self, host: str) -> Verdict | None:
        """Count one request against its host rule's per-minute cap; a refusal when the cap is reached, or when the
        count could not be taken (the rates file busy past `RateWindows.timeout_s`, or unusable: 503)."""
        found = self.rule_for(host)
        if found is None or found[1].max_requests_per_minute == 0:
            return None
        name, rule = found
        # (off the event loop: the file is shared with other processes, which may hold its write lock)
        take = partial(
            self._windows.take, name, rule.max_requests_per_minute, deadline=time.monotonic() + self._windows.timeout_s
        )
        try:
            admitted = await anyio.to_thread.run_sync(take)
        except StateUnusable as exc:
            return Verdict(
                status=503,
                reason=f"{host}: its per-minute cap could not be counted, so the request was not sent: {exc}",
                rule="rate",
            )
        if not admitted:
            return Verdict(
                status=429,
                reason=f"{host}: [compliance.domains] {name} allows {rule.max_requests_per_minute} requests a minute",
                rule="rate",
            )
        return None

    def checks_robots(self, host: str) -> bool:
        """Whether a plain-HTTP request to `host` is checked against robots.txt (not for registry presets)."""
        return self._config.robots and host not in self._exempt

    async def robots(
        self,
        host: str,
        port: int,
        path: str,
        destinations: Sequence[tuple[str, int]],
        resolve: Resolve | None = None,
    ) -> Verdict | None:
        """Refuse `path` if the host's robots.txt disallows it for our user agent (fetched from `destinations`; a
        redirect to another host or port is fetched from where `resolve` says)."""
        if not self.checks_robots(host):
            return None
        key = (host, port)
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:  # (one fetch per host, however many requests wait for it)
            robots = self._robots.get(key)
            if robots is None or self._clock() >= robots.expires:
                robots = await self._fetch(host, port, destinations, resolve or _no_resolve)
                self._robots[key] = robots
        agent = self._config.user_agent
        if robots.disallow_all:
            return Verdict(status=403, reason=f"{host}: {robots.note}: every path is disallowed", rule="robots")
        authority = host if port == 80 else f"{host}:{port}"
        parser = robots.parser
        if parser is not None and not all(parser.can_fetch(f"http://{authority}{p}", agent) for p in read_as(path)):
            return Verdict(
                status=403, reason=f"{host}'s robots.txt disallows {path.split('?')[0]} for {agent}", rule="robots"
            )
        return None

    async def _fetch(self, host: str, port: int, destinations: Sequence[tuple[str, int]], resolve: Resolve) -> _Robots:
        now = self._clock()
        ttl = float(self._config.robots_ttl_s)
        try:
            with anyio.fail_after(self._config.robots_timeout_s):
                status, body = await _follow_robots(host, port, destinations, self._config.user_agent, resolve)
        except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, ValueError) as exc:
            note = f"robots.txt could not be fetched ({type(exc).__name__})"
            return _Robots(parser=None, disallow_all=True, expires=now + min(ttl, _UNREACHABLE_TTL_S), note=note)
        if 200 <= status < 300:
            # ("utf-8-sig": a byte order mark, as Windows editors save one, would hide the first line's group)
            parser = Protego.parse(body[:_MAX_ROBOTS].decode("utf-8-sig", errors="replace"))
            return _Robots(parser=parser, disallow_all=False, expires=now + ttl, note="robots.txt")
        if status >= 500:
            note = f"robots.txt is unreachable (HTTP {status})"
            return _Robots(parser=None, disallow_all=True, expires=now + min(ttl, _UNREACHABLE_TTL_S), note=note)
        return _Robots(parser=None, disallow_all=False, expires=now + ttl, note=f"no robots.txt (HTTP {status})")


class RateWindows:
    """The per-minute windows of `[compliance.domains]` caps, in a SQLite file every body of a `$SWARM_HOME` opens
    (`WINDOWS_FILE` under the home), so N agents of one machine share a site's cap rather than each having it; it
    survives restarts. Without a path, a private in-memory database (one `Compliance` alone, as in tests).

    One row per request admitted (the rule's name, when); `take` counts and adds in one `BEGIN IMMEDIATE`
    transaction (the write lock first: two bodies cannot both see room for the last request), pruning rows older
    than a minute. Times are wall-clock seconds (`clock`), comparable across processes, read once the lock is held
    (so the rows of a file are in order, whatever each body waited). A row later than now is a clock stepped back
    (NTP, a VM resumed): it is moved to now, so it still counts, for one minute more, and a step closes a capped
    site for at most a minute rather than for the step's length. `take` blocks (sqlite waits for another process's
    lock): `Compliance` calls it in a worker thread, and it gives up after `timeout_s`.

    The file is opened by the first `take` (a body with no cap never opens it), and again after it failed: a file
    that is damaged or cannot be opened refuses the capped requests (`StateUnusable`, naming it), not the body, and
    once it is removed the next `take` makes it anew (it holds only the last minute's counts)."""

    def __init__(self, path: Path | None, *, timeout_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.timeout_s = timeout_s
        """How long `take` waits for the file's write lock (held by another body's `take`, for a few ms)."""
        self._path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._ready: sqlite3.Connection | None = None
        """The connection whose schema is made (a busy file can interrupt it: made again by the next take)."""
        self._opened: tuple[int, int] | None = None
        """The file `_db` opened (device, inode): each take checks the path still leads to it."""

    def take(self, rule: str, per_minute: int, *, deadline: float | None = None) -> bool:
        """Admit one request under `rule` (at most `per_minute` in the last minute): whether it may go.
        Raises `StateUnusable` (nothing counted) when the file stays locked by another process until `deadline`
        (`time.monotonic()`; default `timeout_s` from now), or is damaged or cannot be opened or written."""
        deadline = time.monotonic() + self.timeout_s if deadline is None else deadline
        if not self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            raise self._busy()
        try:
            db = self._open(deadline)
            return self._take(db, rule, per_minute)
        except sqlite3.Error as exc:
            if _is_busy(exc):
                raise self._busy() from None
            self.close()  # (opened anew by the next take: the file may have been removed or repaired meanwhile)
            raise _unusable(self._where, exc) from None
        finally:
            self._lock.release()

    def _open(self, deadline: float) -> sqlite3.Connection:
        if self._db is not None and self._path is not None and _identity(self._path) != self._opened:
            # Removed or replaced since we opened it: a body that kept counting in the old file while the ones started
            # since count in the new one would each admit the whole cap.
            self.close()
        db = self._db
        if db is None:
            # (autocommit mode: transactions are begun and ended here, explicitly)
            db = sqlite3.connect(
                ":memory:" if self._path is None else self._path,
                timeout=self.timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            self._db = db
            self._opened = None if self._path is None else _identity(self._path)
        # (sqlite's own busy handler waits for the lock, up to what is left of the deadline)
        db.execute(f"PRAGMA busy_timeout = {max(int((deadline - time.monotonic()) * 1000), 0)}")
        if db is not self._ready:
            if self._path is not None:
                _to_wal(db, deadline)
                db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS rate_hits (rule TEXT NOT NULL, ts REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS rate_hits_rule_ts ON rate_hits (rule, ts)")
            self._ready = db
        return db

    def _take(self, db: sqlite3.Connection, rule: str, per_minute: int) -> bool:
        db.execute("BEGIN IMMEDIATE")
        try:
            now = self._clock()
            db.execute("DELETE FROM rate_hits WHERE ts <= ?", (now - _MINUTE_S,))
            db.execute("UPDATE rate_hits SET ts = ? WHERE ts > ?", (now, now))  # (from the future: a clock step)
            (used,) = db.execute(
                "SELECT count(*) FROM rate_hits WHERE rule = ? AND ts > ?", (rule, now - _MINUTE_S)
            ).fetchone()
            admitted = used < per_minute
            if admitted:
                db.execute("INSERT INTO rate_hits (rule, ts) VALUES (?, ?)", (rule, now))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # (a damaged file may refuse the rollback too)
                db.execute("ROLLBACK")
            raise
        return admitted

    def _busy(self) -> StateUnusable:
        return StateUnusable(
            self._where, f"busy: another process held its write lock for over {self.timeout_s:g} s (nothing counted)"
        )

    @property
    def _where(self) -> Path:
        return Path(":memory:") if self._path is None else self._path

    def close(self) -> None:
        db, self._db, self._ready = self._db, None, None
        if db is not None:
            db.close()


def check_windows(path: Path) -> StateUnusable | None:
    """What `swarm doctor` says of a home's rates file (`WINDOWS_FILE`): None when it is sound or not made yet, else
    why it cannot be used (what a capped request would be refused for)."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=1.0)
        try:
            (verdict,) = db.execute("PRAGMA quick_check(1)").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return None if _is_busy(exc) else _unusable(path, exc)  # (busy: in use by a body, not broken)
    if verdict != "ok":
        return StateUnusable(path, f"damaged ({verdict}): {_REMOVE_IT}", damaged=True)
    return None


_REMOVE_IT = (
    "remove it (with its -wal and -shm files), which loses nothing but the last minute's request counts; the next "
    "capped request makes it anew"
)


def _unusable(path: Path, exc: sqlite3.Error) -> StateUnusable:
    if exc.sqlite_errorname.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return StateUnusable(path, f"damaged ({exc}): {_REMOVE_IT}", damaged=True)
    return StateUnusable(path, f"cannot be used ({exc})")


def _identity(path: Path) -> tuple[int, int] | None:
    """`file_identity`, or None when there is no file to read it of."""
    try:
        return file_identity(path)
    except OSError:
        return None


def _is_busy(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


def _to_wal(db: sqlite3.Connection, deadline: float) -> None:
    """Put a new file in WAL mode, once in its life. Bodies opening it at once race for that, and sqlite may give
    up on the busy lock before its timeout: asked again until `deadline`."""
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.005)


WINDOWS_FILE = "compliance-rates.sqlite"
"""Under `$SWARM_HOME`: the per-minute windows every body of that home shares (`RateWindows`)."""


_DOT_OR_SLASH = re.compile(r"%2[eEfF]")
_SLASHES = re.compile(r"/{2,}")


def read_as(path: str) -> list[str]:
    """`path` (origin-form, with its query) as written, and as an origin server may read it: `%2e` and `%2f` decoded
    and dot segments removed (RFC 3986 5.2.4), with and without doubled slashes merged (nginx and Apache merge
    them). robots.txt is matched against each, and any disallowed refuses the request (which is sent as written):
    else `/pub/../private`, `//private` or `/pub/%2e%2e/private` would pass a `Disallow: /private`."""
    raw, mark, query = path.partition("?")
    decoded = _DOT_OR_SLASH.sub(lambda m: chr(int(m.group()[1:], 16)), raw)
    forms = [raw, _remove_dot_segments(decoded), _remove_dot_segments(_SLASHES.sub("/", decoded))]
    return [form + mark + query for form in dict.fromkeys(forms)]


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 for an absolute path: `/a/./b/../c` is `/a/c`, `/a/b/..` is `/a/`, and `..` stops at `/`."""
    segments = path.split("/")[1:]
    kept: list[str] = []
    for index, segment in enumerate(segments):
        if segment in (".", ".."):
            if segment == ".." and kept:
                kept.pop()
            if index == len(segments) - 1:
                kept.append("")
        else:
            kept.append(segment)
    return "/" + "/".join(kept)


def preset_hosts(allowed_domains: Sequence[str]) -> frozenset[str]:
    """The hosts `allowed_domains` allows through a package-registry preset (`preset:pypi`): APIs, not crawls, so
    robots.txt is not asked."""
    hosts: set[str] = set()
    for entry in allowed_domains:
        if entry.startswith(PRESET_PREFIX):
            hosts.update(DOMAIN_PRESETS.get(entry.removeprefix(PRESET_PREFIX), ()))
    return frozenset(hosts)


_MAX_REDIRECTS = 5
"""RFC 9309 2.3.1.2: a crawler SHOULD follow at least five consecutive redirects for robots.txt."""
_LOCATION = re.compile(rb"(?im)^location:[ \t]*(\S+)[ \t]*$")
_DEFAULT_PORTS = {"http": 80, "https": 443}

Resolve = Callable[[str, int], Awaitable[Sequence[tuple[str, int]]]]
"""Where the gate's own fetch may connect for `(host, port)`, checked as a command's request is (its pin, else its
public addresses); raises `OSError` saying why when there is nowhere (read as unreachable)."""


async def _no_resolve(host: str, port: int) -> Sequence[tuple[str, int]]:
    raise OSError(f"no resolver to follow a robots.txt redirect to {host}:{port}")


async def _follow_robots(
    host: str, port: int, destinations: Sequence[tuple[str, int]], user_agent: str, resolve: Resolve
) -> tuple[int, bytes]:
    """`_get_robots`, following up to five consecutive redirects wherever they lead (RFC 9309 2.3.1.2: "even across
    authorities"): a path moved on the host, http to https (TLS verified against the host's name, as any fetch of
    ours), another host (connected to where `resolve` says: its pin or its public addresses). The last answer is
    returned: a sixth redirect's 3xx, read as unavailable (none). A redirect that cannot be followed (no address, a
    failed TLS handshake, a scheme other than http or https) raises: unreachable."""
    scheme, path = "http", "/robots.txt"
    status, head, body = await _get_robots(scheme, host, port, destinations, user_agent, path)
    for _ in range(_MAX_REDIRECTS):
        location = _LOCATION.search(head)
        if not 300 <= status < 400 or location is None:
            break
        here = f"{scheme}://{_authority(scheme, host, port)}{path}"
        target = urlsplit(urljoin(here, location.group(1).decode("latin-1")))
        if target.scheme not in _DEFAULT_PORTS or not target.hostname:
            raise ValueError(f"robots.txt redirected to {target.scheme or 'no'} scheme")
        next_host, next_port = target.hostname.lower().removesuffix("."), target.port or _DEFAULT_PORTS[target.scheme]
        if (next_host, next_port) != (host, port):
            destinations = await resolve(next_host, next_port)
        scheme, host, port = target.scheme, next_host, next_port
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        status, head, body = await _get_robots(scheme, host, port, destinations, user_agent, path)
    return status, body


def _authority(scheme: str, host: str, port: int) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port == _DEFAULT_PORTS[scheme] else f"{name}:{port}"


async def _get_robots(
    scheme: str, host: str, port: int, destinations: Sequence[tuple[str, int]], user_agent: str, path: str
) -> tuple[int, bytes, bytes]:
    """`GET path` (HTTP/1.0: no chunking, closed when done; over verified TLS for https) from the first destination
    that answers: its status, head and body."""
    error: OSError | None = None
    for address, dest_port in destinations:
        try:
            if scheme == "https":
                # (the peer's close ends the body: an HTTP/1.0 server need not send TLS's close_notify)
                stream: anyio.abc.ByteStream = await anyio.connect_tcp(
                    address,
                    dest_port,
                    tls=True,
                    ssl_context=ssl.create_default_context(),
                    tls_hostname=host,
                    tls_standard_compatible=False,
                )
            else:
                stream = await anyio.connect_tcp(address, dest_port)
        except OSError as exc:
            error = exc
            continue
        async with stream:
            request = (
                f"GET {path} HTTP/1.0\r\nHost: {_authority(scheme, host, port)}\r\nUser-Agent: {user_agent}\r\n\r\n"
            )
            await stream.send(request.encode("ascii"))
            received = bytearray()
            try:
                while len(received) < _MAX_ROBOTS + 64 * 1024:
                    received += await stream.receive()
            except anyio.EndOfStream:
                pass
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].split(b" ")
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1.") or not status_line[1].isdigit():
            raise ValueError("not an HTTP response")
        return int(status_line[1]), head, body
    raise error or OSError("no address to connect to")


__all__ = [
    "WINDOWS_FILE",
    "Compliance",
    "RateWindows",
    "Resolve",
    "Verdict",
    "check_windows",
    "preset_hosts",
    "read_as",
]
