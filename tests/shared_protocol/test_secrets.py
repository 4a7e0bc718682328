"""Secret references: the scheme registry decides what a reference is, providers read it, and no error or repr ever
shows a value."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from shared_protocol.config import ConfigInvalid, parse_config
from shared_protocol.secrets import (
    SCHEMES,
    SECRET_LITERAL,
    MemorySecrets,
    SecretRef,
    Secrets,
    SecretScheme,
    SecretUnavailable,
    is_reference,
)

TOKEN = "tk_live_0123456789abcdef"


def test_a_reference_resolves_through_the_provider_of_its_scheme_and_its_repr_shows_only_the_reference() -> None:
    held = MemorySecrets({"API_TOKEN": TOKEN})
    secret = Secrets({"env": held}).resolve("env:API_TOKEN")
    assert secret.reveal() == TOKEN and secret.source == "env:API_TOKEN"
    assert TOKEN not in repr(secret) + str(secret) + f"{secret}"
    assert held.reads == ["API_TOKEN"]


def test_env_and_file_references_read_the_environment_and_files(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n", encoding="utf-8")
    secrets = Secrets.from_environ({"API_TOKEN": TOKEN})
    assert secrets.resolve("env:API_TOKEN").reveal() == TOKEN
    assert secrets.resolve(f"file:{path}").reveal() == TOKEN, "a file's content is stripped"


@pytest.mark.parametrize(
    "ref", ["env:UNSET", "file:/nonexistent/token", "file:EMPTY"], ids=["unset", "missing", "empty"]
)
def test_an_unreadable_reference_is_refused_naming_it(tmp_path: Path, ref: str) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    ref = ref.replace("EMPTY", str(empty))
    with pytest.raises(SecretUnavailable) as refused:
        Secrets.from_environ({"OTHER": TOKEN}).resolve(ref)
    assert refused.value.ref == ref and ref in str(refused.value)


@pytest.mark.parametrize(
    "value", [TOKEN, f"env:{TOKEN}-x", "gcp:kv/ops#token", "vault:no-field", f"file:relative/{TOKEN}"]
)
def test_a_value_that_is_not_a_reference_is_refused_without_being_shown(value: str) -> None:
    with pytest.raises(SecretUnavailable) as refused:
        Secrets.from_environ({}).resolve(value)
    assert refused.value.ref is None and value not in str(refused.value)


def test_a_literal_secret_in_swarm_toml_is_refused_by_its_own_error_type_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as refused:
        TypeAdapter(SecretRef).validate_python(TOKEN)
    assert [error["type"] for error in refused.value.errors()] == [SECRET_LITERAL]
    with pytest.raises(ConfigInvalid) as invalid:
        parse_config({"ntfy": {"token": TOKEN}})
    assert "ntfy.token" in str(invalid.value) and TOKEN not in str(invalid.value)
    assert TypeAdapter(SecretRef).validate_python("") == "", "empty: not configured"


def gcp_scheme(values: Mapping[str, str]) -> SecretScheme:
    """A scheme as a later issue may add one, reading from memory here."""
    return SecretScheme(
        name="gcp",
        form="gcp:path#field",
        syntax=re.compile(r"[^#]+#.+"),
        provider=lambda _config, _env: MemorySecrets(values),
    )


def test_a_scheme_added_to_the_registry_is_accepted_by_config_and_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    schemes = {**SCHEMES, "gcp": gcp_scheme({"kv/ops#token": TOKEN})}
    assert not is_reference("gcp:kv/ops#token") and is_reference("gcp:kv/ops#token", schemes)
    assert Secrets.from_environ({}, schemes=schemes).resolve("gcp:kv/ops#token").reveal() == TOKEN
    monkeypatch.setattr("shared_protocol.secrets._registry.SCHEMES", schemes)  # the one registry line
    assert parse_config({"ntfy": {"token": "gcp:kv/ops#token"}}).ntfy.token == "gcp:kv/ops#token"
    with pytest.raises(ConfigInvalid, match="gcp:path#field"):
        parse_config({"ntfy": {"token": "gcp:no-field"}})


def test_a_provider_for_a_scheme_that_is_not_registered_is_a_developer_error() -> None:
    with pytest.raises(ValueError):
        Secrets({"gcp": MemorySecrets()})


def test_the_secrets_registry_imports_nothing_beyond_pydantic_and_the_standard_library() -> None:
    """An agent runner (beside the body) and the brain both use it, and they never import each other."""
    # (loaded modules only: shared_protocol puts None at `httpx._main` so that httpx never imports its CLI)
    code = (
        "import sys, shared_protocol.secrets\n"
        "print(' '.join(sorted({m.split('.')[0] for m, module in sys.modules.items() if module is not None})))"
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert not loaded & {"brain_server", "body_mcp", "sandbox", "swarm_cli", "httpx", "anyio"}
    # The network providers' clients load when a vault: or aws: reference is first read, not before.
    assert not loaded & {"hvac", "requests", "boto3", "botocore"}
