# pyright: strict
"""Review 19: a refusal names the path the policy matched. A real body, real files and symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mcp import Client

from tests.body.helpers import call, refused

pytestmark = pytest.mark.anyio


async def test_a_refusal_by_the_name_as_written_names_that_name(client: Client, workspace: Path) -> None:
    """LOW (fixed): a symlink whose written name is protected (.env.link -> README.md) was refused naming the file
    it leads to ('README.md' is protected (matches '.env*')), a name no such glob matches."""
    os.symlink("../README.md", workspace / "src" / ".env.link")
    out = refused(await call(client, "read_text_file", path="src/.env\\u002elink"), "protected_path")
    assert out["message"].startswith("'src/.env.link' is protected (matches '.env*')"), out
