# pyright: strict
"""Review 17 of the staging area removed after the reply (`StagedRun.discard_soon`, `sandbox.wait_discarded`): what a
body killed meanwhile leaves, and a discarder that cannot start its thread. Real bwrap, real processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sandbox import BwrapOverlaySandbox, StagedRun, scripted_result, wait_discarded
from sandbox._staged import StagedDirRun
from tests.sandbox._support import make_spec, require_isolation

pytestmark = pytest.mark.anyio

_MAKE = (
    "import sys\nfrom pathlib import Path\nfrom sandbox._staged import make_staging\n"
    "p = make_staging(Path(sys.argv[1])); (p / 'bwrap.args').write_text('--setenv X y'); print(p, flush=True)\n"
    "sys.stdin.read()\n"
)


def _staging_of_a_process(root: Path) -> tuple[subprocess.Popen[str], Path]:
    """A process that made a staging area under `root` (as a body's run does) and waits on its stdin."""
    process = subprocess.Popen(
        [sys.executable, "-c", _MAKE, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


async def test_a_killed_bodys_staging_area_is_removed_by_the_next_bodys_first_run(tmp_path: Path) -> None:
    """Was a hole (low), fixed. Reproduce: a body SIGKILLed after a run's reply but before the discarder's thread
    removed its staging directory (now a wider window than before: the removal is off the reply's path), or during a
    run, left `swarm-sandbox-XXXX` under the staging root (default /tmp) for good, with the command's argv and its
    environment (`bwrap.args`, `launch.json`): nothing ever removed it, since the names said nothing of their maker.
    Fix: a staging directory is named after its maker (`NS.PID.START`, as the run cgroups are), and a backend's first
    run removes those whose maker is gone (`remove_orphaned_staging`); a living body's and an untagged one are left."""
    root = tmp_path / "staging"
    root.mkdir()
    ws = tmp_path / "ws"
    ws.mkdir()
    dead, dead_area = _staging_of_a_process(root)
    dead.kill()
    dead.wait(timeout=10)
    living, living_area = _staging_of_a_process(root)
    untagged = root / "swarm-sandbox-abc123"  # (a name an older body made: whose it is, nobody can tell)
    untagged.mkdir()
    try:
        sandbox = require_isolation(BwrapOverlaySandbox(staging_root=root))
        run: StagedRun = await sandbox.run(make_spec(ws.resolve(), ["/bin/true"]))
        await run.aclose()
        assert not dead_area.exists(), "a dead body's staging area was left"
        assert living_area.exists() and untagged.exists()
    finally:
        living.communicate("", timeout=10)


def test_a_discard_without_a_thread_to_be_had_removes_the_area_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was a hole (low), fixed. Reproduce: `discard_soon` when no thread can be started (`RuntimeError: can't start
    new thread`: the process at its thread limit, or the interpreter exiting): the discarder had marked itself
    working before the start failed, so it stayed "working" with no thread: every later staging area queued and never
    removed, `wait_discarded` (Body.close) waited its 10 s each time, and the error escaped run_command's `finally`
    (the reply of a command already applied lost to an internal error). Fix: the removal is done there and then."""

    def no_thread(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    first, second = tmp_path / "first", tmp_path / "second"
    for area in (first, second):
        area.mkdir()
        (area / "bwrap.args").write_text("--setenv X y")
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    StagedDirRun(result=scripted_result(), changes=[], staging=first).discard_soon()
    assert not first.exists() and wait_discarded(timeout_s=1.0)
    monkeypatch.undo()
    StagedDirRun(result=scripted_result(), changes=[], staging=second).discard_soon()
    assert wait_discarded(timeout_s=5.0) and not second.exists()
