# pyright: strict
"""Resource limits, timeouts, the kill switch and cancellation stop the whole process tree."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread
import pytest

from sandbox import ChangeKind, CopyStagingSandbox, ProxyNetwork, Quota, ResourceLimits
from sandbox._areas import LAUNCH_GATE
from sandbox._bwrap_backend import BwrapBackend
from sandbox._limits import PidsCgroup, create_pids_cgroup, pids_cgroup_parent
from sandbox._process import ProcessOutcome, RunControl, run_contained
from sandbox._staged import StagedDirRun
from sandbox.exceptions import SandboxSetupFailed

from ._support import make_spec, require_isolation, sh

pytestmark = [pytest.mark.anyio, pytest.mark.bwrap]

SPAWN_MANY = """
import subprocess
children = []
try:
    while len(children) < 200:
        children.append(subprocess.Popen(["sleep", "60"]))
    print("SPAWNED", len(children))
except OSError as error:
    print("STOPPED", len(children), type(error).__name__)
"""


def processes_with(token: bytes) -> list[int]:
    """Host pids whose command line contains `token` (a unique sleep duration marks a test's children)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if token in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def sandbox_cgroups(backend: BwrapBackend | None = None) -> set[str]:
    """The run cgroups this process made and has not removed (other test processes make and sweep their own),
    but the one made ahead for `backend`'s next run (`_standby.py`), which no run has used."""
    parent = pids_cgroup_parent()
    found: set[str] = {p.name for p in parent.glob(f"swarm-sandbox-*.{os.getpid()}.*")} if parent else set()
    if backend is not None and (standby := backend.standby.wait_ready(10)) is not None and standby.cgroup:
        found.discard(standby.cgroup.path.name)
    return found


async def test_the_process_count_is_capped_and_the_test_process_keeps_going(overlay: BwrapBackend, ws: Path) -> None:
    cgroups_before = sandbox_cgroups()
    spec = make_spec(ws, ["python3", "-c", SPAWN_MANY], limits=ResourceLimits(max_processes=20))
    async with await overlay.run(spec) as staged:
        words = staged.result.stdout.split()
        assert words[0] == "STOPPED", staged.result
        assert int(words[1]) == 20 - 1  # the python process itself is one of the 20
    assert subprocess.run(["true"], check=False).returncode == 0
    assert sandbox_cgroups(overlay) == cgroups_before  # the run's cgroup is gone


_DEAD_BODY = """
import subprocess, sys
from pathlib import Path
from sandbox._limits import create_pids_cgroup
cgroup = create_pids_cgroup(Path(sys.argv[1]), 5, overhead=0)
cgroup.add(subprocess.Popen(["sleep", sys.argv[2]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True).pid)
print(cgroup.path)
"""


@pytest.mark.skipif(pids_cgroup_parent() is None, reason="needs a pids cgroup (root)")
async def test_a_dead_bodys_leftover_run_is_killed_and_removed_at_the_next_bodys_first_run(
    overlay: BwrapBackend, ws: Path
) -> None:
    """A run whose body and launcher server both died can leave processes in its cgroup (bwrap's init during
    its setup; the copy backend's chain, the body's own child). The cgroup's name says which process made it:
    a backend's first run kills what is in a dead maker's cgroups and removes them, and leaves a live one's."""
    parent = pids_cgroup_parent()
    assert parent is not None
    marker = f"3{uuid.uuid4().int % 10**6}.{uuid.uuid4().int % 10**6}"
    made = subprocess.run([sys.executable, "-c", _DEAD_BODY, str(parent), marker], capture_output=True, check=True)
    dead = Path(made.stdout.decode().strip())
    live = create_pids_cgroup(parent, 5, overhead=0)
    sleeper = subprocess.Popen(["sleep", marker])
    try:
        live.add(sleeper.pid)
        # (with tests running in parallel, another process's first run may be the one that removes it)
        async with await overlay.run(sh(ws, "true")) as staged:
            assert staged.result.exit_code == 0, staged.result.stderr
        assert not dead.exists()
        assert processes_with(marker.encode()) == [sleeper.pid] and live.pids() == [sleeper.pid]
    finally:
        live.remove()
        sleeper.wait()
        if dead.exists():
            PidsCgroup(path=dead).remove()


async def test_a_fork_bomb_is_contained_and_killed_at_the_timeout(overlay: BwrapBackend, ws: Path) -> None:
    spec = sh(ws, "bomb() { bomb | bomb & }; bomb; sleep 7.77", limits=ResourceLimits(max_processes=64), timeout_s=2)
    async with await overlay.run(spec) as staged:
        assert staged.result.duration_s < 5
    assert processes_with(b"bomb") == []
    assert subprocess.run(["true"], check=False).returncode == 0


async def test_a_memory_hog_fails_inside_the_sandbox(overlay: BwrapBackend, ws: Path) -> None:
    hog = "data = bytearray(3 * 1024**3); print('ALLOCATED')"
    spec = make_spec(ws, ["python3", "-c", hog], limits=ResourceLimits(memory_bytes=512 * 1024**2))
    async with await overlay.run(spec) as staged:
        assert staged.result.exit_code == 1
        assert "MemoryError" in staged.result.stderr
        assert "ALLOCATED" not in staged.result.stdout


async def test_a_timeout_kills_the_children_too(overlay: BwrapBackend, ws: Path) -> None:
    spec = sh(ws, "(sleep 2.345; echo late > marker) & sleep 9.876", timeout_s=0.5)
    async with await overlay.run(spec) as staged:
        assert staged.result.timed_out
        assert staged.result.exit_code is None
        assert staged.result.duration_s < 2
        # No process is left that could still write the marker: it never will.
        assert processes_with(b"2.345") == [] and processes_with(b"9.876") == []
        assert staged.changes == ()
    assert not (ws / "marker").exists()


class StartSignal:
    """A fake proxy the command connects to once it runs: the test then knows the tree exists."""

    def __init__(self) -> None:
        self.started = anyio.Event()

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        self.started.set()
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            await stream.receive()


CONNECT_AND_HANG = (
    'sleep 31.415 & python3 -c \'import socket, time; c = socket.create_connection(("127.0.0.1", 3128)); '
    'c.sendall(b"x"); time.sleep(60)\''
)


async def test_cancelling_the_run_kills_the_tree_within_a_second(
    overlay: BwrapBackend, ws: Path, tmp_path: Path, staging_root: Path
) -> None:
    signal = StartSignal()
    socket_path = tmp_path / "proxy.sock"
    listener = await anyio.create_unix_listener(socket_path)
    cancelled_at: list[float] = []
    returned_at = float("inf")

    async def cancel_once_started(scope: anyio.CancelScope) -> None:
        await signal.started.wait()
        cancelled_at.append(time.monotonic())
        scope.cancel()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, signal.handle)
            with anyio.CancelScope() as scope:
                group.start_soon(cancel_once_started, scope)
                await overlay.run(sh(ws, CONNECT_AND_HANG, network=ProxyNetwork(socket_path=socket_path)))
                pytest.fail("the run should have been cancelled")
            returned_at = time.monotonic()
            group.cancel_scope.cancel()
    assert returned_at - cancelled_at[0] < 1.0
    assert processes_with(b"31.415") == []
    standby = overlay.standby.wait_ready(10)  # (the next run's, made while this one ran)
    assert standby is not None
    assert list(staging_root.iterdir()) == [standby.staging]  # the run's staging area went with it


async def test_kill_all_stops_a_running_command_and_reports_it_killed(
    overlay: BwrapBackend, ws: Path, tmp_path: Path
) -> None:
    signal = StartSignal()
    socket_path = tmp_path / "proxy.sock"
    listener = await anyio.create_unix_listener(socket_path)

    async def kill_once_started() -> None:
        await signal.started.wait()
        overlay.kill_all()

    staged: StagedDirRun | None = None
    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            group.start_soon(listener.serve, signal.handle)
            group.start_soon(kill_once_started)
            spec = sh(
                ws, "echo before > staged.txt; " + CONNECT_AND_HANG, network=ProxyNetwork(socket_path=socket_path)
            )
            staged = await overlay.run(spec)
            group.cancel_scope.cancel()
    assert staged is not None
    async with staged:
        assert staged.result.killed and not staged.result.timed_out
        assert staged.result.exit_code is None
        assert [c.path for c in staged.changes] == ["staged.txt"]  # what it did so far is still reported
    assert processes_with(b"31.415") == []


async def test_output_beyond_the_cap_is_dropped_and_flagged(overlay: BwrapBackend, ws: Path) -> None:
    spec = sh(ws, "head -c 200000 /dev/zero | tr '\\0' a; echo err >&2", max_output_bytes=1000)
    async with await overlay.run(spec) as staged:
        assert staged.result.stdout == "a" * 1000 and staged.result.stdout_truncated
        assert staged.result.stderr == "err\n" and not staged.result.stderr_truncated
        assert staged.result.exit_code == 0


async def test_every_byte_printed_is_counted_and_reported_as_it_arrives_the_dropped_ones_included(
    overlay: BwrapBackend, ws: Path
) -> None:
    chunks: list[int] = []
    spec = sh(ws, "head -c 200000 /dev/zero | tr '\\0' a; echo err >&2", max_output_bytes=1000, on_output=chunks.append)
    async with await overlay.run(spec) as staged:
        assert (staged.result.stdout_bytes, staged.result.stderr_bytes) == (200_000, 4)
    assert sum(chunks) == 200_004 and all(size > 0 for size in chunks)


async def test_exit_codes_are_the_commands_own(overlay: BwrapBackend, ws: Path) -> None:
    async with await overlay.run(sh(ws, "exit 3")) as staged:
        assert staged.result.exit_code == 3
    async with await overlay.run(sh(ws, "kill -9 $$")) as staged:
        assert staged.result.exit_code == 128 + 9
    async with await overlay.run(make_spec(ws, ["no-such-command-anywhere"])) as staged:
        assert staged.result.exit_code not in (0, None)


async def test_every_rlimit_binds_the_command_soft_and_hard(backend: BwrapBackend, ws: Path) -> None:
    limits = ResourceLimits(cpu_seconds=7, memory_bytes=900 * 1024**2, max_file_bytes=3 * 1024**2, max_open_files=77)
    async with await backend.run(sh(ws, "cat /proc/self/limits", limits=limits)) as staged:
        rows = {line[:26].strip(): line[26:].split()[:2] for line in staged.result.stdout.splitlines()[1:]}
    assert rows["Max cpu time"] == ["7", "7"]
    assert rows["Max address space"] == [str(900 * 1024**2)] * 2
    assert rows["Max file size"] == [str(3 * 1024**2)] * 2
    assert rows["Max open files"] == ["77", "77"]


MB = 1024**2


def disk_bytes(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


async def test_writes_past_the_write_quota_fail_inside_and_the_run_says_so(
    backend: BwrapBackend, ws: Path, staging_root: Path
) -> None:
    limits = ResourceLimits(max_write_bytes=4 * MB)
    async with await backend.run(sh(ws, "head -c 1048576 /dev/zero > small", limits=limits)) as staged:
        assert staged.result.exit_code == 0 and staged.result.quotas_exceeded == ()
        assert staged.result.staged_bytes >= MB
    script = "dd if=/dev/zero of=big bs=1M count=16 2>/dev/null || echo REFUSED"
    async with await backend.run(sh(ws, script, limits=limits)) as staged:
        assert staged.result.stdout.strip() == "REFUSED"
        assert staged.result.quotas_exceeded == (Quota.WRITE_BYTES,)
        (big,) = [c for c in staged.changes if c.path == "big"]
        assert big.kind is ChangeKind.CREATED and big.source is not None and big.source.stat().st_size <= 4 * MB
        assert disk_bytes(staging_root) < MB, "the writes never reach the host's disk"
    assert not (ws / "big").exists()


async def test_entries_past_the_inode_quota_fail_inside_and_the_run_says_so(backend: BwrapBackend, ws: Path) -> None:
    limits = ResourceLimits(max_write_inodes=100)
    script = "for i in $(seq 1 300); do mkdir d$i 2>/dev/null || { echo STOPPED $i; break; }; done"
    async with await backend.run(sh(ws, script, limits=limits)) as staged:
        stopped = staged.result.stdout.split()
        # The quota, plus the few inodes the area's own directories may leave unused.
        assert stopped[0] == "STOPPED" and 100 < int(stopped[1]) <= 110
        assert staged.result.quotas_exceeded == (Quota.WRITE_INODES,)


async def test_the_copy_backends_write_quota_counts_on_top_of_its_copy(ws: Path, staging_root: Path) -> None:
    copy = require_isolation(CopyStagingSandbox(staging_root=staging_root))
    (ws / "data.bin").write_bytes(b"\0" * 8 * MB)
    limits = ResourceLimits(max_write_bytes=4 * MB)
    async with await copy.run(sh(ws, "head -c 2097152 /dev/zero > more", limits=limits)) as staged:
        assert staged.result.exit_code == 0 and staged.result.quotas_exceeded == ()
    async with await copy.run(sh(ws, "head -c 6291456 /dev/zero > more || echo REFUSED", limits=limits)) as staged:
        assert "REFUSED" in staged.result.stdout and staged.result.quotas_exceeded == (Quota.WRITE_BYTES,)


async def test_tmp_past_its_quota_fails_inside_and_the_run_says_so(backend: BwrapBackend, ws: Path) -> None:
    limits = ResourceLimits(max_tmp_bytes=4 * MB, max_tmp_inodes=50)
    script = "dd if=/dev/zero of=/tmp/big bs=1M count=16 2>/dev/null || echo REFUSED"
    async with await backend.run(sh(ws, script, limits=limits)) as staged:
        assert staged.result.stdout.strip() == "REFUSED" and staged.result.quotas_exceeded == (Quota.TMP_BYTES,)
        assert staged.changes == ()
    script = "for i in $(seq 1 100); do touch /tmp/f$i 2>/dev/null || { echo STOPPED; break; }; done"
    async with await backend.run(sh(ws, script, limits=limits)) as staged:
        assert staged.result.stdout.strip() == "STOPPED" and staged.result.quotas_exceeded == (Quota.TMP_INODES,)


async def launch(argv: list[str], admit: Callable[[int], None]) -> ProcessOutcome:
    """A gated launcher run directly (no sandbox around it); `admit` runs in a worker thread."""

    def admitted(pid: int) -> Awaitable[bytes]:
        async def gate() -> bytes:
            await anyio.to_thread.run_sync(admit, pid)
            return b"go\n"

        return gate()

    return await run_contained(
        argv,
        env={"PATH": "/usr/bin:/bin"},
        timeout_s=30,
        max_output_bytes=1000,
        pass_fds=[],
        control=RunControl(),
        kill_rest=lambda: None,
        admit=admitted,
    )


async def test_the_launcher_waits_at_its_gate_and_runs_nothing_if_it_cannot_be_confined(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    seen: list[int] = []

    def refuse(pid: int) -> None:
        seen.append(pid)
        # A slow confinement that then fails (the case under test): an ungated launcher would write the
        # marker meanwhile. Nothing here signals "it did not run", so the test gives it the time to.
        time.sleep(0.3)
        raise PermissionError(1, "Operation not permitted")

    argv = ["/bin/sh", "-c", f'{LAUNCH_GATE}echo ran > "$0"', str(marker)]

    with pytest.raises(SandboxSetupFailed):
        await launch(argv, refuse)
    assert len(seen) == 1 and not marker.exists()
    outcome = await launch(argv, seen.append)
    assert outcome.returncode == 0 and marker.read_text() == "ran\n", "once admitted, it goes on"


async def test_a_run_cancelled_while_its_launcher_is_confined_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    launchers: list[int] = []

    def slow_admit(pid: int) -> None:
        launchers.append(pid)
        time.sleep(0.3)  # a slow confinement (the case under test): the caller's deadline passes meanwhile

    argv = ["/bin/sh", "-c", f'{LAUNCH_GATE}sleep 0.5; echo ran > "$0"', str(marker)]
    with anyio.move_on_after(0.1):
        await launch(argv, slow_admit)
    # Checked as soon as the run returns, not after a wait: a launcher that is gone (killed and reaped) can
    # write nothing later, and one still alive is what the test forbids.
    assert len(launchers) == 1 and not Path(f"/proc/{launchers[0]}").exists(), "the launcher outlived its run"
    assert not marker.exists(), "the cancelled run's launcher went on unsupervised"


async def test_a_launcher_whose_early_confinement_fails_runs_nothing(tmp_path: Path) -> None:
    """The cgroup move starts while the launcher sets up (`confine`); the gate opens only once it is done."""
    marker = tmp_path / "marker"
    confined: list[int] = []

    async def refuse(pid: int) -> None:
        confined.append(pid)
        await anyio.sleep(0.3)  # slower than the launcher's setup: an ungated launcher would write meanwhile
        raise PermissionError(1, "Operation not permitted")

    async def admit(pid: int) -> bytes:
        assert confined == [pid], "confine started before the gate"
        return b"go\n"

    argv = ["/bin/sh", "-c", f'{LAUNCH_GATE}echo ran > "$0"', str(marker)]
    with pytest.raises(SandboxSetupFailed):
        await run_contained(
            argv,
            env={"PATH": "/usr/bin:/bin"},
            timeout_s=30,
            max_output_bytes=1000,
            pass_fds=[],
            control=RunControl(),
            kill_rest=lambda: None,
            admit=admit,
            confine=refuse,
        )
    assert len(confined) == 1 and not marker.exists()
