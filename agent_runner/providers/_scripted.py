"""The `scripted` provider: replays a JSONL file, one model turn per line, then raises `ScriptExhausted`.

It is the demo's embedded default and the loop's end-to-end test double: no keys, no network, the same
`Provider` contract (attempts, `before_attempt`, typed errors) as the real ones. A line:

    {"content": "I'll read the file.",
     "tool_calls": [{"name": "read_text_file", "arguments": {"path": "src/app.py", "rationale": "…"}}],
     "usage": {"input_tokens": 1200, "output_tokens": 40, "cache_read_tokens": 1000}}

Every key is optional; unknown keys are errors. `"delay_s": 5` makes that turn take 5 s to come (a slow model, to
show a kill cutting a call short). `tool_calls[].id` defaults to `call_<line>_<n>`; `usage` absent
means none reported (the wallet settles at its reservation); `stop_reason` defaults to `tool_use` when there are
calls, else `end_turn`. `"error": "rate_limited"` (or `unavailable`, `context_overflow`, `rejected`, `refused`,
`garbage`) makes that line fail as a provider would, so the loop's error paths can be scripted too. Blank lines
are skipped. The whole file is checked when the provider is made: a bad line is a `ScriptInvalid` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared_protocol.brain import MAX_USAGE_TOKENS

from ..conversation import Meter, ModelRequest, ModelTurn, StopReason, TokenUsage, ToolCall
from ..exceptions import (
    ContextOverflow,
    ModelRefused,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    ResponseGarbage,
    ScriptExhausted,
    ScriptInvalid,
)
from ._failures import MAX_ARGUMENT_DEPTH, too_deep
from ._retry import AttemptFailed, BeforeAttempt, RetryPolicy, call_with_retries

ScriptedError = Literal["rate_limited", "unavailable", "context_overflow", "rejected", "refused", "garbage"]

_ONE_TRY = RetryPolicy(max_attempts=1)
"""A script line is one answer: an error line fails at once, as a provider would after its retries."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ScriptedCall(_Strict):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict[str, Any])
    id: str = ""


class _ScriptedUsage(_Strict):
    input_tokens: int = Field(ge=0, le=MAX_USAGE_TOKENS)
    output_tokens: int = Field(ge=0, le=MAX_USAGE_TOKENS)
    cache_read_tokens: int = Field(default=0, ge=0, le=MAX_USAGE_TOKENS)
    cache_write_tokens: int = Field(default=0, ge=0, le=MAX_USAGE_TOKENS)

    @model_validator(mode="after")
    def _cached_within_input(self) -> _ScriptedUsage:
        # (the cached tokens are part of the input, as the providers count them: more cannot be priced)
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError("cache_read_tokens and cache_write_tokens are part of input_tokens: no more than it")
        return self


class _ScriptedLine(_Strict):
    content: str = ""
    tool_calls: list[_ScriptedCall] = Field(default_factory=list[_ScriptedCall])
    usage: _ScriptedUsage | None = None
    stop_reason: StopReason | None = None
    error: ScriptedError | None = None
    delay_s: float = Field(default=0.0, ge=0, le=3600)
    """How long the "model" takes to answer (a kill or a timeout cuts it short; the line is then not used up)."""


_ERRORS: Mapping[ScriptedError, tuple[Callable[..., ProviderError], int | None]] = {
    "rate_limited": (RateLimited, 429),
    "unavailable": (ProviderUnavailable, 503),
    "context_overflow": (ContextOverflow, 400),
    "rejected": (RequestRejected, 400),
    "refused": (ModelRefused, 200),
    "garbage": (ResponseGarbage, 200),
}


def load_script(path: Path) -> list[ModelTurn | ScriptedError]:
    """Every line of the script, checked: a turn, or the error that line stands for."""
    return [entry for entry, _ in _load(path)]


def _load(path: Path) -> list[tuple[ModelTurn | ScriptedError, float]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScriptInvalid(f"cannot read the script: {exc.strerror}", path=str(path)) from None
    except UnicodeDecodeError:
        raise ScriptInvalid("the script is not UTF-8 text", path=str(path)) from None
    entries: list[tuple[ModelTurn | ScriptedError, float]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            entries.append(_entry(raw, path=str(path), number=number))
    return entries


def _entry(raw: str, *, path: str, number: int) -> tuple[ModelTurn | ScriptedError, float]:
    try:
        line = _ScriptedLine.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise ScriptInvalid(f"not JSON ({exc.msg})", path=path, line=number) from None
    except RecursionError:
        raise ScriptInvalid(f"nested more than {MAX_ARGUMENT_DEPTH} deep", path=path, line=number) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the line"
        raise ScriptInvalid(f"{where}: {first['msg']}", path=path, line=number) from None
    if line.error is not None:
        return line.error, line.delay_s
    for call in line.tool_calls:
        if too_deep(call.arguments):
            raise ScriptInvalid(
                f"the arguments of {call.name} nest more than {MAX_ARGUMENT_DEPTH} deep", path=path, line=number
            )
    calls = tuple(
        ToolCall(id=call.id or f"call_{number}_{index}", name=call.name, arguments=call.arguments)
        for index, call in enumerate(line.tool_calls)
    )
    usage = TokenUsage(**line.usage.model_dump()) if line.usage is not None else None
    turn = ModelTurn(
        content=line.content,
        tool_calls=calls,
        stop_reason=line.stop_reason or ("tool_use" if calls else "end_turn"),
        usage=usage,
        raw_usage=line.usage.model_dump() if line.usage is not None else None,
    )
    return turn, line.delay_s


class ScriptedProvider:
    """Replays `script` in order, one line per call, whatever the request says."""

    def __init__(self, script: Path, *, model: str) -> None:
        self._model = model
        self._path = script
        loaded = _load(script)
        self._entries: list[ModelTurn | ScriptedError] = [entry for entry, _ in loaded]
        self._delays = [delay for _, delay in loaded]
        self._next = 0
        self.requests: list[ModelRequest] = []
        """Every request received, in order (the loop's tests look at what the model was shown)."""

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def model(self) -> str:
        return self._model

    @property
    def remaining(self) -> int:
        """Lines not yet replayed."""
        return len(self._entries) - self._next

    async def complete(self, request: ModelRequest, *, before_attempt: BeforeAttempt | None = None) -> ModelTurn:
        async def attempt(_meter: Meter) -> ModelTurn:
            if self._next < len(self._delays) and self._delays[self._next] > 0:
                await anyio.sleep(self._delays[self._next])
            return self._replay(request)

        return await call_with_retries(attempt, policy=_ONE_TRY, before_attempt=before_attempt, sleep=anyio.sleep)

    def _replay(self, request: ModelRequest) -> ModelTurn:
        self.requests.append(request)
        if self._next >= len(self._entries):
            exhausted = ScriptExhausted(
                f"script exhausted after {len(self._entries)} turn(s) ({self._path})",
                provider="scripted",
                model=self._model,
            )
            raise AttemptFailed(exhausted, outcome="rejected")
        entry = self._entries[self._next]
        self._next += 1
        if isinstance(entry, ModelTurn):
            return replace(entry, model=self._model)
        make, status = _ERRORS[entry]
        error = make(f"scripted {entry} (turn {self._next})", provider="scripted", model=self._model, status=status)
        raise AttemptFailed(error, outcome="answered" if status == 200 else "rejected")

    async def aclose(self) -> None:
        return None
