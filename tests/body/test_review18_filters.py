"""Review #18 (round 2): the body's host git neutralises each filter driver the repository's config names with a
`-c filter.<name>.<key>=` switch, and git splits a `-c` argument at its first `=`. A driver whose name holds `=`
(`[filter "a=b"]`, which git's config and attribute parsers both accept) is therefore never switched off: its clean
command runs on the host when the body stages, diffs or commits."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from mcp import Client

from .git_repos import git, git_fixtures
from .helpers import call, ok

pytestmark = pytest.mark.anyio


def _trap(tmp_path: Path, name: str) -> tuple[str, Path]:
    marker = tmp_path / "markers" / name
    marker.parent.mkdir(exist_ok=True)
    script = tmp_path / f"{name}.sh"
    script.write_text(f"#!/bin/sh\ntouch '{marker}'\ncat\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), marker


repo, git_body, client = git_fixtures()


async def _stage_diff_commit(client: Client) -> None:
    ok(await call(client, "edit_file", path="src/app.py", edits=[{"old_text": "return 1", "new_text": "return 2"}]))
    ok(await call(client, "write_file", path="new.py", content="y = 2\n"))
    ok(await call(client, "git_status"))
    ok(await call(client, "git_diff"))
    ok(await call(client, "git_log", patch=True))
    ok(await call(client, "git_commit", message="with a filter around"))


async def test_a_filter_with_an_ordinary_name_stays_off(client: Client, repo: Path, tmp_path: Path) -> None:
    """The control: the same trap under a plain driver name never fires (the mechanism works for it)."""
    script, marker = _trap(tmp_path, "plain")
    git(repo, "config", "--local", "filter.plain.clean", script)
    git(repo, "config", "--local", "filter.plain.smudge", script)
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text("* filter=plain\n")
    await _stage_diff_commit(client)
    assert not marker.exists()


async def test_a_filter_whose_name_holds_an_equals_sign_never_runs(client: Client, repo: Path, tmp_path: Path) -> None:
    """Was a hole: `-c filter.a=b.clean=` is read by git as key `filter.a`, so the driver `a=b` ran on the host; the
    overrides now travel as GIT_CONFIG_COUNT/KEY/VALUE pairs, which keep key and value apart."""
    script, marker = _trap(tmp_path, "equals")
    git(repo, "config", "--local", "filter.a=b.clean", script)
    git(repo, "config", "--local", "filter.a=b.smudge", script)
    git(repo, "config", "--local", "filter.a=b.process", script)
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text("* filter=a=b\n")
    await _stage_diff_commit(client)
    assert not marker.exists(), f"the repository's filter ran on the host: {sorted(os.listdir(marker.parent))}"
