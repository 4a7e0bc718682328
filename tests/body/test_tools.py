"""Each file tool does what the reference filesystem server's tool of that name does, audited."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import pytest
from mcp import Client
from mcp_types import TextContent

from body_mcp import Body
from shared_protocol import FileChange, MutationResult
from shared_protocol.tools import ChangeKind

from ..conftest import make_body
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio


async def test_read_text_file_returns_text_and_head_tail(client: Client) -> None:
    assert ok(await call(client, "read_text_file", path="src/app.py"))["content"] == "def main():\n    return 1\n"
    assert ok(await call(client, "read_text_file", path="src/app.py", head=1))["content"] == "def main():\n"
    assert ok(await call(client, "read_text_file", path="src/app.py", tail=1))["content"] == "    return 1\n"


async def test_binary_files_are_reported_not_dumped(client: Client, workspace: Path) -> None:
    (workspace / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    data = ok(await call(client, "read_text_file", path="logo.png"))
    assert data["binary"] is True and data["content"] is None and data["size"] == 16


async def test_reads_over_the_size_cap_are_refused(workspace: Path, home: Path) -> None:
    body = make_body(workspace, home, {"workspace": {"max_read_bytes": 10, "max_write_bytes": 10}})
    from mcp import Client as C

    from body_mcp import build_server

    try:
        async with C(build_server(body)) as client:
            refused(await call(client, "read_text_file", path="src/app.py"), "too_large")
            refused(await call(client, "write_file", path="big.txt", content="x" * 11), "too_large")
            assert not (workspace / "big.txt").exists()
    finally:
        body.close()


async def test_list_tree_search_and_info(client: Client, workspace: Path) -> None:
    listed = await call(client, "list_directory", path=".")
    entries = ok(listed)
    assert "src" in entries["directories"] and "README.md" in entries["files"]
    [text] = listed.content
    assert isinstance(text, TextContent) and "[DIR] src" in text.text.splitlines(), text
    tree = ok(await call(client, "directory_tree", path=".", exclude_patterns=[".git"]))["tree"]
    src = next(node for node in tree if node["name"] == "src")
    assert src["children"][0]["name"] == "app.py"
    assert not any(node["name"] == ".git" for node in tree)
    assert ok(await call(client, "search_files", path=".", pattern="*.py"))["matches"] == ["src/app.py"]
    info = ok(await call(client, "get_file_info", path="src/app.py"))
    assert info["type"] == "file" and info["size"] == len("def main():\n    return 1\n")


async def test_list_directory_names_each_entrys_kind_without_following_links(client: Client, workspace: Path) -> None:
    (workspace / "kinds").mkdir()
    (workspace / "kinds" / "sub").mkdir()
    (workspace / "kinds" / "plain.txt").write_text("x")
    (workspace / "kinds" / "to_sub").symlink_to("sub")
    (workspace / "kinds" / "to_file").symlink_to("plain.txt")
    os.mkfifo(workspace / "kinds" / "pipe")
    (workspace / "kinds" / "two\nlines").write_text("x")
    listed = await call(client, "list_directory", path="kinds")
    data = ok(listed)
    assert (data["files"], data["directories"], data["symlinks"], data["other"]) == (
        ["plain.txt", "two\nlines"],
        ["sub"],
        ["to_file", "to_sub"],
        ["pipe"],
    )
    [text] = listed.content
    assert isinstance(text, TextContent)
    # The text is the listing by name, each line its kind and name; a name with a newline is quoted, not split.
    assert text.text.splitlines() == [
        "[OTHER] pipe",
        "[FILE] plain.txt",
        "[DIR] sub",
        "[LINK] to_file",
        "[LINK] to_sub",
        '[FILE] "two\\nlines"',
    ]
    (workspace / "kinds" / "empty").mkdir()
    empty = await call(client, "list_directory", path="kinds/empty")
    assert ok(empty) == {
        "action_id": ok(empty)["action_id"],
        "path": "kinds/empty",
        "files": [],
        "directories": [],
        "symlinks": [],
        "other": [],
    }


async def test_write_file_creates_parents_and_overwrites_atomically(client: Client, workspace: Path) -> None:
    data = ok(await call(client, "write_file", path="docs/new/guide.md", content="hello\n"))
    assert data["changes"] == [  # every directory it creates is a change, and counts like a file
        {"path": "docs", "kind": "created"},
        {"path": "docs/new", "kind": "created"},
        {"path": "docs/new/guide.md", "kind": "created"},
    ]
    assert (workspace / "docs/new/guide.md").read_text() == "hello\n"
    data = ok(await call(client, "write_file", path="docs/new/guide.md", content="bye\n"))
    assert data["changes"] == [{"path": "docs/new/guide.md", "kind": "modified"}]
    assert [p.name for p in (workspace / "docs/new").iterdir()] == ["guide.md"]  # no temp file left behind


async def test_edit_file_requires_each_old_text_to_match_exactly_once(client: Client, workspace: Path) -> None:
    (workspace / "dup.txt").write_text("a\na\nb\n")
    refused(
        await call(client, "edit_file", path="dup.txt", edits=[{"old_text": "a", "new_text": "c"}]), "edit_mismatch"
    )
    refused(
        await call(client, "edit_file", path="dup.txt", edits=[{"old_text": "zzz", "new_text": "c"}]), "edit_mismatch"
    )
    preview = ok(
        await call(client, "edit_file", path="dup.txt", edits=[{"old_text": "b", "new_text": "B"}], dry_run=True)
    )
    assert "-b\n+B\n" in preview["diff"] and (workspace / "dup.txt").read_text() == "a\na\nb\n"
    ok(await call(client, "edit_file", path="dup.txt", edits=[{"old_text": "a\nb", "new_text": "x\ny"}]))
    assert (workspace / "dup.txt").read_text() == "a\nx\ny\n"


async def test_create_move_and_delete(client: Client, workspace: Path) -> None:
    # (Refusals first: after four changed paths, a fifth in this session needs approval before anything else.)
    refused(await call(client, "delete_file", path="nope.txt"), "not_found")
    ok(await call(client, "create_directory", path="a/b"))
    assert (workspace / "a/b").is_dir()
    refused(await call(client, "move_file", source="README.md", destination="src/app.py"), "already_exists")
    ok(await call(client, "move_file", source="README.md", destination="a/README.md"))
    assert (workspace / "a/README.md").exists() and not (workspace / "README.md").exists()
    refused(await call(client, "delete_file", path="a"), "directory_not_empty")
    ok(await call(client, "delete_file", path="a/b"))
    assert not (workspace / "a/b").exists()


async def test_moving_a_directory_counts_every_file_in_it(client: Client, workspace: Path) -> None:
    (workspace / "many").mkdir()
    for n in range(11):
        (workspace / "many" / f"f{n}.txt").write_text("x")
    refused(await call(client, "move_file", source="many", destination="moved"), "blast_radius")
    (workspace / "few").mkdir()
    for n in range(6):
        (workspace / "few" / f"f{n}.txt").write_text("x")
    refused(await call(client, "move_file", source="few", destination="moved"), "approval_required")
    assert (workspace / "many").is_dir() and (workspace / "few").is_dir()


async def test_unknown_tools_and_bad_arguments_are_refused_and_audited(client: Client, body: Body) -> None:
    refused(await client.call_tool("rm_rf", {"rationale": "x"}), "unknown_tool")
    refused(await client.call_tool("write_file", {"path": "a.txt", "content": "x"}), "invalid_arguments")
    refused(
        await client.call_tool("write_file", {"path": "a.txt", "content": "x", "rationale": "   "}), "invalid_arguments"
    )
    refused(await client.call_tool("write_file", {"path": 3, "content": ["x"], "rationale": "r"}), "invalid_arguments")
    refused(
        await client.call_tool("write_file", {"path": "a", "content": "x", "rationale": "r", "extra": 1}),
        "invalid_arguments",
    )
    events = body.audit.tail(5)
    assert [e.code for e in events] == ["unknown_tool"] + ["invalid_arguments"] * 4
    assert events[1].rationale == "" and events[0].tool == "rm_rf"


async def test_an_unexpected_error_inside_a_tool_fails_closed_and_is_audited(
    client: Client, body: Body, monkeypatch: pytest.MonkeyPatch
) -> None:
    from body_mcp import _fsops

    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(_fsops, "write_at", boom)
    refused(await call(client, "write_file", path="x.txt", content="x"), "internal_error")
    event = body.audit.tail(1)[0]
    assert event.outcome == "failed" and event.code == "internal_error"


async def test_every_result_and_refusal_carries_its_audit_action_id(client: Client, body: Body) -> None:
    good = ok(await call(client, "read_text_file", path="README.md"))
    bad = refused(await call(client, "read_text_file", path=".env"), "protected_path")
    assert body.audit.get(good["action_id"]) is not None
    refusal_event = body.audit.get(bad["action_id"])
    assert refusal_event is not None and refusal_event.outcome == "refused" and refusal_event.rationale == "test"


async def test_tool_annotations_are_truthful(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in (
        "read_text_file",
        "list_directory",
        "directory_tree",
        "search_files",
        "get_file_info",
        "status",
        "explain",
    ):
        annotations = tools[name].annotations
        assert annotations is not None and annotations.read_only_hint is True
    for name in ("write_file", "edit_file", "move_file", "delete_file", "undo"):
        annotations = tools[name].annotations
        assert annotations is not None and annotations.read_only_hint is False and annotations.destructive_hint is True
    assert all("rationale" in t.input_schema["required"] for t in tools.values())


@pytest.mark.parametrize(
    ("changes", "diff", "mode"),
    [
        ([], "", "live"),
        ([("a.txt", "created")], "", "live"),
        ([("src/a b.py", "moved"), ("dst/ü.py", "created")], "--- a\n+++ b\n", "shadow"),
        ([("x", "deleted"), ("y", "modified")], "", "live"),
    ],
)
def test_the_mutation_result_built_directly_is_what_the_model_dumps(
    changes: list[tuple[str, ChangeKind]], diff: str, mode: Literal["live", "shadow"]
) -> None:
    direct = MutationResult.as_json(action_id="act_1", mode=mode, changes=changes, diff=diff)
    model = MutationResult(
        action_id="act_1", mode=mode, changes=[FileChange(path=p, kind=k) for p, k in changes], diff=diff
    )
    assert direct == model.model_dump(mode="json")
    assert list(direct) == list(model.model_dump(mode="json"))  # the same key order, so the same text
    assert MutationResult.model_validate(direct) == model


async def test_every_mutating_tool_answers_as_its_result_model_would(client: Client) -> None:
    results = [
        ok(await call(client, "create_directory", path="docs/deep")),
        ok(await call(client, "write_file", path="docs/a.md", content="alpha\n")),
        ok(await call(client, "edit_file", path="docs/a.md", edits=[{"old_text": "alpha", "new_text": "beta"}])),
        ok(
            await call(
                client, "edit_file", path="docs/a.md", edits=[{"old_text": "beta", "new_text": "b"}], dry_run=True
            )
        ),
        ok(await call(client, "move_file", source="docs/a.md", destination="docs/b.md")),
        ok(await call(client, "delete_file", path="docs/b.md")),
    ]
    for data in results:
        dumped = MutationResult.model_validate(data).model_dump(mode="json")
        assert dumped == data and list(dumped) == list(data)
    assert [c["kind"] for c in results[4]["changes"]] == ["moved", "created"]


async def test_write_file_over_a_setuid_file_does_not_keep_the_setuid_bit(client: Client, workspace: Path) -> None:
    target = workspace / "tool"
    target.write_text("#!/bin/sh\n")
    target.chmod(0o4755)
    ok(await call(client, "write_file", path="tool", content="#!/bin/sh\necho hi\n"))
    assert target.stat().st_mode & 0o7777 == 0o755


async def test_write_file_walks_to_an_existing_parent_once_and_still_counts_missing_ones(
    body: Body, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Into an existing directory, a write walks to its parent once (the count of missing ancestors and the write
    share the descriptor); into missing ones, they are created, counted and undone as before."""
    (body.workspace.root / "d").mkdir()
    walks: list[tuple[str, ...]] = []
    walk = body.workspace.open_dir_fd

    def counting(parts: tuple[str, ...], *, create: bool = False) -> int:
        walks.append(parts)
        return walk(parts, create=create)

    monkeypatch.setattr(body.workspace, "open_dir_fd", counting)
    out = await body.call_tool("write_file", {"path": "d/a.txt", "content": "1", "rationale": "r"})
    assert not out.is_error and walks == [("d",)]
    assert (body.workspace.root / "d" / "a.txt").read_text() == "1"
    out = await body.call_tool("write_file", {"path": "n/m/b.txt", "content": "2", "rationale": "r"})
    assert not out.is_error
    assert [c["path"] for c in out.structured["changes"]] == ["n", "n/m", "n/m/b.txt"]
    assert (body.workspace.root / "n" / "m" / "b.txt").read_text() == "2"
    undone = await body.call_tool("undo", {"id": out.action_id, "rationale": "r"})
    assert not undone.is_error, undone.text
    assert not (body.workspace.root / "n").exists()
