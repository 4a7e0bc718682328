"""OpenAI Chat Completions through the official `openai` SDK. A `base_url` makes the same code serve any
compatible server: Ollama, vLLM, a llama.cpp server, a proxy.

    ModelRequest ──to_openai_messages / to_openai_tools──▶ POST {base_url}/chat/completions
    ModelTurn ◀──turn_from_openai── the response JSON, validated against the SDK's `ChatCompletion`

The SDK's retries are off (`max_retries=0`); `call_with_retries` does them. The client is always given its base
URL and key explicitly, so `OPENAI_BASE_URL` and `OPENAI_API_KEY` in the environment cannot redirect the runner
or hand it another key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import anyio
import httpx2
import openai
from openai import AsyncOpenAI
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)
from pydantic import ValidationError

from shared_protocol.secrets import Secret

from ..conversation import (
    AssistantMessage,
    Message,
    ModelRequest,
    ModelTurn,
    StopReason,
    ToolCall,
    ToolDefinition,
    ToolResultsMessage,
    UserMessage,
)
from ._failures import (
    detail,
    garbage,
    looks_like_context_overflow,
    no_answer,
    refused,
    status_failure,
    unreadable,
)
from ._retry import AttemptFailed, BeforeAttempt, RetryPolicy, Sleep, call_with_retries
from ._usage import token_usage

OPENAI_API = "https://api.openai.com/v1"
NO_KEY = "no-key"
"""Sent when no key is configured: local servers ignore it, and the SDK refuses an empty one."""

MaxTokensField = Literal["auto", "max_completion_tokens", "max_tokens"]
"""OpenAI's models want `max_completion_tokens` (`max_tokens` is deprecated and refused by reasoning models);
Ollama and older servers read only `max_tokens`. `auto`: the first for api.openai.com, the second elsewhere."""

_STOP_REASONS: Mapping[str, StopReason] = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


def to_openai_messages(system: str, messages: Sequence[Message]) -> list[ChatCompletionMessageParam]:
    """The conversation as Chat Completions messages: the system prompt first, each tool result its own `tool`
    message (in the order of the calls)."""
    wire: list[ChatCompletionMessageParam] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        match message:
            case UserMessage(content=content):
                wire.append({"role": "user", "content": content})
            case AssistantMessage(content=content, tool_calls=calls):
                if calls:
                    wire.append({"role": "assistant", "content": content or None, "tool_calls": _calls(calls)})
                else:
                    wire.append({"role": "assistant", "content": content})
            case ToolResultsMessage(results=results):
                for result in results:
                    wire.append({"role": "tool", "tool_call_id": result.call_id, "content": result.content})
    return wire


def _calls(calls: Sequence[ToolCall]) -> list[ChatCompletionMessageFunctionToolCallParam]:
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)},
        }
        for call in calls
    ]


def to_openai_tools(tools: Sequence[ToolDefinition]) -> list[ChatCompletionFunctionToolParam]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.input_schema),
            },
        }
        for tool in tools
    ]


def turn_from_openai(body: bytes, *, provider: str, model: str) -> ModelTurn:
    """A response body as a turn, or `AttemptFailed` (garbage, refusal, content filter) for the retry loop."""
    try:
        payload: Any = json.loads(body)
        completion = ChatCompletion.model_validate(payload)
    except (ValueError, ValidationError) as exc:
        raise garbage(
            provider=provider, model=model, reason=f"the answer is not a chat completion: {unreadable(exc)}"
        ) from None
    raw_usage = cast(Mapping[str, Any] | None, payload.get("usage"))
    try:
        usage = token_usage(raw_usage, flavor="openai-chat") if raw_usage is not None else None
    except ValueError as exc:
        raise garbage(provider=provider, model=model, reason=f"unreadable usage: {exc}") from None
    if not completion.choices:
        raise garbage(provider=provider, model=model, reason="the answer has no choices", usage=usage)
    choice = completion.choices[0]
    message = choice.message
    if choice.finish_reason == "content_filter":
        raise refused(provider=provider, model=model, reason="stopped by the content filter", usage=usage)
    if message.refusal:
        raise refused(provider=provider, model=model, reason=f"refused: {detail(message.refusal)}", usage=usage)
    calls: list[ToolCall] = []
    for index, call in enumerate(message.tool_calls or []):
        if call.type != "function":
            raise garbage(provider=provider, model=model, reason=f"a {call.type} tool call was never offered")
        arguments = _arguments(call.function.arguments)
        if arguments is None:
            reason = f"the arguments of tool call {index} ({call.function.name}) are not a JSON object"
            raise garbage(provider=provider, model=model, reason=reason, usage=usage)
        calls.append(ToolCall(id=call.id or f"call_{index}", name=call.function.name, arguments=arguments))
    # Some compatible servers say "stop" while calling tools: the calls decide.
    stop: StopReason = "tool_use" if calls else _STOP_REASONS.get(choice.finish_reason, "other")
    return ModelTurn(
        content=message.content or "",
        tool_calls=tuple(calls),
        stop_reason=stop,
        usage=usage,
        raw_usage=raw_usage,
        model=completion.model,
    )


def _arguments(text: str) -> dict[str, Any] | None:
    if not text.strip():
        return {}  # a call without arguments, as some servers send it
    try:
        value: Any = json.loads(text)
    except ValueError:
        return None
    return cast(dict[str, Any], value) if isinstance(value, dict) else None


class OpenAIProvider:
    """Chat Completions, non-streaming, one choice."""

    def __init__(
        self,
        *,
        model: str,
        api_key: Secret | None = None,
        base_url: str = "",
        timeout_s: float = 300.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep = anyio.sleep,
        max_tokens_field: MaxTokensField = "auto",
    ) -> None:
        self._model = model
        self._key = api_key.reveal() if api_key else None
        self._base_url = base_url or OPENAI_API
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        if max_tokens_field == "auto":
            official = httpx2.URL(self._base_url).host == "api.openai.com"
            max_tokens_field = "max_completion_tokens" if official else "max_tokens"
        self._max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = max_tokens_field
        self._client = AsyncOpenAI(
            api_key=self._key or NO_KEY, base_url=self._base_url, max_retries=0, timeout=timeout_s
        )

    @property
    def name(self) -> str:
        return "openai"

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, request: ModelRequest, *, before_attempt: BeforeAttempt | None = None) -> ModelTurn:
        messages = to_openai_messages(request.system, request.messages)
        tools = to_openai_tools(request.tools)

        async def attempt() -> ModelTurn:
            return await self._attempt(messages, tools, request.max_output_tokens)

        return await call_with_retries(attempt, policy=self._retry, before_attempt=before_attempt, sleep=self._sleep)

    async def _attempt(
        self, messages: list[ChatCompletionMessageParam], tools: list[ChatCompletionFunctionToolParam], limit: int
    ) -> ModelTurn:
        completion_limit = limit if self._max_tokens_field == "max_completion_tokens" else openai.omit
        legacy_limit = limit if self._max_tokens_field == "max_tokens" else openai.omit
        try:
            # One deadline for the whole try, whatever the SDK's timeouts cover.
            with anyio.fail_after(self._timeout_s):
                raw = await self._client.chat.completions.with_raw_response.create(
                    model=self._model,
                    messages=messages,
                    tools=tools if tools else openai.omit,
                    max_completion_tokens=completion_limit,
                    max_tokens=legacy_limit,
                )
                body = await raw.http_response.aread()
        except TimeoutError:
            raise no_answer(
                provider="openai", model=self._model, reason=f"no answer within {self._timeout_s:g} s"
            ) from None
        except openai.APITimeoutError:
            raise no_answer(provider="openai", model=self._model, reason="the request timed out") from None
        except openai.APIConnectionError as exc:
            reason = f"connection failed: {detail(str(exc.__cause__ or exc), secret=self._key)}"
            raise no_answer(provider="openai", model=self._model, reason=reason) from None
        except openai.APIStatusError as exc:
            raise self._status_failure(exc) from None
        return turn_from_openai(body, provider="openai", model=self._model)

    def _status_failure(self, exc: openai.APIStatusError) -> AttemptFailed:
        body = _error_object(exc.body)
        message = str(body.get("message") or exc.message)
        kind = str(body.get("type") or "")
        overflow = exc.status_code == 413 or (
            exc.status_code == 400
            and (
                exc.code == "context_length_exceeded"
                or kind == "exceed_context_size_error"  # llama.cpp
                or looks_like_context_overflow(message)
            )
        )
        reason = ": ".join(part for part in (exc.code or kind, detail(message, secret=self._key)) if part)
        return status_failure(
            provider="openai",
            model=self._model,
            status=exc.status_code,
            headers=exc.response.headers,
            reason=reason,
            overflow=overflow,
        )

    async def aclose(self) -> None:
        await self._client.close()


def _error_object(body: object) -> Mapping[str, Any]:
    """The SDK's `body` of a status error: the answer's `error` object when it was JSON."""
    if isinstance(body, Mapping):
        return cast(Mapping[str, Any], body)
    return {}
