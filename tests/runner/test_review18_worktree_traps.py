"""Review #18 (round 2): the runner's own host git (agent_runner/worktrees.py) against a repository that plants
things, and against a `git worktree add` that fails half-way. Real git, real repositories in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent_runner.worktrees import WorkspaceError, Worktrees

from .test_worktrees import git, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def spaces(tmp_path: Path) -> Worktrees:
    return Worktrees(root=tmp_path / "work" / "worker-1", agent="worker-1")


def _trap(tmp_path: Path, fired: Path) -> str:
    script = tmp_path / "trap.sh"
    script.write_text(f"#!/bin/sh\necho \"$0 $*\" >> '{fired}'\ncat\n")
    script.chmod(0o755)
    return str(script)


def test_a_filter_named_with_an_equals_sign_does_not_run_when_a_worktree_is_made(
    repo: Path, spaces: Worktrees, tmp_path: Path
) -> None:
    """Was a hole: Worktrees._filters_off's `-c filter.a=b.smudge=cat` left the driver `a=b` running during
    `git worktree add`'s checkout; the overrides now travel as GIT_CONFIG_COUNT/KEY/VALUE pairs."""
    fired = tmp_path / "fired"
    (repo / ".gitattributes").write_text("*.py filter=a=b\n")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "--quiet", "-m", "attributes")
    script = _trap(tmp_path, fired)
    git(repo, "config", "filter.a=b.smudge", script)
    git(repo, "config", "filter.a=b.clean", script)
    space = spaces.prepare("task_1", str(repo), shadow=False)
    (space.path / "app.py").write_text("def main():\n    return 2\n")
    spaces.handover(space)
    assert not fired.exists(), fired.read_text()


def test_program_keys_of_the_repository_do_not_run_through_the_runners_git(
    repo: Path, spaces: Worktrees, tmp_path: Path
) -> None:
    """Pager, external diff, editor, ssh command, and the same planted through an include: the runner's status,
    rev-list, worktree add/remove run none of them."""
    fired = tmp_path / "fired"
    script = _trap(tmp_path, fired)
    included = tmp_path / "included.conf"
    included.write_text(f"[core]\n\tfsmonitor = {script}\n\thooksPath = {tmp_path}\n[diff]\n\texternal = {script}\n")
    (tmp_path / "post-checkout").write_text(f"#!/bin/sh\necho hook >> '{fired}'\n")
    (tmp_path / "post-checkout").chmod(0o755)
    for key in ("core.pager", "diff.external", "core.editor", "core.sshCommand", "sequence.editor", "core.askPass"):
        git(repo, "config", key, script)
    git(repo, "config", "include.path", str(included))
    git(repo, "config", f"includeIf.gitdir:{repo}/.git.path", str(included))
    space = spaces.prepare("task_1", str(repo), shadow=False)
    (space.path / "app.py").write_text("def main():\n    return 2\n")
    handed = spaces.handover(space)
    assert handed is not None and handed.kept == space.path
    assert spaces.leftovers()[0].changes == 1
    assert not fired.exists(), fired.read_text()


def test_a_failed_worktree_add_leaves_no_branch_behind(repo: Path, spaces: Worktrees) -> None:
    """Was a hole: `git worktree add -b` makes the branch before it checks the path, and a dangling symlink there
    (absent to Path.exists) failed the add and left the branch, so the next attempt was refused: half-created."""
    target = spaces.root / "worktrees" / "task_1"
    target.parent.mkdir(parents=True)
    os.symlink(spaces.root / "gone", target)
    with pytest.raises(WorkspaceError):
        spaces.prepare("task_1", str(repo), shadow=False)
    assert git(repo, "branch", "--list", spaces.branch_for("task_1")) == ""


def test_a_dirty_or_non_repository_is_refused_before_any_branch_or_directory(
    repo: Path, spaces: Worktrees, tmp_path: Path
) -> None:
    (repo / "untracked.txt").write_text("mine\n")
    with pytest.raises(WorkspaceError, match="uncommitted change"):
        spaces.prepare("task_1", str(repo), shadow=False)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(WorkspaceError, match="not a git repository"):
        spaces.prepare("task_2", str(plain), shadow=False)
    assert git(repo, "branch", "--list", "swarm/*") == ""
    assert not (spaces.root / "worktrees").exists()


def test_what_a_commit_leaves_out_is_listed_ignored_files_apart(repo: Path, spaces: Worktrees) -> None:
    """`not_committed`: the uncommitted files of a worktree, or (`ignored`) each git-ignored file, one by one inside
    an ignored directory (the runner refuses to call a pass verified while either holds something of the work)."""
    (repo / ".gitignore").write_text("generated/\n*.log\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "--quiet", "-m", "ignore")
    space = spaces.prepare("task_1", str(repo), shadow=False)
    assert spaces.not_committed(space, ignored=True) == []
    assert spaces.not_committed(space, ignored=False) == []
    (space.path / "generated" / "deep").mkdir(parents=True)
    (space.path / "generated" / "deep" / "answer.py").write_text("x = 2\n")
    (space.path / "run.log").write_text("log\n")
    (space.path / "app.py").write_text("def main():\n    return 2\n")
    (space.path / "new.py").write_text("y = 1\n")
    assert spaces.not_committed(space, ignored=True) == ["generated/deep/answer.py", "run.log"]
    assert spaces.not_committed(space, ignored=False) == ["app.py", "new.py"]
    git(space.path, "add", "app.py", "new.py")
    git(space.path, "commit", "--quiet", "-m", "work")
    assert spaces.not_committed(space, ignored=False) == []
    scratch = spaces.prepare("task_2", "", shadow=False)
    assert spaces.not_committed(scratch, ignored=True) == []
