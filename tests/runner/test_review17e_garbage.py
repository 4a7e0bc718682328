"""Review of issue #17 (pass e): a model or a provider answering garbage must fail the call (`ResponseGarbage`, the
task `failed` with the reason), never crash the runner. The real SDK clients against the fake APIs on 127.0.0.1, and
for answers the fakes cannot make (a stream event with a field of the wrong type, tool input nested thousands deep)
a server on 127.0.0.1 replaying a canned stream in Anthropic's real event shapes."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agent_runner import (
    AnthropicProvider,
    MemoryLedger,
    ResponseGarbage,
    RetryPolicy,
    ScriptedProvider,
    ScriptInvalid,
)
from agent_runner.reviewer import parse_vote
from shared_protocol.secrets import Secret
from tests.fakes.anthropic_api import API_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.llm import FakeCall, Turn
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.serve import serve_app

from .conftest import Sleeps, ask
from .test_wallet import Sink, make_wallet, openai_on

pytestmark = pytest.mark.anyio

ONE_TRY = RetryPolicy(max_attempts=1)
DEEP = 5000
"""Brackets: past Python's recursion limit (1000), so `json.loads` raises RecursionError, not ValueError."""


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


class CannedAnthropic:
    """An ASGI app answering every `POST /v1/messages` with these stream events (Anthropic's SSE shapes), as given."""

    def __init__(self, events: list[dict[str, Any] | str]) -> None:
        self.events = events
        self.requests = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.requests += 1
        headers = [(b"content-type", b"text/event-stream"), (b"request-id", b"req_canned")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for event in self.events:
            data = event if isinstance(event, str) else json.dumps(event)
            kind = "event" if isinstance(event, str) else event["type"]
            await send(
                {"type": "http.response.body", "body": f"event: {kind}\ndata: {data}\n\n".encode(), "more_body": True}
            )
        await send({"type": "http.response.body", "body": b""})


def message_events(*middle: dict[str, Any] | str, delta: dict[str, Any] | None = None) -> list[dict[str, Any] | str]:
    start: dict[str, Any] = {
        "type": "message_start",
        "message": {
            "id": "msg_canned",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-6",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 40, "output_tokens": 1},
        },
    }
    end = {
        "type": "message_delta",
        "delta": delta or {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 30},
    }
    return [start, *middle, end, {"type": "message_stop"}]


def tool_use(partial_json: str) -> list[dict[str, Any] | str]:
    return [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "read_text_file", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": partial_json},
        },
        {"type": "content_block_stop", "index": 0},
    ]


@asynccontextmanager
async def canned_claude(
    events: list[dict[str, Any] | str],
) -> AsyncGenerator[tuple[CannedAnthropic, AnthropicProvider]]:
    app = CannedAnthropic(events)
    async with serve_app(app) as url:
        provider = AnthropicProvider(
            model="claude-sonnet-4-6", api_key=Secret(ANTHROPIC_KEY), base_url=url, timeout_s=10, retry=ONE_TRY
        )
        try:
            yield app, provider
        finally:
            await provider.aclose()


async def complete_on(events: list[dict[str, Any] | str]) -> tuple[Sink, MemoryLedger, BaseException | None]:
    """One call through a wallet to a server replaying `events`: what the wallet recorded and what was raised."""
    ledger, sink = MemoryLedger(), Sink()
    task = make_wallet(ledger, sink).task("t-g")
    raised: BaseException | None = None
    async with canned_claude(events) as (app, provider):
        try:
            await task.complete(provider, ask())
        except Exception as exc:  # noqa: BLE001 - which error it is, is what the tests look at
            raised = exc
        assert app.requests == 1
    return sink, ledger, raised


async def test_review17e_an_openai_tool_call_nested_thousands_deep_is_garbage_not_a_recursion_error(
    openai_fake: tuple[FakeOpenAI, str], sleeps: Sleeps
) -> None:
    """Was a hole (medium): a model answering a tool call whose arguments are `{"path": [[[[…]]]]}` a few thousand
    brackets deep (a few hundred output tokens) made `json.loads` raise RecursionError, which the provider did not
    catch (it catches ValueError): the runner died with "unexpected error (RecursionError …)", and the task, retaken
    after its lease, crashed it again. Fixed: the providers catch it, and refuse arguments nested past
    `MAX_ARGUMENT_DEPTH` (64) as garbage before anything recurses over them (the transcript's JSON, the wallet's
    estimate, the MCP client)."""
    fake, url = openai_fake
    for depth in (DEEP, 200):
        brackets = "[" * depth + "]" * depth
        fake.script(Turn(tool_calls=[FakeCall(name="read_text_file", raw_arguments=f'{{"path": {brackets}}}')]))
        ledger, sink = MemoryLedger(), Sink()
        task = make_wallet(ledger, sink).task(f"t-{depth}")
        provider = openai_on(url, sleeps, retry=ONE_TRY)
        try:
            with pytest.raises(ResponseGarbage, match="not a JSON object"):
                await task.complete(provider, ask())
        finally:
            await provider.aclose()
        assert [r.outcome for r in sink.records] == ["answered"] and not ledger.holds


async def test_review17e_an_anthropic_tool_input_nested_thousands_deep_is_garbage_not_a_recursion_error() -> None:
    """Was a hole (medium): the same through Anthropic's stream, whose tool input comes as `input_json_delta` pieces
    the provider joins and decodes at `content_block_stop` (catching ValueError only). Fixed as for OpenAI."""
    sink, ledger, raised = await complete_on(message_events(*tool_use("[" * DEEP + "]" * DEEP)))
    assert isinstance(raised, ResponseGarbage), raised
    assert [r.outcome for r in sink.records] == ["answered"] and not ledger.holds


async def test_review17e_an_anthropic_tool_input_nested_past_the_limit_is_garbage(
    anthropic_fake: tuple[FakeAnthropic, str], sleeps: Sleeps
) -> None:
    """Was a hole (medium, fixed with the one above): input nested 200 deep decodes, then overflows what recurses over
    it later; now refused as garbage, naming the limit. The real fake, its real stream."""
    fake, url = anthropic_fake
    fake.script(Turn(tool_calls=[FakeCall(name="read_text_file", raw_input={"path": nested(200)})]))
    provider = AnthropicProvider(
        model="claude-sonnet-4-6", api_key=Secret(ANTHROPIC_KEY), base_url=url, timeout_s=10, retry=ONE_TRY
    )
    ledger, sink = MemoryLedger(), Sink()
    try:
        with pytest.raises(ResponseGarbage, match="nests more than 64 deep"):
            await make_wallet(ledger, sink).task("t-a").complete(provider, ask())
    finally:
        await provider.aclose()
    assert not ledger.holds


async def test_review17e_a_message_delta_with_a_usage_field_of_the_wrong_type_is_not_a_crash() -> None:
    """Was a hole (medium): a `message_delta` whose `delta` carries `"usage": 5` (the SDK's event models take extra
    fields) replaced the message's usage object with 5, and the next line called `.update` on it: AttributeError out
    of the provider, the runner died. Fixed: the delta's fields are copied but for `usage`, which comes beside it."""
    delta = {"stop_reason": "end_turn", "stop_sequence": None, "usage": 5}
    text = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "done"}},
        {"type": "content_block_stop", "index": 0},
    ]
    sink, ledger, raised = await complete_on(message_events(*text, delta=delta))
    assert raised is None
    [record] = sink.records
    assert (record.outcome, record.input_tokens, record.output_tokens) == ("answered", 40, 30) and not ledger.holds


@pytest.mark.parametrize(
    "event",
    [
        "{not json",
        '{"type": "content_block_delta", "index": 7, "delta": {"type": "text_delta", "text": "x"}}',
        '{"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": "lots"}}',
        '{"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": 5, "name": []}}',
        "[" * DEEP + "]" * DEEP,
    ],
)
async def test_review17e_garbage_stream_events_in_anthropics_shape_are_garbage(event: str) -> None:
    """Withstood (the last one with the fix above): stream events that are not JSON, deltas for a block never
    started, an output count that is not a number, blocks of the wrong types and an event nested thousands deep: each is
    `ResponseGarbage` (or the broken-off answer it is), never an exception the loop does not expect."""
    sink, ledger, raised = await complete_on(message_events(event))
    assert isinstance(raised, ResponseGarbage), repr(raised)
    assert len(sink.records) == 1 and not ledger.holds


def test_review17e_a_reviewers_model_answering_thousands_of_brackets_abstains() -> None:
    """Was a hole (medium): a reviewer's vote is `json.loads` of the model's answer, catching ValueError only: an
    answer of a few thousand `[` raised RecursionError and the reviewer died. Fixed: it is an abstention saying
    the answer was not the JSON asked for."""
    vote, why = parse_vote("[" * DEEP + "]" * DEEP)
    assert vote == "abstain" and "not the JSON object asked for" in why


def test_review17e_a_script_nested_too_deep_is_refused_naming_its_line(tmp_path: Path) -> None:
    """Was a hole (low): a scripted line nested past the decoder's limit raised RecursionError when the script was
    loaded (`swarm agent run` said "unexpected error … this is a bug"). Fixed: `ScriptInvalid` naming the line, as
    for arguments nested past `MAX_ARGUMENT_DEPTH`."""
    script = tmp_path / "script.jsonl"
    script.write_text('{"content": "ok"}\n' + "[" * DEEP + "]" * DEEP + "\n")
    with pytest.raises(ScriptInvalid, match=r"script.jsonl:2: nested more than 64 deep"):
        ScriptedProvider(script, model="gpt-4o-mini")
    call = {"name": "read_text_file", "arguments": {"path": nested(100)}}
    script.write_text(json.dumps({"tool_calls": [call]}) + "\n")
    with pytest.raises(ScriptInvalid, match=r"script.jsonl:1: the arguments of read_text_file nest more than 64"):
        ScriptedProvider(script, model="gpt-4o-mini")
