"""The scheme registry, the check `swarm.toml` applies to a secret key, and `Secrets`, which resolves references."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from . import aws, env, file, vault
from ._base import SECRET_FIELD, SECRET_LITERAL, Secret, SecretProvider, SecretScheme, SecretUnavailable
from ._settings import SecretsConfig

SCHEMES: Mapping[str, SecretScheme] = {
    scheme.name: scheme
    for scheme in (
        env.SCHEME,
        file.SCHEME,
        vault.SCHEME,
        aws.SCHEME,
    )
}
"""Every scheme a reference may use, by name: adding one is one module and one line above."""

__all__ = ["SCHEMES", "SECRET_LITERAL", "SecretRef", "Secrets", "is_reference"]


def _forms(schemes: Mapping[str, SecretScheme]) -> str:
    forms = [f"'{scheme.form}'" for scheme in schemes.values()]
    return forms[0] if len(forms) == 1 else ", ".join(forms[:-1]) + " or " + forms[-1]


def is_reference(value: str, schemes: Mapping[str, SecretScheme] = SCHEMES) -> bool:
    """Whether `value` is `scheme:rest` for a registered scheme, `rest` in that scheme's syntax (nothing is read)."""
    name, colon, rest = value.partition(":")
    scheme = schemes.get(name) if colon else None
    return scheme is not None and scheme.syntax.fullmatch(rest) is not None


def _secret_ref(value: str) -> str:
    if value and not is_reference(value, SCHEMES):
        # Its own error type, so that `parse_config` never echoes the value (it may be a real token).
        raise PydanticCustomError(
            SECRET_LITERAL, "secrets are never written in swarm.toml: use {forms}", {"forms": _forms(SCHEMES)}
        )
    return value


SecretRef = Annotated[str, AfterValidator(_secret_ref), SECRET_FIELD]
"""A `swarm.toml` value naming a secret (`env:NAME`, `file:/path`, `vault:path#field`, `aws:name#field`), or empty
(not configured). Anything else is refused without being echoed."""


class Secrets:
    """Resolves references through the provider of their scheme: `Secrets.from_environ(os.environ)` at an entry
    point; `Secrets({"env": MemorySecrets({...})})` in a test."""

    def __init__(self, providers: Mapping[str, SecretProvider], *, schemes: Mapping[str, SecretScheme] = SCHEMES):
        unknown = sorted(set(providers) - set(schemes))
        if unknown:
            raise ValueError(f"no secret scheme is registered as {', '.join(unknown)}")
        self._providers = dict(providers)
        self._schemes = schemes

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        *,
        config: SecretsConfig | None = None,
        schemes: Mapping[str, SecretScheme] = SCHEMES,
    ) -> Secrets:
        """Every registered scheme's provider, made from `[secrets]` (`config`; None: its defaults) and `environ`
        (pass `os.environ`: only entry points read it). Nothing is fetched until a reference is resolved."""
        settings = config or SecretsConfig()
        return cls({name: scheme.provider(settings, environ) for name, scheme in schemes.items()}, schemes=schemes)

    def resolve(self, ref: str) -> Secret:
        """The secret `ref` names; `SecretUnavailable` naming `ref` (never a value) if it cannot be read."""
        if not is_reference(ref, self._schemes):
            raise SecretUnavailable(
                f"a secret reference is one of {_forms(self._schemes)}; this value is not (not shown)", reason="invalid"
            )
        name, _, rest = ref.partition(":")
        provider = self._providers.get(name)
        if provider is None:
            raise SecretUnavailable(f"secret {ref}: no {name}: provider is set up here", ref=ref, reason="invalid")
        try:
            value = provider.read(rest)
        except SecretUnavailable as exc:
            raise SecretUnavailable(f"secret {ref}: {exc}", ref=ref, reason=exc.reason) from None
        return Secret(value, source=ref)
