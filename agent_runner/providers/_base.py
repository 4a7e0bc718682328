"""The provider edge: one `Provider` protocol, and the settings a provider is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from shared_protocol.config import ProviderName
from shared_protocol.secrets import Secret

from ..conversation import ModelRequest, ModelTurn
from ._retry import BeforeAttempt, RetryPolicy


class Provider(Protocol):
    """A language model behind an API: one call in, one model turn out.

    `complete` retries transient failures within its `RetryPolicy` and raises a `ProviderError` subclass when it
    cannot produce a turn. It is cancellable (anyio): a cancelled call aborts its HTTP request at once, and no
    retry follows. `aclose` releases the HTTP client; call it once, when the agent stops.
    """

    @property
    def name(self) -> str:
        """`openai`, `anthropic`, `scripted`, … (a `[models.NAME] provider` value, or `memory` in tests)."""
        ...

    @property
    def model(self) -> str:
        """The model asked for, as configured (what pricing looks up)."""
        ...

    async def complete(self, request: ModelRequest, *, before_attempt: BeforeAttempt | None = None) -> ModelTurn:
        """The model's next turn for `request`. `before_attempt(n)` is awaited before the n-th try."""
        ...

    async def aclose(self) -> None: ...


@dataclass(kw_only=True, frozen=True)
class ModelSettings:
    """A `[models.NAME]` entry ready to build a provider from: the secret already resolved, the script path
    absolute. `model_settings` (in `_registry`) makes one from the config."""

    name: str
    """The `[models.NAME]` key, for messages."""
    provider: ProviderName
    model: str
    base_url: str = ""
    """Empty: the provider's own API (api.openai.com, api.anthropic.com)."""
    api_key: Secret | None = None
    """None: none configured (a local server that wants none)."""
    script: Path | None = None
    timeout_s: float = 300.0
    """Per try: connect, send, wait for and read the whole answer."""
    max_output_tokens: int = 8192
    """What the loop asks of each call (`ModelRequest.max_output_tokens`), and so what the wallet reserves."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
