# pyright: strict
"""Helpers for the sandbox tests: specs, workspace snapshots, a fake proxy on a unix socket."""

from __future__ import annotations

import os
import select
import shutil
import stat
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sandbox import ChangeKind, EntryType, SandboxSpec, StagedChange, default_toolchain_paths
from sandbox._bwrap_backend import BwrapBackend

BWRAP_MISSING = "bubblewrap not installed: apt-get install bubblewrap"

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def require_isolation(sandbox: BwrapBackend) -> BwrapBackend:
    """Skip (or fail, when CI=true) unless the backend really isolates on this machine."""
    reason = BWRAP_MISSING if shutil.which("bwrap") is None else None
    if reason is None:
        availability = sandbox.available()
        reason = None if availability.ok else availability.reason
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the sandbox tests: {reason}")
        pytest.skip(reason)
    return sandbox


def make_spec(workspace: Path, argv: Sequence[str], **overrides: Any) -> SandboxSpec:
    """A spec with the default toolchain, a minimal environment and `.env` hidden."""
    spec = SandboxSpec(
        workspace=workspace,
        argv=list(argv),
        env={"PATH": SANDBOX_PATH, "LANG": "C.UTF-8"},
        toolchain_paths=default_toolchain_paths(),
        hidden_paths=[".env"],
        timeout_s=20,
    )
    return replace(spec, **overrides)


def sh(workspace: Path, script: str, **overrides: Any) -> SandboxSpec:
    """A spec running a shell script (`set -e`, so a failing step fails the run)."""
    return make_spec(workspace, ["/bin/sh", "-ec", script], **overrides)


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry under `root`: type, permission bits and content (or symlink target), for equality checks."""
    entries: dict[str, tuple[str, int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = ("symlink", 0, os.readlink(path).encode())
            elif stat.S_ISREG(st.st_mode):
                entries[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
            else:
                entries[rel] = ("other", stat.S_IMODE(st.st_mode), b"")
    return entries


def summary(changes: Sequence[StagedChange]) -> list[tuple[str, ChangeKind, EntryType]]:
    return [(c.path, c.kind, c.entry_type) for c in changes]


def by_path(changes: Sequence[StagedChange]) -> dict[str, StagedChange]:
    return {c.path: c for c in changes}


def ended(pid: int, timeout_s: float = 10) -> bool:
    """Whether the process `pid` ends within `timeout_s` (through a pidfd: never another process that took its pid)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout_s)[0])
    finally:
        os.close(pidfd)
