"""Shared fixtures: a sample workspace, a private SWARM_HOME, and a body on them."""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Generator, Iterator
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
from sandbox import wait_discarded  # noqa: E402
from sandbox._limits import owner_tag, pids_cgroup_parent, remove_orphaned_cgroups  # noqa: E402
from sandbox._staged import remove_orphaned_staging, remove_staging  # noqa: E402
from shared_protocol.config import SwarmConfig, parse_config  # noqa: E402
from tests.tool_definitions import seed_tool_definitions  # noqa: E402


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
    """A new SWARM_HOME holding only the tools' definitions a body caches (`cache/`): a body process started on it
    reads them instead of making them (see `seed_tool_definitions`)."""
    path = tmp_path / "swarm-home"
    path.mkdir()
    seed_tool_definitions(path)
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


# -- what a test leaves: staging areas and run cgroups ------------------------------------------------------------
#
# Each test gets a system temp dir of its own (TMPDIR and `tempfile.gettempdir()`) under pytest's base temp, never
# /tmp: a sandbox's default staging root is there, and so is what the processes a test starts make in theirs (a body
# it SIGKILLs leaves its areas there, not in the machine's /tmp). After the test, a staging area or run cgroup that
# this process made during it and did not remove fails it (a teardown error naming it); what other processes left
# in its temp dir is swept when their maker is gone, and the session ends with the product's sweep of cgroups.

_TMPDIR = pytest.StashKey[tuple[Path, frozenset[str]]]()
_STAGING_PREFIX = "swarm-sandbox-"


def _own_cgroups() -> frozenset[str]:
    parent, tag = pids_cgroup_parent(), owner_tag()
    if parent is None or tag is None:
        return frozenset()
    return frozenset(path.name for path in parent.glob(f"{_STAGING_PREFIX}{tag}-*"))


def _own_leftovers(directory: Path, cgroups_before: frozenset[str]) -> list[str]:
    tag = owner_tag()
    areas = sorted(path.name for path in directory.glob(f"{_STAGING_PREFIX}{tag}-*")) if tag else []
    return [*areas, *(f"cgroup {name}" for name in sorted(_own_cgroups() - cgroups_before))]


@pytest.fixture(autouse=True)
def _own_tmpdir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This test's system temp dir (see above)."""
    directory = tmp_path_factory.mktemp("t")  # (short: unix socket paths made under it must fit in 108 bytes)
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(directory)
    request.node.stash[_TMPDIR] = (directory, _own_cgroups())
    try:
        yield directory
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """Fail the test that left a staging area or run cgroup of this process (after its fixtures are torn down)."""
    result = yield
    found = item.stash.get(_TMPDIR, None)
    if found is None:
        return result
    directory, cgroups_before = found
    left = _own_leftovers(directory, cgroups_before)
    if left:
        # A backend no longer referenced discards its launcher made ahead when collected, and staging areas are
        # removed by a background thread: give both their chance (only here: a collection per test is too slow).
        if isinstance(item, pytest.Function):
            item.funcargs.clear()  # (the fixtures are torn down: their values are not needed any more)
        wait_discarded(10)
        deadline = time.monotonic() + 5
        while (left := _own_leftovers(directory, cgroups_before)) and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.05)
    for name in left:  # (the next test starts clean whatever this one left)
        if not name.startswith("cgroup "):
            remove_staging(directory / name)
    remove_orphaned_staging(directory)  # (what the processes the test started left, once they are gone)
    if left:
        raise AssertionError(f"{item.nodeid} left staging areas or run cgroups it made: {', '.join(left)}")
    return result


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: two workers a core (`--maxprocesses=4` caps it). Most tests wait on processes they start (bodies,
    brains, runners, bwrap), so one worker a core left the cores idle a third of the time: the whole suite on 2 cores
    (2026-12-08, 3,744 tests, helpers' work on the machine) took 419 s with 2 workers, 361 s with 3, 315 s with 4.
    `PYTEST_XDIST_AUTO_NUM_WORKERS` still says how many."""
    if (given := os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "").strip()).isdigit():
        return max(1, int(given))
    return 2 * len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2 * (os.cpu_count() or 1)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What is alive once the tests are collected (every module imported, the SDKs, pydantic's models and schemas)
    lives until the process ends: kept out of the collector's full passes (`gc.freeze`), which otherwise walked all
    of it each time, some 0.1-0.7 s of a worker's CPU a pass. Garbage made by the tests is collected as before."""
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The final sweep: run cgroups whose maker is gone (bodies the tests killed along with their launcher server)."""
    if (parent := pids_cgroup_parent()) is not None:
        remove_orphaned_cgroups(parent)
