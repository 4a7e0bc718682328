# pyright: strict
"""Review 21: a `notifications/cancelled` for a call served directly is no longer handed to the SDK (commit 8c5eb6b,
`DirectCalls.note` returns True and `_Recovering.receive` drops it). Each case is run on the direct path and on the
SDK's own path for the same messages, the SDK's being what the direct path must match: a cancellation arriving after
the direct call finished (with and without an id the SDK holds too), malformed cancellations, and a cancellation of a
call the SDK serves (a progress token)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.body.test_direct_calls import (
    WAIT_S,
    _Hold,  # pyright: ignore[reportPrivateUsage]
    _request,  # pyright: ignore[reportPrivateUsage]
    _session,  # pyright: ignore[reportPrivateUsage]
)
from tests.conftest import make_body

pytestmark = pytest.mark.anyio

READ = {"path": "README.md", "rationale": "r"}


def _cancel(request_id: object) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}


def _progress(request: dict[str, Any]) -> dict[str, Any]:
    """`request` with a progress token: the SDK serves it, never the direct path."""
    request["params"]["_meta"] = {"progressToken": "p"}
    return request


PING = {"jsonrpc": "2.0", "id": 99, "method": "ping"}


@pytest.mark.parametrize("direct", [True, False])
async def test_a_late_cancel_of_a_finished_call_that_reused_an_id_leaves_the_earlier_request_be(
    workspace: Path, home: Path, direct: bool
) -> None:
    """Was a LOW hole (review 21): an id the SDK holds (a progress-token write, held), reused by a call served
    directly (a read) that finishes, then cancelled after the read's reply: the cancellation went on to the SDK and
    cancelled the held write. Fixed: the ids whose latest request was served directly are remembered (the last 4,096),
    and a cancellation of one is never handed to the SDK."""
    held = _Hold("first.txt")
    body = make_body(workspace, home, outer_guards=[held])
    try:
        async with _session(body, direct=direct) as wire:
            args = {"path": "first.txt", "content": "1", "rationale": "r"}
            await wire.send(_progress(_request("write_file", args, ident=7)))
            with anyio.fail_after(WAIT_S):
                await held.holding.wait()
            await wire.send(_request("read_text_file", READ, ident=7))
            read = await wire.reply(7)
            assert read["result"]["isError"] is False
            assert (7 in wire.calls.taken) is direct
            await wire.send(_cancel(7))  # (meant for the read, whose reply crossed it)
            await wire.send(PING)
            assert await wire.reply(99) == {"jsonrpc": "2.0", "id": 99, "result": {}}
            held.go.set()
            written: list[dict[str, Any]] = []
            with anyio.move_on_after(3):  # (the write's reply, which must come; none if it was cancelled)
                written.append(await wire.next())
            rest = await wire.close()
        replies = [m for m in written + rest if m.get("id") == 7]
        assert [m.get("result", {}).get("isError") for m in replies] == [False], replies
        assert (workspace / "first.txt").read_text() == "1"
    finally:
        body.close()


@pytest.mark.parametrize("direct", [True, False])
async def test_a_cancel_after_a_direct_call_finished_is_harmless_and_the_session_goes_on(
    workspace: Path, home: Path, direct: bool
) -> None:
    """No id reused: the late cancellation goes on to the SDK, which holds nothing under it; a later call under a new
    id, and one the SDK serves, are not touched by it."""
    held = _Hold("later.txt")
    body = make_body(workspace, home, outer_guards=[held])
    try:
        async with _session(body, direct=direct) as wire:
            await wire.send(_request("read_text_file", READ, ident=3))
            assert (await wire.reply(3))["result"]["isError"] is False
            await wire.send(_cancel(3))
            await wire.send(_cancel("3"))  # (the same id, as a string: one id for correlation)
            args = {"path": "later.txt", "content": "L", "rationale": "r"}
            await wire.send(_progress(_request("write_file", args, ident=4)))
            with anyio.fail_after(WAIT_S):
                await held.holding.wait()
            await wire.send(_cancel(3))
            await wire.send(_request("read_text_file", READ, ident=5))
            assert (await wire.reply(5))["result"]["isError"] is False
            held.go.set()
            assert (await wire.reply(4))["result"]["isError"] is False
            rest = await wire.close()
        assert rest == []
        assert (workspace / "later.txt").read_text() == "L"
    finally:
        body.close()


@pytest.mark.parametrize("direct", [True, False])
async def test_malformed_cancellations_cancel_nothing_and_crash_nothing(
    workspace: Path, home: Path, direct: bool
) -> None:
    """A held direct call (id 1) meets cancellations with no params, no requestId, `true` (which would alias id 1),
    null, a list, an object, a float 1.0, an unknown id: none cancels it, the read loop goes on (a ping is
    answered), and the call's reply comes."""
    held = _Hold("held.txt")
    body = make_body(workspace, home, outer_guards=[held])
    try:
        async with _session(body, direct=direct) as wire:
            await wire.send(_request("write_file", {"path": "held.txt", "content": "h", "rationale": "r"}, ident=1))
            with anyio.fail_after(WAIT_S):
                await held.holding.wait()
            assert (1 in wire.calls.taken) is direct
            await wire.send({"jsonrpc": "2.0", "method": "notifications/cancelled"})
            await wire.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {}})
            await wire.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"reason": "x"}})
            for bad in (True, None, [1], {"id": 1}, 1.0, 2, "one", ""):
                await wire.send(_cancel(bad))
            await wire.send(PING)
            assert await wire.reply(99) == {"jsonrpc": "2.0", "id": 99, "result": {}}
            held.go.set()
            assert (await wire.reply(1))["result"]["isError"] is False
            assert await wire.close() == []
        assert (workspace / "held.txt").read_text() == "h"
    finally:
        body.close()


@pytest.mark.parametrize("direct", [True, False])
async def test_a_cancel_for_a_call_the_sdk_serves_still_reaches_the_sdk_and_cancels_it(
    workspace: Path, home: Path, direct: bool
) -> None:
    """A progress-token call is the SDK's: its cancellation is not swallowed by the direct path (which holds no call
    under the id), so the SDK cancels it (no reply, no effect), while a direct call held under another id goes on."""
    sdk, mine = _Hold("sdk.txt"), _Hold("mine.txt")
    body = make_body(workspace, home, outer_guards=[sdk, mine])
    try:
        async with _session(body, direct=direct) as wire:
            await wire.send(
                _progress(_request("write_file", {"path": "sdk.txt", "content": "s", "rationale": "r"}, ident=5))
            )
            await wire.send(_request("write_file", {"path": "mine.txt", "content": "m", "rationale": "r"}, ident=6))
            with anyio.fail_after(WAIT_S):
                await sdk.holding.wait()
                await mine.holding.wait()
            assert 5 not in wire.calls.taken and (6 in wire.calls.taken) is direct
            await wire.send(_cancel(5))
            await wire.send(PING)
            assert await wire.reply(99) == {"jsonrpc": "2.0", "id": 99, "result": {}}
            sdk.go.set()
            mine.go.set()
            assert (await wire.reply(6))["result"]["isError"] is False
            rest = await wire.close()
        assert [m for m in rest if m.get("id") == 5] == []
        assert not (workspace / "sdk.txt").exists()
        assert (workspace / "mine.txt").read_text() == "m"
    finally:
        body.close()
