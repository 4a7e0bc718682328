"""What every secret scheme shares: the `Secret` value, the `SecretProvider` edge, the scheme entry, the error."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from ._settings import SecretsConfig

SECRET_LITERAL = "secret_literal"
"""The pydantic error type of a secret key holding something other than a reference (`parse_config` never echoes
its value)."""


class _SecretField:
    """Marks a config field as holding a secret reference (`swarm secrets check` finds them all by it)."""

    def __repr__(self) -> str:
        return "SECRET_FIELD"


SECRET_FIELD = _SecretField()
"""In a field's `Annotated[...]` metadata: this key names a secret."""

UnavailableReason = Literal["not_set", "not_found", "auth_failed", "denied", "unreachable", "field_missing", "invalid"]
"""Why a secret could not be read: the variable or file is absent or empty (`not_set`), the provider has no such
secret (`not_found`), its credentials were refused (`auth_failed`) or may not read it (`denied`), it did not answer
(`unreachable`), the secret has no such field (`field_missing`), or the reference or the settings are wrong
(`invalid`)."""


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

    def __init__(self, message: str, *, ref: str | None = None, reason: UnavailableReason = "not_set") -> None:
        super().__init__(message)
        self.ref = ref
        """The reference, when it was one; None for a value that is not a reference."""
        self.reason: UnavailableReason = reason


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
    provider: Callable[[SecretsConfig, Mapping[str, str]], SecretProvider]
    """Makes the provider from `[secrets]` and the process environment (read only at an entry point)."""
