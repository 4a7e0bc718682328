"""A closed body leaves nothing in its staging root: the runs it held for an approval, the launcher it made ahead
(its staging area, its cgroup) and its launcher server are gone with it. Real body, real bwrap, real cgroups."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from body_mcp import build_server
from sandbox import BwrapOverlaySandbox
from sandbox._limits import owner_tag, pids_cgroup_parent

from ..conftest import make_body, require_binary
from .helpers import call

pytestmark = pytest.mark.anyio


def _cgroups_of_this_process() -> set[str]:
    parent, tag = pids_cgroup_parent(), owner_tag()
    return {p.name for p in parent.glob(f"swarm-sandbox-{tag}-*")} if parent is not None and tag else set()


async def test_a_closed_body_leaves_no_held_run_no_launcher_made_ahead_and_no_server(
    workspace: Path, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Was a leak (low), fixed. Reproduce: a command needing an approval (five files) is held; close the body: its
    staging area stayed under the staging root (default /tmp) as long as the process lived, and after it for
    good unless another body ran a command there (about five `swarm-sandbox-*` a test session). Fix: `Body.close`
    discards the held runs and closes the sandbox it selected (the launcher made ahead and the server)."""
    require_binary("bwrap", "bubblewrap")
    root = tmp_path_factory.mktemp("staging")
    cgroups_before = _cgroups_of_this_process()
    body = make_body(workspace, home, {"sandbox": {"staging_dir": str(root)}})
    try:
        async with Client(build_server(body)) as client:
            script = "for i in 1 2 3 4 5; do echo $i > g$i.txt; done"
            held = (await call(client, "run_command", argv=["/bin/sh", "-c", script])).structured_content
            assert isinstance(held, dict)
            assert held["refusal"]["code"] == "approval_required" and len(body.held_runs) == 1
        backend = body.sandbox()
        assert isinstance(backend, BwrapOverlaySandbox)
        standby = backend.standby.wait_ready(10)
        assert standby is not None and standby.staging.exists()
        spare = backend.spare.wait_ready(10)
        assert spare is not None and spare.staging.exists()
        server = backend._spawner.server_pid  # pyright: ignore[reportPrivateUsage]
        assert server is not None
        # the held run's area, the next run's made ahead (into bwrap) and the spare launcher's kept beside it
        assert len(list(root.glob("swarm-sandbox-*"))) == 3
    finally:
        body.close()
    assert list(root.iterdir()) == [], "a closed body left staging areas"
    assert len(body.held_runs) == 0
    assert _cgroups_of_this_process() == cgroups_before, "a closed body left a run cgroup"
    assert not _is_running(server), f"the launcher server {server} outlived its body"


def _is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] != b"Z"
