"""`serve(settings)`: the brain daemon, one process running the HTTP API and the sweeper loop.

Everything the brain knows is in the state engine `database_url` names (a SQLite file unless
it says otherwise), committed before any answer, so a restart (after a crash, a reboot or
`systemctl restart`) resumes where it stopped: pending decisions keep their deadlines, claimed
tasks keep their leases (`memory://` keeps nothing across a restart). SIGTERM and SIGINT
stop it cleanly: event streams are ended (bodies reconnect to the next brain), requests in
flight finish, the database is closed.

A database that cannot be used stops it too, with that reason (`StateBroken`, one line): at
start (malformed, truncated, unreadable, a full disk) before it listens, and while serving as
soon as the state engine finds out (requests meanwhile get 503 `state_unavailable`). The
process then exits non-zero, so its supervisor (systemd's `Restart=always`) starts it again,
rather than leaving a process that neither serves nor exits.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from functools import partial

import anyio
import httpx
import uvicorn

from .app import build_app
from .backup import run_backups
from .exceptions import ConfigError, StateBroken
from .service import Brain, Clock
from .settings import BrainSettings
from .state import open_engine, sqlite_path
from .wake.setup import WakeSetup

WakeFactory = Callable[[httpx.AsyncClient], WakeSetup]

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handling (the daemon's own), plus hooks at start and before shutdown."""

    def __init__(self, config: uvicorn.Config, *, on_started: Callable[[], None], on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._on_stop = on_stop

    @contextmanager
    def capture_signals(self) -> Generator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Event streams never end by themselves; uvicorn would wait for them forever.
        self._on_stop()
        await super().shutdown(sockets)


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket for host:port (port 0: any free one)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:  # (a host that is no address here: name it, not just "Name or service not known")
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = found[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


async def run(
    settings: BrainSettings,
    *,
    on_ready: Callable[[str], None] | None = None,
    stop: anyio.Event | None = None,
    handle_signals: bool = True,
    wake: WakeSetup | WakeFactory | None = None,
    clock: Clock = time.time,
) -> None:
    """Run the brain until SIGTERM or SIGINT (if `handle_signals`, on the main thread) or until `stop` is set.

    `wake` is how humans are paged: a ready `WakeSetup`, or a factory given the daemon's HTTP client
    (channels share its connection pool); None pages nobody: the log says what needed a human, and decisions
    still expire to denials. `clock` is the brain's time (leases, deadlines): tests drive it instead of waiting.
    """
    if not settings.database_url:
        raise ConfigError(
            "BrainSettings.database_url is required to serve (the entry point defaults it to "
            "sqlite:///$SWARM_HOME/brain.db)"
        )
    sock = bind(settings.host, settings.port)  # (a port in use stops it before the database is opened or created)
    try:
        state = await open_engine(settings.database_url, durability=settings.durability)
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as http:
                setup = wake(http) if callable(wake) else wake
                brain = Brain(settings, state=state, wake=setup, clock=clock)
                await serve_brain(brain, on_ready=on_ready, stop=stop, handle_signals=handle_signals, sock=sock)
        finally:
            await state.close()
            logger.info("brain stopped")
    finally:
        sock.close()


async def serve_brain(
    brain: Brain,
    *,
    on_ready: Callable[[str], None] | None = None,
    stop: anyio.Event | None = None,
    handle_signals: bool = False,
    loops: bool = True,
    sock: socket.socket | None = None,
) -> None:
    """Serve a `Brain` on its settings' host and port until `stop`, a signal (`handle_signals`), or its state breaks
    (then `StateBroken` is raised once the server has stopped). `loops=False` runs no sweeper, retention, paging or
    backups: a test drives those itself (`brain.sweep()`, `brain.escalator.tick()`) on an injected clock. `sock`:
    a socket bound already (default: bound here)."""
    settings = brain.settings
    sock = sock or bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    try:
        await _serve(brain, sock, url, on_ready=on_ready, stop=stop, handle_signals=handle_signals, loops=loops)
    finally:
        sock.close()


async def _serve(
    brain: Brain,
    sock: socket.socket,
    url: str,
    *,
    on_ready: Callable[[str], None] | None,
    stop: anyio.Event | None,
    handle_signals: bool,
    loops: bool,
) -> None:
    settings = brain.settings
    db_file = sqlite_path(settings.database_url) if settings.database_url else None  # backups copy a SQLite file
    broken: list[StateBroken] = []
    async with brain.running():
        # httptools (a C parser) rather than h11: ~150 us of CPU less per request here (h11 ~300 us, httptools
        # ~140 us for a claim-sized request and reply), a tenth of what the brain spends on a claim.
        config = uvicorn.Config(
            build_app(brain),
            http="httptools",
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )

        def started() -> None:
            logger.info("brain listening on %s (state %s)", url, settings.database_url or "given")
            if on_ready is not None:
                on_ready(url)

        server = _Server(config, on_started=started, on_stop=brain.hub.close)

        async def exit_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    logger.info("brain stopping (%s)", signal.Signals(signum).name)
                    server.should_exit = True

        async def exit_on_stop(event: anyio.Event) -> None:
            await event.wait()
            server.should_exit = True

        async def exit_when_broken() -> None:
            broken.append(await brain.state.wait_broken())
            logger.error("brain stopping: %s", broken[0].reason)
            server.should_exit = True

        async with anyio.create_task_group() as group:
            if handle_signals and threading.current_thread() is threading.main_thread():
                group.start_soon(exit_on_signal)
            if stop is not None:
                group.start_soon(exit_on_stop, stop)
            group.start_soon(exit_when_broken)
            if loops:
                group.start_soon(brain.run_sweeper)
                group.start_soon(brain.run_retention)
                if settings.anomaly.enabled:
                    group.start_soon(brain.anomaly.run)
                group.start_soon(partial(brain.escalator.run, interval_s=settings.sweep_interval_s))
                if settings.backup_interval_s > 0 and db_file is not None:
                    group.start_soon(
                        partial(
                            run_backups,
                            db_file,
                            db_file.parent / "backups",
                            interval_s=settings.backup_interval_s,
                            keep=settings.backup_keep,
                        )
                    )
            await server.serve(sockets=[sock])
            group.cancel_scope.cancel()
    if broken:
        raise broken[0]


def serve(
    settings: BrainSettings,
    *,
    on_ready: Callable[[str], None] | None = None,
    wake: WakeSetup | WakeFactory | None = None,
) -> None:
    """Run the brain daemon in this process until SIGTERM or SIGINT."""
    anyio.run(lambda: run(settings, on_ready=on_ready, wake=wake))
