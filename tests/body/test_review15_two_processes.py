"""Review of issue 15 (items 15 and 16) with two `swarm body` processes of one workspace (two IDE windows: one body
identity, one token): one leaving cleanly does not make the brain believe the other left, so the other's loss still
pages, once, and `swarm status` does not say the body left while one of its processes serves."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from .test_linked_body_process import FAILSAFE_S, finish, linked

pytestmark = pytest.mark.anyio


async def test_one_process_leaving_cleanly_does_not_hide_the_loss_of_the_other(tmp_path: Path) -> None:
    async with linked(tmp_path) as h:
        first = await h.start_body()
        registered = h.state.registered
        second = await h.start_body()
        await h.changes.until(lambda: h.state.registered > registered)  # the second has registered too
        try:
            back = h.state.registered
            assert await finish(first, kill=False) == 0  # the first window closes: it deregisters the body
            # (the brain was told before the process ended) The second is still there: the brain hears it again.
            await h.changes.until(lambda: h.state.registered > back)
            (body,) = await h.state.bodies()
            assert body.left_at is None, "a body whose process heartbeats has not left"
            # `swarm status` reads what the serving process records again (it looks every second).
            await h.recorded(lambda record: record.serving)
            status = await h.status()
            assert "left cleanly" not in status["brain"] and "not running" not in status["brain"], status["brain"]
            assert status["brain"].startswith(f"connected to {h.url}"), status["brain"]
        finally:
            assert await finish(second, kill=True) == -signal.SIGKILL
        await h.gone_from_streams()
        assert await h.lost_and_paged(FAILSAFE_S + 1) == 1, "its last process was lost: one page"
