"""The OpenAI provider: the real `openai` SDK against a fake Chat Completions API on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import anyio
import pytest

from agent_runner import (
    AssistantMessage,
    ContextOverflow,
    ModelRefused,
    ModelRequest,
    OpenAIProvider,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    ResponseGarbage,
    RetryPolicy,
    TokenUsage,
    ToolCall,
    UserMessage,
)
from shared_protocol.secrets import Secret
from tests.fakes.llm import Fail, FakeCall, Garbage, Hang, Overflow, Turn
from tests.fakes.openai_api import API_KEY, FakeOpenAI

from .conftest import READ, SYSTEM, Sleeps, after_two_calls, ask

pytestmark = pytest.mark.anyio

Fake = tuple[FakeOpenAI, str]


async def test_a_text_turn_comes_back_with_the_usage_the_server_served(
    openai: OpenAIProvider, openai_fake: Fake
) -> None:
    fake, _ = openai_fake
    fake.script(Turn(content="The test expects 2."))
    with anyio.fail_after(10):
        turn = await openai.complete(ask())
    served = fake.bill.served[-1]
    assert (turn.content, turn.tool_calls, turn.stop_reason) == ("The test expects 2.", (), "end_turn")
    assert turn.usage == TokenUsage(input_tokens=served.input_tokens, output_tokens=served.output_tokens)
    assert turn.raw_usage is not None and turn.raw_usage["prompt_tokens"] == served.input_tokens
    assert turn.model.startswith("gpt-4o") and [a.outcome for a in turn.attempts] == ["answered"]


async def test_the_request_is_sent_in_chat_completions_shape(openai: OpenAIProvider, openai_fake: Fake) -> None:
    fake, _ = openai_fake
    with anyio.fail_after(10):
        await openai.complete(ask("Fix it.", max_output_tokens=321))
    (request,) = fake.requests
    assert request["model"] == "gpt-4o" and request["max_tokens"] == 321, "a local server gets max_tokens"
    assert "max_completion_tokens" not in request
    assert request["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Fix it."}]
    assert request["tools"][0] == {
        "type": "function",
        "function": {"name": READ.name, "description": READ.description, "parameters": dict(READ.input_schema)},
    }
    assert fake.headers[-1]["authorization"] == f"Bearer {API_KEY}"
    assert fake.headers[-1]["x-stainless-retry-count"] == "0"


async def test_max_completion_tokens_is_sent_when_asked(openai_fake: Fake, sleeps: Sleeps) -> None:
    fake, url = openai_fake
    provider = OpenAIProvider(
        model="gpt-4o", api_key=Secret(API_KEY), base_url=f"{url}/v1", max_tokens_field="max_completion_tokens"
    )
    with anyio.fail_after(10):
        await provider.complete(ask(max_output_tokens=99))
    await provider.aclose()
    assert fake.requests[0]["max_completion_tokens"] == 99 and "max_tokens" not in fake.requests[0]


async def test_parallel_tool_calls_come_back_in_order_with_parsed_arguments(
    openai: OpenAIProvider, openai_fake: Fake
) -> None:
    fake, _ = openai_fake
    first = FakeCall(name="read_text_file", arguments={"path": "src/app.py", "rationale": "see the bug"})
    second = FakeCall(name="list_directory", arguments={"path": "tests"})
    fake.script(Turn(content="Reading both.", tool_calls=[first, second]))
    with anyio.fail_after(10):
        turn = await openai.complete(ask())
    assert turn.stop_reason == "tool_use" and turn.content == "Reading both."
    assert [(call.name, dict(call.arguments)) for call in turn.tool_calls] == [
        ("read_text_file", {"path": "src/app.py", "rationale": "see the bug"}),
        ("list_directory", {"path": "tests"}),
    ]
    assert len({call.id for call in turn.tool_calls}) == 2 and all(call.id for call in turn.tool_calls)


async def test_tool_calls_and_their_results_go_back_as_assistant_and_tool_messages(
    openai: OpenAIProvider, openai_fake: Fake
) -> None:
    fake, _ = openai_fake
    with anyio.fail_after(10):
        await openai.complete(after_two_calls())
    assert fake.refused == []
    _, _, assistant, result_a, result_b = fake.requests[0]["messages"]
    assert assistant["role"] == "assistant" and assistant["content"] == "Reading both."
    assert [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in assistant["tool_calls"]
    ] == [
        ("call_a", "read_text_file", {"path": "src/app.py", "rationale": "see the bug"}),
        ("call_b", "list_directory", {"path": "tests"}),
    ]
    assert result_a == {"role": "tool", "tool_call_id": "call_a", "content": "def main():\n    return 1\n"}
    assert result_b == {"role": "tool", "tool_call_id": "call_b", "content": '{"code": "path_denied"}'}


async def test_cached_prompt_tokens_are_read_from_prompt_tokens_details(
    openai: OpenAIProvider, openai_fake: Fake
) -> None:
    fake, _ = openai_fake
    fake.cache.min_tokens = 0
    with anyio.fail_after(10):
        first = await openai.complete(after_two_calls())
        second = await openai.complete(after_two_calls())
    assert first.usage is not None and first.usage.cache_read_tokens == 0
    served = fake.bill.served[-1]
    assert second.usage == TokenUsage(
        input_tokens=served.input_tokens, output_tokens=served.output_tokens, cache_read_tokens=served.cache_read_tokens
    )
    assert 0 < served.cache_read_tokens <= served.input_tokens
    assert second.raw_usage is not None
    assert second.raw_usage["prompt_tokens_details"]["cached_tokens"] == served.cache_read_tokens


@pytest.mark.parametrize(
    ("fail", "waited"),
    [
        (Fail(status=429, retry_after="7"), 7.0),
        (Fail(status=429, retry_after_ms="1500"), 1.5),
        (Fail(status=503, retry_after="3"), 3.0),
    ],
)
async def test_a_429_or_5xx_is_retried_after_the_wait_it_asks_for(
    openai: OpenAIProvider, openai_fake: Fake, sleeps: Sleeps, fail: Fail, waited: float
) -> None:
    fake, _ = openai_fake
    fake.script(fail, Turn(content="ok"))
    reserved: list[int] = []

    async def reserve(attempt: int) -> None:
        reserved.append(attempt)

    with anyio.fail_after(10):
        turn = await openai.complete(ask(), before_attempt=reserve)
    assert sleeps.waits == [waited] and reserved == [1, 2]
    assert [(a.number, a.outcome, a.status) for a in turn.attempts] == [
        (1, "rejected", fail.status),
        (2, "answered", 200),
    ]


async def test_a_retry_after_http_date_is_honoured(openai: OpenAIProvider, openai_fake: Fake, sleeps: Sleeps) -> None:
    fake, _ = openai_fake
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fake.script(Fail(status=429, retry_after=when), Turn(content="ok"))
    with anyio.fail_after(10):
        await openai.complete(ask())
    (wait,) = sleeps.waits
    assert 27 <= wait <= 30


async def test_429s_until_the_attempts_run_out_raise_rate_limited_with_every_attempt(
    openai: OpenAIProvider, openai_fake: Fake, sleeps: Sleeps
) -> None:
    fake, _ = openai_fake
    fake.script(*[Fail(status=429, retry_after="1")] * 5)
    with anyio.fail_after(10), pytest.raises(RateLimited) as limited:
        await openai.complete(ask())
    assert limited.value.status == 429 and limited.value.retry_after_s == 1.0
    assert [a.outcome for a in limited.value.attempts] == ["rejected"] * 4 and sleeps.waits == [1.0] * 3
    assert len(fake.requests) == 4


async def test_a_retry_after_past_the_time_budget_is_not_waited_for(openai_fake: Fake, sleeps: Sleeps) -> None:
    fake, url = openai_fake
    provider = OpenAIProvider(
        model="gpt-4o",
        api_key=Secret(API_KEY),
        base_url=f"{url}/v1",
        retry=RetryPolicy(max_attempts=5, max_elapsed_s=10),
        sleep=sleeps,
    )
    fake.script(Fail(status=429, retry_after="600"), Turn(content="never reached"))
    with anyio.fail_after(10), pytest.raises(RateLimited) as limited:
        await provider.complete(ask())
    await provider.aclose()
    assert limited.value.retry_after_s == 600 and len(limited.value.attempts) == 1 and sleeps.waits == []


async def test_5xx_until_the_budget_runs_out_raise_provider_unavailable_after_backing_off(
    openai: OpenAIProvider, openai_fake: Fake, sleeps: Sleeps
) -> None:
    fake, _ = openai_fake
    fake.script(Fail(status=500), Fail(status=502), Fail(status=503), Fail(status=500))
    with anyio.fail_after(10), pytest.raises(ProviderUnavailable) as unavailable:
        await openai.complete(ask())
    assert unavailable.value.status == 500 and len(unavailable.value.attempts) == 4
    assert len(sleeps.waits) == 3 and all(0.5 <= wait <= 4.5 for wait in sleeps.waits)


@pytest.mark.parametrize("status", [401, 404, 422])
async def test_a_4xx_is_not_retried(openai: OpenAIProvider, openai_fake: Fake, sleeps: Sleeps, status: int) -> None:
    fake, _ = openai_fake
    fake.script(Fail(status=status))
    with anyio.fail_after(10), pytest.raises(RequestRejected) as rejected:
        await openai.complete(ask())
    assert rejected.value.status == status and len(fake.requests) == 1 and sleeps.waits == []


async def test_a_wrong_key_is_rejected_and_the_key_is_not_in_the_error(openai_fake: Fake) -> None:
    _, url = openai_fake
    wrong = "sk-wrong-key-that-must-not-leak-0000"
    provider = OpenAIProvider(model="gpt-4o", api_key=Secret(wrong), base_url=f"{url}/v1")
    with anyio.fail_after(10), pytest.raises(RequestRejected) as rejected:
        await provider.complete(ask())
    await provider.aclose()
    assert rejected.value.status == 401 and wrong not in str(rejected.value)


async def test_a_context_overflow_is_its_own_error_and_not_retried(
    openai: OpenAIProvider, openai_fake: Fake, sleeps: Sleeps
) -> None:
    fake, _ = openai_fake
    fake.script(Overflow())
    with anyio.fail_after(10), pytest.raises(ContextOverflow) as overflow:
        await openai.complete(ask())
    assert overflow.value.status == 400 and len(fake.requests) == 1 and sleeps.waits == []


async def test_a_prompt_longer_than_the_servers_window_is_a_context_overflow(
    openai: OpenAIProvider, openai_fake: Fake
) -> None:
    fake, _ = openai_fake
    fake.context_window = 50
    with anyio.fail_after(10), pytest.raises(ContextOverflow):
        await openai.complete(ask("x" * 4000))


@pytest.mark.parametrize("turn", [Turn(content="", stop="content_filter"), Turn(refusal="I can't help with that.")])
async def test_a_refusal_or_the_content_filter_is_model_refused_and_its_usage_is_kept(
    openai: OpenAIProvider, openai_fake: Fake, turn: Turn
) -> None:
    fake, _ = openai_fake
    fake.script(turn)
    with anyio.fail_after(10), pytest.raises(ModelRefused) as refused:
        await openai.complete(ask())
    (attempt,) = refused.value.attempts
    assert attempt.outcome == "answered" and attempt.usage is not None
    assert attempt.usage.input_tokens == fake.bill.served[-1].input_tokens


@pytest.mark.parametrize(
    "reply",
    [
        Garbage(),
        Garbage(body=b'{"id": "x", "object": "chat.completion"}', content_type="application/json"),
        Turn(tool_calls=[FakeCall(name="read_text_file", raw_arguments='{"path": "src/app.py"')]),
        Turn(tool_calls=[FakeCall(name="read_text_file", raw_arguments='["src/app.py"]')]),
    ],
)
async def test_an_unreadable_answer_or_tool_arguments_that_are_not_a_json_object_are_garbage(
    openai: OpenAIProvider, openai_fake: Fake, sleeps: Sleeps, reply: Garbage | Turn
) -> None:
    fake, _ = openai_fake
    fake.script(reply)
    with anyio.fail_after(10), pytest.raises(ResponseGarbage) as garbage:
        await openai.complete(ask())
    assert garbage.value.status == 200 and len(fake.requests) == 1 and sleeps.waits == []
    assert [a.outcome for a in garbage.value.attempts] == ["answered"]


async def test_a_server_that_does_not_answer_in_time_is_provider_unavailable_and_aborted(openai_fake: Fake) -> None:
    fake, url = openai_fake
    fake.script(Hang())
    provider = OpenAIProvider(
        model="gpt-4o", api_key=Secret(API_KEY), base_url=f"{url}/v1", timeout_s=0.3, retry=RetryPolicy(max_attempts=1)
    )
    with anyio.fail_after(10), pytest.raises(ProviderUnavailable) as unavailable:
        await provider.complete(ask())
    await provider.aclose()
    assert [a.outcome for a in unavailable.value.attempts] == ["aborted"]
    with anyio.fail_after(5):
        await fake.disconnected.wait()


async def test_a_refused_connection_is_retried_then_provider_unavailable(sleeps: Sleeps) -> None:
    provider = OpenAIProvider(
        model="gpt-4o",
        api_key=Secret(API_KEY),
        base_url="http://127.0.0.1:9/v1",  # discard: nothing listens
        retry=RetryPolicy(max_attempts=2),
        sleep=sleeps,
    )
    with anyio.fail_after(10), pytest.raises(ProviderUnavailable) as unavailable:
        await provider.complete(ask())
    await provider.aclose()
    assert [a.outcome for a in unavailable.value.attempts] == ["aborted", "aborted"] and len(sleeps.waits) == 1


async def test_what_before_attempt_raises_stops_the_call_before_anything_is_sent(
    openai: OpenAIProvider, openai_fake: Fake, sleeps: Sleeps
) -> None:
    fake, _ = openai_fake
    fake.script(Fail(status=429, retry_after="1"), Turn(content="never reached"))

    class BudgetEmpty(Exception):
        pass

    async def reserve(attempt: int) -> None:
        if attempt == 2:
            raise BudgetEmpty

    with anyio.fail_after(10), pytest.raises(BudgetEmpty):
        await openai.complete(ask(), before_attempt=reserve)
    assert len(fake.requests) == 1


async def test_the_environment_cannot_redirect_the_provider_or_swap_its_key(
    openai_fake: Fake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = openai_fake
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    provider = OpenAIProvider(model="gpt-4o", api_key=Secret(API_KEY), base_url=f"{url}/v1")
    with anyio.fail_after(10):
        await provider.complete(ask())
    await provider.aclose()
    assert fake.headers[-1]["authorization"] == f"Bearer {API_KEY}"


async def test_a_tool_call_left_unanswered_is_refused_by_the_api_as_a_400_and_not_retried(
    openai: OpenAIProvider, openai_fake: Fake, sleeps: Sleeps
) -> None:
    fake, _ = openai_fake
    call = ToolCall(id="call_a", name="list_directory", arguments={"path": "."})
    request = ModelRequest(
        system=SYSTEM,
        messages=[UserMessage(content="Go."), AssistantMessage(tool_calls=(call,)), UserMessage(content="Well?")],
        max_output_tokens=64,
    )
    with anyio.fail_after(10), pytest.raises(RequestRejected) as rejected:
        await openai.complete(request)
    assert rejected.value.status == 400 and len(fake.refused) == 1 and sleeps.waits == []


async def test_a_server_that_reports_no_usage_gives_a_turn_without_usage(
    openai: OpenAIProvider, openai_fake: Fake
) -> None:
    fake, _ = openai_fake
    fake.script(Turn(content="ok", report_usage=False))
    with anyio.fail_after(10):
        turn = await openai.complete(ask())
    assert (turn.usage, turn.raw_usage) == (None, None)
    assert [(a.outcome, a.usage) for a in turn.attempts] == [("answered", None)], "settled at its reservation"
