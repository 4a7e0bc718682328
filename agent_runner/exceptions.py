"""Exceptions of the agent runner.

    RunnerError
    ├── ProviderError            a model call that gave no usable turn; `attempts` says what each try cost
    │   ├── RateLimited          429s until the retry budget ran out; `retry_after_s` is the last one asked
    │   ├── ProviderUnavailable  5xx, timeouts and dropped connections until the retry budget ran out
    │   ├── ContextOverflow      the conversation does not fit the model's context (the 400 that says so)
    │   ├── RequestRejected      any other 4xx (bad key, unknown model, malformed request): never retried
    │   ├── ModelRefused         the model refused, or the provider's content filter stopped the answer
    │   ├── ResponseGarbage      a response that cannot be read, or tool arguments that are not a JSON object
    │   └── ScriptExhausted      the scripted provider has no turn left
    ├── BudgetRefused            the wallet refused to reserve a model call: the task's or the limits' money
    └── RunnerUserError          misuse or bad configuration, found before any money is spent
        ├── ApiKeyUnavailable    a model's `api_key` reference cannot be read (names it: which env var)
        ├── ScriptInvalid        a script line that is not a model turn; names the file and line
        └── PriceUnknown         no price for a model in genai-prices nor in its `[models.NAME]` overrides

A `ProviderError` never carries a secret or the conversation: its message says what happened and where
(provider, model, HTTP status, the provider's own error type). A task that meets one ends `failed` with that
message; the wallet settles its attempts from `attempts` (see `Attempt`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .conversation import Attempt


class RunnerError(Exception):
    """Base of every error raised on purpose by the agent runner."""


class ProviderError(RunnerError):
    """A model call that produced no usable turn."""

    def __init__(self, message: str, *, provider: str, model: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status = status
        """The HTTP status of the last answer, when there was one."""
        self.attempts: tuple[Attempt, ...] = ()
        """Every attempt made, in order (filled in by the retry loop): what the wallet settles."""

    def __str__(self) -> str:
        return f"{self.provider} {self.model}: {self.message}"


class RateLimited(ProviderError):
    """The provider kept answering 429 until the retry budget ran out (or asked for a wait past it)."""

    def __init__(
        self, message: str, *, provider: str, model: str, status: int | None = 429, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, provider=provider, model=model, status=status)
        self.retry_after_s = retry_after_s
        """How long the provider last asked us to wait (its `Retry-After`), if it said."""


class ProviderUnavailable(ProviderError):
    """5xx answers, timeouts or connection errors until the retry budget ran out."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        model: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, model=model, status=status)
        self.retry_after_s = retry_after_s


class ContextOverflow(ProviderError):
    """The prompt (plus the output asked for) is longer than the model's context window."""


class RequestRejected(ProviderError):
    """A 4xx other than rate limiting and context overflow: retrying the same request cannot help."""


class ModelRefused(ProviderError):
    """The model declined (OpenAI `refusal`, Anthropic `stop_reason: refusal`) or a content filter cut it off."""


class ResponseGarbage(ProviderError):
    """The provider answered 2xx with something that is not a model turn we can act on."""


class ScriptExhausted(ProviderError):
    """The scripted provider replayed its last line; the task ends `failed` with "script exhausted"."""


class BudgetRefused(RunnerError):
    """The wallet would not reserve the next attempt of a model call: it would take the task past its
    `max_usd_per_task` (`code` "max_usd_per_task"), or the agent's [limits] refuse the money (`code` the limit's
    rule: "limits.usd_per_hour", "limits.blast_radius", "limits.calls_in_flight"). Nothing was sent; the task
    ends `failed` with `reason`, which names the limit and the numbers."""

    def __init__(self, reason: str, *, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.attempts: tuple[Attempt, ...] = ()
        """The call's attempts made before this refusal (filled in by the retry loop), for the wallet to settle."""


class RunnerUserError(RunnerError):
    """Misuse of the runner's API or a configuration it cannot work with; raised before any call is made."""


class ApiKeyUnavailable(RunnerUserError):
    """A `[models.NAME] api_key` whose reference cannot be read: the message names the model and the reference
    (`env:OPENAI_API_KEY`), never a value."""

    def __init__(self, message: str, *, model_entry: str, ref: str) -> None:
        super().__init__(message)
        self.model_entry = model_entry
        self.ref = ref


class ScriptInvalid(RunnerUserError):
    """A script file that cannot be replayed: unreadable, or a line that is not one model turn."""

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class PriceUnknown(RunnerUserError):
    """Neither genai-prices nor the model's config knows what its tokens cost. `model` names the config entry's
    model; the fix is to set `input_usd_per_mtok` and `output_usd_per_mtok` in its `[models.NAME]`."""

    def __init__(self, message: str, *, model: str) -> None:
        super().__init__(message)
        self.model = model
