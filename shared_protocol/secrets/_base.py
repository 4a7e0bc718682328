"""What every secret scheme shares: the `Secret` value, the `SecretProvider` edge, the scheme entry, the error."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol


class Secret:
    """A credential: shown only by `reveal()`; printing it shows `Secret('env:NAME')` (where it came from)."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, *, source: str = "") -> None:
        self._value = value
        self.source = source
        """Where it came from (`env:NAME`, `file:/path`): safe to show."""

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret({self.source or '…'!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SecretUnavailable(Exception):
    """A reference that cannot be read (an unset variable, an unreadable or empty file), or that is no reference at
    all. The message names the reference, never a value; a value that is not a reference is not shown either (it may
    be a secret written where a reference belongs)."""

    def __init__(self, message: str, *, ref: str | None = None) -> None:
        super().__init__(message)
        self.ref = ref
        """The reference, when it was one; None for a value that is not a reference."""


class SecretProvider(Protocol):
    """Reads the secrets of one scheme: for `env:NAME` the `env` provider is asked for `NAME`."""

    def read(self, name: str) -> str:
        """The secret `name` names (what follows `scheme:`), or `SecretUnavailable` with a reason that never holds
        a value. Empty is unavailable: an empty credential is never what was meant."""
        ...


class SecretResolver(Protocol):
    """What code that needs a secret is given: a reference in, a `Secret` out (`Secrets` is the real one)."""

    def resolve(self, ref: str) -> Secret:
        """The secret `ref` names; `SecretUnavailable` naming the reference (never a value) if it cannot be read."""
        ...


@dataclass(kw_only=True, frozen=True)
class SecretScheme:
    """One entry of the scheme registry: how its references read, and how its provider is made."""

    name: str
    """The reference's prefix: `env` in `env:NAME`."""
    form: str
    """How a reference reads, for messages: `env:NAME`."""
    syntax: re.Pattern[str]
    """What may follow `name:`, matched in full when `swarm.toml` is read, before anything is resolved."""
    provider: Callable[[Mapping[str, str]], SecretProvider]
    """Makes the provider from the process environment (read only at an entry point), e.g. `EnvSecrets`."""
