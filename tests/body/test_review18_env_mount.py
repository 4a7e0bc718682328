"""Review #18 (round 2): the env dir mount when the workspace holds a symlink where `.venv` goes (committed in the
repository, or left by a careless user): nothing a command writes through it lands outside the workspace, and the
task's env dir is not mounted through it. Real bwrap."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from body_mcp.state import StatePaths

from ..conftest import require_binary
from .helpers import call

pytestmark = pytest.mark.anyio


async def _run(client: Client, script: str) -> Any:
    return await call(client, "run_command", argv=["/bin/sh", "-c", script], timeout_s=120)


async def test_a_venv_symlink_leading_outside_is_not_followed(
    client: Client, workspace: Path, home: Path, tmp_path: Path
) -> None:
    require_binary("bwrap", "bubblewrap")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, workspace / ".venv")
    result = await _run(client, "mkdir -p .venv/bin; echo planted > .venv/bin/pytest; python3 -m venv .venv; true")
    assert os.listdir(outside) == [], "a command wrote through the workspace's .venv symlink to the host"
    assert os.readlink(workspace / ".venv") == str(outside)
    env = StatePaths(home=home, workspace=workspace).env
    assert not (env / ".venv" / "bin" / "pytest").exists()
    assert result.structured_content is not None


async def test_a_model_made_symlink_in_place_of_node_modules_is_never_applied(
    client: Client, workspace: Path, tmp_path: Path
) -> None:
    """The model's command replaces the env dir's place with a link out of the workspace: refused, not applied."""
    require_binary("bwrap", "bubblewrap")
    outside = tmp_path / "outside2"
    outside.mkdir()
    await _run(client, f"rm -rf node_modules 2>/dev/null; ln -s {outside} node_modules; true")
    assert not (workspace / "node_modules").is_symlink()
    await _run(client, "mkdir -p node_modules/.bin && echo x > node_modules/.bin/jest; true")
    assert os.listdir(outside) == []
