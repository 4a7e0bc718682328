"""Fixtures of the snapshot tests: a workspace in state B and a state directory beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from body_mcp.snapshots import _walk

from ._support import make_tree


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "parent" / "proj"
    root.mkdir(parents=True)
    make_tree(root)
    return root.resolve()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def trust_fresh_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the stat cache trust files written a moment ago (tests write them just before snapshotting)."""
    monkeypatch.setattr(_walk, "RACY_NS", 0)
