"""The Anthropic provider: the real `anthropic` SDK against a fake Messages API on 127.0.0.1."""

from __future__ import annotations

import anyio
import pytest

from agent_runner import (
    AnthropicProvider,
    AssistantMessage,
    ContextOverflow,
    ModelRefused,
    ModelRequest,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    ResponseGarbage,
    RetryPolicy,
    TokenUsage,
    ToolCall,
    ToolResult,
    ToolResultsMessage,
    UserMessage,
)
from shared_protocol.secrets import Secret
from tests.fakes.anthropic_api import API_KEY, FakeAnthropic
from tests.fakes.llm import Fail, FakeCall, Garbage, Hang, Overflow, Turn

from .conftest import LIST, READ, SYSTEM, Sleeps, after_two_calls, ask

pytestmark = pytest.mark.anyio

Fake = tuple[FakeAnthropic, str]


async def test_a_text_turn_comes_back_with_the_usage_the_server_served(
    claude: AnthropicProvider, anthropic_fake: Fake
) -> None:
    fake, _ = anthropic_fake
    fake.script(Turn(content="The test expects 2."))
    with anyio.fail_after(10):
        turn = await claude.complete(ask())
    served = fake.bill.served[-1]
    assert (turn.content, turn.tool_calls, turn.stop_reason) == ("The test expects 2.", (), "end_turn")
    assert turn.usage == TokenUsage(input_tokens=served.input_tokens, output_tokens=served.output_tokens)
    assert turn.raw_usage is not None and turn.raw_usage["input_tokens"] == served.input_tokens
    assert turn.model == "claude-sonnet-4-6" and [a.outcome for a in turn.attempts] == ["answered"]


async def test_the_request_is_sent_in_messages_shape_with_automatic_prompt_caching(
    claude: AnthropicProvider, anthropic_fake: Fake
) -> None:
    fake, _ = anthropic_fake
    with anyio.fail_after(10):
        await claude.complete(ask("Fix it.", max_output_tokens=321))
    (request,) = fake.requests
    assert (request["model"], request["max_tokens"], request["system"]) == ("claude-sonnet-4-6", 321, SYSTEM)
    assert request["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Fix it."}]}]
    assert request["tools"] == [
        {"name": t.name, "description": t.description, "input_schema": dict(t.input_schema)} for t in (READ, LIST)
    ]
    assert request["cache_control"] == {"type": "ephemeral"}
    assert fake.headers[-1]["anthropic-version"] and fake.headers[-1]["x-stainless-retry-count"] == "0"


async def test_parallel_tool_uses_come_back_in_order(claude: AnthropicProvider, anthropic_fake: Fake) -> None:
    fake, _ = anthropic_fake
    first = FakeCall(name="read_text_file", arguments={"path": "src/app.py", "rationale": "see the bug"})
    second = FakeCall(name="list_directory", arguments={"path": "tests"})
    fake.script(Turn(content="Reading both.", tool_calls=[first, second]))
    with anyio.fail_after(10):
        turn = await claude.complete(ask())
    assert turn.stop_reason == "tool_use" and turn.content == "Reading both."
    assert [(call.name, dict(call.arguments)) for call in turn.tool_calls] == [
        ("read_text_file", {"path": "src/app.py", "rationale": "see the bug"}),
        ("list_directory", {"path": "tests"}),
    ]
    assert all(call.id.startswith("toolu_") for call in turn.tool_calls)


async def test_tool_uses_and_results_go_back_as_blocks_with_the_error_flag(
    claude: AnthropicProvider, anthropic_fake: Fake
) -> None:
    fake, _ = anthropic_fake
    with anyio.fail_after(10):
        await claude.complete(after_two_calls())
    assert fake.refused == []
    _, assistant, results = fake.requests[0]["messages"]
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Reading both."},
            {
                "type": "tool_use",
                "id": "call_a",
                "name": "read_text_file",
                "input": {"path": "src/app.py", "rationale": "see the bug"},
            },
            {"type": "tool_use", "id": "call_b", "name": "list_directory", "input": {"path": "tests"}},
        ],
    }
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_a", "content": "def main():\n    return 1\n"},
            {"type": "tool_result", "tool_use_id": "call_b", "content": '{"code": "path_denied"}', "is_error": True},
        ],
    }


async def test_a_note_after_tool_results_joins_their_user_message_and_an_empty_turn_is_never_sent_empty(
    claude: AnthropicProvider, anthropic_fake: Fake
) -> None:
    fake, _ = anthropic_fake
    call = ToolCall(id="call_a", name="list_directory", arguments={"path": "."})
    request = ModelRequest(
        system=SYSTEM,
        messages=[
            UserMessage(content="Go."),
            AssistantMessage(tool_calls=(call,)),
            ToolResultsMessage(results=(ToolResult(call_id="call_a", content="[]"),)),
            UserMessage(content="3 steps left."),
            AssistantMessage(),
            UserMessage(content="Continue."),
        ],
        tools=[LIST],
        max_output_tokens=64,
    )
    with anyio.fail_after(10):
        await claude.complete(request)
    assert fake.refused == []
    messages = fake.requests[0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert [block["type"] for block in messages[2]["content"]] == ["tool_result", "text"]
    assert messages[3]["content"][0]["text"], "Anthropic refuses an empty text block"


async def test_cache_writes_and_reads_are_reported_from_the_cache_fields(
    claude: AnthropicProvider, anthropic_fake: Fake
) -> None:
    fake, _ = anthropic_fake
    fake.cache.min_tokens = 0
    with anyio.fail_after(10):
        first = await claude.complete(after_two_calls())
        second = await claude.complete(after_two_calls())
    written, read = fake.bill.served
    assert written.cache_write_tokens > 0 and read.cache_read_tokens > 0
    assert first.usage == TokenUsage(
        input_tokens=written.input_tokens,
        output_tokens=written.output_tokens,
        cache_write_tokens=written.cache_write_tokens,
    )
    assert second.usage == TokenUsage(
        input_tokens=read.input_tokens,
        output_tokens=read.output_tokens,
        cache_read_tokens=read.cache_read_tokens,
        cache_write_tokens=read.cache_write_tokens,
    )
    assert second.raw_usage is not None and second.raw_usage["cache_read_input_tokens"] == read.cache_read_tokens
    assert second.usage.input_tokens == sum(
        second.raw_usage[key] for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    ), "input_tokens is every input token: Anthropic's three fields added up"


@pytest.mark.parametrize("fail", [Fail(status=429, retry_after="5"), Fail(status=529), Fail(status=500)])
async def test_a_429_overloaded_or_5xx_is_retried(
    claude: AnthropicProvider, anthropic_fake: Fake, sleeps: Sleeps, fail: Fail
) -> None:
    fake, _ = anthropic_fake
    fake.script(fail, Turn(content="ok"))
    with anyio.fail_after(10):
        turn = await claude.complete(ask())
    assert [(a.outcome, a.status) for a in turn.attempts] == [("rejected", fail.status), ("answered", 200)]
    assert len(sleeps.waits) == 1 and (fail.retry_after is None or sleeps.waits == [5.0])


async def test_429s_until_the_attempts_run_out_raise_rate_limited(
    claude: AnthropicProvider, anthropic_fake: Fake, sleeps: Sleeps
) -> None:
    fake, _ = anthropic_fake
    fake.script(*[Fail(status=429, retry_after="2")] * 4)
    with anyio.fail_after(10), pytest.raises(RateLimited) as limited:
        await claude.complete(ask())
    assert limited.value.retry_after_s == 2 and len(limited.value.attempts) == 4 and sleeps.waits == [2.0] * 3


async def test_overloaded_until_the_attempts_run_out_is_provider_unavailable(
    claude: AnthropicProvider, anthropic_fake: Fake
) -> None:
    fake, _ = anthropic_fake
    fake.script(*[Fail(status=529)] * 4)
    with anyio.fail_after(10), pytest.raises(ProviderUnavailable) as unavailable:
        await claude.complete(ask())
    assert unavailable.value.status == 529 and len(unavailable.value.attempts) == 4


@pytest.mark.parametrize("status", [401, 404])
async def test_a_4xx_is_not_retried(
    claude: AnthropicProvider, anthropic_fake: Fake, sleeps: Sleeps, status: int
) -> None:
    fake, _ = anthropic_fake
    fake.script(Fail(status=status))
    with anyio.fail_after(10), pytest.raises(RequestRejected) as rejected:
        await claude.complete(ask())
    assert rejected.value.status == status and sleeps.waits == [] and len(fake.requests) == 1


async def test_a_wrong_key_is_rejected_and_the_key_is_not_in_the_error(anthropic_fake: Fake) -> None:
    _, url = anthropic_fake
    wrong = "sk-ant-wrong-key-that-must-not-leak"
    provider = AnthropicProvider(model="claude-sonnet-4-6", api_key=Secret(wrong), base_url=url)
    with anyio.fail_after(10), pytest.raises(RequestRejected) as rejected:
        await provider.complete(ask())
    await provider.aclose()
    assert rejected.value.status == 401 and wrong not in str(rejected.value)


@pytest.mark.parametrize("reply", [Overflow(), Fail(status=413)])
async def test_prompt_too_long_or_a_request_too_large_is_a_context_overflow(
    claude: AnthropicProvider, anthropic_fake: Fake, sleeps: Sleeps, reply: Overflow | Fail
) -> None:
    fake, _ = anthropic_fake
    fake.script(reply)
    with anyio.fail_after(10), pytest.raises(ContextOverflow):
        await claude.complete(ask())
    assert len(fake.requests) == 1 and sleeps.waits == []


async def test_a_refusal_stop_reason_is_model_refused_and_its_usage_is_kept(
    claude: AnthropicProvider, anthropic_fake: Fake
) -> None:
    fake, _ = anthropic_fake
    fake.script(Turn(content="", refusal="This request could enable harm."))
    with anyio.fail_after(10), pytest.raises(ModelRefused) as refused:
        await claude.complete(ask())
    (attempt,) = refused.value.attempts
    assert attempt.outcome == "answered" and attempt.usage is not None and attempt.usage.output_tokens >= 1


@pytest.mark.parametrize(
    "reply",
    [
        Garbage(),
        Garbage(body=b'{"type": "message", "content": "nope"}', content_type="application/json"),
        Turn(tool_calls=[FakeCall(name="read_text_file", raw_input='{"path": "src/app.py"')]),
    ],
)
async def test_an_unreadable_answer_or_tool_input_that_is_not_an_object_is_garbage(
    claude: AnthropicProvider, anthropic_fake: Fake, sleeps: Sleeps, reply: Garbage | Turn
) -> None:
    fake, _ = anthropic_fake
    fake.script(reply)
    with anyio.fail_after(10), pytest.raises(ResponseGarbage) as garbage:
        await claude.complete(ask())
    assert [a.outcome for a in garbage.value.attempts] == ["answered"] and sleeps.waits == []


async def test_a_max_tokens_stop_is_reported_as_such(claude: AnthropicProvider, anthropic_fake: Fake) -> None:
    fake, _ = anthropic_fake
    fake.script(Turn(content="a long answer " * 50))
    with anyio.fail_after(10):
        turn = await claude.complete(ask(max_output_tokens=5))
    assert turn.stop_reason == "max_tokens" and turn.usage is not None and turn.usage.output_tokens == 5


async def test_a_server_that_does_not_answer_in_time_is_provider_unavailable_and_aborted(anthropic_fake: Fake) -> None:
    fake, url = anthropic_fake
    fake.script(Hang())
    provider = AnthropicProvider(
        model="claude-sonnet-4-6",
        api_key=Secret(API_KEY),
        base_url=url,
        timeout_s=0.3,
        retry=RetryPolicy(max_attempts=1),
    )
    with anyio.fail_after(10), pytest.raises(ProviderUnavailable) as unavailable:
        await provider.complete(ask())
    await provider.aclose()
    assert [a.outcome for a in unavailable.value.attempts] == ["aborted"]


async def test_no_anthropic_variable_or_credentials_file_is_consulted(
    anthropic_fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = anthropic_fake
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-the-environment")
    monkeypatch.setenv("ANTHROPIC_PROFILE", "someone-else")
    provider = AnthropicProvider(model="claude-sonnet-4-6", api_key=Secret(API_KEY), base_url=url)
    with anyio.fail_after(10):
        await provider.complete(ask())
    await provider.aclose()
    assert fake.headers[-1]["authorization"] == f"Bearer {API_KEY}"


async def test_a_tool_call_left_unanswered_is_refused_by_the_api_as_a_400_and_not_retried(
    claude: AnthropicProvider, anthropic_fake: Fake, sleeps: Sleeps
) -> None:
    fake, _ = anthropic_fake
    call = ToolCall(id="call_a", name="list_directory", arguments={"path": "."})
    request = ModelRequest(
        system=SYSTEM,
        messages=[UserMessage(content="Go."), AssistantMessage(tool_calls=(call,)), UserMessage(content="Well?")],
        max_output_tokens=64,
    )
    with anyio.fail_after(10), pytest.raises(RequestRejected) as rejected:
        await claude.complete(request)
    assert rejected.value.status == 400 and len(fake.refused) == 1 and sleeps.waits == []
