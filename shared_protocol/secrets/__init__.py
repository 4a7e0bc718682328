"""Secrets by reference: `swarm.toml` (and any other config) names where a secret is, never the secret itself.

    "env:OPENAI_API_KEY" ──▶ SCHEMES["env"] checks the syntax (when the file is read)
                        ──▶ Secrets.resolve ──▶ EnvSecrets.read("OPENAI_API_KEY") ──▶ Secret (repr shows the ref)

A reference is `scheme:rest`; the scheme registry (`SCHEMES`) says which schemes exist and what `rest` looks like
in each, so validating a config reads nothing, and a literal token pasted into a secret key is refused without
being echoed. `Secrets` resolves a reference through the provider of its scheme: errors name the reference, never
the value, and nothing here logs. Shared by every Swarm process that reads credentials (the brain's channels, an
agent runner's model API keys), so it imports pydantic and the standard library only (`hvac` and `boto3` are
imported when a `vault:` or `aws:` reference is first read).

Schemes: `env:NAME`, `file:/path`, `vault:path#field` (HashiCorp Vault KV v2, `vault.py`) and `aws:name#field` or
`aws:name` (AWS Secrets Manager, `aws.py`). The network providers take their settings from `[secrets]`
(`SecretsConfig`, passed to `Secrets.from_environ(..., config=...)`), fetch a secret when it is first resolved and
keep it for `cache_ttl_s`; their own credentials are `env:`/`file:` references.

Adding a scheme (say `gcp:...`) is one module and one registry line:

1. `shared_protocol/secrets/gcp.py`: a provider class whose `read(rest)` returns the secret or raises
   `SecretUnavailable` (a reason without the value), and `SCHEME = SecretScheme(name=..., form=...,
   syntax=re.compile(...), provider=...)`, `provider` taking `[secrets]` and the environment.
2. In `_registry.py`, add its `SCHEME` to `SCHEMES` (and its settings to `SecretsConfig`).

Config validation, `Secrets.from_environ` and every message listing the forms then know it; nothing else changes.
Tests plug `MemorySecrets` in under a scheme instead of the environment or files.
"""

from ._base import (
    SECRET_FIELD,
    SECRET_LITERAL,
    Secret,
    SecretProvider,
    SecretResolver,
    SecretScheme,
    SecretUnavailable,
    UnavailableReason,
)
from ._registry import SCHEMES, SecretRef, Secrets, is_reference
from ._settings import (
    CREDENTIAL_VARIABLES,
    AwsSettings,
    BootstrapRef,
    SecretsConfig,
    VaultSettings,
    is_credential_variable,
)
from .aws import AwsSecrets
from .env import EnvSecrets
from .file import FileSecrets
from .memory import MemorySecrets
from .vault import VaultSecrets

__all__ = [
    "CREDENTIAL_VARIABLES",
    "SCHEMES",
    "SECRET_FIELD",
    "SECRET_LITERAL",
    "AwsSecrets",
    "AwsSettings",
    "BootstrapRef",
    "EnvSecrets",
    "FileSecrets",
    "MemorySecrets",
    "Secret",
    "SecretProvider",
    "SecretRef",
    "SecretResolver",
    "SecretScheme",
    "SecretUnavailable",
    "Secrets",
    "SecretsConfig",
    "UnavailableReason",
    "VaultSecrets",
    "VaultSettings",
    "is_credential_variable",
    "is_reference",
]
