# pyright: strict
"""A run prepared ahead into bwrap (lever B of #22): bwrap set up with every option of the run and waiting on its
block pipe; the command goes to a trampoline. Used once; discarded on any change of what it was made from (the
workspace's token first: the overlay's lower layer is the live workspace); the command's exit status and
signals are its own; argv of any bytes reach it as they are; cleaned up when unused, with the backend and with
the body."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from sandbox import ResourceLimits, RunResult, wait_discarded
from sandbox._bwrap_backend import BwrapBackend
from sandbox._staged import StagedDirRun
from sandbox._standby import Standby

from ._support import ended as _ended
from ._support import make_spec

pytestmark = [pytest.mark.anyio, pytest.mark.bwrap]


def _spec(ws: Path, argv: Sequence[str], **overrides: Any) -> Any:
    return make_spec(ws, argv, **{"workspace_state": 1, **overrides})


def _prepared(backend: BwrapBackend) -> Standby:
    standby = backend.standby.wait_ready(10)
    assert standby is not None and standby.prepared is not None, "no run was prepared ahead"
    return standby


async def _run(backend: BwrapBackend, spec: Any) -> tuple[RunResult, Path | None]:
    # What the last run asked its slots to make is made first: on a loaded machine a launcher still being made
    # when the next run arrives is not taken, and the slot, busy, makes nothing else for that run.
    backend.standby.wait_ready(10)
    backend.spare.wait_ready(10)
    staged = await backend.run(spec)
    async with staged:
        assert isinstance(staged, StagedDirRun)
        return staged.result, staged._staging  # pyright: ignore[reportPrivateUsage]


async def _served(backend: BwrapBackend, spec: Any) -> RunResult:
    """Run `spec` on the run prepared ahead (asserting it was the one used)."""
    ready = _prepared(backend)
    result, staging = await _run(backend, spec)
    assert staging == ready.staging, "the run prepared ahead was not used"
    assert _ended(ready.started.pid)
    return result


async def test_a_run_prepared_ahead_serves_the_next_command_once(overlay: BwrapBackend, ws: Path) -> None:
    first, _ = await _run(overlay, _spec(ws, ["true"]))
    assert first.exit_code == 0, first.stderr
    ready = _prepared(overlay)
    second = await _served(overlay, _spec(ws, ["/bin/sh", "-c", "echo second; cat .env; ls /proc/self/fd"]))
    assert second.exit_code == 0, second.stderr
    lines = second.stdout.splitlines()
    assert lines[0] == "second" and "hunter2" not in second.stdout
    assert sorted(lines[1:]) == ["0", "1", "2", "3"], "stdio and ls's own: nothing of the trampoline's"
    following = _prepared(overlay)
    assert following.staging != ready.staging and following.started.pid != ready.started.pid
    assert wait_discarded()
    assert not ready.staging.exists()


async def test_the_commands_exit_status_and_signals_are_its_own(overlay: BwrapBackend, ws: Path) -> None:
    for script, wanted in [("exit 0", 0), ("exit 1", 1), ("exit 2", 2), ("kill -9 $$", 137), ("kill -TERM $$", 143)]:
        await _run(overlay, _spec(ws, ["true"]))  # (prepares the next)
        served = await _served(overlay, _spec(ws, ["/bin/sh", "-c", script]))
        fresh, _ = await _run(overlay, _spec(ws, ["/bin/sh", "-c", script], workspace_state=None))
        assert served.exit_code == fresh.exit_code == wanted, (script, served, fresh)


async def test_argv_of_any_bytes_reaches_the_command_as_it_is(overlay: BwrapBackend, ws: Path) -> None:
    words = ["a\nb", "it's", '"q"', "A=B", "-n", "--", "$HOME", "`id`", "*", os.fsdecode(b"\xff\xfe-raw"), " "]
    argv = ["/usr/bin/printf", "[%s]\\n", *words]
    await _run(overlay, _spec(ws, ["true"]))
    served = await _served(overlay, _spec(ws, argv))
    fresh, _ = await _run(overlay, _spec(ws, argv, workspace_state=None))
    assert served.exit_code == 0, served.stderr
    assert served.stdout == fresh.stdout
    assert served.stdout.count("[") == len(words)
    await _run(overlay, _spec(ws, ["true"]))  # (prepares the next)
    # The one difference the trampoline makes: a command that cannot be exec'd fails as the shell's `exec` does
    # (127, its message), where bwrap's own exec fails with 1 (README, #22).
    missing = await _served(overlay, _spec(ws, ["/nonexistent/cmd"]))
    assert missing.exit_code == 127 and "not found" in missing.stderr
    fresh, _ = await _run(overlay, _spec(ws, ["/nonexistent/cmd"], workspace_state=None))
    assert fresh.exit_code == 1 and "execvp" in fresh.stderr
    await _run(overlay, _spec(ws, ["true"]))  # (prepares the next)
    # A command word dash would read as an option of `exec`: the old path, never the trampoline.
    ready = _prepared(overlay)
    dashed, staging = await _run(overlay, _spec(ws, ["-x"]))
    assert staging != ready.staging and dashed.exit_code != 0
    assert _ended(ready.started.pid)


async def test_a_run_prepared_ahead_is_discarded_on_each_kind_of_change(overlay: BwrapBackend, ws: Path) -> None:
    base = _spec(ws, ["true"])
    changes: list[dict[str, Any]] = [
        {"workspace_state": 2},
        {"env": {**base.env, "EXTRA": "1"}},
        {"cwd": "src"},
        {"hidden_paths": [".env", "a.txt"]},
        {"limits": replace(ResourceLimits(), max_processes=77)},
        {"workspace_state": None},
    ]
    await _run(overlay, base)
    for change in changes:
        ready = _prepared(overlay)
        result, staging = await _run(overlay, replace(base, argv=["/bin/sh", "-c", "cat a.txt; pwd"], **change))
        assert staging != ready.staging, f"used across a change: {change}"
        assert _ended(ready.started.pid), change
        if "hidden_paths" in change:
            assert "alpha" not in result.stdout
        await _run(overlay, base)  # (prepares the next with the base)
    assert wait_discarded()
    assert overlay.standby.discarded >= len(changes)


async def test_a_run_prepared_ahead_is_removed_when_the_backend_closes(overlay: BwrapBackend, ws: Path) -> None:
    await _run(overlay, _spec(ws, ["true"]))
    ready = _prepared(overlay)
    overlay.close()
    assert _ended(ready.started.pid)
    assert not ready.staging.exists()
    if ready.cgroup is not None:
        assert not ready.cgroup.path.exists()


_BODY = textwrap.dedent(
    """
    import anyio, json, sys, time
    from pathlib import Path
    from sandbox import BwrapOverlaySandbox, SandboxSpec, default_toolchain_paths

    async def main() -> None:
        backend = BwrapOverlaySandbox(staging_root=Path(sys.argv[1]))
        spec = SandboxSpec(workspace=Path(sys.argv[2]), argv=["true"], env={"PATH": "/usr/bin:/bin"},
                           toolchain_paths=default_toolchain_paths(), hidden_paths=[".env"], timeout_s=20,
                           workspace_state=1)
        async with await backend.run(spec):
            pass
        ahead = backend.standby.wait_ready(10)
        assert ahead.prepared is not None
        print(json.dumps({"pid": ahead.started.pid, "staging": str(ahead.staging),
                          "cgroup": str(ahead.cgroup.path) if ahead.cgroup else None}), flush=True)
        time.sleep(60)

    anyio.run(main)
    """
)


async def test_a_run_prepared_ahead_is_cleaned_up_when_the_body_dies(
    ws: Path, staging_root: Path, overlay: BwrapBackend
) -> None:
    """The body SIGKILLed with a prepared bwrap waiting: the launcher server kills it (its child, bwrap's init,
    dies with it) and removes its cgroup; the next body's first run removes its staging directory."""
    body = subprocess.Popen(
        [sys.executable, "-c", _BODY, str(staging_root), str(ws)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert body.stdout is not None
        with anyio.fail_after(30):
            line = await anyio.to_thread.run_sync(body.stdout.readline)
        made = json.loads(line)
    finally:
        body.send_signal(signal.SIGKILL)
        body.wait()
        if body.stdout is not None:
            body.stdout.close()
    assert _ended(made["pid"])
    await _run(overlay, _spec(ws, ["true"]))  # (this backend's first run: the sweep)
    assert not Path(made["staging"]).exists()
    if made["cgroup"] is not None:
        assert not Path(made["cgroup"]).exists()


async def test_a_run_the_prepared_one_does_not_fit_takes_the_spare_launcher(overlay: BwrapBackend, ws: Path) -> None:
    """After a change to the workspace (a new token) the prepared run is discarded; the launcher kept beside it
    serves the run instead of the server's fork, with the run's own request (the file written since is seen)."""
    await _run(overlay, _spec(ws, ["true"]))
    ready = _prepared(overlay)
    spare = overlay.spare.wait_ready(10)
    assert spare is not None and spare.prepared is None
    (ws / "new.txt").write_text("written since\n")
    result, staging = await _run(overlay, _spec(ws, ["cat", "new.txt"], workspace_state=2))
    assert result.stdout == "written since\n" and staging == spare.staging
    assert _ended(ready.started.pid) and _ended(spare.started.pid)
    overlay.close()
    assert wait_discarded()
    assert not ready.staging.exists() and not spare.staging.exists()
