"""Review 22b: paths that name the workspace root, and others an agent may send, given to every file tool of a real
`swarm body` over stdio (the MCP SDK's client): each is done or refused naming its rule, never an internal error."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from ..body.helpers import call, refused
from ..conftest import make_body

pytestmark = pytest.mark.anyio


def _params(workspace: Path, home: Path) -> StdioServerParameters:
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_AGENT": "review22b"}
    return StdioServerParameters(
        command=sys.executable, args=["-m", "swarm_cli", "body", "--workspace", str(workspace)], env=env
    )


async def test_write_file_to_the_workspace_root_is_refused_as_a_directory(workspace: Path, home: Path) -> None:
    """Was a hole (medium), fixed. Reproduce: `write_file` with `path` "" (or ".", "src/..", the workspace's own
    absolute path): `internal_error` (IndexError: the root has no name), a traceback in the body's log, where
    `edit_file` says `'.' is a directory`. Fix: `_write` refuses a path with no parts as a directory."""
    roots = ["", ".", "./", "src/..", str(workspace), f"{workspace}/"]
    async with Client(_params(workspace, home)) as client:
        for root in roots:
            refused(await call(client, "write_file", path=root, content="x"), "not_a_file")
    body = make_body(workspace, home)
    try:
        refusals = [e for e in body.audit.tail(100) if e.tool == "write_file"]
        assert len(refusals) == len(roots) and all(e.outcome == "refused" for e in refusals)
        assert body.audit.verify().ok
    finally:
        body.close()
    assert sorted(p.name for p in workspace.iterdir()) == [".env", ".git", "README.md", "src", "swarm.toml"]
