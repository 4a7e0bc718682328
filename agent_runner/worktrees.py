"""Where a task works: its own git worktree and branch (live), a throwaway clone (shadow), a scratch directory (a task
that names no repository).

    spaces = Worktrees(root=workdir, agent="worker-1")
    space = spaces.prepare(task, mode="live")    # <workdir>/worktrees/<task> on swarm/worker-1/<task>, from the
    ...                                          # repository's default branch
    spaces.release(space)                        # the worktree goes once its work is on the branch; the branch stays

Agents never share a workspace: each task has its own directory under the agent's work directory, outside the
repository and outside `$SWARM_HOME` (the agent's identity, audit chain and limits are its body's, per agent, and
never live in a workspace). Nothing is half-created: a repository that is not a git repository, has uncommitted
changes, or already has the task's branch is refused before anything is made, with the reason.

A worktree left by a runner that died is found, not lost: `leftovers()` lists them (the runner reports them when it
starts), and a task claimed again by the same agent resumes in its worktree on its branch.

Git runs here on the host, on the user's repository, so it runs nothing a repository could plant: no hooks (an
empty `core.hooksPath`), no fsmonitor, no filter drivers (each configured one is switched off for the call), no
system or global config, no prompt, an environment of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared_protocol.gitconfig import config_env

from .exceptions import RunnerUserError

Kind = Literal["scratch", "worktree", "clone"]
DEFAULT_BRANCH_PREFIX = "swarm"
_GIT_TIMEOUT_S = 120.0
_SAFE_BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
_SAFE_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A task id names a directory under the agent's work directory: one plain name (no `/`, no `..`, not absolute)."""


class WorkspaceError(RunnerUserError):
    """A task's repository cannot be given a workspace (not a git repository, uncommitted changes, the branch
    exists already, git failed): the message names the repository and what to do. Nothing was created."""


@dataclass(frozen=True, kw_only=True)
class Workspace:
    """One task's working directory and, for a repository, the branch it works on."""

    task_id: str
    path: Path
    kind: Kind
    repo: Path | None = None
    branch: str | None = None
    base: str | None = None
    """The commit the branch started from (the default branch's tip when the task was first taken)."""
    resumed: bool = False
    """A worktree left by an earlier run of this agent, taken up again."""


@dataclass(frozen=True, kw_only=True)
class Leftover:
    """A workspace under the agent's work directory that no running task holds: a runner died while in it."""

    task_id: str
    path: Path
    kind: Kind
    branch: str | None
    changes: int
    """Uncommitted changes in it (-1: unknown, the directory is not a git worktree any more)."""


@dataclass(frozen=True, kw_only=True)
class Handover:
    """What a finished task leaves in its repository."""

    branch: str
    commit: str
    base: str
    commits: int
    """Commits on the branch since its base."""
    kept: Path | None = None
    """The worktree, when it was kept (uncommitted changes in it: nothing is thrown away)."""


def git_env(home: Path) -> dict[str, str]:
    """The environment git runs in: no system or global config, no prompts, no pager, nothing inherited but PATH."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PAGER": "cat",
        "GIT_OPTIONAL_LOCKS": "0",
    }


@dataclass(kw_only=True)
class Worktrees:
    """The workspaces of one agent's tasks, under `root` (the agent's work directory)."""

    root: Path
    agent: str
    branch_prefix: str = DEFAULT_BRANCH_PREFIX
    """Branches are `<prefix>/<agent>/<task>` (`[git] branch_prefix`: the body pushes only such branches)."""

    def __post_init__(self) -> None:
        self._empty = self.root / "git-empty"
        self._empty.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- the three kinds ---------------------------------------------------------------------------

    def prepare(self, task_id: str, repo: str, *, shadow: bool) -> Workspace:
        """The task's workspace: created, or (a worktree of this agent's for this task) taken up again."""
        if not _SAFE_TASK_ID.fullmatch(task_id) or ".." in task_id:
            raise WorkspaceError(f"task id {task_id!r} is not a plain name: it cannot name a workspace directory")
        if not repo:
            scratch = self.root / "tasks" / task_id
            scratch.mkdir(parents=True, exist_ok=True)
            return Workspace(task_id=task_id, path=scratch, kind="scratch")
        source = self._repository(Path(repo), task_id)
        branch = self.branch_for(task_id)
        if shadow:
            return self._clone(task_id, source, branch)
        return self._worktree(task_id, source, branch)

    def branch_for(self, task_id: str) -> str:
        branch = f"{self.branch_prefix}/{self.agent}/{task_id}"
        if not _SAFE_BRANCH.match(branch) or ".." in branch or "//" in branch or branch.endswith((".lock", "/", ".")):
            raise WorkspaceError(f"{branch!r} ([git] branch_prefix {self.branch_prefix!r}) is not a usable branch name")
        return branch

    def reopen(self, task_id: str, path: Path) -> Workspace:
        """The workspace of a task taken up again after a restart, from where it is (what `prepare` made)."""
        if path == self.root / "tasks" / task_id:
            return Workspace(task_id=task_id, path=path, kind="scratch")
        if path == self.root / "shadow" / task_id:
            return Workspace(task_id=task_id, path=path, kind="clone")
        if path != self.root / "worktrees" / task_id or not path.is_dir():
            raise WorkspaceError(f"{path} is not a workspace this agent made for task {task_id}")
        common = self._git(path, "rev-parse", "--path-format=absolute", "--git-common-dir").stdout.strip()
        repo = Path(common).parent
        branch = self._git(path, "symbolic-ref", "--quiet", "--short", "HEAD").stdout.strip()
        base = self._git(repo, "merge-base", branch, self._default_branch(repo)[0], check=False).stdout.strip()
        return Workspace(
            task_id=task_id, path=path, kind="worktree", repo=repo, branch=branch, base=base or None, resumed=True
        )

    def _repository(self, repo: Path, task_id: str) -> Path:
        if not repo.is_dir():
            raise WorkspaceError(f"task {task_id} names repository {repo}, which does not exist on this host")
        top = self._git(repo, "rev-parse", "--show-toplevel", check=False)
        if top.returncode != 0:
            raise WorkspaceError(f"task {task_id} names {repo}, which is not a git repository (run `git init` there)")
        return Path(top.stdout.strip())

    def _default_branch(self, repo: Path) -> tuple[str, str]:
        """(name, tip commit) of the repository's default branch: its origin's HEAD, else what it has checked out."""
        for ref in ("refs/remotes/origin/HEAD", "HEAD"):
            named = self._git(repo, "symbolic-ref", "--quiet", "--short", ref, check=False)
            if named.returncode == 0 and named.stdout.strip():
                name = named.stdout.strip()
                tip = self._git(repo, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", check=False)
                if tip.returncode == 0:
                    return name, tip.stdout.strip()
        raise WorkspaceError(f"{repo} has no commit on its default branch to start a task's branch from")

    def _refuse_dirty(self, repo: Path, task_id: str) -> None:
        status = self._git(repo, "status", "--porcelain=v1", "--untracked-files=normal")
        if status.stdout.strip():
            count = len(status.stdout.splitlines())
            raise WorkspaceError(
                f"task {task_id}: repository {repo} has {count} uncommitted change(s); commit or stash them first "
                f"(an agent's branch starts from the default branch, and nothing of yours is taken along or lost)"
            )

    def _worktree(self, task_id: str, repo: Path, branch: str) -> Workspace:
        path = self.root / "worktrees" / task_id
        existing = self._registered(repo).get(path.resolve()) if path.exists() else None  # (follows a symlink)
        if existing is not None:
            if existing != branch:
                raise WorkspaceError(f"{path} holds branch {existing}, not this task's {branch}: resolve it by hand")
            base = self._git(repo, "merge-base", branch, self._default_branch(repo)[0], check=False).stdout.strip()
            return Workspace(
                task_id=task_id, path=path, kind="worktree", repo=repo, branch=branch, base=base or None, resumed=True
            )
        if os.path.lexists(path):  # (a dangling symlink too: `worktree add` would fail on it)
            raise WorkspaceError(f"{path} exists and is not a worktree of {repo}: move it away and try again")
        self._refuse_dirty(repo, task_id)
        if self._branch_exists(repo, branch):
            raise WorkspaceError(
                f"task {task_id}: branch {branch} exists already in {repo}; delete or rename it "
                f"(`git branch -m {branch} {branch}-old`) so the agent starts clean"
            )
        _, base = self._default_branch(repo)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._git(repo, "worktree", "add", "--quiet", "-b", branch, str(path), base)
        except WorkspaceError:
            # `worktree add -b` makes the branch before it checks out: nothing half-created is left behind
            self._git(repo, "worktree", "prune", check=False)
            if self._branch_exists(repo, branch) and not self._registered_branch(repo, branch):
                self._git(repo, "branch", "--delete", "--force", branch, check=False)
            raise
        return Workspace(task_id=task_id, path=path, kind="worktree", repo=repo, branch=branch, base=base)

    def _clone(self, task_id: str, repo: Path, branch: str) -> Workspace:
        """A shadow's throwaway: an independent clone (its own objects, no link back), on the task's branch."""
        self._refuse_dirty(repo, task_id)
        name, base = self._default_branch(repo)
        path = self.root / "shadow" / task_id
        if path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._git(
                self.root,
                "clone",
                "--quiet",
                "--no-hardlinks",
                "--no-checkout",
                "--single-branch",
                "--branch",
                name.removeprefix("origin/"),
                str(repo),
                str(path),
            )
            self._git(path, "remote", "remove", "origin")
            self._git(path, "checkout", "--quiet", "-b", branch, base)
        except WorkspaceError:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return Workspace(task_id=task_id, path=path, kind="clone", repo=repo, branch=branch, base=base)

    # -- after the task ----------------------------------------------------------------------------

    def handover(self, space: Workspace) -> Handover | None:
        """What the task left on its branch; the worktree is removed when nothing uncommitted is left in it."""
        if space.kind != "worktree" or space.repo is None or space.branch is None:
            return None
        head = self._git(space.path, "rev-parse", "HEAD").stdout.strip()
        base = space.base or head
        counted = self._git(space.path, "rev-list", "--count", f"{base}..{head}", check=False).stdout.strip()
        dirty = self._git(space.path, "status", "--porcelain=v1").stdout.strip()
        kept: Path | None = space.path
        if not dirty:
            self._git(space.repo, "worktree", "remove", str(space.path))
            kept = None
        return Handover(branch=space.branch, commit=head, base=base, commits=int(counted or 0), kept=kept)

    def abandon(self, space: Workspace) -> None:
        """Remove a task's worktree, and its branch while it holds no commit of its own: the task failed before its
        work began (its setup failed), so nothing of it is left half-made. A branch with commits stays."""
        if space.kind != "worktree" or space.repo is None or space.branch is None or space.resumed:
            return  # (a worktree taken up again may hold an earlier run's work: it stays)
        head = self._git(space.path, "rev-parse", "HEAD").stdout.strip()
        self._git(space.repo, "worktree", "remove", "--force", str(space.path))
        if space.base is not None and head == space.base:
            self._git(space.repo, "branch", "--delete", "--force", space.branch)

    def new_since_base(self, space: Workspace, paths: Sequence[str]) -> list[str]:
        """Those of `paths` (workspace-relative files) its base commit does not have: all of them for a workspace
        with no base (a scratch directory starts empty)."""
        if space.base is None or not paths:
            return list(paths)
        specs = [f":(literal){p}" for p in paths]
        listed = self._git(space.path, "ls-tree", "-r", "-z", "--name-only", space.base, "--", *specs).stdout
        at_base = set(listed.split("\0"))
        return [p for p in paths if p not in at_base]

    def changed_since_base(self, space: Workspace) -> list[str]:
        """The files the work changed or created since the task's base commit (workspace-relative, sorted): tracked
        files that differ from the base (committed, staged or not) and untracked ones git does not ignore; deleted
        files are not listed. A workspace with no base (a scratch directory starts empty): every file in it."""
        if space.base is None:
            return every_file(space.path)
        diff = self._git(space.path, "diff", "--name-only", "-z", "--no-renames", "--diff-filter=d", space.base, "--")
        untracked = self._git(space.path, "ls-files", "-z", "--others", "--exclude-standard")
        return sorted({p for p in (diff.stdout + "\0" + untracked.stdout).split("\0") if p})

    def not_committed(self, space: Workspace, *, ignored: bool) -> list[str]:
        """The files of a worktree its HEAD commit does not hold as they are: changed or untracked ones, or
        (`ignored`) the git-ignored ones, which no commit takes. Other workspaces: none."""
        if space.kind != "worktree":
            return []
        args = ["status", "--porcelain=v1", "-z", "--no-renames", "--untracked-files=all"]
        listed = self._git(space.path, *args, "--ignored=traditional" if ignored else "--ignored=no").stdout
        return sorted(
            entry[3:] for entry in listed.split("\0") if len(entry) > 3 and (entry.startswith("!! ") == ignored)
        )

    def discard(self, space: Workspace) -> None:
        """Throw a shadow clone or a scratch directory away (a live worktree is never thrown away: see handover)."""
        if space.kind in ("clone", "scratch") and space.path.is_relative_to(self.root):
            shutil.rmtree(space.path, ignore_errors=True)

    def leftovers(self, holding: Sequence[str] = ()) -> list[Leftover]:
        """Workspaces under the agent's directory that no running task holds (`holding`: the task ids that do)."""
        found: list[Leftover] = []
        for kind, folder in (("worktree", "worktrees"), ("clone", "shadow")):
            parent = self.root / folder
            if not parent.is_dir():
                continue
            for path in sorted(parent.iterdir()):
                if path.name in holding or not path.is_dir():
                    continue
                status = self._git(path, "status", "--porcelain=v1", check=False)
                head = self._git(path, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
                found.append(
                    Leftover(
                        task_id=path.name,
                        path=path,
                        kind="worktree" if kind == "worktree" else "clone",
                        branch=(head.stdout.strip() or None) if head.returncode == 0 else None,
                        changes=len(status.stdout.splitlines()) if status.returncode == 0 else -1,
                    )
                )
        return found

    # -- git ---------------------------------------------------------------------------------------

    def _branch_exists(self, repo: Path, branch: str) -> bool:
        return self._git(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}", check=False).returncode == 0

    def _registered(self, repo: Path) -> dict[Path, str]:
        """The repository's worktrees: path → branch."""
        listing = self._git(repo, "worktree", "list", "--porcelain").stdout
        found: dict[Path, str] = {}
        path: Path | None = None
        for line in listing.splitlines():
            if line.startswith("worktree "):
                path = Path(line.removeprefix("worktree ")).resolve()
            elif line.startswith("branch ") and path is not None:
                found[path] = line.removeprefix("branch refs/heads/")
        return found

    def _registered_branch(self, repo: Path, branch: str) -> bool:
        """Whether a worktree of the repository has `branch` checked out."""
        return branch in self._registered(repo).values()

    def _filters_off(self, repo: Path) -> list[tuple[str, str]]:
        """Config that turns off every filter driver the repository's config names (a checkout runs them). A
        driver's name may hold `=` or `.`: the key is cut at its last `.`, and passed apart from its value."""
        listed = self._git(
            repo,
            "config",
            "-z",
            "--name-only",
            "--get-regexp",
            r"^filter\..*\.(clean|smudge|process|required)$",
            check=False,
        )
        names = {key.rsplit(".", 1)[0] for key in listed.stdout.split("\0") if key.strip()}
        overrides: list[tuple[str, str]] = []
        for name in sorted(names):
            overrides += [(f"{name}.clean", "cat"), (f"{name}.smudge", "cat"), (f"{name}.process", "")]
            overrides.append((f"{name}.required", "false"))
        return overrides

    def _git(self, cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # command-line-scope config through the environment: `-c` splits at the first `=`, and a filter's name may
        # hold one (shared_protocol.gitconfig)
        safety = [
            ("core.hooksPath", str(self._empty)),
            ("core.fsmonitor", "false"),
            ("core.untrackedCache", "false"),
            ("protocol.ext.allow", "never"),
            ("safe.directory", "*"),
        ]
        if args[0] != "config" and cwd != self.root:  # a checkout, a status, a diff run filter drivers
            safety += self._filters_off(cwd)
        argv = ["git", *args]
        try:
            done = subprocess.run(
                argv,
                cwd=cwd,
                env={**git_env(self._empty), **config_env(safety)},
                capture_output=True,
                text=True,
                timeout=_GIT_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError:
            raise WorkspaceError("git is not installed on this host (an agent's task needs it)") from None
        except subprocess.TimeoutExpired:
            raise WorkspaceError(f"git {args[0]} in {cwd} took over {_GIT_TIMEOUT_S:.0f} s") from None
        if check and done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise WorkspaceError(f"git {args[0]} in {cwd} failed: {detail[-1] if detail else done.returncode}")
        return done


def every_file(root: Path) -> list[str]:
    """Every regular file under `root` (symlinks are not followed), `.git` left out."""
    found: list[str] = []
    for parent, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        base = Path(parent)
        found += [
            (base / name).relative_to(root).as_posix()
            for name in files
            if not (base / name).is_symlink() and (base / name).is_file()
        ]
    return sorted(found)


def describe(leftover: Leftover) -> str:
    """One line about a leftover workspace for the runner's log."""
    changes = "unknown changes" if leftover.changes < 0 else f"{leftover.changes} uncommitted change(s)"
    on = f" on branch {leftover.branch}" if leftover.branch else ""
    return (
        f"found the {leftover.kind} of task {leftover.task_id} from an earlier run at {leftover.path}{on} ({changes})"
    )
