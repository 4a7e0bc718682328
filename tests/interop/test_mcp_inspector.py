"""A second MCP client: the official MCP Inspector CLI (TypeScript) against `swarm body` over real stdio.

Clients built on the TypeScript SDK check a result's structured content against the tool's output
schema even when `isError` is true, so a refusal the schema does not admit reaches them as a protocol
error, and the agent never sees why it was refused. `package-lock.json` pins two Inspectors that
still check: 2.12.0 (its own check) and 1.0.3 (the check of the 1.x SDK that IDE clients are built
on). Install them with `npm ci --prefix tests/interop` (`.ci/run` does).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.inspector

HERE = Path(__file__).parent
INSTALL = "npm ci --ignore-scripts --prefix tests/interop"
INSPECTORS = {"inspector-2.12": "@modelcontextprotocol/inspector", "inspector-1.0-sdk-1.x": "inspector-sdk1"}


@pytest.fixture(params=list(INSPECTORS), scope="module")
def inspector(request: pytest.FixtureRequest) -> list[str]:
    """The command running one pinned Inspector's CLI: skipped saying how to install it, a failure in CI."""
    package = HERE / "node_modules" / INSPECTORS[request.param]
    node = shutil.which("node")
    reason = None
    if node is None:
        reason = f"Node.js is not installed: apt-get install nodejs npm, then {INSTALL}"
    elif not (package / "package.json").is_file():
        reason = f"the MCP Inspector is not installed: {INSTALL}"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the interop tests: {reason}")
        pytest.skip(reason)
    assert node is not None
    entry = json.loads((package / "package.json").read_text())["bin"]["mcp-inspector"]
    # (2.x gives a server 15 s to answer `initialize`, which a body starting on a loaded 2-core CI machine can miss;
    # 1.0 has no such limit and no flag)
    patient = ["--connect-timeout", "90000"] if request.param == "inspector-2.12" else []
    return [node, str(package / entry), "--cli", *patient]


def inspect(inspector: list[str], workspace: Path, home: Path, *request: str) -> dict[str, Any]:
    """One Inspector request to a fresh `swarm body --workspace W`; its reply as JSON."""
    swarm = Path(sys.executable).with_name("swarm")
    argv = [*inspector, "-e", f"SWARM_HOME={home}", str(swarm), "body", "--workspace", str(workspace), *request]
    env = {**os.environ, "MCP_CATALOG_PATH": str(home / "inspector-catalog.json")}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=home)
    try:
        reply = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"the Inspector got no reply (exit {done.returncode}): {done.stderr.strip() or done.stdout}")
    assert isinstance(reply, dict), reply
    return reply  # pyright: ignore[reportUnknownVariableType]


def call(inspector: list[str], workspace: Path, home: Path, tool: str, **arguments: str) -> dict[str, Any]:
    pairs = [f"{name}={value}" for name, value in {"rationale": "interop test", **arguments}.items()]
    args = [arg for pair in pairs for arg in ("--tool-arg", pair)]
    return inspect(inspector, workspace, home, "--method", "tools/call", "--tool-name", tool, *args)


def test_the_inspector_lists_every_tool_with_an_object_output_schema(
    inspector: list[str], workspace: Path, home: Path
) -> None:
    tools = {tool["name"]: tool for tool in inspect(inspector, workspace, home, "--method", "tools/list")["tools"]}
    assert {"read_text_file", "write_file", "run_command", "undo", "status"} <= set(tools)
    assert all(tool["outputSchema"]["type"] == "object" for tool in tools.values())


def test_the_inspector_reads_a_file(inspector: list[str], workspace: Path, home: Path) -> None:
    reply = call(inspector, workspace, home, "read_text_file", path="README.md")
    assert reply["isError"] is False
    assert reply["structuredContent"]["content"] == "# sample\n"


def test_a_refusal_reaches_the_inspector_as_a_tool_result_naming_its_code(
    inspector: list[str], workspace: Path, home: Path
) -> None:
    reply = call(inspector, workspace, home, "read_text_file", path="../etc/passwd")
    assert reply["isError"] is True
    refusal = reply["structuredContent"]
    assert refusal["code"] == "path_outside_workspace" and refusal["rule"] and refusal["action_id"].startswith("act_")
    assert [content["type"] for content in reply["content"]] == ["text"]
    assert "path_outside_workspace" in reply["content"][0]["text"]


def test_the_inspector_lists_a_directory_by_kind(inspector: list[str], workspace: Path, home: Path) -> None:
    # The TypeScript SDK's client checks the grouped result against the output schema, as the Python SDK's does.
    reply = call(inspector, workspace, home, "list_directory", path=".")
    assert reply["isError"] is False
    listed = reply["structuredContent"]
    assert "README.md" in listed["files"] and "src" in listed["directories"], listed
    assert "[DIR] src" in reply["content"][0]["text"].splitlines()
