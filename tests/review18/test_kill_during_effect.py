# pyright: strict
"""Review 18 of the kill heard off the event loop: a kill that lands while a write is between its last check and its
effect (on the stream's thread it can land at any moment) leaves the write done, and audited as done, never as
refused. A real body, real files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from body_mcp import _fsops
from body_mcp.killswitch import LocalKillSwitch
from tests.conftest import make_body

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_kill_landing_during_a_writes_effect_leaves_it_done_and_audited_as_done(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = make_body(workspace, home)
    try:
        real = _fsops.write_at

        def write_then_killed(*args: Any, **kwargs: Any) -> None:
            real(*args, **kwargs)
            LocalKillSwitch(body.paths.kill_file).engage(reason="stop", by="review")

        monkeypatch.setattr(_fsops, "write_at", write_then_killed)
        out = await body.call_tool("write_file", {"path": "done.txt", "content": "done\n", "rationale": "r"})
        body.replies.run()
        await body.audit_writer.settled()
        assert (workspace / "done.txt").read_text() == "done\n"
        assert not out.is_error, out.structured
        event = body.audit.get(out.action_id)
        assert event is not None and event.outcome == "ok" and event.code is None, event
        # The next write is refused, and audited so.
        after = await body.call_tool("write_file", {"path": "after.txt", "content": "x\n", "rationale": "r"})
        assert after.is_error and after.structured["code"] == "kill_switch_engaged", after.structured
        assert not (workspace / "after.txt").exists()
        assert body.audit.verify().ok
    finally:
        body.close()
