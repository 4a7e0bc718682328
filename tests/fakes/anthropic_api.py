"""A fake Anthropic Messages API (`POST /v1/messages`), checked the way Anthropic checks a request.

`FakeAnthropic` is an ASGI app (serve it with `serve_app`; the SDK's `base_url` is its URL). It demands the key
(`x-api-key`, or `Authorization: Bearer` as the installed SDK sends it) and `anthropic-version`, and refuses a
malformed request with Anthropic's error JSON (400 `invalid_request_error`): roles alternating from `user`,
non-empty text, every `tool_use` answered by a `tool_result` at the start of the next user message and no
`tool_result` without its `tool_use`, tool definitions with an object `input_schema`. It answers with scripted
replies (see `llm.py`) in the real response shape; with `cache_control` in the request it caches the prompt and
reports `cache_creation_input_tokens` and `cache_read_input_tokens` (and `cache_creation.ephemeral_5m_input_tokens`),
and it bills what it served (`bill`). With `"stream": true` it answers in Messages streaming events:
`message_start` (the input usage, `output_tokens` 1), a `ping`, per content block `content_block_start`, its
`text_delta` or `input_json_delta` events (three output tokens each, as Anthropic sends several tokens an event)
and `content_block_stop`, then `message_delta` (stop reason and the cumulative usage) and `message_stop`.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, cast

from .llm import (
    Answer,
    Fail,
    FakeCall,
    FakeLLMServer,
    Garbage,
    Hang,
    Held,
    Overflow,
    Served,
    Slow,
    Streamed,
    Turn,
    canonical,
    count_tokens,
    json_answer,
    pieces,
    sse,
)

TOKENS_PER_DELTA = 3

API_KEY = "sk-ant-fake-0123456789abcdef"
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")

_STATUS_ERRORS = {
    401: ("authentication_error", "invalid x-api-key"),
    404: ("not_found_error", "model: claude-nonexistent"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}


class Invalid(Exception):
    pass


def error(status: int, kind: str, message: str) -> Answer:
    return json_answer(
        status,
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": f"req_{secrets.token_hex(12)}"},
        {"request-id": f"req_{secrets.token_hex(12)}"},
    )


class FakeAnthropic(FakeLLMServer):
    route = "/v1/messages"

    def __init__(
        self, *, api_key: str | None = API_KEY, cache_min_tokens: int = 1024, context_window: int | None = None
    ) -> None:
        super().__init__(api_key=api_key, cache_min_tokens=cache_min_tokens, context_window=context_window)

    def answer(self, headers: dict[str, str], body: Any) -> Answer | Held | Streamed:
        keys = {headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer ")}
        if self.api_key is not None and self.api_key not in keys:
            # Quoting the key back, as a careless proxy does: the provider must not pass it on.
            return error(401, "authentication_error", f"invalid x-api-key: {' '.join(sorted(k for k in keys if k))}")
        if not headers.get("anthropic-version"):
            return error(400, "invalid_request_error", "anthropic-version: header is required")
        try:
            request = check_request(body)
        except Invalid as invalid:
            return error(400, "invalid_request_error", str(invalid))
        self.requests.append(request)
        reply = self.next_reply()
        system = request.get("system", "")
        prefixes = self.cache.prefixes([request.get("tools", []), system, *request["messages"]])
        prompt = prefixes[-1][1]
        window = self.context_window or 200000
        if isinstance(reply, Overflow) or (self.context_window is not None and prompt > self.context_window):
            self.bill.served.append(Served(status=400, completed=True))
            return error(
                400, "invalid_request_error", f"prompt is too long: {max(prompt, window + 1)} tokens > {window} maximum"
            )
        if isinstance(reply, Fail):
            self.bill.served.append(Served(status=reply.status, completed=True))
            answer = error(reply.status, *_STATUS_ERRORS.get(reply.status, ("api_error", "Error")))
            if reply.retry_after is not None:
                answer.headers["retry-after"] = reply.retry_after
            return answer
        caching = "cache_control" in request
        read = self.cache.read(prefixes) if caching else 0
        written = prompt - read if caching and prompt >= self.cache.min_tokens else 0
        if written:
            self.cache.write(prefixes)
        served = Served(
            status=200, completed=True, input_tokens=prompt, cache_read_tokens=read, cache_write_tokens=written
        )
        if isinstance(reply, Hang):
            served.status, served.completed = 0, False
            return Held(served=served)
        if isinstance(reply, Garbage):
            self.bill.served.append(served)
            return Answer(status=200, body=reply.body, content_type=reply.content_type)
        if request.get("stream"):
            turn, seconds = (reply.turn, reply.seconds) if isinstance(reply, Slow) else (reply, 0.0)
            streamed = self._streamed(request, turn, served)
            carrying = sum(1 for _, tokens in streamed.events if tokens)
            streamed.pace_s = seconds / carrying if carrying else 0.0
            streamed.first_token_s = reply.first_token_s if isinstance(reply, Slow) else 0.0
            return streamed
        if isinstance(reply, Slow):
            return Held(served=served, answer=self._message(request, reply.turn, served), generate_s=reply.seconds)
        answer = self._message(request, reply, served)
        self.bill.served.append(served)
        return answer

    def _message(self, request: dict[str, Any], turn: Turn, served: Served) -> Answer:
        """The answer to send; sets `served.output_tokens` (the caller bills it)."""
        content: list[dict[str, Any]] = [{"type": "text", "text": turn.content}] if turn.content else []
        content += [_tool_use(call) for call in turn.tool_calls]
        output = sum(count_tokens(canonical(block)) for block in content) or 1  # (never 0, as the API says)
        stop = turn.stop or ("refusal" if turn.refusal else "tool_use" if turn.tool_calls else "end_turn")
        if output > request["max_tokens"]:
            output, stop = request["max_tokens"], "max_tokens"
        served.output_tokens = output
        uncached = served.input_tokens - served.cache_read_tokens - served.cache_write_tokens
        usage = turn.usage or {
            "input_tokens": uncached,
            "cache_creation_input_tokens": served.cache_write_tokens,
            "cache_read_input_tokens": served.cache_read_tokens,
            "cache_creation": {"ephemeral_5m_input_tokens": served.cache_write_tokens, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output,
            "service_tier": "standard",
        }
        message: dict[str, Any] = {
            "id": f"msg_{secrets.token_hex(12)}",
            "type": "message",
            "role": "assistant",
            "model": request["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if turn.refusal:
            message["stop_details"] = {"type": "refusal", "category": "cyber", "explanation": turn.refusal}
        return json_answer(200, message)

    def _streamed(self, request: dict[str, Any], turn: Turn, served: Served) -> Streamed:
        """The streamed answer; stops at `max_tokens` (stop reason `max_tokens`)."""
        limit: int = request["max_tokens"]
        uncached = served.input_tokens - served.cache_read_tokens - served.cache_write_tokens
        input_usage = {
            "input_tokens": uncached,
            "cache_creation_input_tokens": served.cache_write_tokens,
            "cache_read_input_tokens": served.cache_read_tokens,
        }
        start = {
            "id": f"msg_{secrets.token_hex(12)}",
            "type": "message",
            "role": "assistant",
            "model": request["model"],
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                **input_usage,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": served.cache_write_tokens,
                    "ephemeral_1h_input_tokens": 0,
                },
                "output_tokens": 1,
                "service_tier": "standard",
            },
        }
        events: list[tuple[bytes, int]] = [
            (sse({"type": "message_start", "message": start}, "message_start"), 0),
            (sse({"type": "ping"}, "ping"), 0),
        ]
        output = 0
        cut = False

        def emit(index: int, text: str, delta: str, field: str) -> None:
            nonlocal output, cut
            for piece, tokens in pieces(text, TOKENS_PER_DELTA):
                if output + tokens > limit:
                    piece, tokens = piece[: (limit - output) * 4], limit - output
                    cut = True
                if tokens:
                    event = {"type": "content_block_delta", "index": index, "delta": {"type": delta, field: piece}}
                    events.append((sse(event, "content_block_delta"), tokens))
                    output += tokens
                if cut:
                    return

        blocks: list[tuple[dict[str, Any], str]] = []
        if turn.content and not turn.refusal:
            blocks.append(({"type": "text", "text": ""}, turn.content))
        for call in turn.tool_calls:
            use = _tool_use(call)
            blocks.append(({**use, "input": {}}, canonical(use["input"])))
        for index, (block, text) in enumerate(blocks):
            if cut:
                break
            name_tokens = count_tokens(block["name"]) if block["type"] == "tool_use" else 0
            if output + name_tokens > limit:
                cut = True
                break
            events.append(
                (
                    sse({"type": "content_block_start", "index": index, "content_block": block}, "content_block_start"),
                    name_tokens,
                )
            )
            output += name_tokens
            if block["type"] == "text":
                emit(index, text, "text_delta", "text")
            else:
                emit(index, text, "input_json_delta", "partial_json")
            events.append((sse({"type": "content_block_stop", "index": index}, "content_block_stop"), 0))
        floor = 0 if output else 1  # never 0 output tokens, as the API says: the stop is one
        output += floor
        stop = (
            "max_tokens"
            if cut
            else turn.stop or ("refusal" if turn.refusal else "tool_use" if turn.tool_calls else "end_turn")
        )
        delta: dict[str, Any] = {"stop_reason": stop, "stop_sequence": None}
        if turn.refusal:
            delta["stop_details"] = {"type": "refusal", "category": "cyber", "explanation": turn.refusal}
        usage = turn.usage or {**input_usage, "output_tokens": output}
        events.append((sse({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta"), floor))
        events.append((sse({"type": "message_stop"}, "message_stop"), 0))
        return Streamed(served=served, events=events)


def _tool_use(call: FakeCall) -> dict[str, Any]:
    tool_input = call.raw_input if call.raw_input is not None else call.arguments
    return {"type": "tool_use", "id": f"toolu_{secrets.token_hex(12)}", "name": call.name, "input": tool_input}


def check_request(body: Any) -> dict[str, Any]:
    """The request as Anthropic would accept it, or `Invalid` saying why (in Anthropic's words, where known)."""
    if not isinstance(body, dict):
        raise Invalid("Request body must be a JSON object")
    request = cast(dict[str, Any], body)
    if not isinstance(request.get("model"), str) or not request["model"]:
        raise Invalid("model: Field required")
    limit = request.get("max_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise Invalid("max_tokens: Field required (a positive integer)")
    if not isinstance(request.get("stream", False), bool):
        raise Invalid("stream: Input should be a valid boolean")
    system = request.get("system", "")
    if not isinstance(system, str) and not (isinstance(system, list) and all(_is_text(b) for b in system)):
        raise Invalid("system: Input should be a valid string or a list of text blocks")
    cache_control = request.get("cache_control")
    if cache_control is not None and cache_control != {"type": "ephemeral"}:
        raise Invalid("cache_control: Input should be {'type': 'ephemeral'}")
    _check_tools(request.get("tools"))
    _check_messages(request.get("messages"))
    return request


def _is_text(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise Invalid("tools: Input should be a valid list")
    for index, raw in enumerate(cast(list[Any], tools)):
        tool = cast(dict[str, Any], raw) if isinstance(raw, dict) else {}
        if not isinstance(tool.get("name"), str) or not TOOL_NAME.match(tool["name"]):
            raise Invalid(f"tools.{index}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or cast(dict[str, Any], schema).get("type") != "object":
            raise Invalid(f"tools.{index}.input_schema.type: Input should be 'object'")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: at least one message is required")
    expected_role = "user"
    open_calls: list[str] = []
    for index, raw in enumerate(cast(list[Any], messages)):
        message = cast(dict[str, Any], raw) if isinstance(raw, dict) else {}
        role = message.get("role")
        if role != expected_role:
            raise Invalid(f"messages.{index}.role: roles must alternate between 'user' and 'assistant', from 'user'")
        blocks = _blocks(message.get("content"), index)
        if role == "user":
            results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
            leading = blocks[: len(results)]
            if any(b.get("type") != "tool_result" for b in leading):
                raise Invalid(f"messages.{index}: tool_result blocks must come first in the user message")
            unknown = [r for r in results if r not in open_calls]
            if unknown:
                raise Invalid(
                    f"messages.{index}.content: unexpected `tool_use_id` found in `tool_result` blocks: {unknown[0]}. "
                    "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                )
            missing = [call for call in open_calls if call not in results]
            if missing:
                raise Invalid(
                    f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{missing[0]}. Each `tool_use` block must have a corresponding `tool_result` block in the next "
                    "message."
                )
            open_calls = []
        else:
            open_calls = [b["id"] for b in blocks if b.get("type") == "tool_use"]
        expected_role = "assistant" if role == "user" else "user"
    if open_calls:
        raise Invalid("the last message has `tool_use` blocks without `tool_result` blocks after them")


def _blocks(content: Any, index: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if not content:
            raise Invalid(f"messages.{index}: all messages must have non-empty content")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise Invalid(f"messages.{index}: all messages must have non-empty content")
    blocks: list[dict[str, Any]] = []
    for position, raw in enumerate(cast(list[Any], content)):
        block = cast(dict[str, Any], raw) if isinstance(raw, dict) else {}
        kind = block.get("type")
        where = f"messages.{index}.content.{position}"
        if kind == "text":
            if not isinstance(block.get("text"), str) or not block["text"]:
                raise Invalid(f"{where}: text content blocks must be non-empty")
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise Invalid(f"{where}: tool_use needs id and name")
            if not isinstance(block.get("input"), dict):
                raise Invalid(f"{where}.input: Input should be a valid dictionary")
        elif kind == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise Invalid(f"{where}.tool_use_id: Field required")
            result = block.get("content", "")
            if not isinstance(result, str) and not (isinstance(result, list) and all(_is_text(b) for b in result)):
                raise Invalid(f"{where}.content: Input should be a valid string or a list of blocks")
            if "is_error" in block and not isinstance(block["is_error"], bool):
                raise Invalid(f"{where}.is_error: Input should be a valid boolean")
        else:
            raise Invalid(f"{where}.type: unsupported content block type {kind!r}")
        blocks.append(block)
    return blocks
