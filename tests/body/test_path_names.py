# pyright: strict
"""A path argument is read as results show names (`body_mcp.names`): a name given back as it was listed is that
file for every file tool, and the checks after see the name on disk however it was spelt. A real body, real files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from body_mcp import Body
from body_mcp.exceptions import InvalidPath
from body_mcp.names import named, shown
from body_mcp.server import build_server
from tests.conftest import make_body

from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio

_BYTES = b"a\xff"  # (not UTF-8: listed as `a\xff`)
_ASCII = b"a\\xff"  # (the ASCII spelling of that: listed as `a\\xff`)


@pytest.fixture
def crafted(workspace: Path) -> Path:
    """`names/` holding a file named a + byte ff and one named with the five ASCII characters `a\\xff`."""
    names = workspace / "names"
    names.mkdir()
    for raw in (_BYTES, _ASCII):
        with open(os.fsencode(names) + b"/" + raw, "wb") as f:
            f.write(repr(raw).encode())
    return names


def test_named_reads_back_every_name_shown() -> None:
    spelt = ["a\udcff", "a\\xff", "a\\\\xff", "c\\u00e9", "cé", "d\\", "e\\\\", "f\\x4", "g\\udcff", "plain", "x/y"]
    for name in spelt:
        assert named(shown(name)) == name, name
    assert named("c\\u00e9") == "cé"  # (a character spelt out is that character)
    assert named("c\\xc3\\xa9") == "cé"  # (bytes that are UTF-8 are the name a listing gives them)


@pytest.mark.parametrize("raw", ["a\\x41", "a\\x2e", "\\ud800", "a\\udc41"])
def test_an_escape_that_names_no_byte_of_a_file_name_is_an_invalid_path(raw: str) -> None:
    with pytest.raises(InvalidPath):
        named(raw)


async def test_every_file_tool_reaches_the_file_a_name_was_listed_under(
    client: Client, workspace: Path, crafted: Path
) -> None:
    listed = ok(await call(client, "list_directory", path="names"))
    assert sorted(listed["files"]) == ["a\\\\xff", "a\\xff"], listed
    for raw in (_BYTES, _ASCII):
        as_listed = f"names/{shown(os.fsdecode(raw))}"
        read = ok(await call(client, "read_text_file", path=as_listed))
        assert (read["content"], read["path"]) == (repr(raw), as_listed), read
        info = ok(await call(client, "get_file_info", path=as_listed))
        assert (info["size"], info["path"]) == (len(repr(raw)), as_listed), info
    written = ok(await call(client, "write_file", path="names/a\\\\xff", content="new"))
    assert [change["path"] for change in written["changes"]] == ["names/a\\\\xff"], written
    ok(await call(client, "edit_file", path="names/a\\\\xff", edits=[{"old_text": "new", "new_text": "edited"}]))
    with open(os.fsencode(crafted) + b"/" + _ASCII, "rb") as f:
        assert f.read() == b"edited"
    ok(await call(client, "move_file", source="names/a\\\\xff", destination="names/b\\\\xff"))
    ok(await call(client, "delete_file", path="names/b\\\\xff"))
    assert os.listdir(os.fsencode(crafted)) == [_BYTES]


async def test_a_change_to_a_name_that_is_not_utf8_is_refused_and_the_file_kept(
    client: Client, workspace: Path, crafted: Path
) -> None:
    """Read, it is the file listed; a change to it could not be audited or recorded for undo as it is (as a
    command's change to it is refused), and is never made to the ASCII file of the same spelling."""
    before = sorted(os.listdir(os.fsencode(crafted)))
    edit = [{"old_text": "a", "new_text": "b"}]
    for tool, args in [
        ("write_file", {"path": "names/a\\xff", "content": "x"}),
        ("write_file", {"path": "names/new\\xfe", "content": "x"}),
        ("edit_file", {"path": "names/a\\xff", "edits": edit}),
        ("delete_file", {"path": "names/a\\xff"}),
        ("create_directory", {"path": "names/d\\xfe"}),
        ("move_file", {"source": "names/a\\xff", "destination": "names/b"}),
        ("move_file", {"source": "names/a\\\\xff", "destination": "names/b\\xfe"}),
    ]:
        refused(await call(client, tool, **args), "invalid_path")
    assert sorted(os.listdir(os.fsencode(crafted))) == before
    for raw in (_BYTES, _ASCII):
        with open(os.fsencode(crafted) + b"/" + raw, "rb") as f:
            assert f.read() == repr(raw).encode()


async def test_a_name_that_only_holds_a_backslash_is_reached_as_it_is(client: Client, workspace: Path) -> None:
    for name in ("d\\", "f\\x4", "g\\u12"):
        (workspace / name).write_text(name)
        assert ok(await call(client, "read_text_file", path=name))["content"] == name


async def test_an_escape_that_names_no_byte_of_a_file_name_is_refused(client: Client) -> None:
    for raw in ("a\\x41", "src/\\ud800", "\\x2e\\x2e/outside"):
        refused(await call(client, "read_text_file", path=raw), "invalid_path")
        refused(await call(client, "write_file", path=raw, content="x"), "invalid_path")


@pytest.fixture
def guarded(workspace: Path, home: Path) -> Iterator[Body]:
    """A body that denies `.env*` and `cé*` (the name as UTF-8 on disk: bytes c3 a9)."""
    (workspace / "cé-secret").write_text("secret\n")
    body = make_body(workspace, home, {"policy": {"denied_paths": [".env*", "cé*"]}})
    yield body
    body.close()


async def test_a_denied_or_protected_path_is_not_reached_through_an_escaped_spelling(
    guarded: Body, workspace: Path, outside: Path
) -> None:
    async with Client(build_server(guarded)) as client:
        for spelt in ("\\u002eenv", ".\\u0065nv", "src/..\\u002f.env", "c\\xc3\\xa9-secret", "c\\u00e9-secret"):
            refused(await call(client, "read_text_file", path=spelt), "protected_path")
            refused(await call(client, "write_file", path=spelt, content="x"), "protected_path")
        refused(await call(client, "write_file", path="\\u002egit/config", content="x"), "protected_path")
        refused(await call(client, "git_diff", paths=["\\u002eenv"]), "protected_path")
        refused(await call(client, "run_command", argv=["/bin/true"], cwd="\\u002eenv.d"), "protected_path")
        for escape in ("\\u002e\\u002e/outside/secret.txt", "src\\u002f..\\u002f..\\u002foutside"):
            refused(await call(client, "read_text_file", path=escape), "path_outside_workspace")
    assert (workspace / ".env").read_text() == "SECRET=hunter2\n"
    assert (workspace / "cé-secret").read_text() == "secret\n"
    assert (workspace / ".git" / "config").read_text() == "[core]\n"
