# pyright: strict
"""The overlay backend's launcher server (`sandbox/_launch.py`, `_spawner.py`): what its children do before they
exec, what they hand over, and what happens when something fails or the server dies."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from sandbox._bwrap_backend import BwrapBackend
from sandbox._launch import ChildMount, LaunchRequest, SpawnedProcess, Spawner, receive_areas, start_blocking
from sandbox._limits import create_pids_cgroup, pids_cgroup_parent
from sandbox._spawner import children_by_scan
from sandbox.exceptions import SandboxSetupFailed

from ._support import sh
from .test_limits import processes_with
from .test_review_launch_inside import _gone, _marker  # pyright: ignore[reportPrivateUsage]

pytestmark = [pytest.mark.anyio, pytest.mark.bwrap]


class _Owner:
    """What a spawner lives as long as (a backend, in the body)."""


def _staging(tmp_path: Path) -> Path:
    staging = tmp_path / "staging"
    for area in ("write", "tmp"):
        (staging / area).mkdir(parents=True)
    return staging


def _request(
    staging: Path, argv: list[str], *, extra: tuple[ChildMount, ...] = (), cgroup: str | None = None
) -> LaunchRequest:
    areas = tuple(
        ChildMount(source=f"swarm-{a}", target=a, fstype="tmpfs", options="size=1m") for a in ("write", "tmp")
    )
    return LaunchRequest(
        argv=argv,
        env={"PATH": "/usr/bin:/bin"},
        cwd=str(staging),
        mounts=(*areas, *extra),
        areas=("write", "tmp"),
        cgroup_join=cgroup,
        rlimits=(),
        uid=os.geteuid(),
        gid=os.getegid(),
        pass_fds=(),
    )


async def _start(spawner: Spawner, staging: Path, request: LaunchRequest) -> tuple[SpawnedProcess, tuple[int, int]]:
    started = await anyio.to_thread.run_sync(start_blocking, spawner, request, staging / "launch.json")
    process = SpawnedProcess(started)
    try:
        return process, await receive_areas(started.channel, 10)
    except BaseException:
        process.kill()
        await process.wait()
        await process.aclose()
        raise
    finally:
        started.channel.close()


async def test_a_launcher_that_cannot_set_up_runs_nothing_and_says_why(tmp_path: Path) -> None:
    staging, marker = _staging(tmp_path), tmp_path / "marker"
    broken = ChildMount(source="x", target="write", fstype="swarm-no-such-filesystem", options="")
    request = _request(staging, ["/bin/sh", "-c", f"echo ran > {marker}"], extra=(broken,))
    spawner = Spawner(_Owner())
    with pytest.raises(SandboxSetupFailed, match="mount write: No such device"):
        await _start(spawner, staging, request)
    assert not marker.exists()
    spawner.close()


async def test_the_launcher_hands_over_its_mounted_areas_and_reports_the_exit_status(tmp_path: Path) -> None:
    staging = _staging(tmp_path)
    spawner = Spawner(_Owner())
    process, (write_fd, tmp_fd) = await _start(spawner, staging, _request(staging, ["/bin/sh", "-c", "exit 7"]))
    try:
        host_dev = os.stat(staging).st_dev
        assert os.fstat(write_fd).st_dev != host_dev and os.fstat(tmp_fd).st_dev != host_dev
        assert os.fstatvfs(write_fd).f_blocks * os.fstatvfs(write_fd).f_frsize == 1024 * 1024
        with anyio.fail_after(10):
            assert await process.wait() == 7
    finally:
        os.close(write_fd)
        os.close(tmp_fd)
        await process.aclose()
        spawner.close()


@pytest.mark.skipif(pids_cgroup_parent() is None, reason="needs a pids cgroup (root)")
async def test_the_launcher_is_in_the_runs_cgroup_before_it_execs(tmp_path: Path) -> None:
    parent = pids_cgroup_parent()
    assert parent is not None
    cgroup = create_pids_cgroup(parent, 5, overhead=0)
    staging = _staging(tmp_path)
    spawner = Spawner(_Owner())
    try:
        request = _request(staging, ["/bin/sleep", "30"], cgroup=str(cgroup.join_file))
        process, areas = await _start(spawner, staging, request)
        for fd in areas:
            os.close(fd)
        # The areas come once it has exec'd: by then it is in the cgroup, and so is all it will start.
        assert cgroup.pids() == [process.pid]
        process.kill()
        with anyio.fail_after(10):
            assert await process.wait() == -signal.SIGKILL
        await process.aclose()
    finally:
        cgroup.remove()
        spawner.close()


async def test_launchers_die_with_their_server_and_a_new_server_takes_the_next_one(tmp_path: Path) -> None:
    spawner = Spawner(_Owner())
    first = _staging(tmp_path / "first")
    process, areas = await _start(spawner, first, _request(first, ["/bin/sleep", "30"]))
    for fd in areas:
        os.close(fd)
    server = spawner.server_pid
    assert server is not None
    os.kill(server, signal.SIGKILL)
    with anyio.fail_after(10):
        await process.wait()  # its status pipe closed with the server: it died by SIGKILL (PR_SET_PDEATHSIG)
    assert (
        not Path(f"/proc/{process.pid}/cmdline").exists()
        or Path(f"/proc/{process.pid}/stat").read_text().split()[2] == "Z"
    )
    await process.aclose()
    second = _staging(tmp_path / "second")
    process, areas = await _start(spawner, second, _request(second, ["/bin/true"]))
    for fd in areas:
        os.close(fd)
    with anyio.fail_after(10):
        assert await process.wait() == 0
    assert spawner.server_pid not in (None, server)
    await process.aclose()
    spawner.close()


async def test_the_command_holds_no_socket_and_no_descriptor_of_the_body(overlay: BwrapBackend, ws: Path) -> None:
    """The launcher closes all it got from the server but its own numbers: a command holding the server's socket
    could have it start processes outside the sandbox."""
    script = 'for f in /proc/self/fd/*; do echo "$f $(readlink "$f")"; done'
    async with await overlay.run(sh(ws, script)) as staged:
        assert staged.result.exit_code == 0, staged.result.stderr
        lines = staged.result.stdout.splitlines()
    numbers = sorted(int(line.split()[0].rsplit("/", 1)[1]) for line in lines)
    assert numbers[:3] == [0, 1, 2] and len(numbers) <= 4, lines  # (+ the one the shell's glob reads with)
    assert not any("socket:" in line for line in lines), lines


async def test_what_a_launcher_orphaned_dies_when_the_body_closes_the_server(tmp_path: Path) -> None:
    """A process of a run that would outlive its launcher without a death signal of its own (as bwrap's init
    does during its setup) comes to the server, their subreaper: closing the socket (as the body's death does)
    has the server kill it before it exits, cgroup or not."""
    marker = _marker()
    staging = _staging(tmp_path)
    spawner = Spawner(_Owner())
    script = f"setsid sleep {marker} </dev/null >/dev/null 2>&1 & exec sleep {marker}"
    process, areas = await _start(spawner, staging, _request(staging, ["/bin/sh", "-c", script]))
    for fd in areas:
        os.close(fd)
    try:
        with anyio.fail_after(10):
            while len(processes_with(marker.encode())) < 2:
                await anyio.sleep(0.01)
        await anyio.to_thread.run_sync(spawner.close)
        assert await _gone(marker) == []
        with anyio.fail_after(10):
            assert await process.wait() == -signal.SIGKILL
    finally:
        await process.aclose()
        _kill_all(marker)


async def test_what_a_launcher_orphaned_is_killed_when_it_ends(tmp_path: Path) -> None:
    """The same orphan while the body lives: once the server has reaped the launcher it kills what the launcher
    left, before it reports the exit status (a run without a cgroup has nothing else to take them)."""
    marker = _marker()
    staging = _staging(tmp_path)
    spawner = Spawner(_Owner())
    script = f"setsid sleep {marker} </dev/null >/dev/null 2>&1 & exit 3"
    process, areas = await _start(spawner, staging, _request(staging, ["/bin/sh", "-c", script]))
    for fd in areas:
        os.close(fd)
    try:
        with anyio.fail_after(10):
            assert await process.wait() == 3
        assert await _gone(marker) == []
        assert spawner.server_pid is not None, "the server goes on"
    finally:
        await process.aclose()
        spawner.close()
        _kill_all(marker)


def test_the_servers_fallback_finds_children_as_the_kernel_lists_them(tmp_path: Path) -> None:
    """Without /proc/PID/task/TID/children (a kernel option) the server finds its children by reading every
    process's stat, whose command name may hold spaces and parentheses."""
    odd = tmp_path / "x) (y z"
    odd.symlink_to("/bin/sleep")
    children = [subprocess.Popen([str(odd), "30"]), subprocess.Popen(["/bin/sleep", "30"])]
    try:
        # (the test process's other children may end meanwhile: each is listed before or after the scan)
        before = _listed_children()
        found = set(children_by_scan(os.getpid()))
        assert {child.pid for child in children} <= found <= before | _listed_children()
        assert children_by_scan(children[0].pid) == []
    finally:
        for child in children:
            child.kill()
            child.wait()


def _kill_all(marker: str) -> None:
    """Whatever a failed test left behind."""
    for pid in processes_with(marker.encode()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _listed_children() -> set[int]:
    """This process's children as the kernel lists them, whichever thread forked them."""
    return {int(pid) for task in Path("/proc/self/task").iterdir() for pid in (task / "children").read_text().split()}
