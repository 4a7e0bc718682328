"""git_status, git_diff, git_log and git_commit over a real repository: the body's own changes only, trailers,
protected files never shown, undo, and a clear refusal for each bad case."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from body_mcp import Body, build_server

from ..conftest import make_body
from .agent_helpers import agent_body, agent_config
from .git_repos import git, head, make_repo
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def repo_body(repo: Path, home: Path) -> Iterator[Body]:
    body = make_body(repo, home)
    yield body
    body.close()


@pytest.fixture
async def gc(repo_body: Body) -> AsyncIterator[Client]:
    async with Client(build_server(repo_body)) as client:
        yield client


async def test_status_diff_and_log_show_the_repository_but_never_the_env_file(gc: Client, repo: Path) -> None:
    (repo / ".env").write_text("SECRET=changed-secret\n")
    (repo / "config").mkdir()
    (repo / "config" / ".env.local").write_text("TOKEN=new-secret\n")
    (repo / "README.md").write_text("# sample\n\nhuman edit\n")
    ok(await call(gc, "write_file", path="notes.txt", content="by the body\n"))

    status = ok(await call(gc, "git_status"))
    paths = {e["path"]: e for e in status["entries"]}
    assert status["branch"] == "main" and status["head"] == head(repo)
    assert set(paths) == {"README.md", "notes.txt"}
    assert paths["notes.txt"]["committable"] and not paths["README.md"]["committable"]

    diff = ok(await call(gc, "git_diff"))["diff"]
    assert "+human edit" in diff and "+by the body" in diff
    assert ".env" not in diff and "secret" not in diff.lower()

    log = ok(await call(gc, "git_log", patch=True))
    assert [c["message"] for c in log["commits"]] == ["second", "first: with the secret"]
    first = log["commits"][1]
    assert "src/app.py" in first["patch"] and ".env" not in first["patch"] and "hunter2" not in first["patch"]

    only = ok(await call(gc, "git_diff", paths=["README.md"]))["diff"]
    assert "README.md" in only and "notes.txt" not in only
    refused(await call(gc, "git_diff", paths=[".env"]), "protected_path")


async def test_commit_holds_only_the_bodys_audited_changes_with_their_action_ids(gc: Client, repo: Path) -> None:
    parent = head(repo)
    edit = ok(await call(gc, "edit_file", path="src/app.py", edits=[{"old_text": "return 1", "new_text": "return 2"}]))
    new = ok(await call(gc, "write_file", path="src/new.py", content="x = 1\n"))
    (repo / "README.md").write_text("a human's unfinished edit\n")  # not the body's: never committed
    (repo / "human.txt").write_text("untracked, by a human\n")

    result = ok(await call(gc, "git_commit", message="Return 2 from main"))
    assert result["branch"] == "main" and result["commit"] == head(repo)
    assert sorted(result["files"]) == ["src/app.py", "src/new.py"]
    assert result["actions"] == [edit["action_id"], new["action_id"]]
    assert git(repo, "rev-parse", "HEAD^").strip() == parent
    assert sorted(git(repo, "show", "--name-only", "--format=", "HEAD").split()) == ["src/app.py", "src/new.py"]
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith("Return 2 from main\n")
    assert f"Swarm-Action: {edit['action_id']}" in message and f"Swarm-Action: {new['action_id']}" in message
    assert f"Swarm-Commit-Action: {result['action_id']}" in message
    trailers = git(repo, "log", "-1", "--format=%(trailers:key=Swarm-Action,valueonly)").split()
    assert trailers == [edit["action_id"], new["action_id"]]
    # The human's changes are still there, uncommitted; the index agrees with the commit for the body's paths.
    assert (repo / "README.md").read_text() == "a human's unfinished edit\n"
    assert git(repo, "status", "--porcelain").splitlines() == [" M README.md", "?? human.txt"]
    refused(await call(gc, "git_commit", message="again"), "nothing_to_commit")


async def test_a_file_someone_else_changed_after_the_body_is_left_out(gc: Client, repo: Path) -> None:
    ok(await call(gc, "write_file", path="a.txt", content="body\n"))
    (repo / "a.txt").write_text("someone else\n")
    result = refused(await call(gc, "git_commit", message="mine"), "nothing_to_commit")
    assert "a.txt" in result["message"]
    ok(await call(gc, "write_file", path="a.txt", content="body again\n"))
    assert ok(await call(gc, "git_commit", message="mine"))["files"] == ["a.txt"]


async def test_a_commit_is_undone_like_any_action_and_refused_once_the_branch_moved(gc: Client, repo: Path) -> None:
    parent = head(repo)
    write = ok(await call(gc, "write_file", path="a.txt", content="a\n"))
    commit = ok(await call(gc, "git_commit", message="add a"))
    undone = ok(await call(gc, "undo", id=commit["action_id"]))
    assert undone["undone"] == [commit["action_id"]]
    assert head(repo) == parent and (repo / "a.txt").read_text() == "a\n"  # the file change is its own action
    # Its changes are uncommitted again: a new commit takes them.
    again = ok(await call(gc, "git_commit", message="add a, again"))
    assert again["actions"] == [write["action_id"]] and head(repo) == again["commit"]
    # A human commits on top: undoing the body's commit would drop theirs.
    (repo / "human.txt").write_text("h\n")
    git(repo, "add", "human.txt")
    git(repo, "commit", "-q", "-m", "human")
    moved = head(repo)
    refused(await call(gc, "undo", id=again["action_id"]), "undo_conflict")
    refused(await call(gc, "undo", id=again["action_id"], force=True), "undo_conflict")
    assert head(repo) == moved


async def test_an_undone_commit_undone_again_moves_the_branch_forward(gc: Client, repo: Path) -> None:
    ok(await call(gc, "write_file", path="a.txt", content="a\n"))
    commit = ok(await call(gc, "git_commit", message="add a"))
    undo = ok(await call(gc, "undo", id=commit["action_id"]))
    ok(await call(gc, "undo", id=undo["action_id"]))
    assert head(repo) == commit["commit"]
    refused(await call(gc, "git_commit", message="nothing new"), "nothing_to_commit")


async def test_swarm_undo_from_the_cli_side_reverses_a_commit(repo_body: Body, gc: Client, repo: Path) -> None:
    parent = head(repo)
    ok(await call(gc, "write_file", path="a.txt", content="a\n"))
    commit = ok(await call(gc, "git_commit", message="add a"))
    repo_body.admin.undo(commit["action_id"], force=False)
    assert head(repo) == parent


async def test_protected_and_ignored_paths_are_never_committed(gc: Client, repo: Path) -> None:
    (repo / ".gitignore").write_text("build/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore build")
    ok(await call(gc, "write_file", path="build/out.txt", content="artifact\n"))
    refused(await call(gc, "write_file", path=".env.prod", content="X=1\n"), "protected_path")
    refused(await call(gc, "git_commit", message="artifacts"), "nothing_to_commit")


async def test_bad_input_is_refused_clearly(gc: Client, repo: Path, tmp_path: Path, home: Path) -> None:
    refused(await call(gc, "git_commit", message="   "), "invalid_arguments")
    refused(await call(gc, "git_commit"), "invalid_arguments")
    refused(await call(gc, "git_commit", message="nothing yet"), "nothing_to_commit")
    refused(await call(gc, "git_log", max_count=0), "invalid_arguments")
    git(repo, "checkout", "-q", "--detach")
    ok(await call(gc, "write_file", path="a.txt", content="a\n"))
    refused(await call(gc, "git_commit", message="detached"), "detached_head")

    plain = tmp_path / "plain"
    plain.mkdir()
    broken = tmp_path / "broken"
    (broken / ".git").mkdir(parents=True)
    (broken / ".git" / "config").write_text("[core]\n")  # a .git that is no repository
    for where in (plain, broken):
        body = make_body(where.resolve(), home)
        try:
            async with Client(build_server(body)) as client:
                for tool, args in (
                    ("git_status", {}),
                    ("git_diff", {}),
                    ("git_log", {}),
                    ("git_commit", {"message": "m"}),
                ):
                    refused(await call(client, tool, **args), "not_a_git_repository")
        finally:
            body.close()


async def test_a_first_commit_on_an_unborn_branch_and_its_undo(tmp_path: Path, home: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    body = make_body(repo.resolve(), home)
    try:
        async with Client(build_server(body)) as client:
            assert ok(await call(client, "git_log"))["commits"] == []
            status = ok(await call(client, "git_status"))
            assert status["head"] is None and status["branch"] == "main"
            ok(await call(client, "write_file", path="a.txt", content="a\n"))
            commit = ok(await call(client, "git_commit", message="first"))
            assert commit["files"] == ["a.txt"] and head(repo) == commit["commit"]
            ok(await call(client, "undo", id=commit["action_id"]))
            assert git(repo, "rev-parse", "-q", "--verify", "HEAD", check=False) == ""
    finally:
        body.close()


async def test_an_agents_commit_names_the_agent_and_its_logic_version(repo: Path, home: Path) -> None:
    config = agent_config()
    body = agent_body(repo, home, config)
    try:
        async with Client(build_server(body)) as client:
            ok(await call(client, "write_file", path="a.txt", content="a\n"))
            ok(await call(client, "git_commit", message="agent work"))
    finally:
        body.close()
    assert body.settings.agent_profile is not None
    message = git(repo, "log", "-1", "--format=%B%n%an <%ae>")
    assert "Swarm-Agent: w1" in message
    assert f"Swarm-Logic-Version: {body.settings.agent_profile.logic_version}" in message
    assert "swarm agent w1 <w1@swarm.invalid>" in message


async def test_shadow_mode_plans_the_commit_and_makes_none(repo: Path, home: Path) -> None:
    ok_body = make_body(repo, home)
    try:
        async with Client(build_server(ok_body)) as client:
            ok(await call(client, "write_file", path="a.txt", content="a\n"))
    finally:
        ok_body.close()
    before = head(repo)
    shadow = make_body(repo, home, {"policy": {"mode": "shadow"}})
    try:
        async with Client(build_server(shadow)) as client:
            result = ok(await call(client, "git_commit", message="would commit"))
    finally:
        shadow.close()
    assert result["commit"] is None and result["files"] == ["a.txt"] and head(repo) == before


async def test_git_tools_over_stdio_and_swarm_undo_from_the_command_line(repo: Path, home: Path) -> None:
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_AGENT": "stdio-test", "SWARM_TOKEN": "must-not-reach-git"}
    command = [sys.executable, "-m", "swarm_cli", "body", "--workspace", str(repo)]
    parent = head(repo)
    async with Client(StdioServerParameters(command=command[0], args=command[1:], env=env)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"git_status", "git_diff", "git_log", "git_commit", "git_push"} <= names
        ok(await call(client, "write_file", path="a.txt", content="a\n"))
        assert [e["path"] for e in ok(await call(client, "git_status"))["entries"]] == ["a.txt"]
        commit = ok(await call(client, "git_commit", message="over stdio"))
        refused(await call(client, "git_push"), "push_disabled")
    assert head(repo) == commit["commit"]
    undone = subprocess.run(
        [sys.executable, "-m", "swarm_cli", "undo", commit["action_id"], "--workspace", str(repo)],
        env={k: v for k, v in env.items() if k not in ("SWARM_BRAIN_URL", "SWARM_TOKEN")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert undone.returncode == 0, undone.stderr
    assert head(repo) == parent


async def test_a_message_cannot_forge_the_bodys_trailers(gc: Client, repo: Path) -> None:
    ok(await call(gc, "write_file", path="a.txt", content="a\n"))
    before = head(repo)
    refused(await call(gc, "git_commit", message="work\n\nSwarm-Action: act_someone_elses"), "invalid_arguments")
    refused(await call(gc, "git_commit", message="work\nswarm-agent: captain"), "invalid_arguments")
    assert head(repo) == before


async def test_a_task_worktree_is_a_repository_the_tools_work_in(repo: Path, tmp_path: Path, home: Path) -> None:
    task = tmp_path / "task-worktree"
    git(repo, "worktree", "add", "-q", "-b", "swarm/w1/t1", str(task))
    body = make_body(task.resolve(), home)
    try:
        async with Client(build_server(body)) as client:
            ok(await call(client, "write_file", path="a.txt", content="a\n"))
            assert ok(await call(client, "git_status"))["branch"] == "swarm/w1/t1"
            commit = ok(await call(client, "git_commit", message="in the worktree"))
    finally:
        body.close()
    assert head(repo, "refs/heads/swarm/w1/t1") == commit["commit"]
    assert head(repo, "refs/heads/main") != commit["commit"]
