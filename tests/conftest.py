"""Shared fixtures: a sample workspace, a private SWARM_HOME, and a body on them."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

# Bytecode for every process the tests start. Each `swarm` process (runner, body, CLI, brain) imports some 900
# modules; with PYTHONDONTWRITEBYTECODE set (as in this machine's environment) and a fresh virtualenv, each one
# compiled all of them from source again: about half of a process's start, and the runner end-to-end tests start
# hundreds. The tests' processes keep their bytecode under .pytest_cache/pycache (compiled once, then read by every
# later process; nothing written into the source tree or the virtualenv). Set before the imports below, so the test
# process itself shares it.
_PYCACHE = os.environ.setdefault(
    "PYTHONPYCACHEPREFIX", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "pycache")
)
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.pycache_prefix = _PYCACHE
sys.dont_write_bytecode = False


def _ram_temproot() -> str | None:
    """/dev/shm where it is a tmpfs this user can write with room to spare (4 GiB free), else None."""
    try:
        with open("/proc/self/mounts") as mounts:
            tmpfs = any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in mounts)
        free = os.statvfs("/dev/shm")
    except OSError:
        return None
    if not tmpfs or free.f_bavail * free.f_frsize < 4 << 30 or not os.access("/dev/shm", os.W_OK | os.X_OK):
        return None
    return "/dev/shm"


# The tests' temporary directories (`tmp_path`: every workspace, SWARM_HOME and brain database) on a RAM-backed tmpfs
# where the machine has one: each state write ends in a flush to disk (fsync), some milliseconds each on this
# machine's disk and some 25 for every body a test opens, and nothing here tests what a power cut leaves behind
# (a killed process leaves the same files either way). pytest's own numbered directories and their clean-up, under
# /dev/shm/pytest-of-USER; a `PYTEST_DEBUG_TEMPROOT` (or `--basetemp`) given from outside wins.
if (_RAM := _ram_temproot()) is not None:
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", _RAM)

import pytest  # noqa: E402
from mcp import Client  # noqa: E402

from body_mcp import Body, BodySettings, build_server  # noqa: E402
from shared_protocol.config import SwarmConfig, parse_config  # noqa: E402


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
