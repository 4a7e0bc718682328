"""Holes an adversarial review found (issue #15), each with the test that failed before its fix."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from body_mcp import Body

from ..conftest import require_binary
from .helpers import call

pytestmark = pytest.mark.anyio

PY = str(Path(sys.base_prefix) / "bin" / "python3")


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


async def run(client: Client, script: str, **extra: Any) -> dict[str, Any]:
    require_binary("bwrap", "bubblewrap")
    result = await call(client, "run_command", argv=sh(script), **extra)
    data = result.structured_content
    assert isinstance(data, dict)
    data["_is_error"] = result.is_error
    return data  # pyright: ignore[reportUnknownVariableType]


# -- 2: nothing is applied unless its audit event can be written ---------------------------


async def test_a_command_creating_a_name_that_is_not_utf8_applies_nothing_and_is_audited(
    client: Client, body: Body, workspace: Path
) -> None:
    data = await run(client, "echo changed > README.md; printf x > \"$(printf 'bad\\377name')\"")
    assert data["_is_error"] and data["applied"] is False
    assert data["refusal"]["code"] == "invalid_path"
    assert any(c["path"] == "bad\\xffname" for c in data["changes"])  # shown escaped, losslessly
    assert (workspace / "README.md").read_text() == "# sample\n"
    assert not any(p.name.startswith("bad") for p in workspace.iterdir())
    event = body.audit.get(data["action_id"])
    assert event is not None and event.code == "invalid_path"
    assert body.audit.verify().ok
