# pyright: strict
"""Running the sandbox's process tree: bounded output capture, timeout, kill switch and cancellation."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.abc

from ._launch import SpawnedProcess
from .exceptions import SandboxSetupFailed

# After the outer process exits, the pipes close as soon as the pid namespace is gone; this only bounds a
# pathological case (a pipe end held open elsewhere) so that a run can never hang on its output.
_DRAIN_GRACE_S = 1.0
_REAP_TIMEOUT_S = 1.0
#: What the launcher prints on stdout once its mounts are up and it waits at its gate (before any command).
READY_LINE = b"swarm-ready\n"
#: Mounting a few filesystems takes milliseconds; a launcher that is not ready by then never will be.
SETUP_TIMEOUT_S = 20.0


@dataclass(kw_only=True)
class _Capture:
    limit: int
    on_output: Callable[[int], object] | None = None
    chunks: list[bytes] = field(default_factory=list[bytes])
    size: int = 0
    seen: int = 0
    """Bytes printed, the dropped ones included."""
    truncated: bool = False
    done: anyio.Event = field(default_factory=anyio.Event)

    def add(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        if self.on_output is not None:
            self.on_output(len(chunk))
        room = self.limit - self.size
        if len(chunk) > room:
            self.truncated = True
            chunk = chunk[:room] if room > 0 else b""
        if chunk:
            self.chunks.append(chunk)
            self.size += len(chunk)

    def data(self) -> bytes:
        return b"".join(self.chunks)


@dataclass(kw_only=True, frozen=True)
class ProcessOutcome:
    """How the outer process ended and what the tree printed."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    killed: bool
    duration_s: float
    stdout_bytes: int = 0
    """Printed, the dropped part included."""
    stderr_bytes: int = 0


class RunControl:
    """A handle on one run, so that `Sandbox.kill_all()` can stop it from outside, even before it starts."""

    def __init__(self) -> None:
        self.killed = False
        self.finished = False
        self._kill_tree: Callable[[], None] | None = None

    def attach(self, kill_tree: Callable[[], None]) -> None:
        """Called once the tree exists; a kill that came earlier takes effect now."""
        self._kill_tree = kill_tree
        if self.killed:
            kill_tree()

    def kill(self) -> None:
        """Stop the run (a no-op once the command has ended by itself: it was not killed)."""
        if not self.finished:
            self.killed = True
            self.kill_tree()

    def kill_tree(self) -> None:
        if self._kill_tree is not None:
            self._kill_tree()


def kill_process(process: anyio.abc.Process) -> None:
    """SIGKILL the outer process if it still runs (never a pid that may have been reused)."""
    if isinstance(process, SpawnedProcess):
        process.kill()  # (through its pidfd)
    elif process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)


async def run_contained(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout_s: float,
    max_output_bytes: int,
    pass_fds: Sequence[int],
    control: RunControl,
    kill_rest: Callable[[], None],
    admit: Callable[[int], Awaitable[bytes]] | None,
    confine: Callable[[int], Awaitable[None]] | None = None,
    on_output: Callable[[int], object] | None = None,
    launcher: Callable[[], Awaitable[anyio.abc.Process]] | None = None,
    started: Callable[[], Awaitable[None]] | None = None,
) -> ProcessOutcome:
    """Run `argv` (the launcher chain ending in bwrap) to completion, a timeout, a kill, or cancellation.

    With `launcher` (`_launch.py`: `argv` is then unused), the launcher sets itself up and confines itself
    before it execs bwrap: there is no ready line and no gate (`admit` and `confine` are None), and `started()`
    waits for the exec and takes what the launcher handed over (its failure is the run's). Otherwise:

    The launcher sets up its mounts, prints `READY_LINE` and waits at its gate (one line on stdin) until
    `admit(pid)` has prepared and confined it (staging areas, cgroup, rlimits) and returned the gate line;
    if `admit` fails, the gate is never opened and the launcher exits without running anything. `confine(pid)`
    (the move into the run's cgroup, which takes milliseconds) starts as soon as the launcher is spawned, while
    it sets up its mounts; the gate waits for it too, and its failure counts as `admit`'s. A launcher
    that ends before it is ready is left to the caller, whose status check reports why (its stderr).
    Killing the tree is SIGKILL to the outer process (the pid namespace dies with it) plus `kill_rest`
    (the run's cgroup), wired into `control` before anything is awaited so that no kill is lost.
    `on_output` is told the size of each chunk of output as it arrives (`SandboxSpec.on_output`).
    """
    started_at = time.monotonic()
    try:
        if launcher is not None:
            process = await launcher()
        else:
            process = await anyio.open_process(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(env),
                start_new_session=True,
                pass_fds=list(pass_fds),
            )
    except OSError as error:
        raise SandboxSetupFailed("could not start the sandbox launcher", detail=str(error)) from error

    def kill_tree() -> None:
        kill_process(process)
        kill_rest()

    stdout = _Capture(limit=max_output_bytes, on_output=on_output)
    stderr = _Capture(limit=max_output_bytes, on_output=on_output)
    timed_out = False
    finished = False
    duration_s = 0.0
    try:
        # Inside the try: a cancellation or an error from here on kills and reaps the tree, gate open or not.
        control.attach(kill_tree)
        if admit is None:
            if started is not None:
                try:
                    await started()
                except SandboxSetupFailed:
                    if not control.killed:
                        raise
                    # Killed while it set up (before the exec, or with nothing handed over): nothing of the
                    # command ran; the run is reported killed, as when the copy backend's gate never opened.
        else:
            ready, confine_error = await _ready_and_confined(process, confine)
            if ready:
                await _open_gate(process, admit, control, confine_error)
        async with anyio.create_task_group() as group:
            assert process.stdout is not None and process.stderr is not None
            group.start_soon(_drain, process.stdout, stdout)
            group.start_soon(_drain, process.stderr, stderr)
            with anyio.move_on_after(timeout_s) as deadline:
                await process.wait()
            if deadline.cancelled_caught:
                timed_out = True
                control.kill_tree()
                await process.wait()
            control.finished = True
            duration_s = time.monotonic() - started_at
            # Whatever the command left behind in its cgroup goes now, so its pipe ends close.
            control.kill_tree()
            with anyio.move_on_after(_DRAIN_GRACE_S):
                await stdout.done.wait()
                await stderr.done.wait()
            group.cancel_scope.cancel()
        finished = True
    finally:
        with anyio.CancelScope(shield=True):
            if not finished:
                control.kill_tree()
                with anyio.move_on_after(_REAP_TIMEOUT_S):
                    await process.wait()
            with anyio.move_on_after(_REAP_TIMEOUT_S):
                await process.aclose()
    return ProcessOutcome(
        returncode=process.returncode,
        stdout=stdout.data(),
        stderr=stderr.data(),
        stdout_truncated=stdout.truncated,
        stderr_truncated=stderr.truncated,
        timed_out=timed_out,
        killed=control.killed,
        duration_s=duration_s,
        stdout_bytes=stdout.seen,
        stderr_bytes=stderr.seen,
    )


async def _wait_ready(process: anyio.abc.Process) -> bool:
    """Read the launcher's ready line; False when it ended (or was killed) before getting there."""
    assert process.stdout is not None
    line = b""
    with anyio.move_on_after(SETUP_TIMEOUT_S):
        # Nothing else can be on stdout yet (no command runs before the gate): read exactly up to the line.
        while len(line) < len(READY_LINE) and not line.endswith(b"\n"):
            try:
                line += await process.stdout.receive(len(READY_LINE) - len(line))
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                return False
    if line != READY_LINE:
        raise SandboxSetupFailed("the sandbox launcher did not get ready", detail=line.decode(errors="replace"))
    return True


async def _ready_and_confined(
    process: anyio.abc.Process, confine: Callable[[int], Awaitable[None]] | None
) -> tuple[bool, Exception | None]:
    """`_wait_ready`, with `confine(pid)` running meanwhile; both done on return (the error `confine` raised)."""
    if confine is None:
        return await _wait_ready(process), None
    confine_error: OSError | None = None
    setup_error: SandboxSetupFailed | None = None
    ready = False

    async def confining() -> None:
        nonlocal confine_error
        try:
            await confine(process.pid)
        except OSError as error:  # handed to `_open_gate`, which fails the run (or finds the launcher gone)
            confine_error = error

    async with anyio.create_task_group() as group:
        group.start_soon(confining)
        try:
            ready = await _wait_ready(process)
        except SandboxSetupFailed as error:
            ready, setup_error = False, error
    if setup_error is not None:
        raise setup_error
    return ready, confine_error


async def _open_gate(
    process: anyio.abc.Process,
    admit: Callable[[int], Awaitable[bytes]],
    control: RunControl,
    confine_error: Exception | None = None,
) -> None:
    """Prepare and confine the waiting launcher, then let it go on. A launcher that died already (or was
    killed meanwhile) is left to the caller."""
    assert process.stdin is not None
    try:
        if confine_error is not None:
            raise confine_error
        gate = await admit(process.pid)
    except ProcessLookupError:
        return  # it is gone: nothing of it can run unconfined
    except Exception as error:  # OSError, or a limit the kernel cannot take (ValueError, OverflowError)
        if control.killed:
            return  # killed while being prepared: the run reports that, not a setup failure
        # The caller's `finally` kills and reaps it: the gate was never opened, so nothing ran.
        raise SandboxSetupFailed("could not prepare or confine the sandbox launcher", detail=str(error)) from error
    if control.killed:
        return
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await process.stdin.send(gate)
        await process.stdin.aclose()


async def _drain(stream: anyio.abc.ByteReceiveStream, capture: _Capture) -> None:
    # Keep reading past the cap: a command blocked on a full pipe would otherwise never finish.
    try:
        async for chunk in stream:
            capture.add(chunk)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass
    finally:
        capture.done.set()
