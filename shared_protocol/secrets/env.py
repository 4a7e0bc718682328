"""`env:NAME`: a secret from the process environment (the variable's value)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ._base import SecretScheme, SecretUnavailable
from ._settings import SecretsConfig


class EnvSecrets:
    """Reads variables from the environment it is given (the entry point passes `os.environ`)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def read(self, name: str) -> str:
        value = self._environ.get(name, "")
        if not value:
            raise SecretUnavailable(f"the environment variable {name} is not set")
        return value


def _env_secrets(_config: SecretsConfig, environ: Mapping[str, str]) -> EnvSecrets:
    return EnvSecrets(environ)


SCHEME = SecretScheme(name="env", form="env:NAME", syntax=re.compile(r"[A-Za-z_][A-Za-z0-9_]*"), provider=_env_secrets)
