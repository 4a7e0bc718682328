# pyright: strict
"""Adversarial review of the launcher server (`sandbox/_spawner.py`, `_launch.py`): the server dying, hanging
or getting bad requests, and kills racing the spawn. Each must fail closed: nothing runs uncontained."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from sandbox import ResourceLimits
from sandbox._bwrap_backend import BwrapBackend
from sandbox._launch import Spawner
from sandbox._staged import StagedDirRun
from sandbox.exceptions import SandboxSetupFailed

from ._support import sh
from .test_launch import _Owner, _request, _staging, _start  # pyright: ignore[reportPrivateUsage]
from .test_review_launch_inside import _gone, _marker  # pyright: ignore[reportPrivateUsage]

pytestmark = [pytest.mark.anyio, pytest.mark.bwrap]


async def _warm(backend: BwrapBackend, ws: Path) -> None:
    """One run, so that the server is up."""
    async with await backend.run(sh(ws, "true")) as staged:
        assert staged.result.exit_code == 0, staged.result.stderr


@contextlib.contextmanager
def _stopped(server: int) -> Generator[None]:
    """The launcher server stopped (SIGSTOP, as a hung one) for the block; let go after it, or after 15 s at most so
    that a test ends even while a hang it looks for is there."""
    os.kill(server, signal.SIGSTOP)
    resume = threading.Timer(15, lambda: os.kill(server, signal.SIGCONT))
    resume.start()
    try:
        yield
    finally:
        resume.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.kill(server, signal.SIGCONT)


def _server(backend: BwrapBackend) -> int:
    pid = backend._spawner.server_pid  # pyright: ignore[reportPrivateUsage]
    assert pid is not None
    return pid


async def test_the_server_killed_during_a_run_ends_it_and_leaves_nothing(overlay: BwrapBackend, ws: Path) -> None:
    """Withstood: SIGKILL to the server mid-run kills the launcher (PR_SET_PDEATHSIG, kept across the exec of
    bwrap), bwrap's --die-with-parent takes the command, the cgroup takes the rest; the run reports a death by
    signal, not success, and the next run gets a new server."""
    marker = _marker()
    await _warm(overlay, ws)
    server = _server(overlay)
    staged: StagedDirRun | None = None

    async def kill_server_once_running() -> None:
        with anyio.fail_after(10):
            while not _spawned_sleep(marker):
                await anyio.sleep(0.02)
        os.kill(server, signal.SIGKILL)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            group.start_soon(kill_server_once_running)
            staged = await overlay.run(sh(ws, f"( setsid sleep {marker} & ); sleep {marker}"))
    assert staged is not None
    async with staged:
        assert staged.result.exit_code not in (0, None) or staged.result.killed
    assert await _gone(marker) == []
    async with await overlay.run(sh(ws, "echo again")) as again:
        assert again.result.stdout == "again\n"
    assert _server(overlay) != server


def _spawned_sleep(marker: str) -> bool:
    from .test_limits import processes_with

    return len(processes_with(marker.encode())) >= 2


async def test_the_server_killed_between_runs_is_replaced(overlay: BwrapBackend, ws: Path) -> None:
    """Withstood: a dead server is noticed at the next run, which starts a new one and runs contained."""
    await _warm(overlay, ws)
    server = _server(overlay)
    os.kill(server, signal.SIGKILL)
    with anyio.fail_after(10):
        while Path(f"/proc/{server}/stat").exists() and Path(f"/proc/{server}/stat").read_text().split()[2] != "Z":
            await anyio.sleep(0.01)
    async with await overlay.run(sh(ws, "echo ok > f.txt; echo ok")) as staged:
        assert staged.result.stdout == "ok\n" and [c.path for c in staged.changes] == ["f.txt"]
    assert _server(overlay) != server


async def test_a_hung_server_fails_the_next_run_instead_of_hanging_it(
    overlay: BwrapBackend, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was a hole (medium: availability): a server that stops answering (SIGSTOP, swapped out, stuck) made every
    later run block forever in `Spawner.spawn`'s `recv_fds`, in a shielded worker thread holding the spawner's
    lock: no timeout or cancellation could end the run. Fixed by a reply timeout on the server's socket, after
    which the server is killed (its launchers die with it) and the run fails with SandboxSetupFailed. (Without
    the launcher made ahead: a run served by one is the next test.)"""
    import sandbox._launch as launch_module

    monkeypatch.setattr(launch_module, "REPLY_TIMEOUT_S", 1.0)
    await _warm(overlay, ws)
    server = _server(overlay)
    overlay.standby.close()
    with _stopped(server):
        started = time.monotonic()
        with pytest.raises(SandboxSetupFailed, match="launcher server"):
            await overlay.run(sh(ws, "echo ran"))
        assert time.monotonic() - started < 10
    async with await overlay.run(sh(ws, "echo again")) as again:
        assert again.result.stdout == "again\n"
    assert _server(overlay) != server


async def test_a_hung_server_does_not_hang_a_run_served_by_a_launcher_made_ahead(
    overlay: BwrapBackend, ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that takes the launcher made ahead needs no answer from the server to start, but its exit status
    comes from the server: the refill it starts asks the hung server for the next launcher, times out and kills
    it, which ends the run (its launcher dies with the server) within the reply timeout; the next run gets a new
    server."""
    import sandbox._launch as launch_module

    monkeypatch.setattr(launch_module, "REPLY_TIMEOUT_S", 1.0)
    await _warm(overlay, ws)
    server = _server(overlay)
    assert overlay.standby.wait_ready(10) is not None
    with _stopped(server):
        started = time.monotonic()
        with contextlib.suppress(SandboxSetupFailed):
            async with await overlay.run(sh(ws, "echo ran")):
                pass
        assert time.monotonic() - started < 10
    async with await overlay.run(sh(ws, "echo again")) as again:
        assert again.result.stdout == "again\n"
    assert _server(overlay) != server


async def test_a_kill_during_the_spawn_reports_the_run_killed(overlay: BwrapBackend, ws: Path) -> None:
    """Was a hole (low: contract): `kill_all()` landing before the launcher had handed over its areas made the
    run raise SandboxSetupFailed ("ended without a word") instead of returning killed=True, as the old chain's
    run did (its gate was never opened; the caller saw a killed run). Fixed in `run_contained`: a setup failure
    of a run that was killed is the kill. Nothing of the command ran either way."""
    marker = ws.parent / "ran"
    await _warm(overlay, ws)
    for _ in range(5):

        async def kill_soon() -> None:
            await anyio.sleep(0)
            overlay.kill_all()

        staged: StagedDirRun | None = None
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(kill_soon)
                staged = await overlay.run(sh(ws, f"touch {marker}; echo x > staged.txt"))
        assert staged is not None
        async with staged:
            assert staged.result.killed and staged.result.exit_code is None
    assert not marker.exists()


async def test_a_bad_descriptor_in_one_spec_does_not_kill_the_other_runs(overlay: BwrapBackend, ws: Path) -> None:
    """Was a hole (medium: cross-run): a spec whose pass_fds held a closed descriptor made `send_fds` fail with
    EBADF, and `Spawner.spawn` then stopped the server, killing every other run's launcher (PR_SET_PDEATHSIG):
    a run of another task died with exit 137. Fixed: the descriptors are checked before anything is sent, and
    only a failure of the socket itself stops the server."""
    marker = _marker()
    await _warm(overlay, ws)
    r = 900  # (a closed descriptor: one just closed would be reused by the other run's pipes)
    with pytest.raises(OSError):
        os.fstat(r)
    other: StagedDirRun | None = None

    async def bad_once_other_runs() -> None:
        with anyio.fail_after(10):
            while not _spawned_sleep(marker):
                await anyio.sleep(0.02)
        with pytest.raises(SandboxSetupFailed):
            await overlay.run(sh(ws, "echo bad", pass_fds=[r]))
        (ws.parent / f"go-{marker}").touch()

    go = ws.parent / f"go-{marker}"
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(bad_once_other_runs)
            spec = sh(ws, f"( sleep {marker} & ); sleep {marker} & while [ ! -e {go} ]; do sleep 0.05; done; echo done")
            # (the flag file is outside the workspace: let the command read it)
            spec = replace(spec, toolchain_paths=[*spec.toolchain_paths, ws.parent])
            other = await overlay.run(spec)
    assert other is not None
    async with other:
        assert other.result.exit_code == 0 and other.result.stdout == "done\n", other.result


async def test_huge_arguments_fail_the_run_with_a_reason_and_the_server_survives(
    overlay: BwrapBackend, ws: Path
) -> None:
    """Withstood: argv past the kernel's limit fails at the launcher's exec (E2BIG), after the areas were handed
    over: the run fails with that reason, nothing ran, the server keeps serving."""
    await _warm(overlay, ws)
    server = _server(overlay)
    huge = ["x" * 100_000] * 40
    spec = replace(sh(ws, "echo ran > ran.txt"), argv=["/bin/sh", "-ec", "echo ran > ran.txt", *huge])
    with pytest.raises(SandboxSetupFailed) as raised:
        await overlay.run(spec)
    assert "Argument list too long" in str(raised.value) + str(getattr(raised.value, "detail", ""))
    async with await overlay.run(sh(ws, "echo again")) as again:
        assert again.result.stdout == "again\n"
    assert _server(overlay) == server


def _spawn_raw(spawner: Spawner, tmp_path: Path, body: bytes, fds: list[int]) -> int | None:
    """The pid the server forked for the request, None when it answered an error."""
    request = tmp_path / "request.json"
    request.write_bytes(body)
    try:
        pid, pidfd = spawner.spawn(request, fds)
    except SandboxSetupFailed:
        return None
    os.close(pidfd)
    return pid


@pytest.mark.parametrize(
    ("body", "fd_count"),
    [
        (b"not json", 5),
        (b"[1, 2]", 5),
        (b'{"argv": ["/bin/true"]}', 5),
        (b'{"argv": ["/bin/true"], "pass_fds": [], "cwd": "/", "env": {}}', 3),
    ],
    ids=["not-json", "a-list", "missing-keys", "too-few-descriptors"],
)
def test_a_malformed_request_does_not_crash_the_server(tmp_path: Path, body: bytes, fd_count: int) -> None:
    """Was a hole (low: body-side only) for too few descriptors: the server kept -1 as the run's status pipe
    and its `_reap` then crashed on os.close(-1), killing every running launcher. Fixed: the server checks the
    descriptors against the request and answers an error without forking. The other malformed requests withstood
    (an error answer, or a child that exits 127 before anything runs)."""
    spawner = Spawner(_Owner())
    fds: list[int] = []
    try:
        ours, theirs = socket.socketpair()
        fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(fd_count - 1)] + [theirs.fileno()]
        pid = _spawn_raw(spawner, tmp_path, body, fds)
        server = spawner.server_pid
        assert server is not None
        if pid is not None:  # a child that must fail before anything runs, and be reaped (the crash came there)
            deadline = time.monotonic() + 10
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not Path(f"/proc/{pid}").exists()
        for _ in range(2):  # (a server that crashed at the reap is noticed by the second at the latest)
            spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(5)]
            _spawn_raw(spawner, tmp_path, b"not json", spare)
            for fd in spare:
                os.close(fd)
        assert spawner.server_pid == server
        ours.close()
        theirs.close()
    finally:
        for fd in fds[:-1]:
            os.close(fd)
        spawner.close()


async def test_a_cgroup_the_launcher_cannot_join_runs_nothing(tmp_path: Path) -> None:
    """Withstood: a launcher that cannot join the run's cgroup (gone, or full) fails before anything of the
    command exists, and says why: it is never run outside its cgroup."""
    staging, ran = _staging(tmp_path), tmp_path / "ran"
    request = _request(staging, ["/bin/sh", "-c", f"touch {ran}"], cgroup=str(tmp_path / "no-such-cgroup" / "tasks"))
    spawner = Spawner(_Owner())
    try:
        with pytest.raises(SandboxSetupFailed, match="join the run's pids cgroup"):
            await _start(spawner, staging, request)
    finally:
        spawner.close()
    assert not ran.exists()


async def test_a_limit_the_kernel_refuses_runs_nothing(overlay: BwrapBackend, ws: Path) -> None:
    """Withstood: an rlimit the kernel will not set (more open files than fs.nr_open) fails the launcher before
    its exec; the run fails with the reason and nothing ran, as the old chain's refused prlimit did."""
    limits = ResourceLimits(max_open_files=2**31)
    with pytest.raises(SandboxSetupFailed):
        await overlay.run(sh(ws, f"touch {ws.parent / 'ran'}", limits=limits))
    assert not (ws.parent / "ran").exists()


async def test_a_signal_after_the_launcher_ended_reaches_no_other_process(tmp_path: Path) -> None:
    """Withstood (pid reuse): the body signals a launcher only through its pidfd. Once the launcher has ended
    and the server has reaped it (its pid free for reuse), the pidfd still names the dead process: a kill
    through it fails with ProcessLookupError instead of reaching whoever got the pid, and `kill()` is a no-op."""
    staging = _staging(tmp_path)
    spawner = Spawner(_Owner())
    try:
        process, areas = await _start(spawner, staging, _request(staging, ["/bin/true"]))
        for fd in areas:
            os.close(fd)
        with anyio.fail_after(10):
            assert await process.wait() == 0  # (written by the server once it reaped it)
        with pytest.raises(ProcessLookupError):
            signal.pidfd_send_signal(process._pidfd, signal.SIGKILL)  # pyright: ignore[reportPrivateUsage]
        process.kill()
        await process.aclose()
    finally:
        spawner.close()
