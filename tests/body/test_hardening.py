"""Holes an adversarial review found (issue #15), each with the test that failed before its fix."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from body_mcp import Body

from ..conftest import require_binary
from .helpers import call

pytestmark = pytest.mark.anyio

PY = str(Path(sys.base_prefix) / "bin" / "python3")


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


async def run(client: Client, script: str, **extra: Any) -> dict[str, Any]:
    require_binary("bwrap", "bubblewrap")
    result = await call(client, "run_command", argv=sh(script), **extra)
    data = result.structured_content
    assert isinstance(data, dict)
    data["_is_error"] = result.is_error
    return data  # pyright: ignore[reportUnknownVariableType]


# -- 2: nothing is applied unless its audit event can be written ---------------------------


async def test_a_command_creating_a_name_that_is_not_utf8_applies_nothing_and_is_audited(
    client: Client, body: Body, workspace: Path
) -> None:
    data = await run(client, "echo changed > README.md; printf x > \"$(printf 'bad\\377name')\"")
    assert data["_is_error"] and data["applied"] is False
    assert data["refusal"]["code"] == "invalid_path"
    assert any(c["path"] == "bad\\xffname" for c in data["changes"])  # shown escaped, losslessly
    assert (workspace / "README.md").read_text() == "# sample\n"
    assert not any(p.name.startswith("bad") for p in workspace.iterdir())
    event = body.audit.get(data["action_id"])
    assert event is not None and event.code == "invalid_path"
    assert body.audit.verify().ok


# -- 3: .gitignore cannot launder changes ---------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    import subprocess

    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(repo),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    done = subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    require_binary("git", "git")
    ws = tmp_path / "repo"
    (ws / "src").mkdir(parents=True)
    for i in range(12):
        (ws / "src" / f"m{i}.py").write_text(f"x = {i}\n")
    (ws / "README.md").write_text("# r\n")
    _git(ws, "init", "-q")
    _git(ws, "add", ".")
    _git(ws, "commit", "-qm", "init")
    (ws / ".gitignore").write_text("src/\n")  # a human's mistake, or an agent's earlier write: still no laundering
    return ws.resolve()


async def test_the_agent_cannot_change_gitignore_with_a_tool_or_a_command(repo: Path, home: Path) -> None:
    from body_mcp import build_server

    from ..conftest import make_body

    body = make_body(repo, home)
    try:
        async with Client(build_server(body)) as client:
            written = await call(client, "write_file", path=".gitignore", content="*\n")
            assert written.is_error and (written.structured_content or {})["code"] == "protected_path"
            data = await run(client, "echo '*' >> .gitignore")
            assert data["refusal"]["code"] == "protected_path" and data["applied"] is False
            assert (repo / ".gitignore").read_text() == "src/\n"
    finally:
        body.close()


async def test_tracked_files_count_even_when_ignored(repo: Path, home: Path) -> None:
    from body_mcp import build_server

    from ..conftest import make_body

    body = make_body(repo, home)
    try:
        async with Client(build_server(body)) as client:
            data = await run(client, "for i in 0 1 2 3 4 5 6 7 8 9 10 11; do echo y > src/m$i.py; done")
            assert data["refusal"]["code"] == "blast_radius" and data["applied"] is False
            assert {c["category"] for c in data["changes"]} == {"counted"}
            assert (repo / "src" / "m0.py").read_text() == "x = 0\n"
    finally:
        body.close()


async def test_an_executable_or_script_under_an_artifact_directory_counts(
    client: Client, body: Body, workspace: Path
) -> None:
    # (.tox: the workspace's .venv is an env dir, which never reaches the workspace; this is one that does)
    script = (
        "mkdir -p .tox/py/bin .tox/py/lib && printf '#!/bin/sh\\n' > .tox/py/bin/tool && chmod 755 .tox/py/bin/tool"
        " && printf 'import os\\n' > .tox/py/lib/evil.pth && printf 'x' > .tox/py/lib/data.txt"
    )
    data = await run(client, script)
    categories = {c["path"]: c["category"] for c in data["changes"]}
    assert categories[".tox/py/bin/tool"] == "counted" and categories[".tox/py/lib/evil.pth"] == "counted"
    assert categories[".tox/py/lib/data.txt"] == "artifact"


def test_the_index_parser_reads_what_git_tracks_in_every_index_version(tmp_path: Path) -> None:
    from body_mcp.gitindex import parse_index

    require_binary("git", "git")
    repo = tmp_path / "r"
    (repo / "deep" / "er").mkdir(parents=True)
    names = ["a.txt", "deep/b.py", "deep/er/c with space.md", "deep/er/" + "n" * 250, "z"]
    for name in names:
        (repo / name).write_text(name)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    for version in ("2", "3", "4"):
        _git(repo, "update-index", "--index-version", version)
        if version == "3":
            _git(repo, "update-index", "--skip-worktree", "z")  # an extended entry
        assert parse_index((repo / ".git" / "index").read_bytes()) == frozenset(names)


# -- 6: files the host or CI executes are protected, inside commands too ---------------------


@pytest.mark.parametrize(
    "path",
    [
        ".vscode/tasks.json",
        ".vscode/settings.json",
        ".idea/workspace.xml",
        ".devcontainer/devcontainer.json",
        ".github/workflows/ci.yml",
        ".envrc",
        ".gitlab-ci.yml",
    ],
)
async def test_editor_and_ci_executed_paths_are_read_only_to_tools_and_commands(
    client: Client, workspace: Path, path: str
) -> None:
    written = await call(client, "write_file", path=path, content="{}")
    assert written.is_error and (written.structured_content or {})["code"] == "protected_path"
    data = await run(client, f"mkdir -p \"$(dirname {path})\" && echo '{{}}' > {path}")
    assert data["refusal"]["code"] == "protected_path" and data["applied"] is False
    assert not (workspace / path).exists()


# -- 19: splitting work does not slip past the approval threshold -----------------------------


async def test_files_changed_one_by_one_need_the_approval_one_action_would(client: Client, body: Body) -> None:
    from .helpers import ok, refused

    for i in range(4):
        ok(await call(client, "write_file", path=f"f{i}.txt", content="x"))
    ok(await call(client, "write_file", path="f0.txt", content="again"))  # the same file again is not a new one
    fifth = refused(await call(client, "write_file", path="f4.txt", content="x"), "approval_required")
    assert "split" not in fifth["message"].lower() and "smaller" not in fifth["message"].lower()
    ok(await call(client, "read_text_file", path="f0.txt"))  # reading needs nothing
    asked = ok(
        await call(
            client, "request_approval", summary="five files", confidence=0.9, files=[f"f{i}.txt" for i in range(5)]
        )
    )
    body.admin.answer(asked["decision_id"], "approve", reason="fine")
    ok(await call(client, "write_file", path="f4.txt", content="x", decision_id=asked["decision_id"]))


async def test_commands_split_into_small_sets_need_the_approval_one_command_would(
    client: Client, workspace: Path
) -> None:
    first = await run(client, "for i in 1 2 3 4; do echo $i > a$i.txt; done")
    assert first["applied"] is True
    second = await run(client, "for i in 1 2 3 4; do echo $i > b$i.txt; done")
    assert second["refusal"]["code"] == "approval_required" and second["applied"] is False
    assert not (workspace / "b1.txt").exists()


async def test_a_zero_window_holds_the_threshold_per_action_only(workspace: Path, home: Path) -> None:
    from body_mcp import build_server

    from ..conftest import make_body
    from .helpers import ok

    body = make_body(workspace, home, {"policy": {"cumulative_window_s": 0}})
    try:
        async with Client(build_server(body)) as client:
            for i in range(8):
                ok(await call(client, "write_file", path=f"g{i}.txt", content="x"))
    finally:
        body.close()


async def test_the_window_forgets_files_changed_longer_ago(body: Body) -> None:
    from body_mcp._db import Writes
    from body_mcp.approval import ApprovalGate
    from body_mcp.exceptions import ApprovalRequired
    from shared_protocol import Impact
    from shared_protocol.decisions import DEFAULT_THRESHOLDS

    now = [1000.0]
    gate = ApprovalGate(
        body.local_decisions,
        DEFAULT_THRESHOLDS,
        body.db,
        approve_irreversible=False,
        cumulative_window_s=600,
        clock=lambda: now[0],
    )
    writes = Writes()
    gate.changed(writes, ["a", "b", "c", "d"], approved=False)
    with body.db.write() as conn:
        writes.run(conn)
    with pytest.raises(ApprovalRequired):
        await gate.check(None, Impact(files=1), action_id="act_1", paths=["e"])
    now[0] += 599
    with pytest.raises(ApprovalRequired):
        await gate.check(None, Impact(files=1), action_id="act_2", paths=["e"])
    now[0] += 2
    await gate.check(None, Impact(files=1), action_id="act_3", paths=["e"])


async def test_a_file_changed_again_within_the_window_is_counted_without_waiting_for_the_write_lock(
    body: Body,
) -> None:
    import sqlite3

    import anyio

    from body_mcp._db import Writes
    from body_mcp.approval import ApprovalGate
    from body_mcp.exceptions import ApprovalRequired
    from shared_protocol import Impact
    from shared_protocol.decisions import DEFAULT_THRESHOLDS

    gate = ApprovalGate(
        body.local_decisions, DEFAULT_THRESHOLDS, body.db, approve_irreversible=False, cumulative_window_s=600
    )
    writes = Writes()
    gate.changed(writes, ["a", "b"], approved=False)
    with body.db.write() as conn:
        writes.run(conn)
    other = sqlite3.connect(body.db.path, isolation_level=None, timeout=0)  # another process of the same body
    try:
        other.execute("BEGIN IMMEDIATE")  # (holding the write lock, as the audit writer's commit does)
        with anyio.fail_after(5):  # (noting a file would wait for the lock: 30 s)
            assert await gate.check(None, Impact(files=1), action_id="act_1", paths=["a", "b"]) is False
        # Files the other process notes are counted: a, b, c, d and e are the threshold's five.
        other.execute("INSERT INTO recent_changes (path, at) VALUES ('c', ?), ('d', ?), ('e', ?)", (2e9, 2e9, 2e9))
        other.execute("COMMIT")
        with pytest.raises(ApprovalRequired, match="5 distinct files"):
            await gate.check(None, Impact(files=1), action_id="act_2", paths=["a"])
        # A file not noted yet is noted as the action's, in a write transaction, as before.
        other.execute("DELETE FROM recent_changes WHERE path IN ('d', 'e')")
        assert await gate.check(None, Impact(files=1), action_id="act_3", paths=["z"]) is False
        noted = other.execute("SELECT action_id FROM recent_changes WHERE path = 'z'").fetchone()
        assert noted == ("act_3",)
    finally:
        other.close()


# -- 7: held runs are capped by count and by bytes ---------------------------------------------


async def test_held_runs_are_capped_by_count_and_bytes_oldest_first(tmp_path: Path) -> None:
    from body_mcp.held import HeldRun, HeldRuns
    from body_mcp.staging import SortedChanges
    from sandbox import RunResult
    from sandbox._staged import StagedDirRun  # pyright: ignore[reportPrivateUsage]

    def held(name: str, size: int) -> HeldRun:
        area = tmp_path / name
        area.mkdir()
        result = RunResult(
            exit_code=0,
            stdout="",
            stderr="",
            stdout_truncated=False,
            stderr_truncated=False,
            timed_out=False,
            killed=False,
            duration_s=0.0,
            staged_bytes=size,
        )
        run = StagedDirRun(result=result, changes=[], staging=area)
        return HeldRun(staged=run, sorted_=SortedChanges(), changes=[], states={}, expires=1e12)

    runs = HeldRuns(max_count=2, max_bytes=100)
    assert await runs.put((("a",), "."), held("a", 10))
    assert await runs.put((("b",), "."), held("b", 10))
    assert await runs.put((("c",), "."), held("c", 10))  # over the count: the oldest goes
    assert len(runs) == 2 and runs.take((("a",), ".")) is None and not (tmp_path / "a").exists()
    assert await runs.put((("d",), "."), held("d", 95))  # over the bytes: the oldest goes until it fits
    assert len(runs) == 1 and runs.take((("d",), ".")) is not None
    assert not await runs.put((("e",), "."), held("e", 101))  # alone over the bytes: not held at all
    assert len(runs) == 0


# -- 8: directories count like files, in the file tools too ------------------------------------


async def test_every_directory_create_directory_makes_counts_toward_the_blast_radius(
    client: Client, body: Body, workspace: Path
) -> None:
    from .helpers import ok, refused

    made = ok(await call(client, "create_directory", path="a/b/c"))
    event = body.audit.get(made["action_id"])
    assert event is not None and event.impact.files == 3
    refused(await call(client, "create_directory", path="/".join("d" * (i + 1) for i in range(11))), "blast_radius")
    assert not (workspace / "d").exists()


async def test_moving_a_directory_counts_its_directories_too(client: Client, body: Body, workspace: Path) -> None:
    from .helpers import ok, refused

    for i in range(11):
        (workspace / "tree" / f"sub{i}").mkdir(parents=True)
    refused(await call(client, "move_file", source="tree", destination="moved"), "blast_radius")
    assert (workspace / "tree").is_dir() and not (workspace / "moved").exists()
    (workspace / "small" / "x").mkdir(parents=True)
    moved = ok(await call(client, "move_file", source="small", destination="moved"))
    event = body.audit.get(moved["action_id"])
    assert event is not None and event.impact.files == 2
