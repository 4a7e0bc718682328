"""The scripted provider replays a JSONL file of turns; the in-memory one answers from a list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_runner import (
    ContextOverflow,
    InMemoryProvider,
    ModelTurn,
    RateLimited,
    ScriptedProvider,
    ScriptExhausted,
    ScriptInvalid,
    TokenUsage,
    ToolCall,
    UserMessage,
)
from agent_runner.providers import load_script

from .conftest import ask

pytestmark = pytest.mark.anyio

READ_CALL = {"name": "read_text_file", "arguments": {"path": "src/app.py", "rationale": "see the bug"}}


def script(tmp_path: Path, *lines: dict[str, Any] | str) -> Path:
    path = tmp_path / "turns.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


async def test_each_call_replays_the_next_line_with_its_tool_calls_and_usage(tmp_path: Path) -> None:
    provider = ScriptedProvider(
        script(
            tmp_path,
            {
                "content": "Reading.",
                "tool_calls": [READ_CALL, {"name": "list_directory", "arguments": {"path": "."}, "id": "mine"}],
                "usage": {"input_tokens": 1200, "output_tokens": 40, "cache_read_tokens": 1000},
            },
            "",
            {"content": "Done."},
        ),
        model="claude-sonnet-4-6",
    )
    reserved: list[int] = []

    async def reserve(attempt: int) -> None:
        reserved.append(attempt)

    with anyio.fail_after(5):
        first = await provider.complete(ask(), before_attempt=reserve)
        second = await provider.complete(ask())
    assert first.tool_calls == (
        ToolCall(id="call_1_0", name="read_text_file", arguments=READ_CALL["arguments"]),
        ToolCall(id="mine", name="list_directory", arguments={"path": "."}),
    )
    assert first.stop_reason == "tool_use" and first.model == "claude-sonnet-4-6" and reserved == [1]
    assert first.usage == TokenUsage(input_tokens=1200, output_tokens=40, cache_read_tokens=1000)
    assert (second.content, second.stop_reason, second.usage) == ("Done.", "end_turn", None)
    assert [a.outcome for a in first.attempts] == ["answered"] and provider.remaining == 0
    assert len(provider.requests) == 2


async def test_a_call_after_the_last_line_raises_script_exhausted(tmp_path: Path) -> None:
    provider = ScriptedProvider(script(tmp_path, {"content": "Only turn."}), model="m")
    with anyio.fail_after(5):
        await provider.complete(ask())
        with pytest.raises(ScriptExhausted) as exhausted:
            await provider.complete(ask())
    assert "script exhausted" in str(exhausted.value) and [a.outcome for a in exhausted.value.attempts] == ["rejected"]


@pytest.mark.parametrize(("error", "raised"), [("rate_limited", RateLimited), ("context_overflow", ContextOverflow)])
async def test_an_error_line_fails_that_call_as_a_provider_would(
    tmp_path: Path, error: str, raised: type[Exception]
) -> None:
    provider = ScriptedProvider(script(tmp_path, {"error": error}, {"content": "after"}), model="m")
    with anyio.fail_after(5):
        with pytest.raises(raised):
            await provider.complete(ask())
        assert (await provider.complete(ask())).content == "after"


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ("{not json", "turns.jsonl:2"),
        ({"content": "x", "tool_calls": [{"arguments": {}}]}, "tool_calls.0.name"),
        ({"content": "x", "usage": {"input_tokens": -1, "output_tokens": 0}}, "usage.input_tokens"),
        ({"text": "x"}, "text"),
        ({"error": "on_fire"}, "error"),
        ({"tool_calls": [{"name": "x", "arguments": ["not", "an", "object"]}]}, "arguments"),
    ],
)
def test_a_bad_line_is_script_invalid_naming_the_file_and_line(
    tmp_path: Path, line: dict[str, Any] | str, where: str
) -> None:
    with pytest.raises(ScriptInvalid) as invalid:
        ScriptedProvider(script(tmp_path, {"content": "fine"}, line), model="m")
    assert invalid.value.line == 2 and where in str(invalid.value)


def test_a_missing_script_is_script_invalid(tmp_path: Path) -> None:
    with pytest.raises(ScriptInvalid) as invalid:
        load_script(tmp_path / "nope.jsonl")
    assert invalid.value.line is None and "nope.jsonl" in str(invalid.value)


async def test_the_in_memory_provider_answers_in_order_records_requests_and_runs_out() -> None:
    usage = TokenUsage(input_tokens=10, output_tokens=2)
    held = anyio.Event()

    async def answer_when_released(request: Any) -> ModelTurn:
        await held.wait()
        return ModelTurn(content="released")

    provider = InMemoryProvider(
        [
            ModelTurn(content="one", usage=usage),
            RateLimited("slow down", provider="memory", model="m"),
            answer_when_released,
        ]
    )
    with anyio.fail_after(5):
        first = await provider.complete(ask("first"))
        with pytest.raises(RateLimited) as limited:
            await provider.complete(ask())
        held.set()
        third = await provider.complete(ask())
        with pytest.raises(ScriptExhausted):
            await provider.complete(ask())
    assert first.content == "one" and first.attempts[0].usage == usage and first.model == "memory-model"
    assert [a.outcome for a in limited.value.attempts] == ["rejected"] and third.content == "released"
    assert provider.requests[0].messages[0] == UserMessage(content="first") and len(provider.requests) == 4
    await provider.aclose()
    assert provider.closed
