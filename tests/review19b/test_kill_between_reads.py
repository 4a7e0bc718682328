"""Adversarial review 19b: a kill engaged right after one of a write's reads of the kill state (two a write now:
the guard's first and the last moment before the effect; a third, first, while an earlier reply's commit is under
way: `AuditWriter.settling`). Engaged after any read but the last, the write must be refused and write nothing.

Run: python3 -m uv run --frozen pytest -n 0 tests/review19b/test_kill_between_reads.py
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from body_mcp import Body
from body_mcp.killswitch import KillState, LocalKillSwitch
from tests.body.audit_disk import NO_WINDOW, unsettled_body

pytestmark = pytest.mark.anyio


def _engage_after_reads(
    body: Body, monkeypatch: pytest.MonkeyPatch, reads: int, then: threading.Event | None = None
) -> list[int]:
    """Engage the local kill right after the body's `reads`-th read of the kill state from now on; the count so
    far."""
    switch = body.kill_switch
    assert isinstance(switch, LocalKillSwitch)
    real = switch.state
    seen = [0]

    def state() -> KillState:
        found = real()
        seen[0] += 1
        if seen[0] == reads:
            switch.engage(reason="review19b", by="test")
        if then is not None:
            then.set()  # (after the first read)
        return found

    monkeypatch.setattr(switch, "state", state)
    return seen


@pytest.mark.parametrize(("settling", "after"), [(False, 1), (True, 1), (True, 2)])
async def test_a_kill_engaged_after_any_read_but_the_last_refuses_the_write(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch, settling: bool, after: int
) -> None:
    """Held: with no commit under way (reads: the guard's, the last moment's) and with one (the settle's read
    first), a kill engaged right after any of the write's reads but its last refuses it: nothing is written, the
    refusal is audited. (After the last read no await comes before the effect: a kill landing there is the one a call's
    effect cannot wait for, as before.)"""
    body = unsettled_body(workspace, home, monkeypatch, NO_WINDOW)
    try:
        first = await body.call_tool("write_file", {"path": "a.txt", "content": "a\n", "rationale": "r"})
        assert not first.is_error, first.structured
        gate = threading.Event()
        if settling:  # (the writer's thread held until the kill is engaged: the commit stays under way till then)
            executor = body.audit_writer._executor  # pyright: ignore[reportPrivateUsage]
            executor.submit(gate.wait, 10)
        body.replies.run()  # (asks for the commit after the reply)
        if settling:
            assert body.audit_writer.settling
        else:
            await body.audit_writer.settled()
        seen = _engage_after_reads(body, monkeypatch, after, gate)
        out = await body.call_tool("write_file", {"path": "b.txt", "content": "b\n", "rationale": "r"})
        assert seen[0] > after, f"the write read the kill state {seen[0]} time(s)"
        assert out.is_error and out.structured["code"] == "kill_switch_engaged", out.structured
        assert not (workspace / "b.txt").exists()
    finally:
        body.close()
