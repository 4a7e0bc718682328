"""Review of #18: protection ignores case. On a case-insensitive file system (macOS's default, where IDE bodies
run) `.ENV` opens `.env` and `.GIT/hooks/pre-commit` is `.git/hooks/pre-commit`, which the host's git runs; before
this review the policy and git's exclusions matched case-sensitively, so both were open there. Here (Linux) the
differently-cased names are separate files, which shows the policy and git now treat them as protected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client

from body_mcp import Body, build_server
from body_mcp.policy import PathPolicy
from shared_protocol.config import SwarmConfig

from ..conftest import make_body
from .git_repos import git, make_repo
from .helpers import call, ok

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("path", "level"),
    [
        (".ENV", "denied"),
        ("config/.Env.Local", "denied"),
        ("certs/SERVER.PEM", "denied"),
        ("ID_RSA", "denied"),
        (".GIT/hooks/pre-commit", "read_only"),
        (".Git/config", "read_only"),
        (".GitHub/workflows/ci.yml", "read_only"),
        (".VSCode/mcp.json", "read_only"),
        ("Swarm.TOML", "read_only"),
        ("src/app.py", "none"),
    ],
)
def test_protection_ignores_case(path: str, level: str) -> None:
    cfg = SwarmConfig().policy
    policy = PathPolicy(denied=cfg.denied_paths, read_only=cfg.read_only_paths)
    assert policy.classify_parts(tuple(path.split("/")))[0] == level


def test_acceptance_inputs_ignore_case_too() -> None:
    policy = PathPolicy(denied=(), read_only=(), acceptance_inputs=["tests/**"])
    assert policy.classify_parts(("Tests", "test_x.py"))[0] == "acceptance_input"


@pytest.fixture
async def client(tmp_path: Path, home: Path) -> AsyncIterator[Client]:
    repo = make_repo(tmp_path / "repo")
    (repo / "sub").mkdir()
    (repo / "sub" / ".ENV").write_text("SECRET=hunter2\n")
    git(repo, "add", "sub/.ENV")
    git(repo, "commit", "-q", "-m", "a secret in capitals")
    (repo / "sub" / ".ENV").write_text("SECRET=hunter2 rotated\n")
    (repo / "KEY.PEM").write_text("hunter2\n")
    body: Body = make_body(repo, home)
    try:
        async with Client(build_server(body)) as c:
            yield c
    finally:
        body.close()


async def test_a_differently_cased_secret_is_never_shown_nor_read(client: Client) -> None:
    shown = [
        ok(await call(client, "git_status")),
        ok(await call(client, "git_diff")),
        ok(await call(client, "git_log", patch=True)),
    ]
    assert "hunter2" not in repr(shown) and ".ENV" not in repr(shown)
    read = await call(client, "read_file", path="sub/.ENV")
    assert read.is_error and "hunter2" not in repr(read.structured_content)
    wrote = await call(client, "write_file", path=".GIT/hooks/pre-commit", content="#!/bin/sh\n")
    assert wrote.is_error
