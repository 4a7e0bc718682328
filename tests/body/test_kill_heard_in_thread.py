"""A linked body hears its brain's kill on a thread of its own, and a call in flight obeys it before its effect."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from brain_server import BrainSettings, run
from brain_server.state import sqlite_url
from tests.body.test_brain_link import (
    _free_port,  # pyright: ignore[reportPrivateUsage]
    _tokens,  # pyright: ignore[reportPrivateUsage]
    brain_with_captain,
    linked_body,
    wait_until,
    write,
)

pytestmark = pytest.mark.anyio


@contextmanager
def brain_in_thread(port: int, db: Path) -> Generator[str]:
    """A real brain on loopback served by an event loop of its own (in a thread): it publishes a kill while the
    test's event loop, the body's, is blocked. Yields its URL."""
    ready, stopping = threading.Event(), threading.Event()
    config = BrainSettings(host="127.0.0.1", port=port, database_url=sqlite_url(db), keepalive_s=0.2)

    async def serve() -> None:
        stop = anyio.Event()

        async def stop_when_told() -> None:
            await anyio.to_thread.run_sync(stopping.wait)
            stop.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_when_told)
            await run(config, on_ready=lambda _url: ready.set(), stop=stop, handle_signals=False)

    thread = threading.Thread(target=anyio.run, args=(serve,), name="test-brain", daemon=True)
    thread.start()
    try:
        assert ready.wait(10), "the brain did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        stopping.set()
        thread.join(10)


def _stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "swarm-link-stream"]


async def test_a_body_hears_a_kill_while_its_event_loop_is_blocked(tmp_path: Path, home: Path) -> None:
    """The event stream is read on a thread of its own: with the body's event loop blocked (a call's synchronous
    step, a starved CPU), the kill is taken there, and the next call is refused saying it was heard on the stream.
    Cancelled, the link's stream thread ends (its socket shut down, not left reading)."""
    db = tmp_path / "brain.db"
    tokens = await _tokens(db)
    others = set(_stream_threads())  # (another test's, ending)
    with brain_in_thread(_free_port(), db) as url:
        body = linked_body(tmp_path, home, 0, url, tokens["body"])
        try:
            assert body.link is not None
            link = body.link
            async with anyio.create_task_group() as tg:
                tg.start_soon(link.run)
                await wait_until(lambda: not body.kill_switch.state().engaged)
                await wait_until(lambda: link._stream_said >= 1)  # pyright: ignore[reportPrivateUsage]  (the stream's first state)
                captain = {"Authorization": f"Bearer {tokens['captain']}"}
                # From here to the refused call, the event loop does not run: whatever hears the kill is not on it.
                httpx.post(f"{url}/v1/kill", json={"reason": "stop"}, headers=captain).raise_for_status()
                deadline = time.monotonic() + 5
                while not body.kill_switch.state().engaged:
                    assert time.monotonic() < deadline, "the kill was not heard while the event loop was blocked"
                    time.sleep(0.005)
                assert await write(body, "killed.txt") == (True, "kill_switch_engaged")
                assert not (body.workspace.root / "killed.txt").exists()
                (refused,) = [e for e in body.audit.tail(10) if e.code == "kill_switch_engaged"]
                assert refused.detail["kill_heard"]["by"] == "stream"
                httpx.post(f"{url}/v1/resume", json={"reason": "go on"}, headers=captain).raise_for_status()
                await wait_until(lambda: not body.kill_switch.state().engaged, timeout=5)
                assert await write(body, "resumed.txt") == (False, None)
                tg.cancel_scope.cancel()
            await wait_until(lambda: not set(_stream_threads()) - others, timeout=5)
        finally:
            body.close()


async def test_a_kill_heard_while_a_call_waits_between_its_guard_and_its_effect_refuses_it_before_the_effect(
    tmp_path: Path, home: Path
) -> None:
    """A write whose parent directory is missing asks the approval gate for its measured impact after the last guard
    check before it runs (the gate counts recent changes in a worker thread, behind the database's lock); a kill
    heard meanwhile refuses it before it writes anything, audited as the kill's refusal. A write already done when
    the kill lands stays done, and audited as done."""
    async with brain_with_captain(tmp_path, heartbeat_interval_s=60) as brain:
        body = linked_body(tmp_path, home, 0, brain.url, brain.tokens["body"])
        try:
            assert body.link is not None
            link = body.link
            gate = body.gate
            count_in = gate._count_in  # pyright: ignore[reportPrivateUsage]
            reached, go_on = threading.Event(), threading.Event()

            def held(mine: set[str], action_id: str) -> set[str]:
                if "deep" in mine:  # (the measured check: the missing parent counted; the planned one names the file)
                    reached.set()
                    go_on.wait(10)
                return count_in(mine, action_id)

            gate._count_in = held  # pyright: ignore[reportPrivateUsage]
            async with anyio.create_task_group() as tg:
                tg.start_soon(link.run)
                await wait_until(lambda: not body.kill_switch.state().engaged)
                # (the first heartbeat answered: the next is a minute away, so the kill comes by the stream)
                await wait_until(lambda: "heartbeat" in link._heard_by)  # pyright: ignore[reportPrivateUsage]
                assert await write(body, "done.txt") == (False, None)
                outcome: list[tuple[bool, str | None]] = []

                async def write_deep() -> None:
                    outcome.append(await write(body, "deep/new.txt"))

                tg.start_soon(write_deep)
                try:
                    await wait_until(reached.is_set)
                    await brain.captain.post("/v1/kill", json={"reason": "stop"})
                    await wait_until(lambda: body.kill_switch.state().engaged, timeout=5)
                finally:
                    go_on.set()
                await wait_until(lambda: bool(outcome))
                assert outcome == [(True, "kill_switch_engaged")]
                assert not (body.workspace.root / "deep").exists(), "refused before its effect"
                events = body.audit.tail(10)
                (refused,) = [e for e in events if e.code == "kill_switch_engaged"]
                assert (refused.outcome, refused.rule, refused.arguments["path"]) == (
                    "refused",
                    "kill_switch",
                    "deep/new.txt",
                )
                assert refused.detail["kill_heard"]["by"] == "stream"
                (done,) = [e for e in events if e.arguments.get("path") == "done.txt"]
                assert done.outcome == "ok" and (body.workspace.root / "done.txt").read_text() == "y"
                tg.cancel_scope.cancel()
        finally:
            body.close()
