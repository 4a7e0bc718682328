"""The provider edge: a language model behind an API, one `Provider.complete` call per model turn.

    secrets = Secrets.from_environ(os.environ, config=config.secrets)
    settings = model_settings("fast", config.models["fast"], secrets=secrets, base_dir=…)
    provider = make_provider(settings)          # OpenAIProvider, AnthropicProvider or ScriptedProvider
    turn = await provider.complete(request, before_attempt=wallet_reserve)
    await provider.aclose()

`InMemoryProvider` stands in for a model in unit tests of the loop and the wallet.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._base import ModelSettings, Provider
from ._memory import InMemoryProvider, Reply
from ._registry import PROVIDERS, ProviderFactory, make_provider, model_settings
from ._retry import BeforeAttempt, RetryPolicy, Sleep, retry_after_s
from ._scripted import ScriptedError, ScriptedProvider, load_script

if TYPE_CHECKING:
    from ._anthropic import AnthropicProvider
    from ._openai import MaxTokensField, OpenAIProvider

_SDK_MODULES = {"AnthropicProvider": "._anthropic", "MaxTokensField": "._openai", "OpenAIProvider": "._openai"}
"""Names whose modules import a vendor SDK (the `anthropic` SDK alone takes about a second to import): loaded on
first use, so a runner with a scripted model, and every `swarm` command, starts without them."""


def __getattr__(name: str) -> object:
    module = _SDK_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


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
