# pyright: strict
"""Review 21: `BrainLink.events_committed` (commit 9fa2751) reads whether the shipping loop waits, then which event
to set, in two steps of the telling thread; the shipping loop may end its wait and replace the event in between."""

from __future__ import annotations

import inspect
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import anyio
import pytest

from body_mcp import brain_link as brain_link_module
from body_mcp.brain_link import BrainLink
from tests.body.test_brain_link import brain_with_captain, linked_body, wait_until

pytestmark = pytest.mark.anyio


def _line_after_the_wait_is_read() -> int:
    """The line of `events_committed` just after it reads `_ship_waiting` (whatever it reads next)."""
    lines, first = inspect.getsourcelines(BrainLink.events_committed)
    return first + 1 + next(n for n, line in enumerate(lines) if "= self._ship_waiting" in line)


async def test_a_commit_told_as_the_wait_ends_does_not_set_the_next_rounds_event(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was a LOW hole (review 21): `events_committed` read `_ship_waiting`, then `self.new_events`; a wait that ended
    in between had the telling thread set the next round's event, a round with nothing told. Fixed: the loop
    publishes the event it waits on with its loop (`_ship_waiting = (loop, event)`), and that event is set. Repro:
    the telling thread paused between its read of `_ship_waiting` and what follows (a trace on its own thread)."""
    monkeypatch.setattr(brain_link_module, "SHIP_POLL_S", 0.3)  # (the wait that ends under the telling thread)
    monkeypatch.setattr(brain_link_module, "SHIP_EVERY_S", 0.25)  # (a needless round: within the 1 s looked at)
    monkeypatch.setattr(brain_link_module, "SHIP_GATHER_S", 0.0)
    async with brain_with_captain(tmp_path) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            link = body.link
            assert link is not None
            rounds = list[float]()
            before = -1
            ship_pending = link.ship_pending

            async def counted(*, round_only: bool = False) -> int:
                rounds.append(anyio.current_time())
                return await ship_pending(round_only=round_only)

            link.ship_pending = counted  # type: ignore[method-assign]
            paused, go = threading.Event(), threading.Event()
            pause_at = _line_after_the_wait_is_read()
            code = BrainLink.events_committed.__code__

            def at_line(frame: FrameType, event: str, _arg: Any) -> Any:
                if event == "line" and frame.f_lineno == pause_at and not paused.is_set():
                    paused.set()
                    go.wait(10)
                return at_line

            def on_call(frame: FrameType, event: str, _arg: Any) -> Any:
                return at_line if event == "call" and frame.f_code is code else None

            def tell() -> None:
                sys.settrace(on_call)
                try:
                    link.events_committed()
                finally:
                    sys.settrace(None)

            async with anyio.create_task_group() as tg:
                tg.start_soon(link.run)
                await wait_until(lambda: body.brain_state == "connected")
                await wait_until(lambda: link._ship_waiting is not None)  # pyright: ignore[reportPrivateUsage]
                first = link.new_events
                teller = threading.Thread(target=tell)
                teller.start()
                await wait_until(paused.is_set, timeout=5)
                # (the wait under way keeps its 0.3 s; every later one is an hour: only a tell wakes it)
                monkeypatch.setattr(brain_link_module, "SHIP_POLL_S", 3600.0)
                await wait_until(lambda: link.new_events is not first, timeout=5)  # (its poll ended the wait)
                # The round after that wait (which read the chain the paused tell was about) is over and the loop
                # waits again, on a new event, with nothing committed since: the paused tell now goes on.
                await wait_until(lambda: link._ship_waiting is not None)  # pyright: ignore[reportPrivateUsage]
                before = len(rounds)
                go.set()
                await anyio.to_thread.run_sync(teller.join, 5)
                with anyio.move_on_after(1.0):  # (a needless round would come at once, `SHIP_EVERY_S` at most)
                    await wait_until(lambda: len(rounds) > before, timeout=2)
                tg.cancel_scope.cancel()
            assert len(rounds) == before, f"{len(rounds) - before} rounds with nothing told since the last"
        finally:
            body.close()
