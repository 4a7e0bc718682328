"""Real git repositories for the git tools' tests, built with the host's git (before any trap is planted)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from body_mcp import Body, build_server

from ..conftest import make_body

GIT_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Human",
    "GIT_AUTHOR_EMAIL": "human@example.com",
    "GIT_COMMITTER_NAME": "Human",
    "GIT_COMMITTER_EMAIL": "human@example.com",
    "LC_ALL": "C",
}


def git(repo: Path, *args: str, check: bool = True) -> str:
    """The test's own git (hooks off: it runs after traps are planted too)."""
    done = subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", *args],
        cwd=repo,
        env=GIT_ENV,
        capture_output=True,
        text=True,
        check=check,
    )
    return done.stdout


def make_repo(path: Path, *, branch: str = "main") -> Path:
    """A repository with two commits: the first holds a `.env` (a secret in history), the second a README change."""
    (path / "src").mkdir(parents=True)
    (path / "src" / "app.py").write_text("def main():\n    return 1\n")
    (path / "README.md").write_text("# sample\n")
    (path / ".env").write_text("SECRET=hunter2\n")
    git(path, "init", "-q", "-b", branch)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first: with the secret")
    (path / "README.md").write_text("# sample\n\nmore\n")
    git(path, "commit", "-q", "-am", "second")
    return path.resolve()


def head(repo: Path, ref: str = "HEAD") -> str:
    return git(repo, "rev-parse", ref).strip()


def pushable_repo(path: Path, *, branch: str) -> Path:
    """`make_repo` at `path` with an `origin` (a bare `remote.git` beside it) that has `main`, checked out on a new
    `branch` (the body's agent's own)."""
    repo = make_repo(path)
    remote = path.parent / "remote.git"
    git(path.parent, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    git(repo, "fetch", "-q", "origin")
    git(repo, "checkout", "-q", "-b", branch)
    return repo


def git_fixtures(git_config: dict[str, Any] | None = None, *, push_branch: str | None = None) -> tuple[Any, Any, Any]:
    """The `repo`, `git_body` and client fixtures the git tools' tests share (`repo, git_body, client =
    git_fixtures()` in a module): a `make_repo` repository (with `push_branch`: a `pushable_repo` on that branch), a
    body on it with `[git] timeout_s = 15` and `git_config` on top, and an MCP client of that body."""

    @pytest.fixture
    def repo(tmp_path: Path) -> Path:
        if push_branch is not None:
            return pushable_repo(tmp_path / "repo", branch=push_branch)
        return make_repo(tmp_path / "repo")

    @pytest.fixture
    def git_body(repo: Path, home: Path) -> Iterator[Body]:
        body = make_body(repo, home, {"git": {"timeout_s": 15, **(git_config or {})}})
        try:
            yield body
        finally:
            body.close()

    @pytest.fixture
    async def client(git_body: Body) -> AsyncIterator[Client]:
        async with Client(build_server(git_body)) as c:
            yield c

    return repo, git_body, client
