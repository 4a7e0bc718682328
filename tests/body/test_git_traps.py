"""git run by the body executes nothing the repository names: each trap is planted in `.git/config` (or the
attributes, or a hook) and would create a marker file if it fired; every git tool runs, and no marker appears."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from mcp import Client

from body_mcp.git import Git

from .git_repos import git, git_fixtures, head, make_repo
from .helpers import call, ok

pytestmark = pytest.mark.anyio


def _script(path: Path, marker: Path) -> str:
    path.write_text(f"#!/bin/sh\ntouch '{marker}'\ncat\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


class Traps:
    """Each trap a command that touches `markers/<name>`; `fired()` lists the names that did."""

    def __init__(self, repo: Path, tmp_path: Path) -> None:
        self.repo = repo
        self.markers = tmp_path / "markers"
        self.markers.mkdir()
        self.bin = tmp_path / "trap-bin"
        self.bin.mkdir()

    def command(self, name: str) -> str:
        return _script(self.bin / name, self.markers / name)

    def config(self, key: str, name: str, value: str | None = None) -> None:
        git(self.repo, "config", "--local", key, value if value is not None else self.command(name))

    def fired(self) -> list[str]:
        return sorted(os.listdir(self.markers))


repo, git_body, client = git_fixtures({"push": True})


async def _every_tool(client: Client, repo: Path) -> dict[str, object]:
    ok(await call(client, "edit_file", path="src/app.py", edits=[{"old_text": "return 1", "new_text": "return 2"}]))
    ok(await call(client, "write_file", path="new.py", content="y = 2\n"))
    results: dict[str, object] = {}
    results["status"] = ok(await call(client, "git_status"))
    results["diff"] = ok(await call(client, "git_diff"))
    results["staged"] = ok(await call(client, "git_diff", staged=True))
    results["log"] = ok(await call(client, "git_log", patch=True))
    results["commit"] = ok(await call(client, "git_commit", message="traps everywhere"))
    return results


async def test_no_hook_fires_whatever_the_repository_names(client: Client, repo: Path, tmp_path: Path) -> None:
    traps = Traps(repo, tmp_path)
    hooks = repo / ".git" / "hooks"
    for hook in ("pre-commit", "commit-msg", "post-commit", "reference-transaction", "post-index-change", "pre-push"):
        _script(hooks / hook, traps.markers / hook)
    other = tmp_path / "other-hooks"
    other.mkdir()
    for hook in ("pre-commit", "post-commit", "reference-transaction", "post-index-change"):
        _script(other / hook, traps.markers / f"hookspath-{hook}")
    traps.config("core.hooksPath", "", str(other))
    await _every_tool(client, repo)
    assert traps.fired() == []


async def test_no_fsmonitor_filter_textconv_or_external_diff_fires(client: Client, repo: Path, tmp_path: Path) -> None:
    traps = Traps(repo, tmp_path)
    traps.config("core.fsmonitor", "fsmonitor")
    traps.config("filter.evil.clean", "filter-clean")
    traps.config("filter.evil.smudge", "filter-smudge")
    traps.config("filter.evil.process", "filter-process")
    traps.config("filter.evil.required", "", "true")
    traps.config("filter.lfs.clean", "lfs-clean")
    traps.config("filter.lfs.process", "lfs-process")
    traps.config("diff.evil.textconv", "textconv")
    traps.config("diff.evil.command", "diff-command")
    traps.config("diff.external", "diff-external")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text("* filter=evil diff=evil\n*.py filter=lfs\n")
    (repo / ".gitattributes").write_text("* filter=evil diff=evil\n")
    results = await _every_tool(client, repo)
    assert traps.fired() == []
    # The commit holds the file's own bytes, not a filter's output.
    assert git(repo, "show", "HEAD:new.py") == "y = 2\n"
    assert "+y = 2" in str(results["diff"])


async def test_no_pager_editor_signer_or_included_config_fires(client: Client, repo: Path, tmp_path: Path) -> None:
    traps = Traps(repo, tmp_path)
    traps.config("core.pager", "pager")
    traps.config("pager.log", "pager-log")
    traps.config("pager.diff", "pager-diff")
    traps.config("core.editor", "editor")
    traps.config("sequence.editor", "sequence-editor")
    traps.config("commit.gpgSign", "", "true")
    traps.config("gpg.program", "gpg")
    traps.config("log.showSignature", "", "true")
    traps.config("core.askPass", "askpass")
    traps.config("credential.helper", "credential")
    included = tmp_path / "included.cfg"
    included.write_text(
        f'[filter "inc"]\n\tclean = {traps.command("include-clean")}\n\tsmudge = {traps.command("include-smudge")}\n'
        f"[core]\n\tfsmonitor = {traps.command('include-fsmonitor')}\n"
    )
    traps.config("include.path", "", str(included))
    traps.config(f"includeIf.gitdir:{repo}/.git.path", "", str(included))
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text("* filter=inc\n")
    results = await _every_tool(client, repo)
    assert traps.fired() == []
    assert results["commit"]


async def test_a_worktree_setting_cannot_point_git_outside_the_workspace(
    client: Client, repo: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "host-file.txt").write_text("on the host\n")
    git(repo, "config", "--local", "core.worktree", str(elsewhere))
    status = ok(await call(client, "git_status"))
    assert "host-file.txt" not in {e["path"] for e in status["entries"]}


async def test_no_remote_program_or_mirror_fires_on_push(client: Client, repo: Path, tmp_path: Path) -> None:
    traps = Traps(repo, tmp_path)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    git(repo, "fetch", "-q", "origin")
    git(repo, "checkout", "-q", "-b", "swarm/mcp/t1")
    traps.config("remote.origin.receivepack", "", f"{traps.command('receivepack')}; git-receive-pack")
    traps.config("remote.origin.uploadpack", "", f"{traps.command('uploadpack')}; git-upload-pack")
    traps.config("remote.origin.mirror", "", "true")
    traps.config("core.sshCommand", "ssh-command")
    traps.config("core.gitProxy", "git-proxy")
    _script(repo / ".git" / "hooks" / "pre-push", traps.markers / "pre-push")
    ok(await call(client, "write_file", path="a.txt", content="a\n"))
    ok(await call(client, "git_commit", message="a"))
    pushed = ok(await call(client, "git_push"))
    assert traps.fired() == []
    assert git(remote, "rev-parse", "refs/heads/swarm/mcp/t1").strip() == head(repo)
    # Mirroring was off: the remote's other branches are as they were (a mirror push would force and prune).
    assert git(remote, "for-each-ref", "--format=%(refname)").split() == [
        "refs/heads/main",
        "refs/heads/swarm/mcp/t1",
    ]
    assert pushed["files"] == ["a.txt"]


async def test_an_ext_transport_is_never_run(client: Client, repo: Path, tmp_path: Path) -> None:
    traps = Traps(repo, tmp_path)
    git(repo, "checkout", "-q", "-b", "swarm/mcp/t1")
    git(repo, "remote", "add", "origin", f"ext::sh -c {traps.command('ext')}% >&2")
    git(repo, "config", "--local", "protocol.ext.allow", "always")
    ok(await call(client, "write_file", path="a.txt", content="a\n"))
    ok(await call(client, "git_commit", message="a"))
    result = await call(client, "git_push")
    assert result.is_error
    assert traps.fired() == []


def test_git_gets_an_environment_without_the_callers_secrets(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    environ = {
        "PATH": f"{repo}/bin:relative/bin:/usr/bin:/bin",
        "SWARM_TOKEN": "secret-token",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "GIT_DIR": "/elsewhere",
        "SSH_AUTH_SOCK": "/tmp/agent.sock",
    }
    with Git(repo, environ=environ).session() as session:
        env = session.env
        assert env["PATH"] == "/usr/bin:/bin"
        assert not {"SWARM_TOKEN", "AWS_SECRET_ACCESS_KEY", "GIT_DIR", "SSH_AUTH_SOCK"} & set(env)
        assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == os.devnull
        home = Path(env["HOME"])
        assert home.is_dir() and list(home.iterdir()) == []
        printed = session.run("config", "--list", "--show-scope", what="config").text
    assert "system" not in printed and "global" not in printed
