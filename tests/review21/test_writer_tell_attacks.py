# pyright: strict
"""Review 21: the audit writer tells of its commits from its own thread now (commit 9fa2751): a callback that raises
there, a linked body's link told after its event loop is gone, an unlinked body (nothing to tell), and two links
shipping one workspace's chain (each told only of its own process's commits)."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from body_mcp import Body, BodySettings
from brain_server import SqliteStateEngine
from shared_protocol.config import parse_config
from tests.body.test_brain_link import brain_with_captain, linked_body, wait_until, write
from tests.conftest import make_body

pytestmark = pytest.mark.anyio


async def test_a_commit_callback_that_raises_in_the_writers_thread_is_logged_and_the_trail_goes_on(
    workspace: Path, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = make_body(workspace, home)
    told = list[str]()

    def boom() -> None:
        told.append(threading.current_thread().name)
        raise RuntimeError("the link is gone")

    body.audit_writer._on_committed = boom  # pyright: ignore[reportPrivateUsage]
    try:
        body.replies.flushed = True  # (a reply flushed, then its commit asked for: in the writer's thread)
        for n in range(2):
            outcome = await body.call_tool("write_file", {"path": f"w{n}.txt", "content": "y", "rationale": "r"})
            assert not outcome.is_error
            body.replies.run()
            await body.audit_writer.settled()
            await wait_until(lambda n=n: len(told) >= n + 1, timeout=5)
        assert threading.main_thread().name not in told, "told from the writer's thread, not the event loop's"
        assert "telling of committed audit events failed" in caplog.text
        assert [e.tool for e in body.audit.tail(5) if e.kind == "tool_call"] == ["write_file", "write_file"]
    finally:
        body.close()


async def test_an_unlinked_body_commits_from_every_thread_with_nobody_to_tell(workspace: Path, home: Path) -> None:
    body = make_body(workspace, home)
    try:
        assert body.link is None
        body.replies.flushed = True
        assert not (await body.call_tool("write_file", {"path": "a.txt", "content": "y", "rationale": "r"})).is_error
        body.replies.run()
        await body.audit_writer.settled()
        await anyio.to_thread.run_sync(lambda: body.record_human(action="note", rationale="from a thread"))
        events = body.audit.tail(5)
        assert events[-1].rationale == "from a thread"
        assert [e.tool for e in events if e.kind == "tool_call"] == ["write_file"]
    finally:
        body.close()


async def test_two_links_on_one_workspace_both_ship_the_one_chain_to_the_brain(tmp_path: Path, home: Path) -> None:
    """Two body processes serving one workspace (here two bodies in one process: two links, two writers, one chain):
    each writer tells its own link only; the other's events reach the brain by that link's round or this one's
    poll. Every event of the chain reaches the brain, once, and neither link's loop dies of the other's shipping
    (a chain gap or mismatch answered mid-round resumes where the brain is)."""
    async with brain_with_captain(tmp_path) as brain:
        one = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        ws = tmp_path / "ws0"

        two = Body(
            BodySettings(
                workspace=ws.resolve(),
                home=home,
                config=parse_config({}),
                brain_url=brain.url,
                brain_token=brain.tokens["body"],
            )
        )
        try:
            assert one.audit.body_id == two.audit.body_id
            head = 0
            assert one.link is not None and two.link is not None
            links = [one.link, two.link]
            async with anyio.create_task_group() as tg:
                for link in links:
                    tg.start_soon(link.run)
                await wait_until(lambda: one.brain_state == "connected" and two.brain_state == "connected")
                for n in range(12):
                    body = one if n % 2 == 0 else two
                    if n < 2:
                        assert await write(body, f"f{n}.txt") == (False, None), n
                    else:
                        body.record_human(action="note", rationale=f"note {n}")
                    if n % 3 == 0:  # (now and then, the other link's round under way)
                        await anyio.sleep(0.05)
                head = one.audit.tail(1)[0].seq
                await wait_until(lambda: all(link.shipped_through() >= head for link in links), timeout=10)
                tg.cancel_scope.cancel()
            state = await SqliteStateEngine.open(tmp_path / "brain.db")
            try:
                held = [e.seq for e in await state.audit_events(one.audit.body_id, limit=10_000)]
            finally:
                await state.close()
            assert held == list(range(1, head + 1))
        finally:
            two.close()
            one.close()


async def test_a_body_closed_while_its_writer_tells_the_waiting_link_closes_at_once(tmp_path: Path, home: Path) -> None:
    """`Body.close()` on the event loop's thread (blocking it) while a commit is queued in the writer's thread and
    the link's shipping loop waits: the writer's tell (`call_soon_threadsafe` onto the blocked loop) must not hang
    the close, nor raise; the link's loops then stop cleanly (the tell run on a closed database's link is harmless)."""
    async with brain_with_captain(tmp_path) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        link = body.link
        assert link is not None
        closed = False
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(link.run)
                await wait_until(lambda: body.brain_state == "connected")
                body.replies.flushed = True
                outcome = await body.call_tool("write_file", {"path": "w.txt", "content": "y", "rationale": "r"})
                assert not outcome.is_error
                body.replies.run()  # (the commit queued in the writer's thread)
                started = anyio.current_time()
                body.close()  # (blocks this loop: the writer's tell is queued onto it)
                closed = True
                assert anyio.current_time() - started < 5
                tg.cancel_scope.cancel()
        finally:
            if not closed:
                body.close()
