"""An in-memory `SecretProvider` for tests: plug it in under any scheme instead of the environment or files."""

from __future__ import annotations

from collections.abc import Mapping

from ._base import SecretUnavailable


class MemorySecrets:
    """Secrets held in a dict, by name (`Secrets({"env": MemorySecrets({"TOKEN": "…"})})`); `reads` lists the names
    asked for, in order."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values = dict(values or {})
        self.reads: list[str] = []

    def read(self, name: str) -> str:
        self.reads.append(name)
        value = self.values.get(name, "")
        if not value:
            raise SecretUnavailable(f"no secret named {name} is held in memory")
        return value
