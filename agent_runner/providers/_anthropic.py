"""Anthropic Messages through the official `anthropic` SDK: tool_use and tool_result blocks, prompt caching.

    ModelRequest ──to_anthropic_messages / to_anthropic_tools──▶ POST {base_url}/v1/messages
    ModelTurn ◀──turn_from_anthropic── the response JSON, validated against the SDK's `Message`

The conversation is sent with top-level `cache_control` (automatic prompt caching): an agent resends its whole
growing conversation every step, and reading it back from the cache costs a tenth of fresh input. The SDK's
retries are off; its client always gets the key and base URL explicitly, so no `ANTHROPIC_*` variable, profile
or credentials file on the machine is consulted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import anthropic
import anyio
from anthropic import AsyncAnthropic
from anthropic.types import (
    ContentBlockParam,
    Message,
    MessageParam,
    TextBlockParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)
from pydantic import ValidationError

from shared_protocol.secrets import Secret

from ..conversation import (
    AssistantMessage,
    ModelRequest,
    ModelTurn,
    StopReason,
    ToolCall,
    ToolDefinition,
    ToolResultsMessage,
    UserMessage,
)
from ..conversation import Message as ConversationMessage
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

ANTHROPIC_API = "https://api.anthropic.com"
NO_KEY = "no-key"
EMPTY_TURN = "(no text)"
"""Anthropic refuses an assistant message with no content; a turn that said and called nothing goes back as this."""

_STOP_REASONS: Mapping[str, StopReason] = {
    "end_turn": "end_turn",
    "stop_sequence": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "model_context_window_exceeded": "max_tokens",
}


def to_anthropic_messages(messages: Sequence[ConversationMessage]) -> list[MessageParam]:
    """The conversation as Messages turns. Tool results become `tool_result` blocks of one user message, and
    consecutive messages of one role are merged (tool results first, as the API requires)."""
    wire: list[MessageParam] = []
    for message in messages:
        match message:
            case UserMessage(content=content):
                role, blocks = "user", [_text(content)]
            case AssistantMessage(content=content, tool_calls=calls):
                role, blocks = "assistant", _assistant_blocks(content, calls)
            case ToolResultsMessage(results=results):
                role, blocks = "user", [_result(result.call_id, result.content, result.is_error) for result in results]
        if wire and wire[-1]["role"] == role:
            previous = cast(list[ContentBlockParam], wire[-1]["content"])
            previous.extend(blocks)
        elif role == "user":
            wire.append({"role": "user", "content": blocks})
        else:
            wire.append({"role": "assistant", "content": blocks})
    return wire


def _text(text: str) -> TextBlockParam:
    return {"type": "text", "text": text}


def _assistant_blocks(content: str, calls: Sequence[ToolCall]) -> list[ContentBlockParam]:
    blocks: list[ContentBlockParam] = [_text(content)] if content else []
    for call in calls:
        use: ToolUseBlockParam = {"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments)}
        blocks.append(use)
    return blocks or [_text(EMPTY_TURN)]


def _result(call_id: str, content: str, is_error: bool) -> ToolResultBlockParam:
    block: ToolResultBlockParam = {"type": "tool_result", "tool_use_id": call_id, "content": content}
    if is_error:
        block["is_error"] = True
    return block


def to_anthropic_tools(tools: Sequence[ToolDefinition]) -> list[ToolParam]:
    return [
        {"name": tool.name, "description": tool.description, "input_schema": dict(tool.input_schema)} for tool in tools
    ]


def turn_from_anthropic(body: bytes, *, provider: str, model: str) -> ModelTurn:
    """A response body as a turn, or `AttemptFailed` (garbage, refusal) for the retry loop."""
    try:
        payload: Any = json.loads(body)
        message = Message.model_validate(payload)
    except (ValueError, ValidationError) as exc:
        raise garbage(
            provider=provider, model=model, reason=f"the answer is not a message: {unreadable(exc)}"
        ) from None
    raw_usage = cast(Mapping[str, Any], payload["usage"])
    try:
        usage = token_usage(raw_usage, flavor="anthropic")
    except ValueError as exc:
        raise garbage(provider=provider, model=model, reason=f"unreadable usage: {exc}") from None
    if message.stop_reason == "refusal":
        explanation = message.stop_details.explanation if message.stop_details else None
        reason = f"refused: {detail(explanation)}" if explanation else "refused"
        raise refused(provider=provider, model=model, reason=reason, usage=usage)
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            calls.append(ToolCall(id=block.id, name=block.name, arguments=dict(block.input)))
        # thinking and server-tool blocks: never asked for, nothing to act on
    stop: StopReason = "tool_use" if calls else _STOP_REASONS.get(message.stop_reason or "", "other")
    return ModelTurn(
        content="\n".join(texts),
        tool_calls=tuple(calls),
        stop_reason=stop,
        usage=usage,
        raw_usage=raw_usage,
        model=str(message.model),
    )


class AnthropicProvider:
    """Messages, non-streaming."""

    def __init__(
        self,
        *,
        model: str,
        api_key: Secret | None = None,
        base_url: str = "",
        timeout_s: float = 300.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep = anyio.sleep,
        prompt_caching: bool = True,
    ) -> None:
        self._model = model
        self._key = api_key.reveal() if api_key else None
        self._timeout_s = timeout_s
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._prompt_caching = prompt_caching
        self._client = AsyncAnthropic(
            api_key=self._key or NO_KEY, base_url=base_url or ANTHROPIC_API, max_retries=0, timeout=timeout_s
        )

    @property
    def name(self) -> str:
        return "anthropic"

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, request: ModelRequest, *, before_attempt: BeforeAttempt | None = None) -> ModelTurn:
        messages = to_anthropic_messages(request.messages)
        tools = to_anthropic_tools(request.tools)

        async def attempt() -> ModelTurn:
            return await self._attempt(request.system, messages, tools, request.max_output_tokens)

        return await call_with_retries(attempt, policy=self._retry, before_attempt=before_attempt, sleep=self._sleep)

    async def _attempt(
        self, system: str, messages: list[MessageParam], tools: list[ToolParam], limit: int
    ) -> ModelTurn:
        try:
            # One deadline for the whole try, whatever the SDK's timeouts cover.
            with anyio.fail_after(self._timeout_s):
                raw = await self._client.messages.with_raw_response.create(
                    model=self._model,
                    max_tokens=limit,
                    messages=messages,
                    system=system if system else anthropic.omit,
                    tools=tools if tools else anthropic.omit,
                    cache_control={"type": "ephemeral"} if self._prompt_caching else anthropic.omit,
                )
                body = await raw.http_response.aread()
        except TimeoutError:
            raise no_answer(
                provider="anthropic", model=self._model, reason=f"no answer within {self._timeout_s:g} s"
            ) from None
        except anthropic.APITimeoutError:
            raise no_answer(provider="anthropic", model=self._model, reason="the request timed out") from None
        except anthropic.APIConnectionError as exc:
            reason = f"connection failed: {detail(str(exc.__cause__ or exc), secret=self._key)}"
            raise no_answer(provider="anthropic", model=self._model, reason=reason) from None
        except anthropic.APIStatusError as exc:
            raise self._status_failure(exc) from None
        return turn_from_anthropic(body, provider="anthropic", model=self._model)

    def _status_failure(self, exc: anthropic.APIStatusError) -> AttemptFailed:
        message = exc.api_message or exc.message
        overflow = exc.status_code == 413 or (exc.status_code == 400 and looks_like_context_overflow(message))
        reason = ": ".join(part for part in (exc.type, detail(message, secret=self._key)) if part)
        return status_failure(
            provider="anthropic",
            model=self._model,
            status=exc.status_code,
            headers=exc.response.headers,
            reason=reason,
            overflow=overflow,
        )

    async def aclose(self) -> None:
        await self._client.close()
