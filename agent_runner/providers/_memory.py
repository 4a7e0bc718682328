"""An in-memory provider for unit tests of what sits above the edge (the loop, the wallet)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

from ..conversation import Attempt, ModelRequest, ModelTurn
from ..exceptions import ProviderError, ScriptExhausted
from ._retry import BeforeAttempt

Reply = ModelTurn | ProviderError | Callable[[ModelRequest], Awaitable[ModelTurn]]
"""What the next call gets: a turn, an error to raise, or a function of the request (to wait on an event, to
answer from what was asked)."""


class InMemoryProvider:
    """Answers each call with the next reply, in order; `requests` records every request. One try per call:
    `before_attempt(1)` is awaited first, and the turn (or error) records that one attempt."""

    def __init__(self, replies: Iterable[Reply] = (), *, model: str = "memory-model") -> None:
        self._model = model
        self._replies = list(replies)
        self.requests: list[ModelRequest] = []
        self.closed = False

    @property
    def name(self) -> str:
        return "memory"

    @property
    def model(self) -> str:
        return self._model

    def add(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    async def complete(self, request: ModelRequest, *, before_attempt: BeforeAttempt | None = None) -> ModelTurn:
        if before_attempt is not None:
            await before_attempt(1)
        self.requests.append(request)
        if not self._replies:
            error: ProviderError = ScriptExhausted("no reply left", provider="memory", model=self._model)
            error.attempts = (Attempt(number=1, outcome="rejected"),)
            raise error
        reply = self._replies.pop(0)
        if isinstance(reply, ProviderError):
            reply.attempts = (Attempt(number=1, outcome="rejected", status=reply.status),)
            raise reply
        turn = reply if isinstance(reply, ModelTurn) else await reply(request)
        answered = Attempt(number=1, outcome="answered", status=200, usage=turn.usage)
        return replace(turn, model=turn.model or self._model, attempts=(answered,))

    async def aclose(self) -> None:
        self.closed = True
