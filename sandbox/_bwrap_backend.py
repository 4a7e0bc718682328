# pyright: strict
"""What both bubblewrap backends share: checking the spec, the launcher, running, probing.

The overlay backend's launcher is forked by a small launcher server (`_launch.py`, `_spawner.py`): before it
execs bwrap it joins the run's pids cgroup, takes a user and mount namespace of its own, mounts the run's
quota'd areas (`_areas.py`) and the overlay, hands the areas to the body and sets its rlimits.

The copy backend keeps a chain, each step exec'ing the next so the outer process is bwrap itself by the end:
`unshare` (a user and mount namespace of the run's own) → `sh`, which mounts the run's areas, says it is
ready and waits at its gate (one line on stdin) while the body opens the areas, fills its own with the
workspace's copy and sets its rlimits, then remounts it to the copy's size plus the quota → `bwrap --args FD
-- COMMAND`. Its move into the run's pids cgroup (milliseconds on cgroup v1) starts as soon as it is
spawned, while it mounts; the gate waits for that too.

bwrap reads its options from a memfd (`--args FD`), so that the command's environment never shows up in the
host's process list (bwrap 0.8 takes only options that way: a `--` and command inside it end in a usage error).

The overlay backend's runs after the first are served by a launcher forked ahead (`_standby.py`): the run's
request goes straight to it, on the event loop, with no worker-thread hop before the command. When the run's plan
is remembered (`_plan_memo.py`), the next run is prepared further, into bwrap itself (`_make_ready`): bwrap set up
with every option of the run and blocked on `--block-fd`, its command a trampoline shell that reads `exec` and the
command's words from a pipe. The next run with the very same plan writes its command there and releases bwrap
(`_release_ready`); any other run discards it and takes the spare launcher kept beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import shutil
import subprocess
import tempfile
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.to_thread

from ._areas import RunAreas, area_options, launch_script, wait_ready_sync
from ._bwrap import (
    BwrapLayout,
    HiddenTarget,
    bwrap_options,
    check_commands,
    forwarder_prefix,
    plan_hidden,
    plan_writable,
    proxy_env,
    resolve_cwd,
    sandboxed_command,
)
from ._interface import (
    SANDBOX_BIN_DIR,
    Availability,
    ProxyNetwork,
    Quota,
    RunResult,
    SandboxSpec,
    StagedChange,
    WritableMount,
)
from ._launch import (
    ChildMount,
    LaunchRequest,
    SpawnedProcess,
    Spawner,
    Started,
    close_started,
    receive_areas,
    receive_areas_blocking,
    send_run,
    start_blocking,
    start_standby_blocking,
    write_all,
)
from ._limits import (
    SANDBOX_OVERHEAD_PROCESSES,
    PidsCgroup,
    apply_rlimits,
    create_pids_cgroup,
    pids_cgroup_parent,
    remove_orphaned_cgroups,
    rlimits,
)
from ._plan_memo import PlanMemo
from ._process import SETUP_TIMEOUT_S, ProcessOutcome, RunControl, run_contained
from ._staged import StagedDirRun, make_staging, remove_orphaned_staging, remove_staging
from ._standby import Standby, StandbySlot
from ._toolchain import (
    ToolchainMount,
    default_toolchain_paths,
    find_python,
    is_exposed,
    minimal_path,
    plan_toolchain,
    visible_path,
)
from .exceptions import InvalidSandboxSpec, NoIsolationAvailable, SandboxError, SandboxSetupFailed

# The launcher's own environment: nothing of the body's (the command gets exactly `spec.env`).
_LAUNCH_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
_PROBE_TIMEOUT_S = 20
_INSTALL_HINTS = {
    "bwrap": "bwrap not found: apt-get install bubblewrap",
    "unshare": "unshare not found: apt-get install util-linux",
    "mount": "mount not found: apt-get install mount",
    "sh": "sh not found",
}
_FORWARDER_SOURCE = (Path(__file__).parent / "_forwarder.py").read_text()


@dataclass(kw_only=True, frozen=True)
class Prepared:
    """A backend's staged workspace: what to bind at the workspace path, how to fill and read the write area.

    The write area (a quota'd tmpfs) is mounted at `write` in the staging directory, in the launcher's
    namespace; the body sees it at another path, which `fill` and `collect` are given.
    """

    workspace_source: Path
    """Bound at the workspace path, as the launcher's namespace sees it."""
    collect: Callable[[Path], list[StagedChange]]
    mounts: tuple[ChildMount, ...] | None = None
    """Made by the launcher once the areas are mounted (`_launch.py`); None: the shell chain and its gate."""
    fill: Callable[[Path], None] | None = None
    """Fills the write area before the gate opens; the write quota then counts on top of what it holds."""


@dataclass(kw_only=True)
class _Plan:
    toolchain: list[ToolchainMount]
    hidden: list[HiddenTarget]
    cwd: Path
    env: dict[str, str]
    proxy_socket: Path | None = None
    forwarder: list[str] = field(default_factory=list[str])
    writable: list[WritableMount] = field(default_factory=list[WritableMount])
    commands: dict[str, Path] = field(default_factory=dict[str, Path])


@dataclass(kw_only=True)
class _SetUp:
    """A run's state from before its command starts (`BwrapBackend._set_up`)."""

    staging: Path
    cgroup: PidsCgroup | None
    launch: _Launch
    started: Started | None
    """The overlay backend's launcher, forked by the server; None: the copy backend's chain, started later."""
    areas: tuple[int, int] | None = None
    """The run's areas, handed over already (a run prepared ahead: its bwrap is exec'd)."""


@dataclass(kw_only=True)
class _Launch:
    argv: list[str]
    pass_fds: list[int]
    status_path: Path
    prepared: Prepared
    rlimits: list[tuple[int, int]]
    request: LaunchRequest | None = None
    """For the launcher server; None: `argv` is the shell chain."""
    request_path: Path | None = None

    def close_fds(self) -> None:
        for fd in self.pass_fds:
            os.close(fd)
        self.pass_fds = []


class BwrapBackend(ABC):
    """Base of the bubblewrap backends. Subclasses stage the workspace; everything else is here."""

    backend_name: ClassVar[str]
    required_tools: ClassVar[tuple[str, ...]] = ("sh", "bwrap", "unshare", "mount")
    launches_ahead: ClassVar[bool] = False
    """Whether runs are served by a launcher forked ahead of them (`_standby.py`): the launcher server's only."""

    def __init__(self, *, staging_root: Path | None = None, forwarder_python: Path | None = None) -> None:
        """`staging_root` holds one private staging directory per run (default: the system temp dir);
        `forwarder_python` is the interpreter for the proxy forwarder (default: the first exposed one)."""
        self._staging_root = (staging_root or Path(tempfile.gettempdir())).resolve()
        self._forwarder_python = forwarder_python
        self._tools = {name: shutil.which(name, path=_LAUNCH_ENV["PATH"]) for name in self.required_tools}
        self._availability: Availability | None = None
        self._active: set[RunControl] = set()
        self._spawner = Spawner(self)
        self._standby = StandbySlot()
        self._spare = StandbySlot()
        """A launcher waiting for its request, kept beside a run prepared into bwrap: the next run takes it when
        the prepared one no longer fits (after any change to the workspace), rather than the server's fork."""
        self._plans = PlanMemo[_Plan]()
        weakref.finalize(self, self._standby.close)  # (after the spawner's: run first at the interpreter's exit)
        weakref.finalize(self, self._spare.close)
        self._swept = False

    @property
    def name(self) -> str:
        return self.backend_name

    @abstractmethod
    def _prepare(self, staging: Path, spec: SandboxSpec, hidden: Sequence[HiddenTarget]) -> Prepared:
        """Stage the workspace under `staging` (runs in a worker thread)."""

    def _unusable(self, write_area: Path) -> str | None:
        """Why this backend cannot work with the write area the probe mounted, if it cannot."""
        return None

    def _tool(self, name: str) -> str:
        path = self._tools[name]
        if path is None:
            raise NoIsolationAvailable({self.name: _INSTALL_HINTS[name]})
        return path

    def available(self) -> Availability:
        """Whether this backend works here, found by running `true` through it once (cached)."""
        if self._availability is None:
            self._availability = self._probe()
        return self._availability

    def kill_all(self) -> None:
        """Kill every command running in this sandbox; their runs return with `killed=True`."""
        for control in list(self._active):
            control.kill()

    @property
    def plans(self) -> PlanMemo[_Plan]:
        """The runs' plans, remembered while nothing they were made from changed (`_plan_memo.py`)."""
        return self._plans

    @property
    def standby(self) -> StandbySlot:
        """The launcher forked ahead of the next run, or the run prepared ahead into bwrap (`_standby.py`)."""
        return self._standby

    @property
    def spare(self) -> StandbySlot:
        """The launcher kept beside a run prepared ahead, for a run it does not fit."""
        return self._spare

    def close(self) -> None:
        """Discard the launcher made ahead and stop the launcher server (also done when collected)."""
        self._standby.close()
        self._spare.close()
        self._spawner.close()

    async def run(self, spec: SandboxSpec) -> StagedDirRun:
        """Run the command isolated; see `Sandbox.run`."""
        plan = self._plan(spec)
        for name in self.required_tools:
            self._tool(name)
        key = self._standby_key(spec, plan)
        ready_key = self._ready_key(spec, plan)
        script = _trampoline_script(spec.argv) if ready_key is not None else None
        keys = [k for k in (ready_key if script is not None else None, key) if k is not None]
        standby = self._standby.take(keys, self._spawner.server_pid) if keys else None
        if standby is None and key is not None:
            standby = self._spare.take([key], self._spawner.server_pid)
        control = RunControl()
        self._active.add(control)
        setup: _SetUp | None = None
        staged_run: StagedDirRun | None = None
        areas = RunAreas()
        try:
            # The first run of a backend (a body's first) also kills and removes what a dead body's runs left.
            sweep, self._swept = not self._swept, True
            if standby is not None and isinstance(standby.prepared, _Ready):
                # A run prepared ahead into bwrap, waiting: the command goes to its trampoline, bwrap is released.
                assert script is not None
                setup = self._release_ready(standby, standby.prepared, script)
            elif standby is not None:
                # A launcher forked ahead: its request goes straight to it, on the event loop (a few system calls).
                setup = self._set_up_standby(standby, spec, plan)
            else:
                # One worker-thread hop for everything before the command (each hop is a wake-up the loaded
                # machine makes us wait for). Shielded: a run cancelled meanwhile must get its launcher back.
                with anyio.CancelScope(shield=True):
                    setup = await anyio.to_thread.run_sync(self._set_up, spec, plan, sweep)
            assert setup is not None
            # The next run's launcher is made while this one's command runs (once bwrap is exec'd: a thread woken
            # earlier takes the interpreter from the set-up it would delay).
            refill = None
            if ready_key is not None and key is not None:
                prepare = partial(self._standby.refill, partial(self._make_ready, ready_key, spec, plan))
                spare = partial(self._spare.refill, partial(self._make_standby, key, spec))
                refill = partial(_both, prepare, spare)
            elif key is not None:
                refill = partial(self._standby.refill, partial(self._make_standby, key, spec))
            outcome, status, changes = await self._run_in(setup, spec, plan, control, areas, refill or _nothing)
            if "child-pid" not in status and not (outcome.timed_out or outcome.killed):
                detail = outcome.stderr.decode("utf-8", errors="replace")
                raise SandboxSetupFailed(f"{self.name} sandbox did not start the command", detail=detail)
            quotas, staged_bytes = areas.usage()
            staged_run = StagedDirRun(
                result=_result(outcome, status, quotas=quotas, staged_bytes=staged_bytes),
                changes=_outside_mounts(changes, spec.workspace, plan.writable),
                staging=setup.staging,
                area_fd=areas.take_write_fd(),
            )
            return staged_run
        finally:
            self._active.discard(control)
            if staged_run is None:
                areas.close()
                if setup is not None:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(remove_staging, setup.staging)

    def _set_up(self, spec: SandboxSpec, plan: _Plan, sweep: bool) -> _SetUp:
        """Everything before the command, in one worker thread: the staging area, the run's cgroup, bwrap's
        options, and (overlay backend) the launcher forked by the server. Undone if any step fails. With `sweep`
        (a body's first run) also what a dead body left in the staging root."""
        if sweep:
            remove_orphaned_staging(self._staging_root)
        staging = make_staging(self._staging_root)
        cgroup: PidsCgroup | None = None
        launch: _Launch | None = None
        try:
            _lay_out(staging)
            cgroup = _create_cgroup(spec, bool(plan.forwarder), sweep=sweep)
            launch = self._build_launch(spec, plan, staging, cgroup)
            started = None
            if launch.request is not None:
                assert launch.request_path is not None
                started = start_blocking(self._spawner, launch.request, launch.request_path)
            return _SetUp(staging=staging, cgroup=cgroup, launch=launch, started=started)
        except BaseException:
            if launch is not None:
                launch.close_fds()
            if cgroup is not None:
                cgroup.remove()
            remove_staging(staging)
            raise

    def _standby_key(self, spec: SandboxSpec, plan: _Plan) -> Hashable | None:
        """What a launcher made ahead must have been made for, to serve this run; None: never one here."""
        if not self.launches_ahead:
            return None
        return (spec.workspace, tuple(plan.hidden), spec.limits.max_processes, bool(plan.forwarder))

    def _make_standby(self, key: Hashable, spec: SandboxSpec) -> Standby:
        """A fresh staging directory and cgroup, and a launcher forked into that cgroup, waiting (in a thread of
        the slot's, ahead of the run)."""
        staging = make_staging(self._staging_root)
        cgroup: PidsCgroup | None = None
        try:
            _lay_out(staging)
            cgroup = _create_cgroup(spec, isinstance(spec.network, ProxyNetwork), sweep=False)
            join = str(cgroup.join_file) if cgroup is not None else None
            started = start_standby_blocking(self._spawner, staging / "launch.json", join)
            server = self._spawner.server_pid
            return Standby(key=key, staging=staging, cgroup=cgroup, started=started, server_pid=server)
        except BaseException:
            if cgroup is not None:
                with contextlib.suppress(OSError):
                    cgroup.remove()
            remove_staging(staging)
            raise

    def _set_up_standby(self, standby: Standby, spec: SandboxSpec, plan: _Plan) -> _SetUp:
        """`_set_up` for a launcher made ahead: the run's options and request, built now from this run's plan,
        sent to it. A failure discards it (in the background) and fails the run, as `_set_up`'s would."""
        launch: _Launch | None = None
        try:
            launch = self._build_launch(spec, plan, standby.staging, standby.cgroup)
            assert launch.request is not None
            send_run(standby.started, launch.request)
        except BaseException:
            if launch is not None:
                launch.close_fds()
            self._standby.discard_soon(standby)
            raise
        return _SetUp(staging=standby.staging, cgroup=standby.cgroup, launch=launch, started=standby.started)

    def _ready_key(self, spec: SandboxSpec, plan: _Plan) -> Hashable | None:
        """What a run prepared ahead into bwrap must have been prepared for, to serve this run; None: never one
        here. Only a remembered plan qualifies (its identity says that nothing it was made from changed, the
        workspace's scan generation included: the prepared overlay's lower layer is the live workspace, which must
        not have changed under it), with the same limits, no network and no descriptors of the caller's."""
        if not self.launches_ahead or spec.workspace_state is None or spec.network != "none" or spec.pass_fds:
            return None
        if not is_exposed(_TRAMPOLINE_SHELL, plan.toolchain):
            return None
        return ("ready", id(plan), spec.limits)

    def _make_ready(self, key: Hashable, spec: SandboxSpec, plan: _Plan) -> Standby:
        """A run prepared ahead (in a thread of the slot's): staging directory, cgroup, the launcher forked and
        its mounts made, bwrap exec'd with every option of the run and waiting on its block pipe before it execs
        the trampoline, which reads the command from the script pipe."""
        staging = make_staging(self._staging_root)
        cgroup: PidsCgroup | None = None
        ready: _Ready | None = None
        started: Started | None = None
        try:
            _lay_out(staging)
            cgroup = _create_cgroup(spec, False, sweep=False)
            block_r, block_w = os.pipe()
            ready = _Ready(plan=plan, block=block_w, script=-1)
            script_r, ready.script = os.pipe()
            try:
                launch = self._build_launch(spec, plan, staging, cgroup, trampoline=(block_r, script_r))
                ready.launch = launch
                assert launch.request is not None and launch.request_path is not None
                fds = [*launch.pass_fds, block_r, script_r]
                started = start_blocking(self._spawner, launch.request, launch.request_path, fds)
            finally:
                os.close(block_r)
                os.close(script_r)
            ready.areas = receive_areas_blocking(started.channel, SETUP_TIMEOUT_S)
            server = self._spawner.server_pid
            return Standby(
                key=key,
                staging=staging,
                cgroup=cgroup,
                started=started,
                server_pid=server,
                prepared=ready,
                release=ready.close,
            )
        except BaseException:
            if started is not None:
                close_started(started)
            if ready is not None:
                ready.close()
            if cgroup is not None:
                with contextlib.suppress(OSError):
                    cgroup.remove()
            remove_staging(staging)
            raise

    def _release_ready(self, standby: Standby, ready: _Ready, script: bytes) -> _SetUp:
        """Give a run prepared ahead its command: the script to its trampoline, then the byte that releases bwrap
        (a few system calls on the event loop). A failure discards it and fails the run."""
        try:
            assert ready.launch is not None and ready.launch.request is not None
            script_fd = ready.launch.request.pass_fds[3]
            write_all(ready.script, f"exec {script_fd}<&-\n".encode() + script)
            os.close(ready.script)
            ready.script = -1
            os.write(ready.block, b"x")
            os.close(ready.block)
            ready.block = -1
        except OSError as error:
            self._standby.discard_soon(standby)
            raise SandboxSetupFailed(
                "the run prepared ahead could not be given its command", detail=str(error)
            ) from error
        assert ready.launch is not None and ready.areas is not None
        handed, ready.areas = ready.areas, None  # (the run's now: not closed with the standby)
        launch, ready.launch = ready.launch, None
        return _SetUp(
            staging=standby.staging, cgroup=standby.cgroup, launch=launch, started=standby.started, areas=handed
        )

    async def _run_in(
        self,
        setup: _SetUp,
        spec: SandboxSpec,
        plan: _Plan,
        control: RunControl,
        areas: RunAreas,
        on_exec: Callable[[], None],
    ) -> tuple[ProcessOutcome, dict[str, Any], list[StagedChange]]:
        """Launch and wait; the run's cgroup lives exactly as long as its processes may. Then, in one worker-thread
        hop, the cgroup is removed, bwrap's status read and the staged changes collected. `on_exec` is called once
        the launcher has exec'd bwrap (the served launcher: once it handed its areas over)."""
        staging, cgroup, launch, started = setup.staging, setup.cgroup, setup.launch, setup.started
        finished = False
        try:

            async def confine(pid: int) -> None:
                if cgroup is not None:
                    await anyio.to_thread.run_sync(cgroup.add, pid)

            async def admit(pid: int) -> bytes:
                gate = await anyio.to_thread.run_sync(_stage_areas, pid, staging, spec, launch.prepared, areas)
                apply_rlimits(pid, launch.rlimits)
                areas.started = True
                return gate

            async def launcher() -> SpawnedProcess:
                assert started is not None
                return SpawnedProcess(started)  # (forked already, by `_set_up`: no checkpoint between)

            async def handed_over() -> None:
                assert started is not None
                handed = setup.areas or await receive_areas(started.channel, SETUP_TIMEOUT_S)
                areas.adopt(*handed, staging)
                areas.started = True
                on_exec()

            try:
                outcome = await run_contained(
                    launch.argv,
                    env=_LAUNCH_ENV,
                    timeout_s=spec.timeout_s,
                    max_output_bytes=spec.max_output_bytes,
                    pass_fds=[*launch.pass_fds, *spec.pass_fds],
                    control=control,
                    kill_rest=cgroup.kill_once if cgroup is not None else _nothing,
                    admit=None if started is not None else admit,
                    confine=None if started is not None else confine,
                    on_output=spec.on_output,
                    launcher=launcher if started is not None else None,
                    started=handed_over,
                )
            finally:
                launch.close_fds()
                if started is not None:
                    started.channel.close()
            collect = launch.prepared.collect if areas.started and areas.write_fd is not None else None
            write_path = areas.write_path if collect is not None else None

            def finish() -> tuple[dict[str, Any], list[StagedChange]]:
                if cgroup is not None:
                    cgroup.remove()
                status = _read_status(launch.status_path)
                if collect is None or write_path is None:
                    return status, []
                if "child-pid" not in status and not (outcome.timed_out or outcome.killed):
                    return status, []  # (the run fails: nothing to collect)
                return status, collect(write_path)

            done: tuple[dict[str, Any], list[StagedChange]] | None = None
            with anyio.CancelScope(shield=True):
                done = await anyio.to_thread.run_sync(finish)
            assert done is not None
            finished = True
        finally:
            if cgroup is not None and not finished:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(cgroup.remove)
        return outcome, *done

    def _plan(self, spec: SandboxSpec) -> _Plan:
        """Check the spec and decide the mounts, before anything is created (misuse fails fast). Remembered
        (`_plan_memo.py`) while the workspace's token, the spec's fields the plan reads and every host path it
        read are unchanged; a proxied run's (its socket is the run's own) is planned each time."""
        _check_spec(spec, self._staging_root)
        if spec.workspace_state is None or spec.network != "none":
            return self._plan_afresh(spec)
        key = (
            spec.workspace_state,
            spec.workspace,
            spec.cwd,
            tuple(spec.env.items()),
            tuple(spec.toolchain_paths),
            tuple(spec.hidden_paths),
            tuple(spec.extra_hidden_abs),
            tuple(spec.writable_mounts),
            tuple(spec.commands.items()),
        )
        # What the plan reads outside the workspace and outside the toolchain facts: the writable mounts' sources
        # and the commands' targets (stamped), and where the hidden host paths and the staging root are (their
        # identities: their entries change all the time, `$SWARM_HOME`'s with every audit commit).
        watched = [*(mount.source for mount in spec.writable_mounts), *spec.commands.values()]
        hidden = [*spec.extra_hidden_abs, self._staging_root]
        return self._plans.get(key, partial(self._plan_afresh, spec), watched=watched, identities_of=hidden)

    def _plan_afresh(self, spec: SandboxSpec) -> _Plan:
        toolchain = plan_toolchain(spec.toolchain_paths, workspace=spec.workspace)
        writable = plan_writable(spec, toolchain)
        plan = _Plan(
            toolchain=toolchain,
            hidden=plan_hidden(spec, toolchain, also=[self._staging_root]),
            cwd=resolve_cwd(spec),
            env=_sandbox_env(spec, toolchain, writable),
            writable=writable,
            commands=check_commands(spec, toolchain),
        )
        if isinstance(spec.network, ProxyNetwork):
            python = find_python(toolchain, self._forwarder_python)
            if python is None:
                raise InvalidSandboxSpec("proxy network needs a Python interpreter among the toolchain paths")
            if not spec.network.socket_path.is_socket():
                raise SandboxSetupFailed(f"the proxy socket {spec.network.socket_path} does not exist")
            plan.proxy_socket = spec.network.socket_path
            plan.env = proxy_env(plan.env)
            plan.forwarder = forwarder_prefix(python, _FORWARDER_SOURCE)
        return plan

    def _build_launch(
        self,
        spec: SandboxSpec,
        plan: _Plan,
        staging: Path,
        cgroup: PidsCgroup | None,
        trampoline: tuple[int, int] | None = None,
    ) -> _Launch:
        """bwrap's options (in a memfd) and the launcher's request or chain, in a staging area laid out. With
        `trampoline` (the read ends of a block pipe and a script pipe: a run prepared ahead), bwrap waits on the
        first once set up, then runs the shell that reads the command from the second (`_trampoline_script`),
        which the launcher gets at `TRAMPOLINE_FD`: dash redirects single-digit descriptors only."""
        empty = staging / "empty"
        prepared = self._prepare(staging, spec, plan.hidden)
        status_path = staging / "status.json"
        with contextlib.ExitStack() as on_error:
            status_fd = os.open(status_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            on_error.callback(os.close, status_fd)
            layout = BwrapLayout(
                workspace=spec.workspace,
                workspace_source=prepared.workspace_source,
                tmp_source=staging / "tmp",
                cwd=plan.cwd,
                toolchain=plan.toolchain,
                hidden=plan.hidden,
                empty_file=empty,
                env=plan.env,
                status_fd=status_fd,
                proxy_socket=plan.proxy_socket,
                forwarder=plan.forwarder,
                writable=plan.writable,
                commands=plan.commands,
            )
            args_fd = os.memfd_create("bwrap-args", os.MFD_CLOEXEC)
            on_error.callback(os.close, args_fd)
            write_all(args_fd, b"".join(os.fsencode(arg) + b"\0" for arg in bwrap_options(layout)))
            os.lseek(args_fd, 0, os.SEEK_SET)
            limits = rlimits(spec.limits, with_nproc=cgroup is None)
            argv = [self._tool("bwrap"), "--args", str(args_fd), "--", *sandboxed_command(layout, spec.argv)]
            request = None
            pass_fds = [args_fd, status_fd]
            if trampoline is not None:
                block_fd = trampoline[0]
                pass_fds += [block_fd, _script_fd_number([args_fd, status_fd, block_fd])]
                argv = [argv[0], "--args", str(args_fd), "--block-fd", str(block_fd), "--"]
                argv += [str(_TRAMPOLINE_SHELL), "-c", f". /proc/self/fd/{pass_fds[-1]}", "sh"]
            if prepared.mounts is not None:
                request = _launch_request(spec, staging, prepared.mounts, cgroup, limits, argv, pass_fds)
            else:
                script = launch_script(spec.limits, sized_after_fill=prepared.fill is not None)
                chain = [self._tool("unshare"), "--user", "--map-root-user", "--mount", "--", self._tool("sh"), "-c"]
                argv = [*chain, script, str(staging), self._tool("mount"), *argv]
            on_error.pop_all()  # success: the fds now belong to the launch
        return _Launch(
            argv=argv,
            pass_fds=[args_fd, status_fd],
            status_path=status_path,
            prepared=prepared,
            rlimits=limits,
            request=request,
            request_path=staging / "launch.json",
        )

    def _probe(self) -> Availability:
        missing = [name for name in self.required_tools if self._tools[name] is None]
        if missing:
            return Availability(ok=False, reason=_INSTALL_HINTS[missing[0]])
        try:
            # The probe's workspace in a staging directory too, named after this process: a body killed during
            # the probe leaves nothing the next body's sweep cannot tell is orphaned (`remove_orphaned_staging`).
            probe = make_staging(self._staging_root)
            try:
                workspace = probe.resolve() / "workspace"
                workspace.mkdir()
                spec = SandboxSpec(
                    workspace=workspace,
                    argv=["true"],
                    env={"PATH": "/usr/bin:/bin"},
                    toolchain_paths=default_toolchain_paths(),
                    hidden_paths=(),
                )
                staging = make_staging(self._staging_root)
                try:
                    _lay_out(staging)
                    return self._probe_once(spec, staging)
                finally:
                    remove_staging(staging)
            finally:
                remove_staging(probe)
        except (OSError, subprocess.SubprocessError, SandboxError) as error:
            return Availability(ok=False, reason=f"{self.name} probe failed: {error}")

    def _probe_once(self, spec: SandboxSpec, staging: Path) -> Availability:
        launch = self._build_launch(spec, self._plan(spec), staging, cgroup=None)
        try:
            if launch.request is not None:
                return self._probe_served(launch)
            return self._probe_chain(spec, staging, launch)
        finally:
            launch.close_fds()

    def _probe_served(self, launch: _Launch) -> Availability:
        assert launch.request is not None and launch.request_path is not None
        started = start_blocking(self._spawner, launch.request, launch.request_path)
        process = SpawnedProcess(started)
        areas = RunAreas()
        try:
            try:
                areas.adopt(*receive_areas_blocking(started.channel, _PROBE_TIMEOUT_S), launch.request_path.parent)
            except SandboxSetupFailed as error:
                return Availability(ok=False, reason=f"{self.name} cannot isolate here: {error}")
            if (unusable := self._unusable(areas.write_path)) is not None:
                process.kill()
                return Availability(ok=False, reason=f"{self.name} cannot isolate here: {unusable}")
            stderr = _read_to_end(started.stderr, _PROBE_TIMEOUT_S)  # (bwrap and its command are gone then)
            said = _read_to_end(started.status, _PROBE_TIMEOUT_S)
        finally:
            process.kill()
            started.channel.close()
            for fd in (started.pidfd, started.stdout, started.stderr, started.status):
                os.close(fd)
            areas.close()
        return self._probe_verdict(launch, int(said) if said else -9, stderr)

    def _probe_chain(self, spec: SandboxSpec, staging: Path, launch: _Launch) -> Availability:
        areas = RunAreas()
        stderr = b""
        try:
            with subprocess.Popen(
                launch.argv,
                env=_LAUNCH_ENV,
                pass_fds=launch.pass_fds,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ) as process:
                try:
                    gate = b""  # a probe of `true` needs no limits
                    if wait_ready_sync(process, _PROBE_TIMEOUT_S):
                        gate = _stage_areas(process.pid, staging, spec, launch.prepared, areas)
                        if (unusable := self._unusable(areas.write_path)) is not None:
                            process.kill()
                            return Availability(ok=False, reason=f"{self.name} cannot isolate here: {unusable}")
                    _, stderr = process.communicate(gate, timeout=_PROBE_TIMEOUT_S)
                except BaseException:
                    process.kill()
                    raise
        finally:
            areas.close()
        return self._probe_verdict(launch, process.returncode, stderr)

    def _probe_verdict(self, launch: _Launch, returncode: int, stderr: bytes) -> Availability:
        status = _read_status(launch.status_path)
        if returncode == 0 and status.get("exit-code") == 0:
            return Availability(ok=True, reason=f"{self.name}: namespaces and mounts work here")
        error_lines = stderr.decode("utf-8", errors="replace").strip().splitlines() or ["no output"]
        return Availability(ok=False, reason=f"{self.name} cannot isolate here: {error_lines[-1]}")


@dataclass(kw_only=True)
class _Ready:
    """A run prepared ahead into bwrap (`BwrapBackend._make_ready`): what the body holds until it is used."""

    plan: _Plan
    """The remembered plan it was made from (held: the key names it by identity)."""
    block: int
    """The block pipe's write end: one byte releases bwrap; -1 once written."""
    script: int
    """The script pipe's write end: the trampoline's command; -1 once written."""
    launch: _Launch | None = None
    areas: tuple[int, int] | None = None

    def close(self) -> None:
        """Close what is still the standby's (it is being discarded)."""
        fds = [self.block, self.script, *(self.areas or ())]
        self.block = self.script = -1
        self.areas = None
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self.launch is not None:
            self.launch.close_fds()
            self.launch = None


#: The trampoline: the host's POSIX shell, by the path it resolves to (`/bin` may be a symlink the sandbox makes).
_TRAMPOLINE_SHELL = Path(os.path.realpath("/bin/sh"))
#: The script pipe is written whole before bwrap is released: it must fit in a pipe's buffer (64 KiB).
_MAX_SCRIPT_BYTES = 32 * 1024


def _script_fd_number(taken: Sequence[int]) -> int:
    """Where the launcher puts the script pipe: a single digit (dash's redirections), none of `taken`."""
    return min(set(range(3, 10)) - set(taken))


def _trampoline_script(argv: Sequence[str]) -> bytes | None:
    """The trampoline's `exec` of the command, each word quoted by `shlex.quote` (any byte but NUL survives single
    quotes; non-UTF-8 names come back through `os.fsencode`); the caller puts the closing of the script's own
    descriptor before it. None where a run prepared ahead must not be used: a command word dash would read as an
    option of `exec`, or too long a script."""
    if not argv or argv[0].startswith("-"):
        return None
    words = " ".join(shlex.quote(word) for word in argv)
    try:
        script = os.fsencode(f"exec {words}\n")
    except UnicodeError:
        return None
    return script if len(script) <= _MAX_SCRIPT_BYTES else None


def _read_to_end(fd: int, timeout_s: float) -> bytes:
    data, deadline = b"", time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0 and select.select([fd], [], [], remaining)[0]:
        if not (chunk := os.read(fd, 65536)):
            return data
        data += chunk
    raise SandboxSetupFailed("the sandbox probe did not end")


def _nothing() -> None:
    pass


def _both(first: Callable[[], None], second: Callable[[], None]) -> None:
    first()
    second()


def _lay_out(staging: Path) -> None:
    """What every run's staging directory holds before its backend stages anything: the empty file bound over
    hidden files, and the areas' mount points."""
    (staging / "empty").touch(mode=0o444)
    for mount_point in ("write", "tmp"):
        (staging / mount_point).mkdir(mode=0o700)


def _launch_request(
    spec: SandboxSpec,
    staging: Path,
    mounts: Sequence[ChildMount],
    cgroup: PidsCgroup | None,
    limits: list[tuple[int, int]],
    argv: list[str],
    pass_fds: list[int],
) -> LaunchRequest:
    """The launcher's steps: the areas (`write`, `tmp`) then the backend's mounts, in the staging directory."""
    write, tmp = area_options(spec.limits, sized_after_fill=False)
    return LaunchRequest(
        argv=argv,
        env=dict(_LAUNCH_ENV),
        cwd=str(staging),
        mounts=(
            ChildMount(source="swarm-write", target="write", fstype="tmpfs", options=write),
            ChildMount(source="swarm-tmp", target="tmp", fstype="tmpfs", options=tmp),
            *mounts,
        ),
        areas=("write", "tmp"),
        cgroup_join=str(cgroup.join_file) if cgroup is not None else None,
        rlimits=limits,
        uid=os.geteuid(),
        gid=os.getegid(),
        pass_fds=[*pass_fds, *spec.pass_fds],
    )


def _stage_areas(pid: int, staging: Path, spec: SandboxSpec, prepared: Prepared, areas: RunAreas) -> bytes:
    """Open the waiting launcher's areas and let the backend fill its own; the gate line that goes on."""
    areas.open(pid, staging)
    if prepared.fill is None:
        return b"go\n"
    prepared.fill(areas.write_path)
    return areas.gate_after_fill(spec.limits)


def _create_cgroup(spec: SandboxSpec, with_forwarder: bool, *, sweep: bool) -> PidsCgroup | None:
    parent = pids_cgroup_parent()
    if parent is None:
        return None
    if sweep:
        remove_orphaned_cgroups(parent)
    overhead = SANDBOX_OVERHEAD_PROCESSES + (1 if with_forwarder else 0)
    try:
        return create_pids_cgroup(parent, spec.limits.max_processes, overhead=overhead)
    except OSError:
        return None  # e.g. a read-only cgroupfs in a container: RLIMIT_NPROC is the fallback


def _check_spec(spec: SandboxSpec, staging_root: Path) -> None:
    workspace = spec.workspace
    if not workspace.is_absolute() or workspace.resolve() != workspace or not workspace.is_dir():
        raise InvalidSandboxSpec(f"workspace must be an existing absolute resolved directory: {workspace}")
    if isinstance(spec.argv, str) or not spec.argv or not all(spec.argv) or any("\0" in arg for arg in spec.argv):
        raise InvalidSandboxSpec("argv must be a non-empty sequence of non-empty strings without NUL")
    for name, value in spec.env.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise InvalidSandboxSpec(f"invalid environment variable {name!r}: no '=' in names, no NUL anywhere")
    if any(type(fd) is not int or fd < 3 for fd in spec.pass_fds):  # (a bool is an int too)
        raise InvalidSandboxSpec(f"pass_fds must be open descriptors above 2 (not stdio): {list(spec.pass_fds)!r}")
    if spec.timeout_s <= 0 or spec.max_output_bytes < 0:
        raise InvalidSandboxSpec("timeout_s must be positive and max_output_bytes not negative")
    limits = spec.limits
    quotas = (limits.max_write_bytes, limits.max_write_inodes, limits.max_tmp_bytes, limits.max_tmp_inodes)
    if min(limits.cpu_seconds, limits.memory_bytes, limits.max_processes, limits.max_file_bytes, *quotas) <= 0:
        raise InvalidSandboxSpec("resource limits must be positive")
    if staging_root == workspace or workspace in staging_root.parents:
        raise InvalidSandboxSpec(f"the staging root {staging_root} must be outside the workspace")


def _sandbox_env(
    spec: SandboxSpec, toolchain: Sequence[ToolchainMount], writable: Sequence[WritableMount]
) -> dict[str, str]:
    """The command's environment: `spec.env`, with a `PATH` that names only directories the command can see.

    A caller passing the host's `PATH` would otherwise tell the command about home-directory toolchains it
    cannot reach; an empty or relative entry would make it run programs from its working directory. The
    sandbox's own directories (the command links, the writable mounts, e.g. a virtualenv's `bin`) count as
    seen whether or not they exist yet.
    """
    env = dict(spec.env)
    if "PATH" in env:
        own = [m.target for m in writable] + ([SANDBOX_BIN_DIR] if spec.commands else [])
        env["PATH"] = visible_path(env["PATH"], toolchain, workspace=spec.workspace, also=own) or minimal_path(
            [m.path for m in toolchain]
        )
    return env


def _outside_mounts(
    changes: list[StagedChange], workspace: Path, writable: Sequence[WritableMount]
) -> list[StagedChange]:
    """The staged changes without the writable mounts' mount points (bwrap creates a missing one in the staged
    workspace): what the command wrote there went to the mount's source, not to the workspace."""
    mounted = [m.target.relative_to(workspace).as_posix() for m in writable if workspace in m.target.parents]
    if not mounted:
        return changes
    return [c for c in changes if not any(c.path == m or c.path.startswith(m + "/") for m in mounted)]


def _read_status(path: Path) -> dict[str, Any]:
    """Merge bwrap's JSON status documents (`child-pid` at start, `exit-code` at the end)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    decoder = json.JSONDecoder()
    merged: dict[str, Any] = {}
    index = 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        try:
            document, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            break  # a status cut short by a kill: what came before still counts
        if isinstance(document, dict):
            merged.update(document)  # pyright: ignore[reportUnknownArgumentType]
    return merged


def _result(
    outcome: ProcessOutcome, status: dict[str, Any], *, quotas: tuple[Quota, ...], staged_bytes: int
) -> RunResult:
    exit_code: int | None = None
    if not (outcome.timed_out or outcome.killed):
        reported = status.get("exit-code")
        if isinstance(reported, int):
            exit_code = reported
        elif outcome.returncode is not None:
            exit_code = 128 - outcome.returncode if outcome.returncode < 0 else outcome.returncode
    return RunResult(
        exit_code=exit_code,
        stdout=outcome.stdout.decode("utf-8", errors="replace"),
        stderr=outcome.stderr.decode("utf-8", errors="replace"),
        stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated,
        stdout_bytes=outcome.stdout_bytes,
        stderr_bytes=outcome.stderr_bytes,
        timed_out=outcome.timed_out,
        killed=outcome.killed,
        duration_s=outcome.duration_s,
        quotas_exceeded=quotas,
        staged_bytes=staged_bytes,
    )
