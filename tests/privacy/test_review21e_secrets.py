"""Adversarial review of #21 (secrets never visible to what a model runs): a `file:` secret reference whose file a
command or a tool can reach, through a real body (bwrap sandbox) on an in-memory MCP client."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from mcp import Client

from body_mcp import Body, BodySettings, build_server
from shared_protocol.config import parse_config
from tests.body.helpers import call, ok
from tests.conftest import require_binary

pytestmark = pytest.mark.anyio


async def test_a_file_secret_inside_the_workspace_is_read_by_no_command_nor_tool(workspace: Path, home: Path) -> None:
    """Was a hole (medium): a secret reference `file:/abs/path` was never hidden: only `env:` ones were kept out of
    commands (`[sandbox] env_allow`), so a model API key kept in the workspace under a name the default policy does
    not deny (`conf/model-token.txt`; only `.env*`, `*.pem`, `*.key`, ssh keys are) was printed by `cat` in a
    sandboxed command and returned by `read_text_file` (the same for a file under a toolchain path such as /usr/local or
    /opt). Reproduce: `api_key = "file:<workspace>/conf/model-token.txt"`, then `read_text_file conf/model-token.txt`.
    Fixed in `Body`: every `file:` reference the config reads is denied by the workspace policy when it is inside
    the workspace (so no tool reads it and the sandbox hides it) and hidden from commands wherever it is exposed."""
    require_binary("bwrap", "bubblewrap")
    value = f"sk-planted-{secrets.token_hex(16)}"
    (workspace / "conf").mkdir()
    token = workspace / "conf" / "model-token.txt"
    token.write_text(value + "\n")
    (workspace / "conf" / "other.txt").write_text("not a secret\n")
    # Another secret file under a toolchain directory the sandbox exposes (as /opt/tools or /usr/local would be).
    tools = workspace.parent / "tools"
    tools.mkdir()
    secret_id = tools / "vault-secret-id"
    secret_id.write_text(value + "-vault\n")
    (tools / "readme.txt").write_text("a tool's file\n")
    config = parse_config(
        {
            "models": {"m": {"provider": "openai", "model": "gpt-4o", "api_key": f"file:{token}"}},
            "sandbox": {"extra_toolchain_paths": [str(tools)]},
            "secrets": {
                "vault": {
                    "address": "http://127.0.0.1:1",
                    "auth": "approle",
                    "role_id": "env:PLANTED_ROLE_ID",
                    "secret_id": f"file:{secret_id}",
                }
            },
        }
    )
    body = Body(BodySettings(workspace=workspace, home=home, config=config))
    try:
        async with Client(build_server(body)) as client:
            read = await call(client, "read_text_file", path="conf/model-token.txt")
            other = ok(await call(client, "read_text_file", path="conf/other.txt"))
            script = (
                f"cat conf/model-token.txt conf/other.txt {secret_id} {tools}/readme.txt 2>&1; "
                f"grep -rs sk-planted- . {tools} 2>&1; true"
            )
            seen = ok(await call(client, "run_command", argv=["/bin/sh", "-c", script], timeout_s=60))
    finally:
        body.close()
    assert "not a secret" in repr(other) and "not a secret" in seen["stdout"], "the rest of the directory is seen"
    assert "a tool's file" in seen["stdout"], "the toolchain directory is mounted"
    assert value not in repr(read.structured_content) + repr(read.content), "read_text_file returned the secret"
    assert read.is_error
    assert value not in seen["stdout"] + seen["stderr"], "a sandboxed command read the secret"
