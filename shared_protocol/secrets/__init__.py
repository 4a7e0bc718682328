"""Secrets by reference: `swarm.toml` (and any other config) names where a secret is, never the secret itself.

    "env:OPENAI_API_KEY" ──▶ SCHEMES["env"] checks the syntax (when the file is read)
                        ──▶ Secrets.resolve ──▶ EnvSecrets.read("OPENAI_API_KEY") ──▶ Secret (repr shows the ref)

A reference is `scheme:rest`; the scheme registry (`SCHEMES`) says which schemes exist and what `rest` looks like
in each, so validating a config reads nothing, and a literal token pasted into a secret key is refused without
being echoed. `Secrets` resolves a reference through the provider of its scheme: errors name the reference, never
the value, and nothing here logs. Shared by every Swarm process that reads credentials (the brain's channels, an
agent runner's model API keys), so it imports pydantic and the standard library only.

Adding a scheme (say `vault:path#field`) is one module and one registry line:

1. `shared_protocol/secrets/vault.py`: a provider class whose `read(rest)` returns the secret or raises
   `SecretUnavailable` (a reason without the value), and `SCHEME = SecretScheme(name="vault",
   form="vault:path#field", syntax=re.compile(...), provider=...)`, `provider` taking the environment (its
   address and token come from there, or from the caller's settings).
2. In `_registry.py`, add `vault.SCHEME,` to `SCHEMES`.

Config validation, `Secrets.from_environ` and every message listing the forms then know it; nothing else changes.
Tests plug `MemorySecrets` in under a scheme instead of the environment or files.
"""

from ._base import Secret, SecretProvider, SecretResolver, SecretScheme, SecretUnavailable
from ._registry import SCHEMES, SECRET_LITERAL, SecretRef, Secrets, is_reference
from .env import EnvSecrets
from .file import FileSecrets
from .memory import MemorySecrets

__all__ = [
    "SCHEMES",
    "SECRET_LITERAL",
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
    "is_reference",
]
