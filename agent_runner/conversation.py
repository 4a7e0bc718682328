"""The conversation as the runner holds it, whatever the provider: what goes into a model call and what comes out.

    ModelRequest(system, messages, tools, max_output_tokens)
        messages: UserMessage | AssistantMessage | ToolResultsMessage, oldest first
    ModelTurn(content, tool_calls, stop_reason, usage, raw_usage, model, attempts)
        turn.as_message() is the AssistantMessage to append before the tool results

Each provider maps these both ways to its wire format (`providers/_openai.py`, `providers/_anthropic.py`).
Tool definitions are the body's MCP `tools/list` entries as they are (`inputSchema` is JSON Schema); tool calls
come back with their arguments already parsed, and a turn's parallel calls keep the model's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

StopReason = Literal["end_turn", "tool_use", "max_tokens", "other"]
"""Why the model stopped: `end_turn` (it is done), `tool_use` (it wants its tool calls run), `max_tokens` (cut
off: the output limit, or Anthropic's context window filling up), `other` (a reason this runner does not act on).
A refusal is not a stop reason: it raises `ModelRefused`."""

AttemptOutcome = Literal["answered", "rejected", "aborted"]
"""What one HTTP attempt came to:

- `answered`: a 2xx response was read (a turn, a refusal or garbage); its `usage` is what the provider reported.
- `rejected`: the provider answered with an error status (429, 5xx, 4xx); nothing was generated.
- `aborted`: no answer (timeout, dropped connection); the provider may have done, and billed, some work.
"""


@dataclass(kw_only=True, frozen=True)
class ToolDefinition:
    """A tool the model may call: one entry of the body's MCP `tools/list`."""

    name: str
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON Schema of the arguments (MCP `inputSchema`), passed to the provider as is."""

    @classmethod
    def from_mcp(cls, tool: Mapping[str, Any]) -> ToolDefinition:
        """From a `tools/list` entry as JSON (`name`, `description`, `inputSchema`)."""
        return cls(
            name=str(tool["name"]),
            description=str(tool.get("description") or ""),
            input_schema=dict(tool.get("inputSchema") or {"type": "object", "properties": {}}),
        )


@dataclass(kw_only=True, frozen=True)
class ToolCall:
    """One call the model asked for. `id` pairs it with its `ToolResult`."""

    id: str
    name: str
    arguments: Mapping[str, Any]
    """The arguments as parsed JSON (always an object)."""


@dataclass(kw_only=True, frozen=True)
class ToolResult:
    """What the runner answers one `ToolCall` with: the tool's result as text (an MCP refusal included)."""

    call_id: str
    content: str
    is_error: bool = False
    """The tool refused or failed (an MCP `is_error` result); Anthropic shows the model this flag."""


@dataclass(kw_only=True, frozen=True)
class UserMessage:
    content: str


@dataclass(kw_only=True, frozen=True)
class AssistantMessage:
    """A model turn as it goes back into the conversation."""

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(kw_only=True, frozen=True)
class ToolResultsMessage:
    """The results of one assistant turn's tool calls, together (Anthropic needs them in one user message)."""

    results: tuple[ToolResult, ...]


Message = UserMessage | AssistantMessage | ToolResultsMessage


@dataclass(kw_only=True, frozen=True)
class ModelRequest:
    """One model call: everything the provider is sent."""

    system: str
    messages: Sequence[Message]
    tools: Sequence[ToolDefinition] = ()
    max_output_tokens: int


@dataclass(kw_only=True, frozen=True)
class TokenUsage:
    """Tokens as the provider reported them, in genai-prices' terms: `input_tokens` is every input token,
    cached or not; `cache_read_tokens` and `cache_write_tokens` are the parts of it read from or written to the
    provider's prompt cache (OpenAI's `prompt_tokens` already counts its `cached_tokens`; Anthropic's three input
    fields are added up)."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


@dataclass(kw_only=True, frozen=True)
class Attempt:
    """One HTTP attempt of a model call, for the wallet: it reserved before each attempt (`before_attempt`) and
    settles each from this: `usage` priced when reported; otherwise nothing for `rejected`, the reservation for
    `answered` (no usage reported) and `aborted`. A call cancelled mid-attempt records nothing: its last
    reservation is settled as `aborted`."""

    number: int
    """1 for the first try."""
    outcome: AttemptOutcome
    status: int | None = None
    usage: TokenUsage | None = None
    observed: Observed | None = None
    """What a streamed answer had delivered when it was cut off or ended without usage (None: nothing came)."""


@dataclass(kw_only=True, frozen=True)
class Observed:
    """What one attempt's streamed answer delivered before it ended: the wallet settles an attempt cut off
    mid-answer (or answered without usage) from this rather than at its reservation.

    `input` is the provider's own input count when it sent one before the end (Anthropic's `message_start`;
    OpenAI reports usage only in its last chunk); its `output_tokens` are not used. `output_tokens` is the
    provider's running output count when it sent one (Anthropic's `message_delta`), else 0; `output_chars` and
    `output_chunks` are the text, refusal and tool-argument characters received and the stream events that
    carried them."""

    input: TokenUsage | None = None
    output_tokens: int = 0
    output_chars: int = 0
    output_chunks: int = 0


class Meter:
    """Kept by a streaming provider while one attempt's answer comes in (the wallet hands one out per attempt
    from `before_attempt`, and reads it if the attempt is cancelled). `observed` is None until the answer began
    (a 2xx and its first event): then the provider has read the prompt, and bills it."""

    def __init__(self) -> None:
        self.observed: Observed | None = None
        self.ended: Attempt | None = None
        """How the attempt ended, once it did (set by the retry loop): a call cut off after it (the kill switch
        during a retry's wait) is settled from this, not at the attempt's reservation."""

    def began(self) -> None:
        if self.observed is None:
            self.observed = Observed()

    def reported_input(self, usage: TokenUsage) -> None:
        self.began()
        self.observed = replace(self._seen, input=usage)

    def reported_output(self, tokens: int) -> None:
        self.began()
        self.observed = replace(self._seen, output_tokens=max(tokens, self._seen.output_tokens))

    def received(self, text: str) -> None:
        """One stream event carrying `text` of the answer (content, refusal or tool-call arguments)."""
        self.began()
        if text:
            seen = self._seen
            self.observed = replace(
                seen, output_chars=seen.output_chars + len(text), output_chunks=seen.output_chunks + 1
            )

    @property
    def _seen(self) -> Observed:
        if self.observed is None:
            raise RuntimeError("the answer has not begun")
        return self.observed


@dataclass(kw_only=True, frozen=True)
class ModelTurn:
    """One answer of the model."""

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    stop_reason: StopReason = "end_turn"
    usage: TokenUsage | None = None
    """None when the provider reported no usage (some local servers): the wallet settles at the reservation."""
    raw_usage: Mapping[str, Any] | None = None
    """The provider's usage object as it came over the wire (its own field names)."""
    model: str = ""
    """The model as the provider named it in its answer (often a dated version of the configured name)."""
    attempts: tuple[Attempt, ...] = ()
    """Every attempt made for this turn, the answered one last."""

    def as_message(self) -> AssistantMessage:
        return AssistantMessage(content=self.content, tool_calls=self.tool_calls)
