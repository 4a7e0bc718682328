# pyright: strict
"""Staging areas on disk, and the finished run that holds one until the body has copied what it needs."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.to_thread

from ._interface import RunResult, StagedChange
from ._limits import made_by_a_gone_process, owner_tag

logger = logging.getLogger(__name__)


_PREFIX = "swarm-sandbox-"


def make_staging(root: Path) -> Path:
    """A fresh private directory for one run under `root`; its name says which process made it
    (`remove_orphaned_staging`)."""
    root.mkdir(parents=True, exist_ok=True)
    tag = owner_tag()
    return Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{tag + '-' if tag else ''}", dir=root))


def remove_orphaned_staging(root: Path) -> list[Path]:
    """Remove the staging directories under `root` whose body is gone (killed before it removed them: during a
    run, or between a run's reply and `discard_soon`'s removal); the ones removed. Only this user's directories,
    named by a process of this pid namespace (`made_by_a_gone_process`)."""
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for path in root.glob(f"{_PREFIX}*"):
            with contextlib.suppress(OSError):  # (another body removing it at the same time)
                info = path.lstat()
                if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                    continue
                if made_by_a_gone_process(path.name, _PREFIX):
                    remove_staging(path)
                    removed.append(path)
    return removed


def remove_staging(path: Path) -> None:
    """Delete a staging area, even one where the command left unreadable directories."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except PermissionError:
        # Only without root: a command may leave `chmod 000` directories, and overlayfs's work dir is 000.
        _make_removable(path)
        shutil.rmtree(path, ignore_errors=False)


class _Discarder:
    """Removes staging directories in a background thread, so that a run's reply does not wait for it.

    The thread is started when there is work and ends when there is none; it is not a daemon, so an exiting
    interpreter waits for the removals still queued."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queue: list[Path] = []
        self._working = False

    def put(self, path: Path) -> None:
        with self._lock:
            self._queue.append(path)
            if self._working:
                return
            self._working = True
        try:
            threading.Thread(target=self._work, name="swarm-staging-discard").start()
        except RuntimeError:  # (no thread to be had, or the interpreter exiting): removed here, now, as before
            self._work()

    def wait(self, timeout_s: float) -> bool:
        """Whether every queued removal was done within `timeout_s`."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._working, timeout_s)

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._working = False
                    self._idle.notify_all()
                    return
                path = self._queue.pop(0)
            try:
                remove_staging(path)
            except OSError:
                logger.warning("could not remove the staging area %s", path, exc_info=True)


_DISCARDER = _Discarder()


def wait_discarded(timeout_s: float = 10.0) -> bool:
    """Wait until the staging areas handed to `StagedDirRun.discard_soon` are removed; False on a timeout."""
    return _DISCARDER.wait(timeout_s)


def _make_removable(path: Path) -> None:
    os.chmod(path, 0o700)
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                _make_removable(Path(entry.path))


class StagedDirRun:
    """A `StagedRun` backed by a staging directory (every backend here uses one)."""

    def __init__(
        self, *, result: RunResult, changes: Sequence[StagedChange], staging: Path, area_fd: int | None = None
    ) -> None:
        """`area_fd`, when given, holds the run's write area (where the `source` paths lead); closed with it."""
        self._result = result
        self._changes = tuple(changes)
        self._staging: Path | None = staging
        self._area_fd = area_fd

    @property
    def result(self) -> RunResult:
        return self._result

    @property
    def changes(self) -> Sequence[StagedChange]:
        return self._changes

    @property
    def staging_dir(self) -> Path | None:
        """Where the staged content lives; None once closed."""
        return self._staging

    @property
    def write_area(self) -> Path | None:
        """Where the command's writes live (its staged content), when not in `staging_dir`; None once closed."""
        return Path(f"/proc/self/fd/{self._area_fd}") if self._area_fd is not None else None

    def discard_soon(self) -> None:
        """See `StagedRun.discard_soon`: the write area is released now, the staging directory removed later."""
        staging, self._staging = self._staging, None
        area_fd, self._area_fd = self._area_fd, None
        if area_fd is not None:
            os.close(area_fd)
        if staging is not None:
            _DISCARDER.put(staging)

    async def aclose(self) -> None:
        """Discard the staging area; the `source` paths of the changes stop existing. Idempotent."""
        staging, self._staging = self._staging, None
        area_fd, self._area_fd = self._area_fd, None
        if area_fd is not None:
            os.close(area_fd)  # the last reference to the write area's tmpfs: its memory is freed
        if staging is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(remove_staging, staging)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"StagedDirRun(exit_code={self._result.exit_code}, changes={len(self._changes)})"
