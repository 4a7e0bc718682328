"""From `[models.NAME]` to a provider: resolve the entry's settings, then build by its `provider` name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from shared_protocol.config import ModelConfig, ProviderName
from shared_protocol.secrets import SecretResolver, SecretUnavailable

from ..exceptions import ApiKeyUnavailable, RunnerUserError
from ._base import ModelSettings, Provider
from ._retry import RetryPolicy
from ._scripted import ScriptedProvider

ProviderFactory = Callable[[ModelSettings], Provider]


# The SDK providers are imported when one is built: a scripted runner never loads the vendor SDKs.


def _openai(settings: ModelSettings) -> Provider:
    from ._openai import OpenAIProvider

    return OpenAIProvider(
        model=settings.model,
        api_key=settings.api_key,
        base_url=settings.base_url,
        timeout_s=settings.timeout_s,
        retry=settings.retry,
    )


def _anthropic(settings: ModelSettings) -> Provider:
    from ._anthropic import AnthropicProvider

    return AnthropicProvider(
        model=settings.model,
        api_key=settings.api_key,
        base_url=settings.base_url,
        timeout_s=settings.timeout_s,
        retry=settings.retry,
    )


def _scripted(settings: ModelSettings) -> Provider:
    if settings.script is None:
        raise RunnerUserError(f"[models.{settings.name}]: a scripted model needs a script")
    return ScriptedProvider(settings.script, model=settings.model)


PROVIDERS: Mapping[ProviderName, ProviderFactory] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "scripted": _scripted,
}
"""Every `provider = "…"` value and what builds it; a new provider is one module and one line here (and its name
in `shared_protocol.config.ProviderName`)."""


def model_settings(name: str, config: ModelConfig, *, secrets: SecretResolver, base_dir: Path) -> ModelSettings:
    """`[models.NAME]` ready to build: its `api_key` read through `secrets` (`ApiKeyUnavailable` naming the
    reference if it cannot be), its `script` made absolute against `base_dir` (the config file's directory)."""
    api_key = None
    if config.api_key:
        try:
            api_key = secrets.resolve(config.api_key)
        except SecretUnavailable as exc:
            raise ApiKeyUnavailable(f"[models.{name}] api_key: {exc}", model_entry=name, ref=config.api_key) from None
    return ModelSettings(
        name=name,
        provider=config.provider,
        model=config.model,
        base_url=config.base_url,
        api_key=api_key,
        script=(base_dir / config.script).resolve() if config.script else None,
        timeout_s=config.timeout_s,
        max_output_tokens=config.max_output_tokens,
        retry=RetryPolicy(max_attempts=config.max_attempts, max_elapsed_s=config.retry_budget_s),
    )


def make_provider(settings: ModelSettings, *, registry: Mapping[ProviderName, ProviderFactory] = PROVIDERS) -> Provider:
    """The provider `settings.provider` names (`registry` is for tests that plug one in)."""
    factory = registry.get(settings.provider)
    if factory is None:
        raise RunnerUserError(f"[models.{settings.name}]: no provider named {settings.provider!r}")
    return factory(settings)
