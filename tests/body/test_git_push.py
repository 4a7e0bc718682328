"""git_push: off by default; when on, only the agent's own branch, never forced, a push touching CI or IDE config
held for a human, and each bad case a clear refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from body_mcp import Body, build_server

from ..conftest import make_body
from .git_repos import git, git_fixtures, head
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio

BRANCH = "swarm/mcp/task-1"
"""The body's agent outside agent mode is its MCP client's name (`mcp` for the SDK's client)."""


repo, git_body, pc = git_fixtures({"push": True}, push_branch=BRANCH)


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return tmp_path / "remote.git"


async def test_push_is_off_by_default(repo: Path, home: Path, remote: Path) -> None:
    body = make_body(repo, home)
    try:
        async with Client(build_server(body)) as client:
            ok(await call(client, "write_file", path="a.txt", content="a\n"))
            ok(await call(client, "git_commit", message="a"))
            refused(await call(client, "git_push"), "push_disabled")
    finally:
        body.close()
    assert git(remote, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/main"]


async def test_the_agents_own_branch_is_pushed(pc: Client, repo: Path, remote: Path) -> None:
    ok(await call(pc, "write_file", path="a.txt", content="a\n"))
    ok(await call(pc, "git_commit", message="a"))
    pushed = ok(await call(pc, "git_push"))
    assert pushed == {**pushed, "remote": "origin", "branch": BRANCH, "commit": head(repo), "files": ["a.txt"]}
    assert git(remote, "rev-parse", f"refs/heads/{BRANCH}").strip() == head(repo)


async def test_another_branch_is_refused(pc: Client, repo: Path) -> None:
    git(repo, "checkout", "-q", "main")
    ok(await call(pc, "write_file", path="a.txt", content="a\n"))
    ok(await call(pc, "git_commit", message="a"))
    refused(await call(pc, "git_push"), "branch_not_allowed")
    git(repo, "checkout", "-q", "-b", "swarm/someone-else/task-1")
    refused(await call(pc, "git_push"), "branch_not_allowed")


async def test_a_missing_remote_is_a_clear_error(pc: Client, repo: Path) -> None:
    refused(await call(pc, "git_push", remote="upstream"), "no_remote")
    git(repo, "remote", "remove", "origin")
    refused(await call(pc, "git_push"), "no_remote")
    refused(await call(pc, "git_push", remote="-o"), "invalid_arguments")


async def test_a_push_is_never_forced(pc: Client, repo: Path, remote: Path) -> None:
    ok(await call(pc, "write_file", path="a.txt", content="a\n"))
    first = ok(await call(pc, "git_commit", message="a"))
    ok(await call(pc, "git_push"))
    ok(await call(pc, "undo", id=first["action_id"]))  # the branch goes back: pushing now would rewrite the remote
    ok(await call(pc, "write_file", path="b.txt", content="b\n"))
    ok(await call(pc, "git_commit", message="b instead"))
    refused(await call(pc, "git_push"), "git_failed")
    assert git(remote, "rev-parse", f"refs/heads/{BRANCH}").strip() == first["commit"]


async def test_a_push_touching_ci_config_needs_a_human(pc: Client, git_body: Body, repo: Path, remote: Path) -> None:
    # The body cannot write .github/; a human's commit on the agent's branch can still carry it.
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    git(repo, "add", ".github")
    git(repo, "commit", "-q", "-m", "ci")
    ask = refused(await call(pc, "git_push"), "approval_required")
    assert ask["ask"]["needs"] == "human" and ask["ask"]["files"] == [".github/workflows/ci.yml"]
    # A decision the rules approved (small, confident) is not a human's.
    auto = ok(await call(pc, "request_approval", summary="push", confidence=0.9, files=[".github/workflows/ci.yml"]))
    assert auto["state"] == "approved"
    refused(await call(pc, "git_push", decision_id=auto["decision_id"]), "approval_required")
    assert git(remote, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/main"]
    decision = ok(
        await call(
            pc,
            "request_approval",
            summary="push the CI change",
            confidence=0.9,
            files=[".github/workflows/ci.yml"],
            irreversible=True,
        )
    )
    git_body.admin.answer(decision["decision_id"], "approve", reason="reviewed")
    ok(await call(pc, "git_push", decision_id=decision["decision_id"]))
    assert git(remote, "rev-parse", f"refs/heads/{BRANCH}").strip() == head(repo)


async def test_a_push_is_audited_as_irreversible(pc: Client, git_body: Body) -> None:
    ok(await call(pc, "write_file", path="a.txt", content="a\n"))
    ok(await call(pc, "git_commit", message="a"))
    pushed = ok(await call(pc, "git_push"))
    event = git_body.audit.get(pushed["action_id"])
    assert event is not None and event.tool == "git_push" and event.outcome == "ok"
    assert "undo cannot take them back" in str(event.detail["irreversible"])
    assert event.detail["branch"] == BRANCH
