"""Bytes that are not UTF-8 anywhere in a message (review 22b's finding, fixed): the stdin reader keeps them as lone
surrogates (`surrogateescape`), so no value the client did not send is ever acted on: a tool's argument is refused
naming it, and the body keeps serving whatever message they were in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.review22b.test_mcp_input_wire import INITIALIZE, raw_body, write_call

pytestmark = pytest.mark.anyio


def _with_bytes(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode().replace(b"@@", b"\xff\xfe")


async def test_bytes_that_are_not_utf8_in_any_part_of_a_message_are_never_acted_on(workspace: Path, home: Path) -> None:
    async with raw_body(workspace, home) as wire:
        hello = json.loads(json.dumps(INITIALIZE))
        hello["params"]["clientInfo"]["name"] = "client@@"
        await wire.send(_with_bytes(hello))
        reply, _ = await wire.reply_to(0)
        assert "result" in reply or "error" in reply  # (answered either way: the session goes on)
        if "error" in reply:
            await wire.start()
        else:
            await wire.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        call = write_call(1, "r.txt")
        call["params"]["arguments"]["rationale"] = "why@@"
        await wire.send(_with_bytes(call))
        refused, _ = await wire.reply_to(1)
        assert refused["result"]["isError"] is True
        assert refused["result"]["structuredContent"]["code"] == "invalid_arguments"
        assert "rationale" in refused["result"]["structuredContent"]["message"]
        named = write_call(2, "n.txt")
        named["params"]["name"] = "write_file@@"
        await wire.send(_with_bytes(named))
        unknown, _ = await wire.reply_to(2)
        assert unknown.get("error") or unknown["result"]["isError"] is True
        await wire.send(_with_bytes(write_call(3, "dir@@/p.txt")))
        path, _ = await wire.reply_to(3)
        assert path["result"]["isError"] is True
        await wire.send(write_call(4, "ok.txt", "fine"))
        ok, _ = await wire.reply_to(4)
        assert ok["result"]["isError"] is False
    assert sorted(p.name for p in workspace.rglob("*.txt") if p.name in {"r.txt", "n.txt", "p.txt", "ok.txt"}) == [
        "ok.txt"
    ]
    assert (workspace / "ok.txt").read_text() == "fine"
