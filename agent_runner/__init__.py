"""The agent runner: LLM agents that take tasks and work them through a body, with nobody pressing Enter.

Built so far (issue #17): the provider edge (`providers`), the conversation types every provider maps to and from
(`conversation`), the price arithmetic (`pricing`), the wallet that reserves and settles every model call's money
(`wallet`) and the errors (`exceptions`). Not yet: the loop, the CLI. The runner imports `shared_protocol` and
third-party libraries only; it reaches the body and the brain over the wire like any other client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import providers
from .conversation import (
    AssistantMessage,
    Attempt,
    AttemptOutcome,
    Message,
    Meter,
    ModelRequest,
    ModelTurn,
    Observed,
    StopReason,
    TokenUsage,
    ToolCall,
    ToolDefinition,
    ToolResult,
    ToolResultsMessage,
    UserMessage,
)
from .exceptions import (
    ApiKeyUnavailable,
    BudgetRefused,
    ContextOverflow,
    ModelRefused,
    PriceUnknown,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    ResponseGarbage,
    RunnerError,
    RunnerUserError,
    ScriptExhausted,
    ScriptInvalid,
)
from .pricing import (
    ModelPricing,
    PriceOverrides,
    cost,
    estimate_input_tokens,
    estimate_reservation,
    pricing_for,
    resolve_pricing,
)
from .providers import (
    PROVIDERS,
    BeforeAttempt,
    InMemoryProvider,
    ModelSettings,
    Provider,
    RetryPolicy,
    ScriptedProvider,
    make_provider,
    model_settings,
)
from .wallet import (
    Hold,
    Ledger,
    MemoryLedger,
    Spend,
    TaskSpend,
    TaskWallet,
    UsageRecord,
    UsageSink,
    Wallet,
    WalletCall,
)

if TYPE_CHECKING:
    from .providers import AnthropicProvider, OpenAIProvider


def __getattr__(name: str) -> object:
    """`AnthropicProvider` and `OpenAIProvider` on first use: their vendor SDKs take seconds to import, and a runner
    with a scripted model (or any other `swarm` command) needs neither."""
    if name in ("AnthropicProvider", "OpenAIProvider"):
        value = getattr(providers, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PROVIDERS",
    "AnthropicProvider",
    "ApiKeyUnavailable",
    "AssistantMessage",
    "Attempt",
    "AttemptOutcome",
    "BeforeAttempt",
    "BudgetRefused",
    "ContextOverflow",
    "Hold",
    "InMemoryProvider",
    "Ledger",
    "MemoryLedger",
    "Message",
    "Meter",
    "ModelPricing",
    "ModelRefused",
    "ModelRequest",
    "ModelSettings",
    "ModelTurn",
    "Observed",
    "OpenAIProvider",
    "PriceOverrides",
    "PriceUnknown",
    "Provider",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimited",
    "RequestRejected",
    "ResponseGarbage",
    "RetryPolicy",
    "RunnerError",
    "RunnerUserError",
    "ScriptExhausted",
    "ScriptInvalid",
    "ScriptedProvider",
    "Spend",
    "StopReason",
    "TaskSpend",
    "TaskWallet",
    "TokenUsage",
    "ToolCall",
    "ToolDefinition",
    "ToolResult",
    "ToolResultsMessage",
    "UsageRecord",
    "UsageSink",
    "UserMessage",
    "Wallet",
    "WalletCall",
    "cost",
    "estimate_input_tokens",
    "estimate_reservation",
    "make_provider",
    "model_settings",
    "pricing_for",
    "resolve_pricing",
]
