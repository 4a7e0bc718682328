# pyright: strict
"""Adversarial review of the launcher server (`sandbox/_spawner.py`, `_launch.py`): attacks from inside a command."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread
import pytest

from sandbox import Quota, ResourceLimits
from sandbox._bwrap_backend import BwrapBackend
from sandbox._limits import pids_cgroup_parent

from ._support import sh
from .test_limits import processes_with

pytestmark = [pytest.mark.anyio, pytest.mark.bwrap]


def _marker() -> str:
    """A unique `sleep` duration: host processes carrying it are the test's."""
    return f"3{uuid.uuid4().int % 10**6}.{uuid.uuid4().int % 10**6}"


async def _gone(marker: str) -> list[int]:
    """The host processes still carrying `marker` once they had a bounded moment to be reaped."""
    with anyio.move_on_after(5):
        while processes_with(marker.encode()):
            await anyio.sleep(0.05)
    return processes_with(marker.encode())


async def test_no_descriptor_socket_or_process_of_the_launcher_server_is_reachable(
    overlay: BwrapBackend, ws: Path
) -> None:
    """Withstood: every process the command can see holds no socket and no pipe but its own stdio; it sees no
    process outside its pid namespace (no server, no launcher), no unix socket at all (abstract ones included:
    the network namespace has none), and pid 1's parent is not visible."""
    script = (
        'for p in /proc/[0-9]*; do for f in $p/fd/*; do echo "fd $f $(readlink $f)"; done; done; '
        "echo \"ppid1 $(awk '/^PPid/{print $2}' /proc/1/status)\"; "
        'echo "pids $(ls -d /proc/[0-9]* | wc -l)"; '
        'echo "unix $(tail -n +2 /proc/net/unix | wc -l)"; '
        "cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo"
    )
    async with await overlay.run(sh(ws, script)) as staged:
        assert staged.result.exit_code == 0, staged.result.stderr
        out = staged.result.stdout
    assert "socket:" not in out, out
    assert "_spawner" not in out, out
    assert "ppid1 0" in out, out
    assert "unix 0" in out, out
    server = overlay._spawner.server_pid  # pyright: ignore[reportPrivateUsage]
    assert server is not None and f"/proc/{server}/" not in out


async def test_a_double_forked_setsid_child_does_not_outlive_a_timed_out_run(overlay: BwrapBackend, ws: Path) -> None:
    """Withstood: a grandchild in a session of its own, its parent gone, ignoring SIGHUP and SIGTERM, is gone
    from the host once the timed-out run returns (pid namespace and cgroup)."""
    marker = _marker()
    script = (
        f"( setsid sh -c 'trap \"\" HUP TERM; exec sleep {marker}' </dev/null >/dev/null 2>&1 & ) ; "
        f"( nohup sleep {marker} </dev/null >/dev/null 2>&1 & ) ; sleep {marker}"
    )
    staged = await overlay.run(sh(ws, script, timeout_s=1.5))
    async with staged:
        assert staged.result.timed_out
    assert await _gone(marker) == []


async def test_a_background_child_does_not_outlive_a_run_that_exits_at_once(overlay: BwrapBackend, ws: Path) -> None:
    """Withstood: the command exits 0 with a detached child still running; the child is killed with the run."""
    marker = _marker()
    script = f"( setsid sleep {marker} </dev/null >/dev/null 2>&1 & ); exit 0"
    async with await overlay.run(sh(ws, script)) as staged:
        assert staged.result.exit_code == 0, staged.result.stderr
    assert await _gone(marker) == []


@pytest.mark.skipif(pids_cgroup_parent() is None, reason="needs a pids cgroup (root)")
async def test_the_command_cannot_reach_or_leave_its_cgroup(overlay: BwrapBackend, ws: Path) -> None:
    """Withstood: the command is in the run's pids cgroup from its first instruction (the launcher joined it
    before exec), and cannot move itself out: no cgroupfs is mounted inside, /sys is absent, and its cgroup
    namespace is rooted at the run's cgroup."""
    script = (
        "cat /proc/self/cgroup | grep pids; "
        "for f in /sys/fs/cgroup/pids/tasks /sys/fs/cgroup/pids/cgroup.procs /sys/fs/cgroup/cgroup.procs; do "
        "  if echo $$ > $f 2>/dev/null; then echo moved $f; fi; done; "
        "mkdir /tmp/cg 2>/dev/null && mount -t cgroup -o pids none /tmp/cg 2>/dev/null && echo mounted; "
        "cat /proc/self/cgroup | grep pids"
    )
    async with await overlay.run(sh(ws, script)) as staged:
        out = staged.result.stdout
    assert "moved" not in out and "mounted" not in out, out
    lines = out.split()
    # (bwrap's cgroup namespace is rooted at the cgroup the launcher joined: the run's)
    assert len(lines) == 2 and lines[0] == lines[1] and lines[0].endswith(":pids:/"), out


async def test_the_commands_rlimits_are_the_specs(overlay: BwrapBackend, ws: Path) -> None:
    """Withstood: the limits the launcher set before exec'ing bwrap reach the command, soft and hard, and it
    cannot raise them."""
    limits = ResourceLimits(cpu_seconds=7, max_file_bytes=12345 * 1024, max_open_files=77)
    script = (
        "ulimit -t; ulimit -Ht; ulimit -n; ulimit -Hn; ulimit -f; (ulimit -Sn 200 2>/dev/null && echo raised) || true"
    )
    async with await overlay.run(sh(ws, script, limits=limits)) as staged:
        assert staged.result.exit_code == 0, staged.result.stderr
        # (`ulimit -f` counts 512-byte blocks in dash... or KiB in bash: either way not unlimited)
        values = staged.result.stdout.split()
    assert values[:4] == ["7", "7", "77", "77"], values
    assert values[4] != "unlimited" and "raised" not in values, values


async def test_writes_past_the_quotas_fail_inside_and_are_reported(overlay: BwrapBackend, ws: Path) -> None:
    """Withstood: the launcher's own tmpfs mounts hold the write and /tmp quotas (ENOSPC inside, flagged)."""
    limits = ResourceLimits(max_write_bytes=1024 * 1024, max_tmp_bytes=1024 * 1024)
    script = (
        "head -c 3000000 /dev/zero > big.bin 2>/dev/null || echo ws-full; "
        "head -c 3000000 /dev/zero > /tmp/big.bin 2>/dev/null || echo tmp-full"
    )
    async with await overlay.run(sh(ws, script, limits=limits)) as staged:
        assert "ws-full" in staged.result.stdout and "tmp-full" in staged.result.stdout
        assert {Quota.WRITE_BYTES, Quota.TMP_BYTES} <= set(staged.result.quotas_exceeded)
        assert staged.result.staged_bytes <= 1024 * 1024
    assert not (ws / "big.bin").exists()


async def test_the_command_cannot_undo_the_overlay_or_see_the_staging_area(
    overlay: BwrapBackend, ws: Path, staging_root: Path
) -> None:
    """Withstood: inside, unmounting the workspace or remounting it fails (bwrap's nested user namespace, caps
    dropped), the staging root (with launch.json and bwrap.args) is hidden, and the hidden `.env` stays hidden."""
    script = (
        f"umount -l {ws} 2>/dev/null && echo unmounted; "
        f"ls {staging_root} 2>/dev/null | grep . && echo staging-seen; "
        "cat .env 2>/dev/null | grep hunter2 && echo secret-seen; "
        "echo written > new.txt; true"
    )
    before = (ws / ".env").read_text()
    async with await overlay.run(sh(ws, script)) as staged:
        out = staged.result.stdout
        assert [c.path for c in staged.changes] == ["new.txt"]
    assert "unmounted" not in out and "staging-seen" not in out and "secret-seen" not in out, out
    assert not (ws / "new.txt").exists() and (ws / ".env").read_text() == before


async def test_many_concurrent_runs_each_get_their_own_output_and_changes(overlay: BwrapBackend, ws: Path) -> None:
    """Withstood: 12 runs at once through the one server: each exit code, output and staged change is its own,
    and one server serves them all."""
    results: dict[int, tuple[int | None, str, list[str]]] = {}

    async def one(index: int) -> None:
        spec = sh(ws, f"echo {index} > f{index}.txt; echo out{index}; exit {index % 5}")
        async with await overlay.run(spec) as staged:
            results[index] = (staged.result.exit_code, staged.result.stdout, [c.path for c in staged.changes])

    async with await overlay.run(sh(ws, "true")):  # the server is up
        pass
    server = overlay._spawner.server_pid  # pyright: ignore[reportPrivateUsage]
    with anyio.fail_after(120):
        async with anyio.create_task_group() as group:
            for index in range(12):
                group.start_soon(one, index)
    assert results == {i: (i % 5, f"out{i}\n", [f"f{i}.txt"]) for i in range(12)}
    assert overlay._spawner.server_pid == server  # pyright: ignore[reportPrivateUsage]


async def test_a_fork_bomb_is_held_to_its_process_budget_and_leaves_nothing(overlay: BwrapBackend, ws: Path) -> None:
    """Withstood: a forking loop stays within max_processes (fork fails inside), and nothing is left after the
    shell dies of it (its sleepers were still running)."""
    marker = _marker()
    limits = ResourceLimits(max_processes=20)
    script = f"i=0; while [ $i -lt 60 ]; do sleep {marker} & i=$((i+1)); done; wait"
    async with await overlay.run(replace(sh(ws, script, limits=limits), timeout_s=3)) as staged:
        assert "fork" in staged.result.stderr.lower(), staged.result.stderr  # the shell died at its 20th fork
    assert await _gone(marker) == []


async def test_non_utf8_argv_and_odd_environment_reach_the_command_intact(overlay: BwrapBackend, ws: Path) -> None:
    """Withstood: an argument with undecodable bytes (surrogate-escaped) and odd environment values survive the
    JSON request to the server and the exec unchanged."""
    odd = os.fsdecode(b"caf\xe9-\xff")
    env = {"PATH": "/usr/bin:/bin", "ODD": "a b\tc\n$(x)'\"", "EMPTY": ""}
    spec = replace(sh(ws, 'printf "%s|%s|%s" "$0" "$ODD" "${EMPTY-unset}"'), env=env)
    spec = replace(spec, argv=[*spec.argv, odd])
    async with await overlay.run(spec) as staged:
        assert staged.result.exit_code == 0, staged.result.stderr
        assert (
            staged.result.stdout.encode("utf-8", "surrogateescape") == (b"caf\xe9-\xff|a b\tc\n$(x)'\"|")
            or staged.result.stdout == "caf\ufffd-\ufffd|a b\tc\n$(x)'\"|"
        )


def _pids_cgroup(pid: int) -> Path | None:
    """The run's pids cgroup directory that process `pid` is in (None without one, or when it is gone)."""
    parent = pids_cgroup_parent()
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, relative = line.split(":", 2)
        if parent is not None and "pids" in controllers.split(",") and "swarm-sandbox-" in relative:
            return Path("/sys/fs/cgroup/pids") / relative.lstrip("/")
    return None


_BODY = """
import anyio, sys
from pathlib import Path
from sandbox import BwrapOverlaySandbox, SandboxSpec, default_toolchain_paths

async def main() -> None:
    backend = BwrapOverlaySandbox(staging_root=Path(sys.argv[1]))
    spec = SandboxSpec(workspace=Path(sys.argv[2]), argv=["/bin/sh", "-c", sys.argv[3]],
                       env={"PATH": "/usr/bin:/bin"}, toolchain_paths=default_toolchain_paths(),
                       hidden_paths=(), timeout_s=60)
    while True:
        async with await backend.run(spec):
            pass
        if sys.argv[4:] != ["again"]:
            return

anyio.run(main)
"""


async def test_a_body_killed_mid_run_leaves_no_process_of_the_command(
    ws: Path, staging_root: Path, overlay: BwrapBackend
) -> None:
    """Withstood (better than the old chain, whose outer bwrap was the body's child and outlived it): SIGKILL to
    the body, once its command and the command's detached child run, closes the server's socket; the server
    kills its launcher, bwrap's --die-with-parent takes the command and its detached children, and the server
    removes the run's cgroup, which the dead body cannot."""
    marker = _marker()
    script = f"( setsid sleep {marker} </dev/null >/dev/null 2>&1 & ); sleep {marker}"
    body = await anyio.open_process([sys.executable, "-c", _BODY, str(staging_root), str(ws), script])
    try:
        with anyio.fail_after(20):
            # (the sleeps: the body's own command line and bwrap's carry the marker from the start)
            while len(_sleeps(marker)) < 2:
                await anyio.sleep(0.02)
        cgroups = {_pids_cgroup(pid) for pid in _sleeps(marker)} - {None}
        body.kill()
        await body.wait()
        assert await _gone(marker) == []
        assert await _removed(cgroups) == set()
    finally:
        await _end(body, marker)


async def test_a_body_killed_while_bwraps_init_sets_up_leaves_nothing(
    ws: Path, staging_root: Path, overlay: BwrapBackend
) -> None:
    """Withstood (the one CI failure of the test above, 4 processes left: bwrap's init, the shell, both sleeps):
    bwrap's init gets --die-with-parent's PDEATHSIG only once its setup is done. The body killed before that
    killed the server's launcher (the outer bwrap) but not bwrap's init, which then ran the command with
    nobody to kill it. Here it is held in its setup (stopped) while the body dies: the server, its subreaper,
    kills it."""
    marker = _marker()
    script = f": {marker}; exit 0"  # (it ends at once: a run whose init was caught too late gives way to the next)
    body = await anyio.open_process([sys.executable, "-c", _BODY, str(staging_root), str(ws), script, "again"])
    try:
        init = await anyio.to_thread.run_sync(_stop_bwraps_init_in_its_setup, body.pid)
        cgroup = _pids_cgroup(init)
        body.kill()
        await body.wait()
        assert await _gone(marker) == []
        assert await _removed({cgroup} - {None}) == set()
    finally:
        await _end(body, marker)


def _sleeps(marker: str) -> list[int]:
    return [pid for pid in processes_with(marker.encode()) if _cmdline(pid).startswith(b"sleep\0")]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    """The children of `pid`, whichever of its threads forked them."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _stop_bwraps_init_in_its_setup(body: int) -> int:
    """Find bwrap's init (the outer bwrap's child: body → server → launcher, which execs the outer bwrap) and
    stop it at once; its pid once it is stopped before its setup ended (it had not forked the command yet).
    Polled without a pause: its setup takes milliseconds. A miss (this process held off the CPU meanwhile) is
    retried on the next run: the body runs the command again and again."""
    deadline = time.monotonic() + 30
    server: int | None = None
    seen: set[int] = set()
    while time.monotonic() < deadline:
        if server is None:
            server = next((pid for pid in _children(body) if b"_spawner" in _cmdline(pid)), None)
            continue
        for launcher in _children(server):
            init = next(iter(_children(launcher)), None)
            if init is None or init in seen:
                continue
            seen.add(init)
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):  # (a run that ended meanwhile)
                os.kill(init, signal.SIGSTOP)
                while _state(init) != "T":
                    time.sleep(0.001)
                if not _children(init):
                    return init
                os.kill(init, signal.SIGCONT)  # (caught too late: this run ends, the next one is tried)
    raise TimeoutError("bwrap's init was never caught in its setup")


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


async def _removed(cgroups: set[Path | None]) -> set[Path | None]:
    """The cgroups still there once they had a bounded moment to be removed."""
    with anyio.move_on_after(5):
        while any(cgroup is not None and cgroup.exists() for cgroup in cgroups):
            await anyio.sleep(0.05)
    return {cgroup for cgroup in cgroups if cgroup is not None and cgroup.exists()}


async def _end(body: anyio.abc.Process, marker: str) -> None:
    """Kill the body and whatever of its run a failed test left behind."""
    with contextlib.suppress(ProcessLookupError):
        body.kill()
    await body.aclose()
    for pid in processes_with(marker.encode()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def test_the_command_cannot_grow_its_quota_areas_or_regain_privileges(overlay: BwrapBackend, ws: Path) -> None:
    """Withstood: the quota'd tmpfs areas were mounted by the launcher's namespace, above bwrap's: inside,
    remounting /tmp or the workspace bigger fails, and no new user namespace can be made to regain the rights."""
    limits = ResourceLimits(max_tmp_bytes=1024 * 1024)
    script = (
        "mount -o remount,size=64m /tmp 2>/dev/null && echo remounted-tmp; "
        "mount -t tmpfs -o size=64m none /tmp 2>/dev/null && echo mounted-tmp; "
        f"mount -o remount,size=64m {ws} 2>/dev/null && echo remounted-ws; "
        "unshare -Ur true 2>/dev/null && echo new-userns; "
        "df -k /tmp | tail -1"
    )
    async with await overlay.run(sh(ws, script, limits=limits)) as staged:
        out = staged.result.stdout
    assert not any(word in out for word in ("remounted-tmp", "mounted-tmp", "remounted-ws", "new-userns")), out
    assert out.split()[1] == "1024", out  # /tmp is still the 1 MiB area
