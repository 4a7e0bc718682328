# pyright: strict
"""Review 18 of the launcher forked ahead (`sandbox/_standby.py`): a run served by it must see nothing of the run
before it (descriptors, environment, working directory), stay in its own process limit, and hide what is secret
at the moment of the run. Real bwrap, real launcher server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from sandbox import BwrapOverlaySandbox
from sandbox._bwrap_backend import BwrapBackend
from sandbox._interface import ProxyNetwork, ResourceLimits
from sandbox._staged import StagedDirRun
from tests.sandbox._support import make_spec, require_isolation, sh

pytestmark = [pytest.mark.anyio, pytest.mark.bwrap]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def overlay(tmp_path: Path) -> AsyncIterator[BwrapBackend]:
    staging = tmp_path / "staging"
    staging.mkdir()
    backend = require_isolation(BwrapOverlaySandbox(staging_root=staging))
    yield backend
    backend.close()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / ".env").write_text("SECRET-env\n")
    return root


async def _primed(overlay: BwrapBackend, ws: Path, **overrides: object) -> Path:
    """One run, so the next is served by a launcher made ahead (waited for); that launcher's staging directory."""
    async with await overlay.run(sh(ws, "true", **overrides)) as first:
        assert first.result.exit_code == 0, first.result.stderr
    ahead = overlay.standby.wait_ready(10)
    assert ahead is not None, "no launcher was made ahead"
    return ahead.staging


def _staging_of(staged: StagedDirRun) -> Path | None:
    return staged._staging  # pyright: ignore[reportPrivateUsage]


_FDS = "for f in /proc/$$/fd/*; do n=${f##*/}; echo $n $(readlink $f); done"


async def test_a_run_served_ahead_holds_the_same_descriptors_as_one_started_afresh(
    overlay: BwrapBackend, ws: Path
) -> None:
    """bwrap's options memfd, its status descriptor and the launcher's request memfd never reach the command:
    the command's descriptors are the same whether its launcher was made ahead or not."""
    async with await overlay.run(sh(ws, _FDS)) as fresh:
        assert fresh.result.exit_code == 0, fresh.result.stderr
    assert overlay.standby.wait_ready(10) is not None
    async with await overlay.run(sh(ws, _FDS)) as ahead:
        assert ahead.result.exit_code == 0, ahead.result.stderr
    fresh_fds = sorted(line.split()[0] for line in fresh.result.stdout.splitlines())
    ahead_fds = sorted(line.split()[0] for line in ahead.result.stdout.splitlines())
    assert ahead_fds == fresh_fds, (fresh.result.stdout, ahead.result.stdout)
    assert "memfd" not in ahead.result.stdout, ahead.result.stdout
    assert "swarm-launch" not in ahead.result.stdout and "bwrap-args" not in ahead.result.stdout


async def test_a_run_served_ahead_has_its_own_environment_and_working_directory(
    overlay: BwrapBackend, ws: Path
) -> None:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LEFTOVER": "from-the-first-run"}
    ahead = await _primed(overlay, ws, env=env, cwd="sub")
    async with await overlay.run(sh(ws, 'pwd; echo "L=${LEFTOVER:-none}"')) as run:
        assert _staging_of(run) == ahead  # (served by the launcher made after the first run)
        assert run.result.exit_code == 0, run.result.stderr
        assert run.result.stdout == f"{ws}\nL=none\n", run.result.stdout


async def test_a_secret_written_after_the_launcher_was_made_is_hidden_in_its_run(
    overlay: BwrapBackend, ws: Path
) -> None:
    """The same hidden names, a secret's content changed after the launcher was made: the launcher serves the run,
    and bwrap's options, built from the run's own plan, still hide it."""
    hidden = [".env", "late.key"]
    (ws / "late.key").write_text("SECRET-late-old\n")
    ahead = await _primed(overlay, ws, hidden_paths=hidden)
    (ws / ".env").write_text("SECRET-env-new\n")
    (ws / "late.key").write_text("SECRET-late-new\n")
    spec = sh(ws, "cat .env late.key 2>/dev/null || true; echo end", hidden_paths=hidden)
    async with await overlay.run(spec) as run:
        assert _staging_of(run) == ahead
        assert "SECRET" not in run.result.stdout, run.result.stdout
        assert run.result.stdout.endswith("end\n")


async def test_a_hidden_file_swapped_for_a_symlink_after_the_launcher_was_made_stays_hidden(
    overlay: BwrapBackend, ws: Path
) -> None:
    """A hidden file replaced by a symlink to another secret after the launcher was made: what bwrap binds over
    changed, so the launcher is discarded, and neither the link nor its target reads in the run."""
    hidden = [".env", "late.key", "elsewhere.txt"]
    (ws / "late.key").write_text("SECRET-late-old\n")
    ahead = await _primed(overlay, ws, hidden_paths=hidden)
    (ws / "late.key").unlink()
    (ws / "elsewhere.txt").write_text("SECRET-through-link\n")
    (ws / "late.key").symlink_to("elsewhere.txt")
    spec = sh(ws, "cat late.key elsewhere.txt 2>/dev/null || true; echo end", hidden_paths=hidden)
    async with await overlay.run(spec) as run:
        assert _staging_of(run) != ahead
        assert "SECRET" not in run.result.stdout, run.result.stdout
        assert run.result.stdout.endswith("end\n")


async def test_a_run_served_ahead_keeps_its_process_limit(overlay: BwrapBackend, ws: Path) -> None:
    """A launcher made for a limit of 8 processes serves a run of that limit: its command cannot have 40 alive."""
    limits = ResourceLimits(max_processes=8)
    ahead = await _primed(overlay, ws, limits=limits)
    script = (
        "set +e; i=0; while [ $i -lt 40 ]; do sleep 5 2>/dev/null & i=$((i+1)); done 2>/dev/null; "
        "echo alive=$(ls -d /proc/[0-9]* | wc -l); kill 0"
    )
    async with await overlay.run(sh(ws, script, limits=limits, timeout_s=15)) as run:
        alive = [int(line.split("=")[1]) for line in run.result.stdout.splitlines() if line.startswith("alive=")]
        assert _staging_of(run) == ahead
        # (dash gives up at its first failed fork: no line at all, and an exit status of 2)
        assert (alive and alive[0] <= 8 + 2) or (not alive and run.result.exit_code == 2), run.result
    roomy = ResourceLimits(max_processes=64)  # (the same script under a roomy limit: it does start 40)
    async with await overlay.run(sh(ws, script, limits=roomy, timeout_s=15)) as run:
        alive = [int(line.split("=")[1]) for line in run.result.stdout.splitlines() if line.startswith("alive=")]
        assert alive and alive[0] >= 40, run.result


_CONNECT = (
    "import socket, os\n"
    "s = socket.socket()\n"
    "s.settimeout(2)\n"
    "try:\n"
    "    s.connect(('127.0.0.1', 3128)); print('reached')\n"
    "except OSError as e:\n"
    "    print('unreachable', type(e).__name__)\n"
    "print('proxy-env', os.environ.get('HTTP_PROXY') or os.environ.get('http_proxy') or 'none')\n"
)


async def test_a_run_without_network_after_one_with_the_proxy_has_no_network(
    overlay: BwrapBackend, ws: Path, tmp_path: Path
) -> None:
    """A launcher made after a run with the proxy network (a forwarder's cgroup room) never gives the next run,
    which asks for no network, the forwarder, its proxy variables or a way out."""
    socket_path = tmp_path / "proxy.sock"
    async with await anyio.create_unix_listener(socket_path):
        proxied = await _primed(overlay, ws, network=ProxyNetwork(socket_path=socket_path))
        async with await overlay.run(make_spec(ws, ["python3", "-c", _CONNECT])) as run:
            assert run.result.exit_code == 0, run.result.stderr
            assert _staging_of(run) != proxied  # (made for a forwarder: discarded)
            assert run.result.stdout.startswith("unreachable"), run.result.stdout
            assert run.result.stdout.endswith("proxy-env none\n"), run.result.stdout
        ahead = overlay.standby.wait_ready(10)  # (made for no network now: the same, served ahead)
        assert ahead is not None
        async with await overlay.run(make_spec(ws, ["python3", "-c", _CONNECT])) as run:
            assert _staging_of(run) == ahead.staging
            assert run.result.stdout.startswith("unreachable") and run.result.stdout.endswith("proxy-env none\n")
