"""OpenAI Chat Completions through the official `openai` SDK. A `base_url` makes the same code serve any
compatible server: Ollama, vLLM, a llama.cpp server, a proxy.

    ModelRequest ──to_openai_messages / to_openai_tools──▶ POST {base_url}/chat/completions  (stream: true)
    ModelTurn ◀──turn_from_openai── the streamed chunks (each validated against the SDK's `ChatCompletionChunk`),
                                    put together as a `ChatCompletion`

The answer is streamed (`stream_options.include_usage`: the usage comes in a last chunk) so that a try cut off
mid-answer (a timeout, the kill switch) leaves a record of what it received (its `Meter`): OpenAI sends one
token a chunk, and the wallet settles such a try from it instead of at its whole reservation.

The SDK's retries are off (`max_retries=0`); `call_with_retries` does them. The client is always given its base
URL and key explicitly, so `OPENAI_BASE_URL` and `OPENAI_API_KEY` in the environment cannot redirect the runner
or hand it another key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import anyio
import httpx2
import openai
from openai import AsyncOpenAI
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)
from pydantic import ValidationError

from shared_protocol.secrets import Secret

from ..conversation import (
    AssistantMessage,
    Message,
    Meter,
    ModelRequest,
    ModelTurn,
    StopReason,
    ToolCall,
    ToolDefinition,
    ToolResultsMessage,
    UserMessage,
)
from ._failures import (
    MAX_ARGUMENT_DEPTH,
    detail,
    garbage,
    looks_like_context_overflow,
    no_answer,
    refused,
    status_failure,
    too_deep,
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


def turn_from_openai(body: bytes | Mapping[str, Any], *, provider: str, model: str) -> ModelTurn:
    """A response (its body, or the JSON already read) as a turn, or `AttemptFailed` (garbage, refusal, content
    filter) for the retry loop."""
    try:
        payload: Any = json.loads(body) if isinstance(body, bytes) else body
        completion = ChatCompletion.model_validate(payload)
    except (ValueError, ValidationError, RecursionError) as exc:
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
            reason = (
                f"the arguments of tool call {index} ({call.function.name}) are not a JSON object "
                f"(nested at most {MAX_ARGUMENT_DEPTH} deep)"
            )
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
    except (ValueError, RecursionError):  # (a few thousand brackets overflow the decoder's stack)
        return None
    if not isinstance(value, dict) or too_deep(cast(dict[str, Any], value)):
        return None
    return cast(dict[str, Any], value)


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list[str])


class ChunkReader:
    """Puts a streamed chat completion back together, one `data:` line at a time, recording what came in `meter`."""

    def __init__(self, meter: Meter, *, provider: str, model: str, secret: str | None = None) -> None:
        self.meter = meter
        self.provider = provider
        self.model = model
        self.secret = secret
        """The API key: taken out of an error event's text (a server or a proxy may echo it)."""
        self.done = False
        """`data: [DONE]` came."""
        self._first: dict[str, Any] | None = None
        self._content: list[str] = []
        self._refusal: list[str] = []
        self._calls: dict[int, _Call] = {}
        self._finish: str | None = None
        self._usage: Any = None

    def line(self, line: str) -> None:
        """One line of the event stream (`AttemptFailed` for an error event or a chunk that is not one)."""
        if not line.startswith("data:"):
            return  # blank separators, comments, `event:` lines
        data = line.removeprefix("data:").strip()
        if data == "[DONE]":
            self.done = True
            return
        try:
            payload: Any = json.loads(data)
        except (ValueError, RecursionError):
            raise self._garbage("a stream event is not JSON") from None
        if isinstance(payload, dict) and "error" in payload:
            error = _error_object(cast(dict[str, Any], payload)["error"])
            reason = (
                f"the answer broke off with an error: {detail(str(error.get('message') or error), secret=self.secret)}"
            )
            raise no_answer(provider=self.provider, model=self.model, reason=reason)
        try:
            chunk = ChatCompletionChunk.model_validate(payload)
        except ValidationError as exc:
            raise self._garbage(f"a stream event is not a chat completion chunk: {unreadable(exc)}") from None
        self.meter.began()
        if self._first is None:
            self._first = cast(dict[str, Any], payload)
        if chunk.usage is not None:
            self._usage = cast(dict[str, Any], payload)["usage"]
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta.content:
                self._content.append(delta.content)
                self.meter.received(delta.content)
            if delta.refusal:
                self._refusal.append(delta.refusal)
                self.meter.received(delta.refusal)
            for part in delta.tool_calls or []:
                call = self._calls.setdefault(part.index, _Call())
                call.id = part.id or call.id
                if part.function is not None:
                    call.name += part.function.name or ""
                    call.arguments.append(part.function.arguments or "")
                    self.meter.received((part.function.name or "") + (part.function.arguments or ""))
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason

    def turn(self) -> ModelTurn:
        """The turn the stream made (`AttemptFailed` if it was not a stream, or stopped before its end)."""
        if self._first is None:
            raise self._garbage("the answer is not a chat completion stream")
        if not self.done and self._finish is None:
            raise no_answer(provider=self.provider, model=self.model, reason="the answer stopped before its end")
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self._content) or None,
            "refusal": "".join(self._refusal) or None,
        }
        if self._calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": "".join(call.arguments)},
                }
                for _, call in sorted(self._calls.items())
            ]
        completion: dict[str, Any] = {
            "id": self._first.get("id"),
            "object": "chat.completion",
            "created": self._first.get("created"),
            "model": self._first.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish or "stop", "logprobs": None}],
        }
        if self._usage is not None:
            completion["usage"] = self._usage
        return turn_from_openai(completion, provider=self.provider, model=self.model)

    def _garbage(self, reason: str) -> AttemptFailed:
        return garbage(provider=self.provider, model=self.model, reason=reason)


class OpenAIProvider:
    """Chat Completions, streamed, one choice."""

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

        async def attempt(meter: Meter) -> ModelTurn:
            return await self._attempt(messages, tools, request.max_output_tokens, meter)

        return await call_with_retries(attempt, policy=self._retry, before_attempt=before_attempt, sleep=self._sleep)

    async def _attempt(
        self,
        messages: list[ChatCompletionMessageParam],
        tools: list[ChatCompletionFunctionToolParam],
        limit: int,
        meter: Meter,
    ) -> ModelTurn:
        completion_limit = limit if self._max_tokens_field == "max_completion_tokens" else openai.omit
        legacy_limit = limit if self._max_tokens_field == "max_tokens" else openai.omit
        reader = ChunkReader(meter, provider="openai", model=self._model, secret=self._key)
        try:
            # One deadline for the whole try, whatever the SDK's timeouts cover.
            with anyio.fail_after(self._timeout_s):
                async with self._client.chat.completions.with_streaming_response.create(
                    model=self._model,
                    messages=messages,
                    tools=tools if tools else openai.omit,
                    max_completion_tokens=completion_limit,
                    max_tokens=legacy_limit,
                    stream=True,
                    stream_options={"include_usage": True},
                ) as response:
                    async for line in response.iter_lines():
                        reader.line(line)
                        if reader.done:
                            break
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
        except httpx2.HTTPError as exc:  # reading the stream, past the SDK
            reason = f"the answer broke off: {detail(str(exc) or type(exc).__name__, secret=self._key)}"
            raise no_answer(provider="openai", model=self._model, reason=reason) from None
        return reader.turn()

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
