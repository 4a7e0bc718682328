# pyright: strict
"""Review 17 of list_directory's text listing (`[DIR] name`, one entry a line): names crafted to make the listing a
model reads say something else exists. A real body, real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mcp import Client
from mcp_types import TextContent

from body_mcp.audit import unescape_string
from tests.body.helpers import call, ok

pytestmark = pytest.mark.anyio


async def _listing(client: Client, path: str) -> list[str]:
    listed = await call(client, "list_directory", path=path)
    ok(listed)
    [text] = listed.content
    assert isinstance(text, TextContent)
    return text.text.splitlines()


async def test_names_that_read_as_quoted_or_trimmed_are_quoted(client: Client, workspace: Path) -> None:
    """Was a hole (low), fixed. Reproduce: a directory holding `a<newline>b` and a file named `"a\\nb"` (quotes,
    backslash and all: printable) listed both as `[FILE] "a\\nb"`, and ` .env` (a leading space) read as `[FILE]
    .env`: two entries the model cannot tell apart, a name it reads as another. Fix: a name that starts with a quote or
    starts or ends with white space is quoted as JSON too, so a bare name is always the name itself."""
    crafted = workspace / "crafted"
    crafted.mkdir()
    for name in ("a\nb", '"a\\nb"', " .env", "tail "):
        (crafted / name).write_text("x")
    lines = await _listing(client, "crafted")
    assert len(set(lines)) == 4, lines
    assert sorted(lines) == sorted(['[FILE] " .env"', '[FILE] "a\\nb"', '[FILE] "\\"a\\\\nb\\""', '[FILE] "tail "'])


async def test_a_non_utf8_name_does_not_read_as_another_name(client: Client, workspace: Path) -> None:
    """Was a hole (low), fixed. Reproduce: a directory holding `a\\xff` (the byte 0xff) and `a\\\\xff` (ASCII: a,
    backslash, x, f, f): `shown` escaped the first (`escape_string`: `a\\\\xff`) and left the second as it is, so
    both were listed as `[FILE] a\\xff` and `files` held the same string twice. Fix: a name spelling out an escape is
    escaped too (`unescape_string` of every name shown is the name), and the text quotes an escaped name as JSON of
    the name itself (its byte as Python reads it, `\\udcff`). A backslash that spells no escape is left alone."""
    crafted = os.fsencode(workspace / "bytes")
    os.mkdir(crafted)
    names = (b"a\xff", b"a\\xff", b"a\\\\xff", b"b\\x", b"c\\u00e9")
    for name in names:
        with open(os.path.join(crafted, name), "wb") as f:
            f.write(b"x")
    lines = await _listing(client, "bytes")
    assert sorted(lines) == sorted(
        ['[FILE] "a\\udcff"', '[FILE] "a\\\\xff"', '[FILE] "a\\\\\\\\xff"', "[FILE] b\\x", '[FILE] "c\\\\u00e9"']
    ), lines
    listed = ok(await call(client, "list_directory", path="bytes"))
    assert len(set(listed["files"])) == len(names), listed
    assert sorted(os.fsencode(unescape_string(name)) for name in listed["files"]) == sorted(names)
    assert ok(await call(client, "read_text_file", path="bytes/b\\x"))["content"] == "x"
