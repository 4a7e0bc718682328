# pyright: strict
"""The launcher forked ahead of the next run (`sandbox/_standby.py`): used once, by one run; discarded when what
it was made for changes; never holding what the sandbox hides; cleaned up when unused, when the backend closes and
when the body dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from sandbox import BwrapOverlaySandbox, wait_discarded
from sandbox._bwrap_backend import BwrapBackend
from sandbox._staged import StagedDirRun
from sandbox._standby import Standby

from ._support import ended as _ended
from ._support import sh

pytestmark = [pytest.mark.anyio, pytest.mark.bwrap]


def _ready(backend: BwrapBackend) -> Standby:
    standby = backend.standby.wait_ready(10)
    assert standby is not None, "no launcher was made ahead"
    return standby


def _staging_of(staged: StagedDirRun) -> Path | None:
    return staged._staging  # pyright: ignore[reportPrivateUsage]


async def _until(condition: Callable[[], bool], timeout_s: float = 10) -> bool:
    with anyio.move_on_after(timeout_s):
        while not condition():
            await anyio.sleep(0.02)
    return condition()


def _in_cgroup(standby: Standby) -> bool:
    assert standby.cgroup is not None
    return standby.started.pid in standby.cgroup.pids()


async def test_each_run_after_the_first_takes_the_launcher_made_ahead_once(overlay: BwrapBackend, ws: Path) -> None:
    async with await overlay.run(sh(ws, "true")) as first:
        assert first.result.exit_code == 0, first.result.stderr
    ahead = _ready(overlay)
    assert ahead.staging != _staging_of(first)
    if ahead.cgroup is not None:  # (as root: a fresh cgroup, the launcher already in it before its run)
        assert _in_cgroup(ahead)
    async with await overlay.run(sh(ws, "echo second")) as second:
        assert second.result.stdout == "second\n"
        assert _staging_of(second) == ahead.staging
    assert _ended(ahead.started.pid)  # (it became bwrap, then ended with its command)
    following = _ready(overlay)
    assert following.staging != ahead.staging and following.started.pid != ahead.started.pid
    if following.cgroup is not None and ahead.cgroup is not None:
        assert following.cgroup.path != ahead.cgroup.path and not ahead.cgroup.path.exists()
    async with await overlay.run(sh(ws, "echo third")) as third:
        assert third.result.stdout == "third\n"
        assert _staging_of(third) == following.staging
    assert wait_discarded()
    assert not ahead.staging.exists() and not following.staging.exists()
    assert overlay.standby.discarded == 0


async def test_a_launcher_taken_once_is_not_in_the_slot_for_another_run(overlay: BwrapBackend, ws: Path) -> None:
    async with await overlay.run(sh(ws, "true")):
        pass
    ahead = _ready(overlay)
    assert overlay.standby.take([ahead.key], ahead.server_pid) is ahead
    assert overlay.standby.take([ahead.key], ahead.server_pid) is None
    overlay.standby.discard_soon(ahead)
    assert await _until(lambda: not ahead.staging.exists())
    assert _ended(ahead.started.pid)
    async with await overlay.run(sh(ws, "echo ok")) as again:  # (the old path: nothing made ahead)
        assert again.result.stdout == "ok\n"
        assert _staging_of(again) != ahead.staging


async def test_a_launcher_made_ahead_is_discarded_when_the_hidden_paths_change(overlay: BwrapBackend, ws: Path) -> None:
    async with await overlay.run(sh(ws, "true")):
        pass
    ahead = _ready(overlay)
    (ws / "new.key").write_text("SECRET-new-key\n")
    spec = sh(ws, "cat new.key .env; echo end", hidden_paths=[".env", "new.key"])
    async with await overlay.run(spec) as run:
        assert run.result.stdout == "end\n", run.result.stdout  # both hidden: bound over with empty files
        assert _staging_of(run) != ahead.staging
    assert overlay.standby.discarded == 1
    assert _ended(ahead.started.pid)
    assert await _until(lambda: not ahead.staging.exists())
    if ahead.cgroup is not None:
        assert await _until(lambda: not ahead.cgroup.path.exists())  # pyright: ignore[reportOptionalMemberAccess]
    replaced = _ready(overlay)
    assert replaced.key != ahead.key


async def test_a_secret_that_appears_under_a_hidden_name_discards_the_launcher_made_ahead(
    overlay: BwrapBackend, ws: Path
) -> None:
    """The same names to hide, but one of them now exists: what bwrap binds over changed, so the launcher made
    before it is not used, and the secret is hidden in the run."""
    hidden = [".env", "late.pem"]
    async with await overlay.run(sh(ws, "true", hidden_paths=hidden)):
        pass
    ahead = _ready(overlay)
    (ws / "late.pem").write_text("SECRET-late\n")
    async with await overlay.run(sh(ws, "cat late.pem; echo end", hidden_paths=hidden)) as run:
        assert run.result.stdout == "end\n"
        assert _staging_of(run) != ahead.staging
    assert overlay.standby.discarded == 1
    assert await _until(lambda: not ahead.staging.exists())


async def test_the_launcher_made_ahead_is_removed_when_the_backend_closes(overlay: BwrapBackend, ws: Path) -> None:
    async with await overlay.run(sh(ws, "true")):
        pass
    ahead = _ready(overlay)
    overlay.close()
    assert _ended(ahead.started.pid)
    assert not ahead.staging.exists()
    if ahead.cgroup is not None:
        assert not ahead.cgroup.path.exists()
    assert overlay.standby.wait_ready(1) is None


_BODY = textwrap.dedent(
    """
    import anyio, json, sys, time
    from pathlib import Path
    from sandbox import BwrapOverlaySandbox, SandboxSpec, default_toolchain_paths

    async def main() -> None:
        backend = BwrapOverlaySandbox(staging_root=Path(sys.argv[1]))
        spec = SandboxSpec(workspace=Path(sys.argv[2]), argv=["true"], env={"PATH": "/usr/bin:/bin"},
                           toolchain_paths=default_toolchain_paths(), hidden_paths=[".env"], timeout_s=20)
        async with await backend.run(spec):
            pass
        ahead = backend.standby.wait_ready(10)
        print(json.dumps({"pid": ahead.started.pid, "staging": str(ahead.staging), "server": ahead.server_pid,
                          "cgroup": str(ahead.cgroup.path) if ahead.cgroup else None}), flush=True)
        time.sleep(60)

    anyio.run(main)
    """
)


@pytest.mark.parametrize("server_too", [False, True], ids=["body", "body-and-server"])
async def test_a_launcher_made_ahead_is_cleaned_up_when_the_body_dies(
    ws: Path, staging_root: Path, overlay: BwrapBackend, server_too: bool
) -> None:
    """The body SIGKILLed with a launcher waiting: the launcher server kills it and removes its cgroup; the next
    body's first run removes its staging directory. The server SIGKILLed first as well: the launcher dies with it
    (PDEATHSIG), and the next body's first run removes its cgroup too."""
    import json

    body = subprocess.Popen(
        [sys.executable, "-c", _BODY, str(staging_root), str(ws)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert body.stdout is not None
        with anyio.fail_after(30):
            line = await anyio.to_thread.run_sync(body.stdout.readline)
        made = json.loads(line)
        if server_too:
            os.kill(made["server"], signal.SIGKILL)
    finally:
        body.send_signal(signal.SIGKILL)
        body.wait()
        if body.stdout is not None:
            body.stdout.close()
    assert _ended(made["pid"])
    if made["cgroup"] is not None and not server_too:
        assert await _until(lambda: not Path(made["cgroup"]).exists())
    assert Path(made["staging"]).exists()
    async with await overlay.run(sh(ws, "true")):  # (this backend's first run: the sweep)
        pass
    assert not Path(made["staging"]).exists()
    if made["cgroup"] is not None:
        assert not Path(made["cgroup"]).exists()
    assert isinstance(overlay, BwrapOverlaySandbox)
