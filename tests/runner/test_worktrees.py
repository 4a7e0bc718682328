"""A task's workspace: a worktree and branch of its own (live), an independent throwaway clone (shadow), and every
bad repository refused before anything is made. Real git repositories in tmp_path; git run exactly as the runner
runs it, with traps planted in the repository to show that nothing of the repository's runs on the host."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agent_runner.worktrees import WorkspaceError, Worktrees, describe


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def make_repo(path: Path, *, branch: str = "main") -> Path:
    path.mkdir()
    git(path, "init", "--quiet", "-b", branch)
    (path / "app.py").write_text("def main():\n    return 1\n")
    git(path, "add", "app.py")
    git(path, "commit", "--quiet", "-m", "first")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def spaces(tmp_path: Path) -> Worktrees:
    return Worktrees(root=tmp_path / "work" / "worker-1", agent="worker-1")


def test_a_live_task_gets_its_own_worktree_and_branch_from_the_default_branch(
    repo: Path, spaces: Worktrees, tmp_path: Path
) -> None:
    git(repo, "checkout", "--quiet", "-b", "someone-elses-work")
    tip = git(repo, "rev-parse", "main")
    first = spaces.prepare("task_1", str(repo), shadow=False)
    other = Worktrees(root=tmp_path / "work" / "worker-2", agent="worker-2").prepare("task_2", str(repo), shadow=False)
    assert first.kind == "worktree" and first.branch == "swarm/worker-1/task_1" and first.base == tip
    assert first.path == spaces.root / "worktrees" / "task_1" and (first.path / "app.py").exists()
    assert other.path != first.path and other.branch == "swarm/worker-2/task_2", "agents never share a workspace"
    assert git(first.path, "symbolic-ref", "--short", "HEAD") == "swarm/worker-1/task_1"
    # The default branch is what the repository has checked out when it has no origin: here someone's branch, which
    # points at main's tip; the user's own checkout is untouched.
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "someone-elses-work"


def test_the_default_branch_is_origins_head_when_there_is_an_origin(
    repo: Path, spaces: Worktrees, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(repo), str(clone))
    git(clone, "checkout", "--quiet", "-b", "topic")
    (clone / "topic.txt").write_text("work in progress\n")
    git(clone, "add", "topic.txt")
    git(clone, "commit", "--quiet", "-m", "topic")
    space = spaces.prepare("task_1", str(clone), shadow=False)
    assert space.base == git(repo, "rev-parse", "main")
    assert not (space.path / "topic.txt").exists(), "the branch starts from origin's default branch, not the topic"


@pytest.mark.parametrize("shadow", [False, True], ids=["live", "shadow"])
def test_bad_repositories_are_refused_with_the_reason_and_nothing_is_created(
    repo: Path, spaces: Worktrees, tmp_path: Path, shadow: bool
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(WorkspaceError, match="not a git repository"):
        spaces.prepare("task_1", str(plain), shadow=shadow)
    with pytest.raises(WorkspaceError, match="does not exist on this host"):
        spaces.prepare("task_1", str(tmp_path / "nowhere"), shadow=shadow)
    (repo / "app.py").write_text("def main():\n    return 3\n")
    with pytest.raises(WorkspaceError, match="1 uncommitted change"):
        spaces.prepare("task_1", str(repo), shadow=shadow)
    assert not (spaces.root / "worktrees").exists() and not list((spaces.root / "shadow").glob("*"))
    assert git(repo, "branch", "--list", "swarm/*") == "", "no branch half-made"


def test_a_branch_that_exists_is_refused(repo: Path, spaces: Worktrees) -> None:
    git(repo, "branch", "swarm/worker-1/task_1")
    with pytest.raises(WorkspaceError, match="branch swarm/worker-1/task_1 exists already"):
        spaces.prepare("task_1", str(repo), shadow=False)
    assert not (spaces.root / "worktrees" / "task_1").exists()


def test_the_branch_prefix_is_configurable_and_one_that_makes_no_branch_name_is_refused(
    repo: Path, tmp_path: Path
) -> None:
    mine = Worktrees(root=tmp_path / "w1", agent="worker-1", branch_prefix="agents")
    assert mine.prepare("task_1", str(repo), shadow=False).branch == "agents/worker-1/task_1"
    for prefix in ("swarm/..", "", "a b", "x/"):
        bad = Worktrees(root=tmp_path / "w2", agent="worker-1", branch_prefix=prefix)
        with pytest.raises(WorkspaceError, match="not a usable branch name"):
            bad.prepare("task_2", str(repo), shadow=False)
    assert not (tmp_path / "w2" / "worktrees").exists()


def test_nothing_the_repository_plants_runs_when_the_workspace_is_made(
    repo: Path, spaces: Worktrees, tmp_path: Path
) -> None:
    fired = tmp_path / "fired"
    trap = f"#!/bin/sh\necho $0 >> {fired}\n"
    (repo / ".gitattributes").write_text("*.py filter=evil\n")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "--quiet", "-m", "attributes")
    hooks = repo / ".git" / "hooks"
    for hook in ("post-checkout", "reference-transaction", "post-index-change"):
        (hooks / hook).write_text(trap)
        (hooks / hook).chmod(0o755)
    git(repo, "config", "filter.evil.smudge", f"sh -c 'echo smudge >> {fired}; cat'")
    git(repo, "config", "filter.evil.clean", f"sh -c 'echo clean >> {fired}; cat'")
    git(repo, "config", "filter.evil.required", "true")
    git(repo, "config", "core.fsmonitor", f"sh -c 'echo fsmonitor >> {fired}'")
    live = spaces.prepare("task_1", str(repo), shadow=False)
    shadow = spaces.prepare("task_2", str(repo), shadow=True)
    assert (live.path / "app.py").read_text() == "def main():\n    return 1\n"
    assert (shadow.path / "app.py").read_text() == "def main():\n    return 1\n"
    (live.path / "app.py").write_text("def main():\n    return 2\n")  # status compares it: a clean filter would run
    assert spaces.handover(live) is not None
    assert spaces.leftovers(holding=["task_2"])[0].changes == 1
    assert not fired.exists(), fired.read_text()


def test_a_shadow_clone_is_independent_of_the_repository(repo: Path, spaces: Worktrees) -> None:
    space = spaces.prepare("task_1", str(repo), shadow=True)
    assert space.kind == "clone" and space.branch == "swarm/worker-1/task_1"
    assert git(space.path, "remote") == "", "no way back to the repository"
    (space.path / "app.py").write_text("def main():\n    return 2\n")
    git(space.path, "commit", "--quiet", "-am", "shadow work")
    assert git(repo, "branch", "--list", "swarm/*") == "" and git(repo, "rev-list", "--count", "--all") == "1"
    objects = {p.stat().st_ino for p in (repo / ".git" / "objects").rglob("*") if p.is_file()}
    copied = {p.stat().st_ino for p in (space.path / ".git" / "objects").rglob("*") if p.is_file()}
    assert not objects & copied, "objects shared by hard link"
    spaces.discard(space)
    assert not space.path.exists()


def test_handover_leaves_the_branch_and_removes_a_clean_worktree(repo: Path, spaces: Worktrees) -> None:
    space = spaces.prepare("task_1", str(repo), shadow=False)
    (space.path / "app.py").write_text("def main():\n    return 2\n")
    git(space.path, "commit", "--quiet", "-am", "fix")
    handed = spaces.handover(space)
    assert handed is not None and handed.branch == space.branch and handed.commits == 1 and handed.kept is None
    assert not space.path.exists()
    assert git(repo, "rev-parse", space.branch or "") == handed.commit
    assert git(repo, "show", f"{handed.commit}:app.py") == "def main():\n    return 2"


def test_a_worktree_with_uncommitted_work_is_kept_and_found_again_after_a_crash(repo: Path, spaces: Worktrees) -> None:
    space = spaces.prepare("task_1", str(repo), shadow=False)
    (space.path / "app.py").write_text("def main():\n    return 2\n")
    handed = spaces.handover(space)
    assert handed is not None and handed.kept == space.path and handed.commits == 0
    assert (space.path / "app.py").read_text() == "def main():\n    return 2\n", "nothing thrown away"
    # The runner dies; the next one finds the worktree and says so ...
    (left,) = spaces.leftovers()
    assert left.task_id == "task_1" and left.branch == space.branch and left.changes == 1
    assert "task_1" in describe(left) and "1 uncommitted change" in describe(left)
    assert spaces.leftovers(holding=["task_1"]) == []
    # ... and the same task claimed again resumes in it, on its branch, with its work.
    again = spaces.prepare("task_1", str(repo), shadow=False)
    assert again.resumed and again.path == space.path and again.branch == space.branch
    assert (again.path / "app.py").read_text() == "def main():\n    return 2\n"
    # A runner restarted with the task parked finds the same workspace from its path alone.
    reopened = spaces.reopen("task_1", space.path)
    assert (reopened.repo, reopened.branch, reopened.base) == (repo, space.branch, space.base)
    assert reopened.kind == "worktree"
    with pytest.raises(WorkspaceError, match="not a workspace this agent made"):
        spaces.reopen("task_1", repo)


def test_a_task_without_a_repository_works_in_a_scratch_directory(spaces: Worktrees) -> None:
    space = spaces.prepare("task_1", "", shadow=False)
    assert space.kind == "scratch" and space.path.is_dir() and space.branch is None
    assert spaces.handover(space) is None
    spaces.discard(space)
    assert not space.path.exists()


def test_what_the_work_changed_since_the_base_is_listed_however_it_came(repo: Path, spaces: Worktrees) -> None:
    """What the tamper screen reads: committed, staged and unstaged changes to tracked files and untracked files,
    not git-ignored ones nor deletions; a scratch directory (no base) lists every file, without following links."""
    (repo / "gone.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", "gone.py", ".gitignore")
    git(repo, "commit", "--quiet", "-m", "more")
    space = spaces.prepare("task_1", str(repo), shadow=False)
    assert spaces.changed_since_base(space) == []
    (space.path / "committed.py").write_text("a = 1\n")
    git(space.path, "add", "committed.py")
    git(space.path, "commit", "--quiet", "-m", "work")
    (space.path / "staged.py").write_text("b = 1\n")
    git(space.path, "add", "staged.py")
    (space.path / "app.py").write_text("def main():\n    return 2\n")
    (space.path / "pkg").mkdir()
    (space.path / "pkg" / "new file.py").write_text("c = 1\n")
    (space.path / "debug.log").write_text("ignored\n")
    (space.path / "gone.py").unlink()
    assert spaces.changed_since_base(space) == ["app.py", "committed.py", "pkg/new file.py", "staged.py"]

    scratch = spaces.prepare("task_2", "", shadow=False)
    (scratch.path / "sub").mkdir()
    (scratch.path / "sub" / "a.py").write_text("x = 1\n")
    (scratch.path / "link.py").symlink_to(repo / "app.py")
    (scratch.path / ".git").mkdir()
    (scratch.path / ".git" / "HEAD").write_text("ref\n")
    assert spaces.changed_since_base(scratch) == ["sub/a.py"]
