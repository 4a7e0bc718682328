"""What the fake LLM APIs (`openai_api.py`, `anthropic_api.py`) share: scripted replies, a tokenizer, a prompt
cache and the bill.

The fakes keep their own bill from the tokens they actually served, counted from the request and the reply text
with their own tokenizer (4 bytes a token) and their own prompt cache, never from the usage they report; so a
benchmark can hold the wallet's figure against the server's. A scripted `Turn(usage=…)` overrides what is
reported, and the bill still counts what was served: that is how a lying or miscounting provider is modelled.

Both fakes stream when asked (`"stream": true`), in their API's real event shapes (OpenAI's `chat.completion.chunk`
lines then `[DONE]`; Anthropic's `message_start` … `message_stop` events), one event per output piece (`pieces`):
the bill then counts the output tokens of the events actually written to the socket, so an answer the client
abandons midway is billed its input and what was sent before the client went away.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup

BYTES_PER_TOKEN = 4
FRAMING_TOKENS = 4
"""Per message (and for the tool list), like the role markers real tokenizers add."""


def count_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


def pieces(text: str, tokens_each: int = 1) -> list[tuple[str, int]]:
    """`text` cut into stream pieces of `tokens_each` tokens (a token: 4 characters, the last may be shorter), with
    the tokens in each: how the fakes stream an answer."""
    step = BYTES_PER_TOKEN * tokens_each
    cut = [text[start : start + step] for start in range(0, len(text), step)]
    return [(piece, math.ceil(len(piece) / BYTES_PER_TOKEN)) for piece in cut]


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass(kw_only=True)
class FakeCall:
    """A tool call in a scripted turn. `raw_arguments` sends that text instead of `arguments` as JSON (OpenAI's
    arguments are a string: a model can send broken JSON); for Anthropic, `raw_input` replaces the input object."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict[str, Any])
    raw_arguments: str | None = None
    raw_input: Any = None


@dataclass(kw_only=True)
class Turn:
    """A model turn to answer with. `usage`: report this usage object instead of the counted one."""

    content: str = ""
    tool_calls: list[FakeCall] = field(default_factory=list[FakeCall])
    usage: dict[str, Any] | None = None
    report_usage: bool = True
    """False: no `usage` in the answer, as some OpenAI-compatible servers do."""
    stop: str | None = None
    """Override the finish/stop reason (`length`, `content_filter`; `max_tokens`, `refusal`)."""
    refusal: str | None = None
    """OpenAI: the message's `refusal` field; Anthropic: `stop_reason: refusal` with this explanation."""


@dataclass(kw_only=True)
class Fail:
    """Answer with an HTTP error in the provider's shape (429, 500, 503, 529, 401, 404 …)."""

    status: int
    retry_after: str | None = None
    retry_after_ms: str | None = None


@dataclass(kw_only=True)
class Overflow:
    """The provider's context-overflow 400, in its real shape."""


@dataclass(kw_only=True)
class Hang:
    """Read the request, then send nothing until the client goes away (or the fake is closed)."""


@dataclass(kw_only=True)
class Slow:
    """Answer `turn`, taking `seconds` to generate it. Not streamed: the answer comes after `seconds`, and a client
    that goes away first (a timeout, a cancellation) is billed, as by a real provider, its input and the output
    generated so far (the turn's output tokens × the fraction of `seconds` that passed). Streamed: its output
    events are spread evenly over `seconds`, and a client that goes away is billed those written so far."""

    turn: Turn = field(default_factory=Turn)
    seconds: float
    first_token_s: float = 0.0
    """Streamed: nothing at all is sent (not even the headers) for this long first, as while a model reads a long
    prompt."""


@dataclass(kw_only=True)
class Garbage:
    """A 200 whose body is this (not the response shape)."""

    body: bytes = b"<html><body>502 Bad Gateway</body></html>"
    content_type: str = "text/html"


Reply = Turn | Fail | Overflow | Hang | Slow | Garbage


@dataclass(kw_only=True)
class Served:
    """One request as the fake served it: the tokens it processed, whatever it reported."""

    status: int
    completed: bool
    """False for a request the client abandoned (hung, timed out, cancelled)."""
    input_tokens: int = 0
    """Every input token, cached ones included."""
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0


@dataclass(kw_only=True)
class Rates:
    """USD per million tokens, for `Bill.usd`."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None


@dataclass
class Bill:
    """Every request served, in order."""

    served: list[Served] = field(default_factory=list[Served])

    def total(self, key: Literal["input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens"]) -> int:
        return sum(getattr(entry, key) for entry in self.served)

    def usd(self, rates: Rates, *, include_abandoned: bool = True) -> Decimal:
        """What the served tokens cost: uncached input at the input rate, cache reads and writes at theirs (the
        input rate when not given), output at the output rate. `include_abandoned`: bill the input of requests
        the client abandoned, as a provider may."""
        total = Decimal(0)
        for entry in self.served:
            if not entry.completed and not include_abandoned:
                continue
            uncached = entry.input_tokens - entry.cache_read_tokens - entry.cache_write_tokens
            total += uncached * rates.input
            total += entry.cache_read_tokens * (rates.cache_read if rates.cache_read is not None else rates.input)
            total += entry.cache_write_tokens * (rates.cache_write if rates.cache_write is not None else rates.input)
            total += entry.output_tokens * rates.output
        return total / 1_000_000


class PromptCache:
    """Prefix caching over a request's blocks (tools, system, each message): a prefix served (OpenAI) or written
    (Anthropic) before is read from the cache. Prefixes shorter than `min_tokens` are never cached, like the
    real ones (1024 tokens)."""

    def __init__(self, *, min_tokens: int = 1024) -> None:
        self.min_tokens = min_tokens
        self._prefixes: dict[str, int] = {}

    def prefixes(self, blocks: Sequence[Any]) -> list[tuple[str, int]]:
        """(hash, cumulative tokens) for each prefix of `blocks`."""
        digest = hashlib.sha256()
        tokens = 0
        out: list[tuple[str, int]] = []
        for block in blocks:
            text = canonical(block)
            digest.update(text.encode())
            tokens += count_tokens(text) + FRAMING_TOKENS
            out.append((digest.copy().hexdigest(), tokens))
        return out

    def read(self, prefixes: list[tuple[str, int]]) -> int:
        """Tokens of the longest prefix in the cache."""
        found = [tokens for key, tokens in prefixes if key in self._prefixes]
        return max(found, default=0)

    def write(self, prefixes: list[tuple[str, int]]) -> None:
        for key, tokens in prefixes:
            if tokens >= self.min_tokens:
                self._prefixes[key] = tokens


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(kw_only=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict[str, str])


def json_answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status=status, body=json.dumps(payload).encode(), headers=headers or {})


@dataclass(kw_only=True)
class Streamed:
    """A 200 event stream: `events` (the bytes of each, and the output tokens it carries) written one by one,
    `pace_s` apart before each event that carries tokens (0: all at once). `served.output_tokens` counts the
    tokens of the events written; the client going away ends it there."""

    served: Served
    events: list[tuple[bytes, int]]
    pace_s: float = 0.0
    first_token_s: float = 0.0
    """Nothing sent before this (the headers included)."""


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event: `data` as JSON (or as it is, a str), after an `event:` line when named."""
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "").encode() + f"data: {text}\n\n".encode()


@dataclass(kw_only=True)
class Held:
    """A request the fake holds without answering (`Hang`); `served` is billed when the client goes away. With an
    `answer` (`Slow`), that is sent after `generate_s` unless the client went away first."""

    served: Served
    answer: Answer | None = None
    generate_s: float = 0.0


class FakeLLMServer:
    """The ASGI plumbing of a fake LLM API: one POST route, scripted replies in order (then `default`), requests
    recorded, hung requests held until the client disconnects. Subclasses check and answer (`answer`)."""

    route = "/"

    def __init__(self, *, api_key: str | None, cache_min_tokens: int = 1024, context_window: int | None = None):
        self.api_key = api_key
        self.context_window = context_window
        """Answer the overflow 400 to a prompt longer than this (tokens), as the real API does."""
        self.cache = PromptCache(min_tokens=cache_min_tokens)
        self.replies: list[Reply] = []
        self.default: Reply = Turn(content="ok")
        self.requests: list[dict[str, Any]] = []
        """Every request body that passed the shape check, in order."""
        self.refused: list[Answer] = []
        """The 4xx answers to requests that failed it (an SDK change would show up here)."""
        self.headers: list[dict[str, str]] = []
        self.bill = Bill()
        self._events: dict[str, anyio.Event] = {}  # made on first use, inside the event loop

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def _event(self, name: str) -> anyio.Event:
        if name not in self._events:
            self._events[name] = anyio.Event()
        return self._events[name]

    @property
    def hanging(self) -> anyio.Event:
        """Set when a request starts hanging."""
        return self._event("hanging")

    @property
    def streaming(self) -> anyio.Event:
        """Set when a streamed answer has written its first output token."""
        return self._event("streaming")

    @property
    def disconnected(self) -> anyio.Event:
        """Set when the client of a hanging request went away."""
        return self._event("disconnected")

    def close(self) -> None:
        """Let go of hanging requests (they get a 503), so the server can stop."""
        self._event("closing").set()

    def next_reply(self) -> Reply:
        return self.replies.pop(0) if self.replies else self.default

    def answer(self, headers: dict[str, str], body: Any) -> Answer | Held | Streamed:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        self.headers.append(headers)
        if scope["method"] != "POST" or scope["path"] != self.route:
            await self._send(send, json_answer(404, {"error": {"message": f"no route {scope['path']}"}}))
            return
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        result = self.answer(headers, body)
        if isinstance(result, Held):
            await self._hold(result, receive, send)
            return
        if isinstance(result, Streamed):
            await self._stream(result, receive, send)
            return
        if 400 <= result.status < 500 and result.status != 429:
            self.refused.append(result)
        await self._send(send, result)

    async def _hold(self, held: Held, receive: Receive, send: Send) -> None:
        generated = False
        started = anyio.current_time()
        self.hanging.set()
        async with anyio.create_task_group() as group:

            async def until_generated() -> None:
                nonlocal generated
                await anyio.sleep(held.generate_s)
                generated = True
                group.cancel_scope.cancel()

            if held.answer is not None:
                group.start_soon(until_generated)

            watched = self._watch(group, receive)
        gone = watched.gone
        served = held.served
        if generated and held.answer is not None:
            self.bill.served.append(served)
            await self._send(send, held.answer)
            return
        if held.answer is not None:  # gone halfway through generating: the output so far is billed
            fraction = min((anyio.current_time() - started) / held.generate_s, 1.0) if held.generate_s else 1.0
            served.output_tokens = math.floor(served.output_tokens * fraction)
            served.status, served.completed = 0, False
        self.bill.served.append(served)
        if gone:
            self.disconnected.set()
        else:
            await self._send(send, json_answer(503, {"error": {"message": "fake closing"}}))

    def _watch(self, group: TaskGroup, receive: Receive) -> _Watched:
        """End `group` when the client disconnects (`gone`) or the fake is closing."""
        watched = _Watched()

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            watched.gone = True
            group.cancel_scope.cancel()

        async def until_closed() -> None:
            await self._event("closing").wait()
            group.cancel_scope.cancel()

        group.start_soon(until_disconnect)
        group.start_soon(until_closed)
        return watched

    async def _stream(self, streamed: Streamed, receive: Receive, send: Send) -> None:
        # Billed as it goes (the entry is in the bill from the start and counts each event as it is written), and
        # complete before the last event goes out: a client that has the whole answer finds it billed.
        served = streamed.served
        served.output_tokens, served.completed = 0, False
        self.bill.served.append(served)
        finished = False
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        async with anyio.create_task_group() as group:

            async def write() -> None:
                nonlocal finished
                await anyio.sleep(streamed.first_token_s)
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                if not streamed.pace_s:
                    served.output_tokens = sum(tokens for _, tokens in streamed.events)
                    served.completed = True
                    await send({"type": "http.response.body", "body": b"".join(e for e, _ in streamed.events)})
                else:
                    started, carried = anyio.current_time(), 0
                    for number, (data, tokens) in enumerate(streamed.events, 1):
                        if tokens:  # on a fixed schedule: the sleeps' overshoot does not add up
                            carried += 1
                            await anyio.sleep(max(started + carried * streamed.pace_s - anyio.current_time(), 0))
                        served.output_tokens += tokens
                        served.completed = number == len(streamed.events)
                        await send({"type": "http.response.body", "body": data, "more_body": True})
                        if tokens:
                            self.streaming.set()
                    await send({"type": "http.response.body", "body": b""})
                finished = True
                group.cancel_scope.cancel()

            group.start_soon(write)
            watched = self._watch(group, receive)
        if watched.gone and not finished:
            self.disconnected.set()

    @staticmethod
    async def _send(send: Send, answer: Answer) -> None:
        headers = [(b"content-type", answer.content_type.encode()), (b"content-length", str(len(answer.body)).encode())]
        headers += [(name.encode(), value.encode()) for name, value in answer.headers.items()]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})


@dataclass
class _Watched:
    gone: bool = False
    """The client disconnected before the answer was done."""
