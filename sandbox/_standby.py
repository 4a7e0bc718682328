# pyright: strict
"""The overlay backend's next launcher, forked ahead of its run: a run that finds one sends its request straight to
it, without the launcher server's round trip, its fork or a worker-thread hop for the set-up.

What is made ahead is only what does not depend on the command: a fresh staging directory (its `empty` file and
the areas' mount points), a fresh pids cgroup, and the launcher itself, forked by the server, already in that
cgroup and waiting on its areas socket (`_spawner.launch`). Everything the command decides — bwrap's options with
the paths to hide, the environment, the mounts, the limits — is built when the command arrives, from the scan
of that moment, and sent in the run's request: a launcher made ahead never holds a hidden-path list. It is
made for a key all the same (the workspace, the hidden paths, the process limit its cgroup was sized for, a
forwarder or none), and a run whose key differs discards it rather than use it: a change in what is hidden
costs one run the old path, never a question of staleness.

A standby may also be a run prepared further ahead (`prepared`, the backend's `_make_ready`): its launcher was
given a whole request at once, with the plan of the run that made it, and execs bwrap, which sets up every
namespace, mount and hidden path and waits on its block pipe before it execs a trampoline. That one does hold
what is hidden: its key names the remembered plan by identity (`_plan_memo.py`: the same scan generation, env,
cwd, hidden paths and host paths), so a run whose plan is not that very one discards it, and a spare slot keeps a
plain waiting launcher beside it for such a run.

A standby is used once: taking it empties the slot, and the next one is forked while the run's command runs.
One not used is discarded (its launcher killed, which runs nothing; its cgroup and staging directory removed)
when the key changes, when the launcher server it came from is gone, and when the backend is closed or
collected (at the interpreter's exit too). A body that dies leaves it to the launcher server, which kills its
launcher and removes its cgroup as for any run (`_spawner._end_runs`), and its staging directory to the next
body's first run (`remove_orphaned_staging`).
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass
from pathlib import Path

from ._launch import Started, close_started
from ._limits import PidsCgroup
from ._staged import remove_staging
from .exceptions import SandboxError

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Standby:
    """One launcher forked ahead, with the staging directory and cgroup made for its run."""

    key: Hashable
    staging: Path
    cgroup: PidsCgroup | None
    started: Started
    server_pid: int | None
    """The launcher server that forked it: a standby outlives no server."""
    prepared: object = None
    """A run prepared all the way into bwrap, which waits before it execs the command (the backend's); None: a
    launcher waiting for its run's request."""
    release: Callable[[], None] | None = None
    """Closes the descriptors made for a prepared run, when it is discarded."""

    def alive(self, server_pid: int | None) -> bool:
        """Whether it can still be given a run: its server is the running one and it has not ended."""
        if server_pid is None or server_pid != self.server_pid:
            return False
        poller = select.poll()  # (not select(): a busy process's descriptors may be numbered past 1024)
        poller.register(self.started.pidfd, select.POLLIN)
        return not poller.poll(0)  # (a pidfd reads ready once it ended)

    def discard(self) -> None:
        """Kill the launcher (it runs nothing) and remove what was made for it. Blocks (the cgroup's removal
        waits for the kill): call it off the event loop."""
        close_started(self.started)
        if self.release is not None:
            self.release()
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                self.cgroup.remove()
        remove_staging(self.staging)


class StandbySlot:
    """At most one standby, made and discarded by a thread of the slot's own.

    One thread, started with the first refill and kept: starting a thread waits until it runs, a wake-up the
    loaded machine makes the caller wait for (milliseconds), while handing it work is a notify. A daemon: an
    exiting interpreter does not wait for it; the finalizer's `close` discards the standby made, and one being
    made then is left to the launcher server (which dies with the body) and to the next body's sweep."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._ready: Standby | None = None
        self._wanted: Callable[[], Standby] | None = None
        self._filling = False
        self._to_discard: list[Standby] = []
        self._worker: threading.Thread | None = None
        self._closed = False
        self.made = 0
        """How many standbys were made and kept (tests, benches)."""
        self.discarded = 0
        """How many were discarded unused."""

    def take(self, keys: Collection[Hashable], server_pid: int | None) -> Standby | None:
        """The standby, if one is ready for one of `keys` and alive; it leaves the slot (used once). One that does
        not fit is discarded in the background."""
        with self._lock:
            standby, self._ready = self._ready, None
        if standby is None:
            return None
        if standby.key in keys and standby.alive(server_pid):
            return standby
        self.discard_soon(standby)
        return None

    def refill(self, make: Callable[[], Standby]) -> None:
        """Have the slot's thread make the next standby, unless one is ready or being made (a notify: never a
        wait on the caller's path, but for the first call, which starts the thread)."""
        with self._lock:
            if self._closed or self._filling or self._ready is not None:
                return
            self._filling, self._wanted = True, make
            self._wake()

    def discard_soon(self, standby: Standby) -> None:
        """Discard `standby` in the slot's thread."""
        with self._lock:
            self.discarded += 1
            self._to_discard.append(standby)
            self._wake()

    def wait_ready(self, timeout_s: float) -> Standby | None:
        """The standby in the slot once no refill is under way (tests, benches); it stays in the slot."""
        with self._lock:
            self._changed.wait_for(lambda: not self._filling, timeout=timeout_s)
            return self._ready

    def close(self) -> None:
        """Discard the standby, and any made from now on; the slot's thread ends."""
        with self._lock:
            self._closed = True
            standby, self._ready = self._ready, None
            self._changed.notify_all()
        if standby is not None:
            self.discarded += 1
            standby.discard()

    def _wake(self) -> None:
        """(Under the lock.) Tell the slot's thread there is work, starting it the first time."""
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="sandbox-standby", daemon=True)
            self._worker.start()
        self._changed.notify_all()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._changed.wait_for(lambda: self._closed or self._wanted is not None or bool(self._to_discard))
                make, self._wanted = self._wanted, None
                discards, self._to_discard = self._to_discard, []
                closed = self._closed
            for standby in discards:
                standby.discard()
            if make is not None:
                self._fill(make)
            # Nothing of this round is kept while the thread waits: `make` holds the backend (its bound method),
            # which would then never be collected, and its finalizer never discard the standby (nor stop the server).
            make = None
            if closed:
                with self._lock:
                    if not self._to_discard:
                        return

    def _fill(self, make: Callable[[], Standby]) -> None:
        standby: Standby | None = None
        try:
            standby = make()
        except (OSError, SandboxError) as error:  # (the next run takes the old path, which reports its own errors)
            logger.info("sandbox: no launcher made ahead: %s", error)
        with self._lock:
            self._filling = False
            keep = standby is not None and not self._closed
            if keep:
                self._ready = standby
                self.made += 1
            self._changed.notify_all()
        if standby is not None and not keep:
            standby.discard()
            with self._lock:
                self.discarded += 1
