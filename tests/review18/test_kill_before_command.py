# pyright: strict
"""Review 18 of the kill heard off the event loop (`body_mcp/brain_link.py`'s stream thread, `guards.py`'s checks):
a kill that lands after a run_command passed its last check, before its command starts. A real body, real bwrap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from body_mcp import Body, build_server
from body_mcp.killswitch import LocalKillSwitch
from body_mcp.scan import ScanResult
from tests.body.helpers import call
from tests.conftest import make_body
from tests.sandbox._support import BWRAP_MISSING

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def served(workspace: Path, home: Path) -> AsyncIterator[tuple[Body, Client]]:
    import shutil

    if shutil.which("bwrap") is None:
        pytest.skip(BWRAP_MISSING)
    body = make_body(workspace, home)
    try:
        async with Client(build_server(body)) as client:
            yield body, client
    finally:
        body.close()


async def test_a_kill_heard_after_the_last_check_stops_the_command_before_it_starts(
    served: tuple[Body, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was a hole (medium), fixed. The kill lands after run_command passed the guards' last check, while it reads
    the workspace's scan (on the brain stream's thread it can land at any moment). With a launcher made ahead the
    command then started at once, on the event loop, and ran until the watch's first poll (50 ms later): "started"
    was printed, and a command with network could have sent a request. Now the kill is checked right before the
    command is handed to the sandbox, and nothing starts."""
    body, client = served
    warm = await call(client, "run_command", argv=["/bin/sh", "-c", "true"])  # (the next run: a launcher made ahead)
    assert not warm.is_error, warm.structured_content
    scanner = body.scanner
    real = scanner.current

    async def current_then_killed() -> ScanResult:
        scan = await real()
        LocalKillSwitch(body.paths.kill_file).engage(reason="stop", by="review")
        return scan

    monkeypatch.setattr(scanner, "current", current_then_killed)
    result = await call(client, "run_command", argv=["/bin/sh", "-c", "echo started; sleep 1"])
    data: dict[str, Any] | None = result.structured_content
    assert result.is_error and data is not None
    assert "started" not in str(data.get("stdout", "")), data
    event = body.audit.get(str(data["action_id"]))
    assert event is not None and event.code == "kill_switch_engaged", event
