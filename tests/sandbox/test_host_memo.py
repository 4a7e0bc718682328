"""Host toolchain facts are remembered only while the directories they came from are unchanged."""

from __future__ import annotations

import os
from pathlib import Path

from sandbox import minimal_path
from sandbox._detect import find_toolchains
from sandbox._host_memo import HostMemo


def test_a_fact_is_computed_again_once_a_watched_directory_changes(tmp_path: Path) -> None:
    memo = HostMemo()
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    watched = [tmp_path / "tool"]
    assert memo.get("k", watched, compute) == 1
    assert memo.get("k", watched, compute) == 1, "unchanged: remembered"
    (tmp_path / "tool").mkdir()
    assert memo.get("k", watched, compute) == 2, "created: computed again"
    (tmp_path / "tool" / "bin").mkdir()
    assert memo.get("k", watched, compute) == 3, "changed inside: computed again"
    os.rename(tmp_path / "tool", tmp_path / "old")
    (tmp_path / "tool").mkdir()
    assert memo.get("k", watched, compute) == 4, "replaced: computed again"


def test_a_toolchain_installed_after_a_command_is_on_the_next_commands_path(tmp_path: Path) -> None:
    toolchain = tmp_path / "opt" / "tool"
    toolchain.mkdir(parents=True)
    paths = [Path("/usr"), toolchain]
    assert str(toolchain / "bin") not in minimal_path(paths).split(":")
    (toolchain / "bin").mkdir()
    assert str(toolchain / "bin") in minimal_path(paths).split(":")
    (toolchain / "bin").rmdir()
    assert str(toolchain / "bin") not in minimal_path(paths).split(":")


def test_a_pyenv_version_installed_later_is_found(tmp_path: Path) -> None:
    pyenv = tmp_path / "pyenv"
    (pyenv / "versions").mkdir(parents=True)
    before = {t.version for t in find_toolchains(pyenv=pyenv) if t.origin == "pyenv"}
    assert before == set()
    bin_dir = pyenv / "versions" / "3.99.1" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python3").write_text("#!/bin/sh\n")
    (bin_dir / "python3").chmod(0o755)
    after = {t.version for t in find_toolchains(pyenv=pyenv) if t.origin == "pyenv"}
    assert after == {"3.99.1"}
