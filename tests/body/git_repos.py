"""Real git repositories for the git tools' tests, built with the host's git (before any trap is planted)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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
