# pyright: strict
"""Review 19: a path argument read back from the escapes listings show names with (`body_mcp.names`), attacked
through a real `swarm body` process over stdio with the MCP SDK client, in a workspace holding names that are not
UTF-8 (a symlink leading out, a secret, a directory)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.body.helpers import call, ok, refused

pytestmark = pytest.mark.anyio


def _stdio(workspace: Path, home: Path) -> StdioServerParameters:
    env = {**os.environ, "SWARM_HOME": str(home)}
    return StdioServerParameters(
        command=sys.executable, args=["-m", "swarm_cli", "body", "--workspace", str(workspace)], env=env
    )


@pytest.fixture
def crafted(workspace: Path, outside: Path) -> Path:
    """The workspace with `l` + byte ff (a symlink to /etc), `lo` + ff (a relative one to the directory beside
    it), `.env` + byte fe (a secret), and `f` + ff (a file, to walk through as if a directory)."""
    root = os.fsencode(workspace)
    os.symlink(b"/etc", root + b"/l\xff")
    os.symlink(b"../" + os.fsencode(outside.name), root + b"/lo\xff")
    for name in (b".env\xfe", b"f\xff"):
        with open(root + b"/" + name, "wb") as fh:
            fh.write(b"SECRET=x\n")
    return workspace


async def test_a_refusal_naming_a_name_that_is_not_utf8_is_a_result_and_the_body_serves_on(
    crafted: Path, home: Path
) -> None:
    """HIGH (fixed): each of these refusals quoted the name on disk in its message, a lone surrogate, which the
    SDK could not write to stdout: the body process died on the first, for every agent using it."""
    async with Client(_stdio(crafted, home)) as client:
        with anyio.fail_after(60):
            out = refused(await call(client, "read_text_file", path="l\\xff/passwd"), "path_outside_workspace")
            assert "symlink 'l\\xff' leads outside" in out["message"], out
            out = refused(await call(client, "read_text_file", path="lo\\xff/secret.txt"), "path_outside_workspace")
            assert "symlink 'lo\\xff'" in out["message"], out
            out = refused(await call(client, "read_text_file", path=".env\\xfe"), "protected_path")
            assert out["message"].startswith("'.env\\xfe' is protected"), out
            refused(await call(client, "get_file_info", path=".env\\xfe"), "protected_path")
            refused(await call(client, "git_diff", paths=[".env\\xfe"]), "protected_path")
            refused(await call(client, "run_command", argv=["true"], cwd="l\\xff"), "path_outside_workspace")
            out = refused(await call(client, "list_directory", path="f\\xff/x"), "not_a_directory")
            assert "'f\\xff'" in out["message"], out
            assert ok(await call(client, "read_text_file", path="README.md"))["content"] == "# sample\n"


async def test_moving_a_directory_holding_a_name_that_is_not_utf8_is_refused_not_an_internal_error(
    workspace: Path, home: Path
) -> None:
    """MEDIUM (fixed): the directory's own name is UTF-8, so the guard let it through; the name inside it reached
    the approval gate's SQLite as a lone surrogate (`internal_error`, a traceback in the log). Refused as a change
    to such a name is, the directory left where it was."""
    inner = os.fsencode(workspace / "m") + b"/in\xff"
    (workspace / "m").mkdir()
    with open(inner, "wb") as fh:
        fh.write(b"z")
    async with Client(_stdio(workspace, home)) as client:
        with anyio.fail_after(60):
            out = refused(await call(client, "move_file", source="m", destination="m2"), "invalid_path")
            assert out["message"].startswith("'m/in\\xff' inside it is not UTF-8 on disk"), out
    assert os.path.exists(inner) and not (workspace / "m2").exists()


def _git(workspace: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=workspace, check=True, capture_output=True, timeout=30)


async def test_git_status_shows_a_name_that_is_not_utf8_as_listings_do(workspace: Path, home: Path) -> None:
    """Was LOW, fixed: git_status decoded git's paths with replacement: two names that are not UTF-8 (g\\xff.txt,
    g\\xfe.txt) both showed as 'g\\ufffd.txt', a name list_directory never shows and no path argument reads back.
    Now each is shown as listings show it (`body_mcp.names.shown`), a rename's source too, and read back to its file;
    a protected name that is not UTF-8 is still left out."""
    root = os.fsencode(workspace)
    _git(workspace, "init", "-q", ".")
    names = {b"g\xff.txt": "g\\xff.txt", b"g\xfe.txt": "g\\xfe.txt", b"r\xff.txt": "r\\xff.txt"}
    names[b"a\\xff.txt"] = "a\\\\xff.txt"  # (ASCII that spells an escape out: shown with its backslash doubled)
    for name in (*names, b".env\xfe"):
        with open(root + b"/" + name, "wb") as fh:
            fh.write(b"of " + name.hex().encode() + b"\n")
    _git(workspace, "add", "--", os.fsdecode(b"r\xff.txt"))
    _git(workspace, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-q", "-m", "r")
    _git(workspace, "mv", "--", os.fsdecode(b"r\xff.txt"), os.fsdecode(b"r2\xfe.txt"))
    names[b"r2\xfe.txt"] = "r2\\xfe.txt"
    async with Client(_stdio(workspace, home)) as client:
        with anyio.fail_after(60):
            status = ok(await call(client, "git_status"))
            listed = ok(await call(client, "list_directory", path="."))
            entries = {entry["path"]: entry for entry in status["entries"]}
            read = {path: ok(await call(client, "read_text_file", path=path))["content"] for path in entries}
    assert "g\\xff.txt" in listed["files"], listed
    assert "g\\xff.txt" in [entry["path"] for entry in status["entries"]], status
    del names[b"r\xff.txt"]
    assert sorted(entries) == sorted([*names.values(), "README.md", "src/app.py", "swarm.toml"]), status
    for name, spelt in names.items():
        source = b"r\xff.txt" if name == b"r2\xfe.txt" else name
        assert read[spelt] == f"of {source.hex()}\n", (spelt, read[spelt])
    assert entries["r2\\xfe.txt"]["original_path"] == "r\\xff.txt", entries


async def test_search_files_finds_a_name_by_the_spelling_listings_show(workspace: Path, home: Path) -> None:
    """Was LOW, fixed: search_files' pattern was matched against the name on disk as given: a name listed as 'a\\xff'
    was not found by the pattern '*\\xff'. Its pattern language is now documented (a glob, `fnmatch`'s wildcards,
    spelt as a path argument is: `body_mcp.names.glob`), exclude patterns read alike, and a pattern that cannot
    mean what it says (an escape no name holds, a `[` no `]` closes) is `invalid_arguments`."""
    src = os.fsencode(workspace / "src")
    for name in (b"a\xff", b"b\\xff", b"c[1]", b"d*"):
        with open(src + b"/" + name, "wb") as fh:
            fh.write(b"x")
    async with Client(_stdio(workspace, home)) as client:
        with anyio.fail_after(60):
            found = ok(await call(client, "search_files", path=".", pattern="*\\xff"))
            assert found["matches"] == ["src/a\\xff"], found
            found = ok(await call(client, "search_files", path=".", pattern="*\\\\xff"))  # (the ASCII name)
            assert found["matches"] == ["src/b\\\\xff"], found
            found = ok(await call(client, "search_files", path="src", pattern="[a-d]*", exclude_patterns=["a\\xff"]))
            assert sorted(found["matches"]) == ["src/app.py", "src/b\\\\xff", "src/c[1]", "src/d*"], found
            found = ok(await call(client, "search_files", path=".", pattern="*[[]1]"))
            assert found["matches"] == ["src/c[1]"], found
            found = ok(await call(client, "search_files", path=".", pattern="d[*]"))
            assert found["matches"] == ["src/d*"], found
            for pattern in ("c[1", "*\\x41", "*\\ud800"):
                refused(await call(client, "search_files", path=".", pattern=pattern), "invalid_arguments")
            refused(
                await call(client, "search_files", path=".", pattern="*", exclude_patterns=["[!"]), "invalid_arguments"
            )
            refused(await call(client, "directory_tree", path=".", exclude_patterns=["x["]), "invalid_arguments")
