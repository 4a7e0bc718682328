# pyright: strict
"""What a body SIGKILLed mid-run leaves (its running command's staging area and cgroup, a run it held, the
launcher made ahead with its own area and cgroup) is gone after the next body's first run; what a living body
holds is not touched. Real bodies (processes running the overlay backend), real bwrap, real cgroups."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from sandbox import BwrapOverlaySandbox
from sandbox._bwrap_backend import BwrapBackend
from sandbox._limits import owner_tag, pids_cgroup_parent

from ._support import sh
from .test_limits import processes_with as _processes_with

pytestmark = [pytest.mark.anyio, pytest.mark.bwrap]

# A body: one run it keeps (as a run held for approval is kept), then a run of `sleep TOKEN` in progress, with the
# launcher for its next run made ahead meanwhile. It prints what it holds, and on stdin's end discards it and exits.
_BODY = textwrap.dedent(
    """
    import anyio, json, os, sys
    from pathlib import Path
    from sandbox import BwrapOverlaySandbox, SandboxSpec, default_toolchain_paths

    def spec(argv):
        return SandboxSpec(workspace=Path(sys.argv[2]), argv=argv, env={"PATH": "/usr/bin:/bin"},
                           toolchain_paths=default_toolchain_paths(), hidden_paths=[".env"], timeout_s=60)

    async def main():
        backend = BwrapOverlaySandbox(staging_root=Path(sys.argv[1]))
        kept = await backend.run(spec(["/bin/sh", "-c", "echo kept > kept.txt"]))
        first = backend.standby.wait_ready(10)
        async with anyio.create_task_group() as group:
            group.start_soon(backend.run, spec(["/bin/sleep", sys.argv[3]]))
            ahead = None
            while ahead is None or ahead is first:  # (the run takes the first; the next is made while it runs)
                await anyio.sleep(0.02)
                ahead = backend.standby.wait_ready(0)
            print(json.dumps({"server": backend._spawner.server_pid, "launcher": ahead.started.pid}), flush=True)
            await anyio.to_thread.run_sync(sys.stdin.read)
            group.cancel_scope.cancel()
        await kept.aclose()
        backend.close()

    anyio.run(main)
    """
)


class _Body:
    """A body process and what it said it holds."""

    def __init__(self, staging_root: Path, ws: Path, token: str) -> None:
        self.token = token
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BODY, str(staging_root), str(ws), token],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.made: dict[str, Any] = {}

    async def started(self) -> None:
        """Wait until it holds its run, its launcher made ahead and its command running."""
        assert self.process.stdout is not None
        with anyio.fail_after(30):
            line = await anyio.to_thread.run_sync(self.process.stdout.readline)
            assert line, "the body ended before it said what it holds"
            self.made = json.loads(line)
            while not _processes_with(self.token.encode()):
                await anyio.sleep(0.02)

    @property
    def tag(self) -> str:
        tag = owner_tag()
        assert tag is not None
        namespace = tag.split(".")[0]
        start = Path(f"/proc/{self.process.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19]
        return f"{namespace}.{self.process.pid}.{int(start)}"

    def areas(self, staging_root: Path, tag: str) -> list[Path]:
        return sorted(staging_root.glob(f"swarm-sandbox-{tag}-*"))

    def stop(self) -> None:
        """End it as a body ends: what it holds discarded."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.communicate("", timeout=20)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _cgroups(tag: str) -> list[Path]:
    parent = pids_cgroup_parent()
    return sorted(parent.glob(f"swarm-sandbox-{tag}-*")) if parent is not None else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z"
    return False


async def _until(condition: Callable[[], bool], timeout_s: float = 10) -> bool:
    with anyio.move_on_after(timeout_s):
        while not condition():
            await anyio.sleep(0.02)
    return condition()


@pytest.mark.parametrize("server_too", [False, True], ids=["body", "body-and-server"])
async def test_a_body_killed_mid_run_leaves_nothing_after_the_next_bodys_first_run(
    ws: Path, staging_root: Path, overlay: BwrapBackend, server_too: bool
) -> None:
    dead, living = _Body(staging_root, ws, "3.1415926"), _Body(staging_root, ws, "2.7182818")
    try:
        await dead.started()
        await living.started()
        dead_tag, living_tag = dead.tag, living.tag
        dead_areas, living_areas = dead.areas(staging_root, dead_tag), living.areas(staging_root, living_tag)
        # Held run, running command, launcher made ahead: three areas each.
        assert len(dead_areas) == 3 and len(living_areas) == 3, (dead_areas, living_areas)
        dead_cgroups, living_cgroups = _cgroups(dead_tag), _cgroups(living_tag)
        # The running command's and the launcher's made ahead (as root, with a pids cgroup to make them under).
        expected = 2 if pids_cgroup_parent() is not None else 0
        assert len(dead_cgroups) == expected and len(living_cgroups) == expected, (dead_cgroups, living_cgroups)
        if server_too:
            os.kill(dead.made["server"], signal.SIGKILL)
        dead.process.send_signal(signal.SIGKILL)
        dead.process.wait()

        async with await overlay.run(sh(ws, "true")):  # (this backend's first run: the sweep)
            pass

        assert dead.areas(staging_root, dead_tag) == [], "a dead body's staging areas were left"
        assert _cgroups(dead_tag) == [], "a dead body's run cgroups were left"
        assert await _until(lambda: not _processes_with(dead.token.encode())), "a dead body's command still runs"
        assert await _until(lambda: not _alive(dead.made["launcher"])), "a dead body's launcher made ahead lives"
        assert living.areas(staging_root, living_tag) == living_areas
        assert _cgroups(living_tag) == living_cgroups
        assert _processes_with(living.token.encode()) and _alive(living.made["launcher"])
        assert _alive(living.made["server"])
    finally:
        dead.stop()
        living.stop()
    assert living.areas(staging_root, living_tag) == [] and _cgroups(living_tag) == []
    assert not _processes_with(living.token.encode())


async def test_a_backend_dropped_unclosed_discards_its_launcher_made_ahead_when_collected(
    ws: Path, staging_root: Path
) -> None:
    """Was a leak (low), fixed. Reproduce: run once on a backend and drop it without `close` (a body that is not
    closed): the launcher made ahead, its staging area and its cgroup stayed until the interpreter's exit, since the
    slot's thread kept the backend's `_make_standby` in a local while it waited, so the backend was never collected
    and its finalizer never ran. Fix: the thread drops what it was handed before it waits."""
    backend = BwrapOverlaySandbox(staging_root=staging_root)
    async with await backend.run(sh(ws, "true")):
        pass
    standby = backend.standby.wait_ready(10)
    assert standby is not None and standby.staging.exists()
    staging, cgroup, launcher = standby.staging, standby.cgroup, standby.started.pid
    del backend, standby
    gc.collect()
    assert not staging.exists(), "a dropped backend's launcher made ahead kept its staging area"
    assert cgroup is None or not cgroup.path.exists()
    assert await _until(lambda: not _alive(launcher))


_PROBED = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sandbox import BwrapOverlaySandbox

    def probe_once(self, spec, staging):  # (the probe's command, held: the body is killed in its probe)
        print(spec.workspace, flush=True)
        time.sleep(60)

    BwrapOverlaySandbox._probe_once = probe_once
    BwrapOverlaySandbox(staging_root=Path(sys.argv[1])).available()
    """
)


async def test_a_body_killed_in_its_probe_leaves_nothing_after_the_next_bodys_first_run(
    ws: Path, staging_root: Path, overlay: BwrapBackend
) -> None:
    """Was a leak (low), fixed. Reproduce: SIGKILL a body while its backend's probe runs `true`: the probe's
    `swarm-probe-XXXX` directory (its workspace) was named after no process, so no sweep could tell it was
    orphaned and it stayed. Fix: the probe's workspace is in a staging directory named after its maker."""
    body = subprocess.Popen([sys.executable, "-c", _PROBED, str(staging_root)], stdout=subprocess.PIPE, text=True)
    try:
        assert body.stdout is not None
        with anyio.fail_after(30):
            line = await anyio.to_thread.run_sync(body.stdout.readline)
        workspace = Path(line.strip())
        assert workspace.is_dir() and staging_root in workspace.parents
    finally:
        body.kill()
        body.wait()
        if body.stdout is not None:
            body.stdout.close()
    left = sorted(staging_root.iterdir())
    assert len(left) == 2  # the probe's workspace and its run's staging directory
    async with await overlay.run(sh(ws, "true")):  # (this backend's first run: the sweep)
        pass
    assert not any(path.exists() for path in left), "a body killed in its probe left its directories"
