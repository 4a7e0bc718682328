# pyright: strict
"""Review 18 of the names list_directory, directory_tree and search_files show for names that are not UTF-8 or
that spell an escape out (`shown`: escaped as the audit trail escapes, `unescape_string` gives the name back). A real
body, real files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import TextContent

from body_mcp.audit import unescape_string
from tests.body.helpers import call, ok

pytestmark = pytest.mark.anyio

_NAMES = (b"a\xff", b"a\\xff", b"a\\\\xff", b"c\\u00e9", b"c\xc3\xa9", b"d\\", b"e\\\\", b"f\\x4", b"g\\udcff")
"""A byte that is not UTF-8, the same spelt out in ASCII (one and two backslashes), a `\\u` escape spelt out and
the letter it names, lone backslashes, an escape cut short, a surrogate's escape spelt out."""


def _plant(workspace: Path) -> None:
    crafted = os.fsencode(workspace / "names")
    os.mkdir(crafted)
    for name in _NAMES:
        os.mkdir(os.path.join(crafted, name))
        with open(os.path.join(crafted, name, b"in"), "wb") as f:
            f.write(repr(name).encode())


def _tree_names(nodes: list[dict[str, Any]]) -> list[str]:
    return [str(node["name"]) for node in nodes]


async def test_every_listing_tool_shows_each_crafted_name_once_and_unescaped_it_is_the_name(
    client: Client, workspace: Path
) -> None:
    """Held: list_directory's `directories`, directory_tree's names and search_files' matches each hold every
    crafted name once, distinct, and `unescape_string` of each is the name on disk; the text listing has one line
    each, all distinct."""
    _plant(workspace)
    expected = sorted(_NAMES)
    listed = ok(await call(client, "list_directory", path="names"))
    assert sorted(os.fsencode(unescape_string(n)) for n in listed["directories"]) == expected, listed
    assert len(set(listed["directories"])) == len(_NAMES)
    tree = ok(await call(client, "directory_tree", path="names"))
    names = _tree_names(tree["tree"])
    assert sorted(os.fsencode(unescape_string(n)) for n in names) == expected, names
    found = ok(await call(client, "search_files", path="names", pattern="in"))
    dirs = [m.removeprefix("names/").removesuffix("/in") for m in found["matches"]]
    assert sorted(os.fsencode(unescape_string(d)) for d in dirs) == expected, found
    listing = await call(client, "list_directory", path="names")
    [text] = listing.content
    assert isinstance(text, TextContent)
    lines = text.text.splitlines()
    assert len(lines) == len(set(lines)) == len(_NAMES), lines


async def test_a_name_as_shown_given_back_as_a_path_reads_that_file(client: Client, workspace: Path) -> None:
    """Was a hole (low), fixed: a path argument was taken as written, so given back the name it was shown
    (`a\\xff` for a + byte 0xff) `read_text_file` opened the ASCII file `a\\xff`, and the ASCII file's own shown
    name (`a\\\\xff`) was not found: a crafted checkout could steer a model that reads one file into reading or
    overwriting another. Fix: every path argument is read back as names are shown (`body_mcp.names.named`, in
    `Workspace.resolve`), so each name as listed reads its own file (tests/body/test_path_names.py: every tool, the
    policy)."""
    _plant(workspace)
    listed = ok(await call(client, "list_directory", path="names"))
    wrong: list[tuple[str, str]] = []
    for shown in listed["directories"]:
        read = await call(client, "read_text_file", path=f"names/{shown}/in")
        result: dict[str, Any] = read.structured_content or {}
        content = str(result.get("content", result.get("code")))
        if content != repr(os.fsencode(unescape_string(shown))):
            wrong.append((shown, content))
    assert wrong == [], wrong
