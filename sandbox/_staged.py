# pyright: strict
"""Staging areas on disk, and the finished run that holds one until the body has copied what it needs."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.to_thread

from ._interface import RunResult, StagedChange


def make_staging(root: Path) -> Path:
    """A fresh private directory for one run under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="swarm-sandbox-", dir=root))


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
