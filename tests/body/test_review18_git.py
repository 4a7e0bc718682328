"""Review of #18's git tools: protected files reached through links, odd names and history, and programs a
repository's tracked files (not its config) name. What holds is asserted; each would show `hunter2` or fire a
marker otherwise."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from mcp import Client

from .git_repos import git, git_fixtures
from .helpers import call, ok

pytestmark = pytest.mark.anyio

_SECRET = "hunter2"


repo, git_body, client = git_fixtures()


async def _everything(client: Client) -> str:
    """Every read-only git tool's whole answer, as text."""
    shown = [
        ok(await call(client, "git_status")),
        ok(await call(client, "git_diff")),
        ok(await call(client, "git_diff", staged=True)),
        ok(await call(client, "git_log", patch=True, max_count=50)),
    ]
    return repr(shown)


async def test_links_to_a_protected_file_show_their_target_name_never_its_content(client: Client, repo: Path) -> None:
    # Tracked in history, untracked now, and staged: each a symlink to the secret.
    os.symlink(".env", repo / "tracked-link")
    git(repo, "add", "tracked-link")
    git(repo, "commit", "-q", "-m", "a link to the secret")
    os.symlink(".env", repo / "untracked-link")
    os.symlink("../.env", repo / "src" / "nested-link")
    os.symlink(str(repo / ".env"), repo / "absolute-link")
    git(repo, "rm", "-q", "--cached", ".env")
    shown = await _everything(client)
    for link in ("tracked-link", "untracked-link", "src/nested-link", "absolute-link"):
        assert link in shown
    assert _SECRET not in shown


@pytest.mark.parametrize(
    "name",
    [
        "caf\u00e9/.env",
        "a b/.env.local",
        'q"uote/.env',
        "tab\there/.env",
        "new\nline/.env",
        "deep/er/.env.production",
        "certs/server.pem",
        "k/id_ed25519",
        "\u202eevil/.env",
    ],
)
async def test_protected_files_under_odd_names_are_never_shown(client: Client, repo: Path, name: str) -> None:
    path = repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{_SECRET}\n")
    git(repo, "add", "--", name)
    git(repo, "commit", "-q", "-m", "secret in history")
    path.write_text(f"{_SECRET} changed\n")  # (a worktree change too)
    (repo / "moved" / name).parent.mkdir(parents=True)
    git(repo, "mv", "--", name, "moved/" + name)  # (a rename between two protected names, staged)
    assert _SECRET not in await _everything(client)


async def test_a_rename_out_of_a_protected_name_shows_the_new_file_only(client: Client, repo: Path) -> None:
    """`.env` renamed to `settings.txt` in history: the new name is an ordinary file (the name decides), but the
    rename's header never names the old side's content, and the deletion of `.env` is never shown."""
    git(repo, "mv", ".env", "settings.txt")
    git(repo, "commit", "-q", "-m", "no longer a secret")
    log = ok(await call(client, "git_log", patch=True))
    (newest, *_) = log["commits"]
    assert "settings.txt" in newest["patch"] and ".env" not in newest["patch"]


async def test_tracked_attributes_modules_and_mailmap_run_nothing(
    client: Client, repo: Path, home: Path, tmp_path: Path
) -> None:
    """A cloned repository brings tracked files, not config: attributes naming drivers, a .gitmodules with an
    `update = !command` and a `.mailmap` name nothing git runs without config."""
    marker = tmp_path / "fired"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch '{marker}'\ncat\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    (repo / ".gitattributes").write_text("* filter=lfs diff=evil merge=evil text eol=crlf\n")
    (repo / ".gitmodules").write_text(f'[submodule "s"]\n\tpath = s\n\turl = ext::{script}\n\tupdate = !{script}\n')
    (repo / ".mailmap").write_text("Evil <e@x> Human <human@example.com>\n")
    git(repo, "add", ".gitattributes", ".gitmodules", ".mailmap")
    git(repo, "commit", "-q", "-m", "hostile tracked files")
    ok(await call(client, "write_file", path="src/new.py", content="x = 1\n"))
    await _everything(client)
    ok(await call(client, "git_commit", message="with hostile attributes around"))
    assert not marker.exists()
