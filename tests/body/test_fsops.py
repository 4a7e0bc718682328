"""The primitive writes every applying path goes through: no setuid, setgid or sticky bit survives them."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from body_mcp import _fsops
from body_mcp.confinement import Workspace


@pytest.fixture
def ws(workspace: Path) -> Iterator[Workspace]:
    held = Workspace(workspace)
    yield held
    held.close()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_file_written_with_a_setuid_mode_lands_without_it_and_says_so(ws: Workspace, workspace: Path) -> None:
    stripped = _fsops.write_atomic(ws, ("bin", "tool"), b"#!/bin/sh\n", mode=0o4755)
    assert mode_of(workspace / "bin" / "tool") == 0o755 and stripped == stat.S_ISUID


def test_rewriting_a_setgid_file_keeps_its_permissions_but_not_the_setgid_bit(ws: Workspace, workspace: Path) -> None:
    target = workspace / "tool"
    target.write_bytes(b"old")
    target.chmod(0o2750)
    stripped = _fsops.write_atomic(ws, ("tool",), b"new")
    assert mode_of(target) == 0o750 and stripped == stat.S_ISGID and target.read_bytes() == b"new"


def test_a_directory_made_with_setgid_and_sticky_bits_lands_without_them(ws: Workspace, workspace: Path) -> None:
    stripped = _fsops.make_dir(ws, ("shared",), 0o3777)
    assert mode_of(workspace / "shared") == 0o777 and stripped == stat.S_ISGID | stat.S_ISVTX


def test_plain_modes_are_written_as_asked_and_nothing_is_reported_stripped(ws: Workspace, workspace: Path) -> None:
    assert _fsops.write_atomic(ws, ("run.sh",), b"x", mode=0o700) == 0
    assert _fsops.make_dir(ws, ("d",), 0o750) == 0
    assert mode_of(workspace / "run.sh") == 0o700 and mode_of(workspace / "d") == 0o750
