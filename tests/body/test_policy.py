"""Protected paths: secrets are denied for read and write; git and IDE/Swarm config are read-only."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "name", [".env", ".env.local", "deploy/server.pem", "tls.key", "id_rsa", "keys/id_ed25519.pub", "id_ecdsa"]
)
async def test_secrets_are_denied_for_read_and_write(client: Client, workspace: Path, name: str) -> None:
    target = workspace / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("secret\n")
    refused(await call(client, "read_text_file", path=name), "protected_path")
    refused(await call(client, "get_file_info", path=name), "protected_path")
    refused(await call(client, "write_file", path=name, content="x"), "protected_path")
    refused(await call(client, "delete_file", path=name), "protected_path")
    assert target.read_text() == "secret\n"


@pytest.mark.parametrize(
    "name", [".git/config", "swarm.toml", ".mcp.json", ".cursor/mcp.json", ".claude/settings.json", ".vscode/mcp.json"]
)
async def test_git_and_ide_config_are_read_only(client: Client, workspace: Path, name: str) -> None:
    target = workspace / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.write_text("{}\n")
    before = target.read_text()
    ok(await call(client, "read_text_file", path=name))
    refused(await call(client, "write_file", path=name, content="x"), "protected_path")
    refused(await call(client, "delete_file", path=name), "protected_path")
    refused(await call(client, "move_file", source=name, destination="moved"), "protected_path")
    assert target.read_text() == before


async def test_a_symlink_cannot_launder_a_protected_name(client: Client, workspace: Path) -> None:
    (workspace / "harmless.txt").symlink_to(".env")
    refused(await call(client, "read_text_file", path="harmless.txt"), "protected_path")
    refused(await call(client, "write_file", path="harmless.txt", content="x"), "protected_path")
    assert (workspace / ".env").read_text() == "SECRET=hunter2\n"


async def test_moving_a_directory_that_holds_a_secret_is_refused(client: Client, workspace: Path) -> None:
    (workspace / "conf").mkdir()
    (workspace / "conf" / ".env.prod").write_text("X=1\n")
    refused(await call(client, "move_file", source="conf", destination="public"), "protected_path")
    assert (workspace / "conf" / ".env.prod").exists()


async def test_a_new_file_cannot_be_written_under_git(client: Client, workspace: Path) -> None:
    refused(await call(client, "write_file", path=".git/hooks/pre-commit", content="#!/bin/sh\n"), "protected_path")
    assert not (workspace / ".git" / "hooks").exists()


async def test_file_info_reports_protection(client: Client) -> None:
    assert ok(await call(client, "get_file_info", path="swarm.toml"))["protected"] == "read_only"
    assert ok(await call(client, "get_file_info", path="README.md"))["protected"] == "none"
