"""Shared fixtures: a sample workspace, a private SWARM_HOME, and a body on them."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from body_mcp import Body, BodySettings, build_server
from shared_protocol.config import SwarmConfig, parse_config


def require_binary(name: str, package: str) -> str:
    """The path of a system tool a test needs: skipped loudly when absent, a failure in CI (which installs it)."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed: apt-get install {package}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "swarm-home"
    path.mkdir()
    monkeypatch.setenv("SWARM_HOME", str(path))
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "app.py").write_text("def main():\n    return 1\n")
    (ws / "README.md").write_text("# sample\n")
    (ws / ".env").write_text("SECRET=hunter2\n")
    (ws / ".git").mkdir()
    (ws / ".git" / "config").write_text("[core]\n")
    (ws / "swarm.toml").write_text("# a project-level swarm.toml\n")
    return ws.resolve()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the workspace holding a file no tool may touch."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("outside secret\n")
    return path


def make_body(workspace: Path, home: Path, config: dict[str, Any] | None = None, **kwargs: Any) -> Body:
    cfg = parse_config(config) if config else SwarmConfig()
    return Body(BodySettings(workspace=workspace, home=home, config=cfg), **kwargs)


@pytest.fixture
def body(workspace: Path, home: Path) -> Iterator[Body]:
    b = make_body(workspace, home)
    yield b
    b.close()


@pytest.fixture
async def client(body: Body) -> AsyncIterator[Client]:
    async with Client(build_server(body)) as c:
        yield c
