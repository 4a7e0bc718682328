"""A fake OpenAI Chat Completions API (`POST /v1/chat/completions`), checked the way OpenAI checks a request.

`FakeOpenAI` is an ASGI app (serve it with `serve_app`; the SDK's `base_url` is `{url}/v1`). It demands
`Authorization: Bearer <api_key>`, refuses a malformed request with OpenAI's error JSON (400
`invalid_request_error`, naming the `param`): messages and roles, an assistant's `tool_calls` each answered by a
`tool` message right after it, tool definitions, exactly one output limit. It answers with scripted replies
(`script(Turn(…), Fail(status=429, retry_after="2"), Overflow(), Hang(), Garbage())`, then `default`) in the
real response shape, with usage counted by its own tokenizer and prompt cache (`prompt_tokens_details.
cached_tokens`), and bills what it served (`bill`). With `"stream": true` it answers in `chat.completion.chunk`
lines, one output token a chunk as OpenAI does (the role first; content, refusal or each tool call's name then
its arguments; the finish reason; with `stream_options.include_usage` a last chunk with no choices and the
usage), then `data: [DONE]`.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
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

API_KEY = "sk-fake-openai-0123456789abcdef"
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ROLES = {"system", "developer", "user", "assistant", "tool"}

_STATUS_ERRORS = {
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests. Please try again in 2s.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


class Invalid(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def error(status: int, message: str, kind: str, code: str | None, param: str | None = None) -> Answer:
    return json_answer(status, {"error": {"message": message, "type": kind, "param": param, "code": code}})


class FakeOpenAI(FakeLLMServer):
    route = "/v1/chat/completions"

    def __init__(
        self, *, api_key: str | None = API_KEY, cache_min_tokens: int = 1024, context_window: int | None = None
    ) -> None:
        super().__init__(api_key=api_key, cache_min_tokens=cache_min_tokens, context_window=context_window)

    def answer(self, headers: dict[str, str], body: Any) -> Answer | Held | Streamed:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            # Quoting the key back, as a careless proxy does (OpenAI masks it): the provider must not pass it on.
            presented = headers.get("authorization", "").removeprefix("Bearer ")
            return error(401, f"Incorrect API key provided: {presented}.", "invalid_request_error", "invalid_api_key")
        try:
            request = check_request(body)
        except Invalid as invalid:
            return error(400, invalid.message, "invalid_request_error", None, invalid.param)
        self.requests.append(request)
        reply = self.next_reply()
        prefixes = self.cache.prefixes([request.get("tools", []), *request["messages"]])
        prompt = prefixes[-1][1]
        if isinstance(reply, Overflow) or (self.context_window is not None and prompt > self.context_window):
            self.bill.served.append(Served(status=400, completed=True))
            window = self.context_window or 128000
            message = (
                f"This model's maximum context length is {window} tokens. However, your messages resulted in "
                f"{max(prompt, window + 1)} tokens. Please reduce the length of the messages."
            )
            return error(400, message, "invalid_request_error", "context_length_exceeded", "messages")
        if isinstance(reply, Fail):
            self.bill.served.append(Served(status=reply.status, completed=True))
            message, kind, code = _STATUS_ERRORS.get(reply.status, ("Error.", "server_error", None))
            answer = error(reply.status, message, kind, code)
            if reply.retry_after is not None:
                answer.headers["retry-after"] = reply.retry_after
            if reply.retry_after_ms is not None:
                answer.headers["retry-after-ms"] = reply.retry_after_ms
            return answer
        cached = self.cache.read(prefixes)
        self.cache.write(prefixes)
        if isinstance(reply, Hang):
            return Held(served=Served(status=0, completed=False, input_tokens=prompt, cache_read_tokens=cached))
        if isinstance(reply, Garbage):
            self.bill.served.append(Served(status=200, completed=True, input_tokens=prompt, cache_read_tokens=cached))
            return Answer(status=200, body=reply.body, content_type=reply.content_type)
        if request.get("stream"):
            turn, seconds = (reply.turn, reply.seconds) if isinstance(reply, Slow) else (reply, 0.0)
            streamed = self._chunks(request, turn, prompt=prompt, cached=cached)
            carrying = sum(1 for _, tokens in streamed.events if tokens)
            streamed.pace_s = seconds / carrying if carrying else 0.0
            streamed.first_token_s = reply.first_token_s if isinstance(reply, Slow) else 0.0
            return streamed
        if isinstance(reply, Slow):
            answer, served = self._completion(request, reply.turn, prompt=prompt, cached=cached)
            return Held(served=served, answer=answer, generate_s=reply.seconds)
        answer, served = self._completion(request, reply, prompt=prompt, cached=cached)
        self.bill.served.append(served)
        return answer

    def _completion(self, request: dict[str, Any], turn: Turn, *, prompt: int, cached: int) -> tuple[Answer, Served]:
        calls = [_wire_call(call) for call in turn.tool_calls]
        output = count_tokens(turn.content) + sum(count_tokens(canonical(call)) for call in calls)
        if turn.refusal:
            output += count_tokens(turn.refusal)
        limit = int(request.get("max_completion_tokens") or request.get("max_tokens") or 0)
        finish = turn.stop or ("tool_calls" if calls else "stop")
        if limit and output > limit:
            output, finish = limit, "length"
        served = Served(status=200, completed=True, input_tokens=prompt, cache_read_tokens=cached, output_tokens=output)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": turn.content if (turn.content or not calls) and not turn.refusal else None,
            "refusal": turn.refusal,
            "annotations": [],
        }
        if calls:
            message["tool_calls"] = calls
        usage = turn.usage or {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        completion: dict[str, Any] = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{request['model']}-2024-08-06",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        if turn.report_usage:
            completion["usage"] = usage
        return json_answer(200, completion), served

    def _chunks(self, request: dict[str, Any], turn: Turn, *, prompt: int, cached: int) -> Streamed:
        """The streamed answer: one chunk per output token; stops at the output limit (finish `length`)."""
        base: dict[str, Any] = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": f"{request['model']}-2024-08-06",
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        with_usage = bool(cast(dict[str, Any], request.get("stream_options") or {}).get("include_usage"))
        limit = int(request.get("max_completion_tokens") or request.get("max_tokens") or 0) or None

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice], **({"usage": None} if with_usage else {})})

        events: list[tuple[bytes, int]] = [(chunk({"role": "assistant", "content": "", "refusal": None}), 0)]
        output = 0
        cut = False

        def emit(text: str, delta: Callable[[str], dict[str, Any]]) -> None:
            nonlocal output, cut
            for piece, tokens in pieces(text):
                if limit is not None and output + tokens > limit:
                    cut = True
                    return
                events.append((chunk(delta(piece)), tokens))
                output += tokens

        if turn.refusal:
            emit(turn.refusal, lambda piece: {"refusal": piece})
        elif turn.content:
            emit(turn.content, lambda piece: {"content": piece})
        for index, call in enumerate(turn.tool_calls):
            wire = _wire_call(call)
            name = wire["function"]["name"]
            head = {"index": index, "id": wire["id"], "type": "function", "function": {"name": name, "arguments": ""}}
            if cut or (limit is not None and output + count_tokens(name) > limit):
                cut = True
                break
            events.append((chunk({"tool_calls": [head]}), count_tokens(name)))
            output += count_tokens(name)
            emit(
                wire["function"]["arguments"],
                lambda p, i=index: {"tool_calls": [{"index": i, "function": {"arguments": p}}]},
            )
        finish = "length" if cut else turn.stop or ("tool_calls" if turn.tool_calls else "stop")
        events.append((chunk({}, finish), 0))
        if with_usage and turn.report_usage:
            usage = turn.usage or {
                "prompt_tokens": prompt,
                "completion_tokens": output,
                "total_tokens": prompt + output,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            }
            events.append((sse({**base, "choices": [], "usage": usage}), 0))
        events.append((sse("[DONE]"), 0))
        served = Served(status=200, completed=False, input_tokens=prompt, cache_read_tokens=cached)
        return Streamed(served=served, events=events)


def _wire_call(call: FakeCall) -> dict[str, Any]:
    arguments = call.raw_arguments if call.raw_arguments is not None else canonical(call.arguments)
    return {
        "id": f"call_{secrets.token_hex(12)}",
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def check_request(body: Any) -> dict[str, Any]:
    """The request as OpenAI would accept it, or `Invalid` naming the parameter."""
    if not isinstance(body, dict):
        raise Invalid("We could not parse the JSON body of your request.")
    request = cast(dict[str, Any], body)
    if not isinstance(request.get("model"), str) or not request["model"]:
        raise Invalid("you must provide a model parameter", "model")
    stream = request.get("stream", False)
    if not isinstance(stream, bool):
        raise Invalid("Invalid type for 'stream': expected a boolean", "stream")
    options = request.get("stream_options")
    if options is not None and not stream:
        raise Invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
    if options is not None and (
        not isinstance(options, dict) or set(cast(dict[str, Any], options)) - {"include_usage"}
    ):
        raise Invalid("Invalid 'stream_options': only include_usage is known", "stream_options")
    limits = [key for key in ("max_completion_tokens", "max_tokens") if key in request]
    if len(limits) != 1:
        raise Invalid("set exactly one of max_completion_tokens and max_tokens", limits[-1] if limits else None)
    limit = request[limits[0]]
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise Invalid(f"Invalid '{limits[0]}': expected a positive integer", limits[0])
    _check_tools(request.get("tools"))
    _check_messages(request.get("messages"))
    return request


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list) or not tools:
        raise Invalid("Invalid 'tools': expected a non-empty array", "tools")
    for index, tool in enumerate(cast(list[Any], tools)):
        where = f"tools[{index}]"
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise Invalid(f"Invalid '{where}': expected a function tool", where)
        function = cast(dict[str, Any], tool["function"])
        if not isinstance(function.get("name"), str) or not TOOL_NAME.match(function["name"]):
            raise Invalid(f"Invalid '{where}.function.name': must match ^[a-zA-Z0-9_-]{{1,64}}$", where)
        parameters = function.get("parameters", {"type": "object"})
        if not isinstance(parameters, dict) or cast(dict[str, Any], parameters).get("type") != "object":
            raise Invalid(f"Invalid schema for function '{function['name']}': must be type 'object'", where)


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise Invalid("Invalid 'messages': empty array. Expected an array with minimum length 1", "messages")
    pending: list[str] = []
    for index, raw in enumerate(cast(list[Any], messages)):
        where = f"messages[{index}]"
        if not isinstance(raw, dict) or cast(dict[str, Any], raw).get("role") not in ROLES:
            raise Invalid(f"Invalid '{where}.role'", f"{where}.role")
        message = cast(dict[str, Any], raw)
        role = message["role"]
        if pending and role != "tool":
            raise Invalid(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}",
                "messages",
            )
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                raise Invalid(
                    f"Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
                    f"'tool_calls'. ({call_id!r})",
                    f"{where}.tool_call_id",
                )
            pending.remove(call_id)
            _check_text(message.get("content"), where)
        elif role == "assistant":
            calls = message.get("tool_calls")
            if calls is not None:
                pending = _check_calls(calls, where)
            if not pending:
                _check_text(message.get("content"), where)
            elif message.get("content") is not None:
                _check_text(message["content"], where)
        else:
            _check_text(message.get("content"), where)
    if pending:
        raise Invalid(f"tool_call_ids without response messages: {', '.join(pending)}", "messages")


def _check_calls(calls: Any, where: str) -> list[str]:
    if not isinstance(calls, list) or not calls:
        raise Invalid(f"Invalid '{where}.tool_calls': empty array", f"{where}.tool_calls")
    ids: list[str] = []
    for raw in cast(list[Any], calls):
        call = cast(dict[str, Any], raw) if isinstance(raw, dict) else {}
        function = cast(dict[str, Any], call.get("function")) if isinstance(call.get("function"), dict) else {}
        if (
            not isinstance(call.get("id"), str)
            or call.get("type") != "function"
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments"), str)
        ):
            raise Invalid(f"Invalid '{where}.tool_calls': each needs id, type 'function', name, arguments (string)")
        ids.append(call["id"])
    return ids


def _check_text(content: Any, where: str) -> None:
    if isinstance(content, str):
        return
    if isinstance(content, list) and all(
        isinstance(part, dict) and cast(dict[str, Any], part).get("type") == "text" for part in cast(list[Any], content)
    ):
        return
    raise Invalid(f"Invalid '{where}.content': expected a string or an array of text parts", f"{where}.content")
