"""Review of issue 15 (item 2: every failure is a tool result, never a protocol error): a workspace holding a name
that is not valid UTF-8 (a checkout, a file a human made) is listed, its name escaped, by a real `swarm body`
process over stdio; the body does not die on the reply it cannot encode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.cli.inprocess import run_swarm

from .helpers import call, ok

pytestmark = pytest.mark.anyio

RAW = b"bad\xff\xfename.txt"


def _stdio(workspace: Path, home: Path) -> StdioServerParameters:
    env = {**os.environ, "SWARM_HOME": str(home)}
    return StdioServerParameters(
        command=sys.executable, args=["-m", "swarm_cli", "body", "--workspace", str(workspace)], env=env
    )


async def test_listing_a_name_that_is_not_utf8_is_a_result_and_the_body_serves_on(workspace: Path, home: Path) -> None:
    with open(os.fsencode(workspace / "src") + b"/" + RAW, "wb") as fh:
        fh.write(b"x")
    shown = "bad\\xff\\xfename.txt"  # (as the audit trail escapes it)
    async with Client(_stdio(workspace, home)) as client:
        with anyio.fail_after(30):
            listed = ok(await call(client, "list_directory", path="src"))
            assert shown in listed["files"], listed
            tree = ok(await call(client, "directory_tree", path="."))
            src = next(node for node in tree["tree"] if node["name"] == "src")
            assert shown in [child["name"] for child in src["children"]], src
            found = ok(await call(client, "search_files", path=".", pattern="bad*"))
            assert found["matches"] == [f"src/{shown}"], found
            assert ok(await call(client, "read_text_file", path="README.md"))["content"] == "# sample\n"


def _swarm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`swarm snapshot ARGS` in the test's process (`tests/cli/inprocess.py`: the same entry point, no new Python)."""
    return run_swarm(["snapshot", *args], {**os.environ, "SWARM_HOME": str(home)})


def test_a_workspace_holding_a_name_that_is_not_utf8_can_be_snapshotted(workspace: Path, home: Path) -> None:
    src = os.fsencode(workspace / "src")
    with open(src + b"/" + RAW, "wb") as fh:
        fh.write(b"x")
    os.symlink(RAW, src + b"/link-" + RAW)
    done = _swarm(home, "create", "--workspace", str(workspace))
    assert done.returncode == 0, done.stderr
    snapshot_id = done.stdout.splitlines()[-1]
    # Changed and gone after the snapshot: the restore must bring back the very bytes of the name.
    with open(src + b"/" + RAW, "wb") as fh:
        fh.write(b"changed")
    os.rename(src + b"/" + RAW, src + b"/renamed.txt")
    os.unlink(src + b"/link-" + RAW)
    restored = _swarm(home, "restore", snapshot_id, "--workspace", str(workspace))
    assert restored.returncode == 0, restored.stderr
    names = os.listdir(src)
    assert RAW in names and b"renamed.txt" not in names, names
    with open(src + b"/" + RAW, "rb") as fh:
        assert fh.read() == b"x"
    assert os.readlink(src + b"/link-" + RAW) == RAW
    drill = _swarm(home, "drill", "--workspace", str(workspace))
    assert drill.returncode == 0, drill.stderr
