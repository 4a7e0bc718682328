"""Review of #18's worktrees: a task id is a directory name under the agent's work directory, so one that is a
path (absolute, `..`, a `/`) is refused before anything is made; else a scratch directory (and `discard`'s
rmtree, whose `is_relative_to` check is lexical) would land outside the work directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_runner.worktrees import WorkspaceError, Worktrees


@pytest.mark.parametrize("task_id", ["../../victim", "/abs/victim", "a/../../victim", "..", ".", "", "x\0y", "-x"])
def test_a_task_id_that_is_a_path_is_refused_and_nothing_is_made(tmp_path: Path, task_id: str) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine\n")
    spaces = Worktrees(root=tmp_path / "work" / "worker-1", agent="worker-1")
    with pytest.raises(WorkspaceError, match="task id"):
        spaces.prepare(task_id, "", shadow=False)
    assert not (spaces.root / "tasks").exists()
    assert (victim / "keep.txt").read_text() == "mine\n"


def test_an_ordinary_task_id_still_gets_its_scratch_directory(tmp_path: Path) -> None:
    spaces = Worktrees(root=tmp_path / "work" / "worker-1", agent="worker-1")
    space = spaces.prepare("task_18a0f3c2d1e4", "", shadow=False)
    assert space.path == spaces.root / "tasks" / "task_18a0f3c2d1e4" and space.path.is_dir()
    spaces.discard(space)
    assert not space.path.exists()
