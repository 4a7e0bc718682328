# pyright: strict
"""Fixtures for the sandbox tests: real bubblewrap backends (skipped loudly without bwrap, failed on CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import BwrapOverlaySandbox, CopyStagingSandbox
from sandbox._bwrap_backend import BwrapBackend

from ._support import require_isolation


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def staging_root(tmp_path: Path) -> Path:
    path = tmp_path / "staging"
    path.mkdir()
    return path


@pytest.fixture
def overlay(staging_root: Path) -> BwrapBackend:
    return require_isolation(BwrapOverlaySandbox(staging_root=staging_root))


@pytest.fixture(params=["bwrap-overlay", "copy"])
def backend(request: pytest.FixtureRequest, staging_root: Path) -> BwrapBackend:
    """Each real backend in turn, for behaviour both must share."""
    cls = BwrapOverlaySandbox if request.param == "bwrap-overlay" else CopyStagingSandbox
    return require_isolation(cls(staging_root=staging_root))


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A small workspace with nested directories, an executable and a protected `.env`."""
    root = tmp_path / "ws"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "docs" / "img").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "src" / "app.py").write_text("def main():\n    return 1\n")
    (root / "src" / "pkg" / "mod.py").write_text("VALUE = 2\n")
    (root / "docs" / "guide.md").write_text("# guide\n")
    (root / "docs" / "img" / "logo.txt").write_text("logo\n")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o755)
    (root / ".env").write_text("API_KEY=hunter2-secret\n")
    return root.resolve()
