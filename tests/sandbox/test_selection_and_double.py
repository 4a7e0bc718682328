# pyright: strict
"""Choosing a backend, refusing bad specs before anything runs, and the in-memory test double."""

from __future__ import annotations

import errno
import shutil
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

import sandbox._bwrap_backend as bwrap_backend
import sandbox._overlay_backend as overlay_backend
from sandbox import (
    BwrapOverlaySandbox,
    ChangeKind,
    CopyStagingSandbox,
    EntryType,
    InMemorySandbox,
    InvalidSandboxSpec,
    NoIsolationAvailable,
    ProxyNetwork,
    ResourceLimits,
    RunResult,
    Sandbox,
    SandboxSetupFailed,
    SandboxSpec,
    ScriptedChange,
    default_toolchain_paths,
    scripted_result,
    select_sandbox,
)
from sandbox._staged import StagedDirRun

from ._support import make_spec, require_isolation, summary

pytestmark = pytest.mark.anyio


def _without_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which

    def which(name: str, mode: int = 1, path: str | None = None) -> str | None:
        return None if name == "bwrap" else real_which(name, mode, path)

    monkeypatch.setattr(bwrap_backend.shutil, "which", which)


async def test_without_bwrap_no_backend_is_available_and_nothing_runs(
    monkeypatch: pytest.MonkeyPatch, ws: Path, tmp_path: Path
) -> None:
    _without_bwrap(monkeypatch)
    overlay = BwrapOverlaySandbox(staging_root=tmp_path / "staging")
    assert overlay.available() == overlay.available()
    assert not overlay.available().ok
    assert "apt-get install bubblewrap" in overlay.available().reason
    with pytest.raises(NoIsolationAvailable) as raised:
        select_sandbox("auto", staging_root=tmp_path / "staging")
    assert set(raised.value.reasons) == {"bwrap-overlay", "copy"}
    with pytest.raises(NoIsolationAvailable):
        await overlay.run(make_spec(ws, ["touch", "ran"]))
    assert not (ws / "ran").exists()


@pytest.mark.bwrap
def test_auto_selection_prefers_the_overlay_backend(tmp_path: Path) -> None:
    require_isolation(BwrapOverlaySandbox(staging_root=tmp_path))
    assert select_sandbox("auto", staging_root=tmp_path).name == "bwrap-overlay"
    assert isinstance(select_sandbox("copy", staging_root=tmp_path), CopyStagingSandbox)


@pytest.mark.bwrap
def test_without_user_xattrs_on_tmpfs_the_overlay_backend_is_unavailable_and_auto_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_isolation(BwrapOverlaySandbox(staging_root=tmp_path))

    def no_user_xattrs(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(overlay_backend.os, "setxattr", no_user_xattrs)
    assert not BwrapOverlaySandbox(staging_root=tmp_path).available().ok
    assert select_sandbox("auto", staging_root=tmp_path).name == "copy"


@pytest.mark.parametrize(
    "change",
    [
        {"cwd": "../"},
        {"cwd": "missing-dir"},
        {"toolchain_paths": [Path("/root")]},
        {"toolchain_paths": [Path("/home")]},
        {"toolchain_paths": [Path("/")]},
        {"toolchain_paths": [Path("/dev")]},
        {"toolchain_paths": [Path("usr")]},
        {"argv": "ls -la"},
        {"argv": []},
        {"hidden_paths": ["../outside"]},
        {"hidden_paths": ["/etc/passwd"]},
        {"timeout_s": 0},
        {"argv": ["echo", "a\0b"]},
        {"env": {"PATH": "/usr/bin", "X": "x\0--bind\0/\0/host"}},
        {"env": {"A=B": "c"}},
        {"limits": ResourceLimits(max_write_bytes=0)},
        {"limits": ResourceLimits(max_tmp_inodes=0)},
    ],
    ids=lambda change: "-".join(f"{k}={v}" for k, v in change.items()),
)
async def test_a_spec_that_cannot_be_honoured_safely_is_refused_before_running(
    ws: Path, tmp_path: Path, change: dict[str, object]
) -> None:
    spec = replace(make_spec(ws, ["touch", "ran"]), **change)
    with pytest.raises(InvalidSandboxSpec):
        await BwrapOverlaySandbox(staging_root=tmp_path / "staging").run(spec)
    assert not (ws / "ran").exists()


async def test_a_relative_workspace_or_a_staging_root_inside_it_is_refused(ws: Path) -> None:
    with pytest.raises(InvalidSandboxSpec):
        await BwrapOverlaySandbox().run(make_spec(Path("relative/ws"), ["true"]))
    with pytest.raises(InvalidSandboxSpec):
        await BwrapOverlaySandbox(staging_root=ws / "staging").run(make_spec(ws, ["true"]))


async def test_a_proxy_network_without_a_listening_socket_fails_setup(ws: Path, tmp_path: Path) -> None:
    spec = make_spec(ws, ["true"], network=ProxyNetwork(socket_path=tmp_path / "absent.sock"))
    with pytest.raises(SandboxSetupFailed):
        await BwrapOverlaySandbox(staging_root=tmp_path / "staging").run(spec)


def test_every_backend_is_a_sandbox_and_names_itself(tmp_path: Path) -> None:
    # Typed as the protocol: pyright checks each backend (and its StagedRun) against the interface.
    backends: list[Sandbox] = [
        BwrapOverlaySandbox(staging_root=tmp_path),
        CopyStagingSandbox(staging_root=tmp_path),
        InMemorySandbox(),
    ]
    assert [b.name for b in backends] == ["bwrap-overlay", "copy", "in-memory"]


def test_default_toolchain_exposes_the_system_and_this_python_but_no_home() -> None:
    paths = default_toolchain_paths()
    assert Path("/usr") in paths
    assert Path("/root") not in paths and Path("/home") not in paths
    assert Path("/etc") not in paths and Path("/etc/shadow") not in paths


async def test_the_in_memory_double_materialises_scripted_changes_as_real_files(tmp_path: Path, ws: Path) -> None:
    def script(spec: SandboxSpec) -> tuple[RunResult, list[ScriptedChange]]:
        return scripted_result(stdout=" ".join(spec.argv)), [
            ScriptedChange(path="src/new.py", kind=ChangeKind.CREATED, content=b"x = 1\n"),
            ScriptedChange(path="old.txt", kind=ChangeKind.DELETED),
            ScriptedChange(path="link", kind=ChangeKind.CREATED, entry_type=EntryType.SYMLINK, symlink_target="/etc"),
            ScriptedChange(path="run.sh", kind=ChangeKind.MODIFIED, content=b"#!/bin/sh\n", mode=0o755),
        ]

    double = InMemorySandbox(script, staging_root=tmp_path / "staging")
    staged = await double.run(make_spec(ws, ["make", "all"]))
    async with staged:
        assert staged.result.stdout == "make all"
        assert summary(staged.changes) == [
            ("link", ChangeKind.CREATED, EntryType.SYMLINK),
            ("old.txt", ChangeKind.DELETED, EntryType.FILE),
            ("run.sh", ChangeKind.MODIFIED, EntryType.FILE),
            ("src/new.py", ChangeKind.CREATED, EntryType.FILE),
        ]
        sources = {c.path: c.source for c in staged.changes}
        new_py, run_sh = sources["src/new.py"], sources["run.sh"]
        assert new_py is not None and new_py.read_bytes() == b"x = 1\n"
        assert run_sh is not None and run_sh.stat().st_mode & 0o777 == 0o755
        assert sources["old.txt"] is None
    assert not new_py.exists()
    assert [spec.argv for spec in double.calls] == [["make", "all"]]


async def test_the_in_memory_double_can_stand_for_a_long_command_stopped_by_kill_all(tmp_path: Path, ws: Path) -> None:
    running = anyio.Event()

    async def forever(spec: SandboxSpec) -> tuple[RunResult, list[ScriptedChange]]:
        running.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    double = InMemorySandbox(forever, staging_root=tmp_path / "staging")

    async def kill_once_running() -> None:
        await running.wait()
        double.kill_all()

    staged: StagedDirRun | None = None
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(kill_once_running)
            staged = await double.run(make_spec(ws, ["sleep", "1000"]))
    assert staged is not None
    async with staged:
        assert staged.result.killed and staged.result.exit_code is None
        assert staged.changes == ()


async def test_the_in_memory_double_reports_special_mode_bits_stripped_like_the_real_backends(
    tmp_path: Path, ws: Path
) -> None:
    def script(spec: SandboxSpec) -> tuple[RunResult, list[ScriptedChange]]:
        return scripted_result(), [ScriptedChange(path="su", kind=ChangeKind.CREATED, content=b"x", mode=0o4755)]

    async with await InMemorySandbox(script, staging_root=tmp_path / "staging").run(make_spec(ws, ["x"])) as staged:
        (change,) = staged.changes
        assert (change.mode, change.stripped_mode_bits) == (0o755, 0o4000)
