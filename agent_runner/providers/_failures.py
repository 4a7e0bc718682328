"""What a failed try means, the same way for every provider: which error, retried or not, billed or not."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import cast

from pydantic import ValidationError

from ..conversation import TokenUsage
from ..exceptions import (
    ContextOverflow,
    ModelRefused,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    ResponseGarbage,
)
from ._retry import AttemptFailed, retry_after_s

MAX_DETAIL = 300

_CONTEXT_OVERFLOW = re.compile(
    r"prompt is too long|context length|context window|context size|maximum context|exceeds the available context"
    r"|too many (input )?tokens",
    re.IGNORECASE,
)
"""How compatible servers (vLLM, llama.cpp, proxies) word a context overflow when they give no code for it."""


MAX_ARGUMENT_DEPTH = 64
"""How deeply a tool call's arguments may nest (objects in lists in objects …): far past any tool's schema. A model's
call nested deeper is garbage, refused before it reaches what recurses over it (the JSON decoder and encoder, the
wallet's size estimate, the MCP client), which a few thousand brackets would take past Python's recursion limit."""


def too_deep(value: object, limit: int = MAX_ARGUMENT_DEPTH) -> bool:
    """Whether `value` (parsed JSON) nests objects and lists more than `limit` deep (counted without recursing)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = cast(dict[object, object], item).values() if isinstance(item, dict) else cast(list[object], item)
            stack.extend((child, depth + 1) for child in children)
    return False


def looks_like_context_overflow(message: str) -> bool:
    return _CONTEXT_OVERFLOW.search(message) is not None


def detail(message: str, *, secret: str | None = None) -> str:
    """A provider's error text, short enough for a task's failure reason and without the API key in it."""
    text = " ".join(message.split())
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def status_failure(
    *,
    provider: str,
    model: str,
    status: int,
    headers: Mapping[str, str],
    reason: str,
    overflow: bool,
) -> AttemptFailed:
    """An HTTP error answer: 429, 408, 409 and 5xx are retried (after `Retry-After` when given); a context
    overflow and every other 4xx are not. Nothing was generated, so the try is `rejected` (not billed)."""
    message = f"HTTP {status}: {reason}"
    if overflow:
        error = ContextOverflow(message, provider=provider, model=model, status=status)
        return AttemptFailed(error, outcome="rejected")
    wait = retry_after_s(headers)
    if status == 429:
        limited = RateLimited(message, provider=provider, model=model, status=status, retry_after_s=wait)
        return AttemptFailed(limited, outcome="rejected", retryable=True, retry_after_s=wait)
    if status in (408, 409) or status >= 500:
        down = ProviderUnavailable(message, provider=provider, model=model, status=status, retry_after_s=wait)
        return AttemptFailed(down, outcome="rejected", retryable=True, retry_after_s=wait)
    return AttemptFailed(RequestRejected(message, provider=provider, model=model, status=status), outcome="rejected")


def no_answer(*, provider: str, model: str, reason: str) -> AttemptFailed:
    """A timeout or a dropped connection: retried, and `aborted` (the provider may have billed the work)."""
    return AttemptFailed(ProviderUnavailable(reason, provider=provider, model=model), outcome="aborted", retryable=True)


def garbage(*, provider: str, model: str, reason: str, usage: TokenUsage | None = None) -> AttemptFailed:
    error = ResponseGarbage(reason, provider=provider, model=model, status=200)
    return AttemptFailed(error, outcome="answered", usage=usage)


def refused(*, provider: str, model: str, reason: str, usage: TokenUsage | None) -> AttemptFailed:
    error = ModelRefused(reason, provider=provider, model=model, status=200)
    return AttemptFailed(error, outcome="answered", usage=usage)


def unreadable(exc: Exception) -> str:
    """Why a 2xx body is not the provider's response shape: the first schema problem, or "not JSON"."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top)"
        return f"{exc.error_count()} problem(s), first at {where}: {first['msg']}"
    return "not JSON"
