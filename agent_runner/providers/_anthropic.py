"""Anthropic Messages through the official `anthropic` SDK: tool_use and tool_result blocks, prompt caching.

    ModelRequest ──to_anthropic_messages / to_anthropic_tools──▶ POST {base_url}/v1/messages  (stream: true)
    ModelTurn ◀──turn_from_anthropic── the streamed events (each validated against the SDK's
                                       `RawMessageStreamEvent`), put together as a `Message`

The answer is streamed so that a try cut off mid-answer (a timeout, the kill switch) leaves a record of what it
received (its `Meter`): `message_start` carries the input usage, cache reads and writes included, and the
wallet settles such a try from it and the output received instead of at its whole reservation.

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
import httpx2
from anthropic import AsyncAnthropic
from anthropic.types import (
    ContentBlockParam,
    Message,
    MessageParam,
    RawMessageStreamEvent,
    TextBlockParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)
from pydantic import TypeAdapter, ValidationError

from shared_protocol.secrets import Secret

from ..conversation import (
    AssistantMessage,
    Meter,
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


def turn_from_anthropic(body: bytes | Mapping[str, Any], *, provider: str, model: str) -> ModelTurn:
    """A response (its body, or the JSON already read) as a turn, or `AttemptFailed` (garbage, refusal) for the
    retry loop."""
    try:
        payload: Any = json.loads(body) if isinstance(body, bytes) else body
        message = Message.model_validate(payload)
    except (ValueError, ValidationError, RecursionError) as exc:
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
            if too_deep(block.input):
                reason = f"the input of tool use {block.name} nests more than {MAX_ARGUMENT_DEPTH} deep"
                raise garbage(provider=provider, model=model, reason=reason, usage=usage)
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


_EVENT: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)


class EventReader:
    """Puts a streamed message back together, one `data:` line at a time, recording what came in `meter`."""

    def __init__(self, meter: Meter, *, provider: str, model: str, secret: str | None = None) -> None:
        self.meter = meter
        self.provider = provider
        self.model = model
        self.secret = secret
        """The API key: taken out of an error event's text (a server or a proxy may echo it)."""
        self.done = False
        """`message_stop` came."""
        self._message: dict[str, Any] | None = None
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}

    def line(self, line: str) -> None:
        """One line of the event stream (`AttemptFailed` for an error event or an event that is not one)."""
        if not line.startswith("data:"):
            return  # blank separators, `event:` lines (the data says its type too)
        try:
            payload: Any = json.loads(line.removeprefix("data:").strip())
        except (ValueError, RecursionError):
            raise self._garbage("a stream event is not JSON") from None
        kind = cast(dict[str, Any], payload).get("type") if isinstance(payload, dict) else None
        if kind == "ping":
            return
        if kind == "error":
            error = cast(dict[str, Any], payload).get("error")
            found = cast(dict[str, Any], error) if isinstance(error, dict) else {}
            reason = ": ".join(str(part) for part in (found.get("type"), found.get("message")) if part)
            raise no_answer(
                provider=self.provider,
                model=self.model,
                reason=f"the answer broke off: {detail(reason or 'error', secret=self.secret)}",
            )
        try:
            event = _EVENT.validate_python(payload)
        except ValidationError as exc:
            raise self._garbage(f"a stream event is not a message event: {unreadable(exc)}") from None
        self._take(event, cast(dict[str, Any], payload))

    def _take(self, event: RawMessageStreamEvent, payload: dict[str, Any]) -> None:
        if event.type == "message_start":
            self._message = dict(cast(dict[str, Any], payload["message"]))
            self._message["usage"] = dict(cast(dict[str, Any], self._message["usage"]))
            try:
                self.meter.reported_input(token_usage(self._message["usage"], flavor="anthropic"))
            except ValueError as exc:
                raise self._garbage(f"unreadable usage: {exc}") from None
            return
        if self._message is None:
            raise self._garbage(f"a {event.type} event before message_start")
        match event.type:
            case "content_block_start":
                block = dict(cast(dict[str, Any], payload["content_block"]))
                self._blocks[event.index] = block
                if event.content_block.type == "tool_use":
                    self._json[event.index] = []
                    self.meter.received(event.content_block.name)
                else:
                    self.meter.received(str(block.get("text") or ""))
            case "content_block_delta":
                block = self._blocks.get(event.index)
                if block is None:
                    raise self._garbage(f"a delta for content block {event.index}, never started")
                delta = event.delta
                if delta.type == "text_delta":
                    block["text"] = str(block.get("text") or "") + delta.text
                    self.meter.received(delta.text)
                elif delta.type == "input_json_delta":
                    self._json.setdefault(event.index, []).append(delta.partial_json)
                    self.meter.received(delta.partial_json)
                # thinking, signature and citation deltas: never asked for, nothing to act on
            case "content_block_stop":
                parts = self._json.pop(event.index, None)
                if parts is not None and event.index in self._blocks:
                    text = "".join(parts)
                    try:
                        self._blocks[event.index]["input"] = json.loads(text) if text.strip() else {}
                    except (ValueError, RecursionError):
                        self._blocks[event.index]["input"] = text  # not an object: garbage, said below
            case "message_delta":
                for key, value in cast(dict[str, Any], payload["delta"]).items():
                    if key != "usage":  # (the usage comes beside the delta: one in it is not a message's field)
                        self._message[key] = value
                usage = cast(dict[str, Any], self._message["usage"])
                usage.update({k: v for k, v in cast(dict[str, Any], payload["usage"]).items() if v is not None})
                self.meter.reported_output(event.usage.output_tokens)
            case "message_stop":
                self.done = True

    def turn(self) -> ModelTurn:
        """The turn the stream made (`AttemptFailed` if it was not a stream, or stopped before its end)."""
        if self._message is None:
            raise self._garbage("the answer is not a message stream")
        if not self.done:
            raise no_answer(provider=self.provider, model=self.model, reason="the answer stopped before its end")
        message = {**self._message, "content": [block for _, block in sorted(self._blocks.items())]}
        return turn_from_anthropic(message, provider=self.provider, model=self.model)

    def _garbage(self, reason: str) -> AttemptFailed:
        return garbage(provider=self.provider, model=self.model, reason=reason)


class AnthropicProvider:
    """Messages, streamed."""

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

        async def attempt(meter: Meter) -> ModelTurn:
            return await self._attempt(request.system, messages, tools, request.max_output_tokens, meter)

        return await call_with_retries(attempt, policy=self._retry, before_attempt=before_attempt, sleep=self._sleep)

    async def _attempt(
        self, system: str, messages: list[MessageParam], tools: list[ToolParam], limit: int, meter: Meter
    ) -> ModelTurn:
        reader = EventReader(meter, provider="anthropic", model=self._model, secret=self._key)
        try:
            # One deadline for the whole try, whatever the SDK's timeouts cover.
            with anyio.fail_after(self._timeout_s):
                async with self._client.messages.with_streaming_response.create(
                    model=self._model,
                    max_tokens=limit,
                    messages=messages,
                    system=system if system else anthropic.omit,
                    tools=tools if tools else anthropic.omit,
                    cache_control={"type": "ephemeral"} if self._prompt_caching else anthropic.omit,
                    stream=True,
                ) as response:
                    async for line in response.iter_lines():
                        reader.line(line)
                        if reader.done:
                            break
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
        except httpx2.HTTPError as exc:  # reading the stream, past the SDK
            reason = f"the answer broke off: {detail(str(exc) or type(exc).__name__, secret=self._key)}"
            raise no_answer(provider="anthropic", model=self._model, reason=reason) from None
        return reader.turn()

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
