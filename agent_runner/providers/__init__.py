"""The provider edge: a language model behind an API, one `Provider.complete` call per model turn.

    settings = model_settings("fast", config.models["fast"], secrets=Secrets.from_environ(os.environ), base_dir=…)
    provider = make_provider(settings)          # OpenAIProvider, AnthropicProvider or ScriptedProvider
    turn = await provider.complete(request, before_attempt=wallet_reserve)
    await provider.aclose()

`InMemoryProvider` stands in for a model in unit tests of the loop and the wallet.
"""

from ._anthropic import AnthropicProvider
from ._base import ModelSettings, Provider
from ._memory import InMemoryProvider, Reply
from ._openai import MaxTokensField, OpenAIProvider
from ._registry import PROVIDERS, ProviderFactory, make_provider, model_settings
from ._retry import BeforeAttempt, RetryPolicy, Sleep, retry_after_s
from ._scripted import ScriptedError, ScriptedProvider, load_script

__all__ = [
    "PROVIDERS",
    "AnthropicProvider",
    "BeforeAttempt",
    "InMemoryProvider",
    "MaxTokensField",
    "ModelSettings",
    "OpenAIProvider",
    "Provider",
    "ProviderFactory",
    "Reply",
    "RetryPolicy",
    "ScriptedError",
    "ScriptedProvider",
    "Sleep",
    "load_script",
    "make_provider",
    "model_settings",
    "retry_after_s",
]
