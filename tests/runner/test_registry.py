"""From `[models.NAME]` to a provider: the key resolved by reference, the provider chosen by name."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import get_args

import anyio
import pytest

from agent_runner import (
    PROVIDERS,
    AnthropicProvider,
    ApiKeyUnavailable,
    OpenAIProvider,
    ScriptedProvider,
    make_provider,
    model_settings,
)
from agent_runner.providers import retry_after_s
from shared_protocol.config import ProviderName, parse_config
from shared_protocol.secrets import MemorySecrets, Secrets

from .conftest import ask

CONFIG = parse_config(
    {
        "models": {
            "fast": {"provider": "openai", "model": "gpt-4o", "api_key": "env:OPENAI_API_KEY", "max_attempts": 2},
            "claude": {"provider": "anthropic", "model": "claude-sonnet-4-6", "api_key": "env:ANTHROPIC_API_KEY"},
            "demo": {"provider": "scripted", "model": "claude-sonnet-4-6", "script": "turns.jsonl"},
        }
    }
)
SECRETS = Secrets({"env": MemorySecrets({"OPENAI_API_KEY": "sk-openai", "ANTHROPIC_API_KEY": "sk-ant"})})


def test_every_provider_name_in_the_config_schema_has_a_factory() -> None:
    assert set(PROVIDERS) == set(get_args(ProviderName))


def test_settings_read_the_key_through_its_reference_and_carry_the_retry_budget(tmp_path: Path) -> None:
    settings = model_settings("fast", CONFIG.models["fast"], secrets=SECRETS, base_dir=tmp_path)
    assert settings.api_key is not None and settings.api_key.reveal() == "sk-openai"
    assert repr(settings.api_key) == "Secret('env:OPENAI_API_KEY')" and "sk-openai" not in repr(settings)
    assert settings.retry.max_attempts == 2 and settings.retry.max_elapsed_s == 120
    assert settings.max_output_tokens == 8192 and settings.timeout_s == 300


def test_a_key_that_cannot_be_read_is_an_error_naming_the_model_and_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ApiKeyUnavailable) as unavailable:
        model_settings("claude", CONFIG.models["claude"], secrets=Secrets({"env": MemorySecrets()}), base_dir=tmp_path)
    assert unavailable.value.ref == "env:ANTHROPIC_API_KEY" and "[models.claude]" in str(unavailable.value)
    assert "ANTHROPIC_API_KEY" in str(unavailable.value)


@pytest.mark.anyio
async def test_each_provider_name_builds_its_provider_and_a_script_is_found_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "turns.jsonl").write_text('{"content": "scripted hello"}\n')
    built = {
        name: make_provider(model_settings(name, entry, secrets=SECRETS, base_dir=tmp_path))
        for name, entry in CONFIG.models.items()
    }
    assert isinstance(built["fast"], OpenAIProvider) and isinstance(built["claude"], AnthropicProvider)
    assert isinstance(built["demo"], ScriptedProvider) and built["demo"].model == "claude-sonnet-4-6"
    with anyio.fail_after(5):
        assert (await built["demo"].complete(ask())).content == "scripted hello"
    for provider in built.values():
        await provider.aclose()


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "12"}, 12.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": format_datetime(datetime(2030, 1, 1, 0, 1, tzinfo=UTC), usegmt=True)}, 60.0),
        ({"retry-after": format_datetime(datetime(2029, 12, 31, tzinfo=UTC), usegmt=True)}, 0.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(headers: dict[str, str], seconds: float | None) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert retry_after_s(headers, now=now) == seconds
