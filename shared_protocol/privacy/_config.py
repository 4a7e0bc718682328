"""`[privacy]`: what the detector looks for beyond its built-in kinds, and whether it runs at all."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from .._base import ProtocolModel

BUILTIN_KINDS = ("email", "phone", "card", "ip", "ssn", "iban", "nino", "name")
"""What the detector finds without configuration (`name`: the configured `names`)."""

_PATTERN_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_REGION = re.compile(r"[A-Z]{2}")


class PrivacyConfig(ProtocolModel):
    """`[privacy]`: personal data is redacted, or encrypted under a key per data subject, before it is kept."""

    redaction: bool = Field(
        default=True,
        description="Detect personal data (emails, phone numbers, card numbers, IP addresses, US SSNs, IBANs, UK "
        "National Insurance numbers, the names and patterns below) in what is persisted or shipped, and keep it only "
        "encrypted per subject or redacted.",
    )
    default_region: str = Field(
        default="US",
        description="The region (ISO 3166 alpha-2) a phone number without a country code is read in.",
    )
    names: list[str] = Field(
        default_factory=list[str],
        description="People's names to treat as personal data (matched whole-word, case-insensitively).",
    )
    patterns: dict[str, str] = Field(
        default_factory=dict[str, str],
        description="More kinds of personal data: kind = regular expression (e.g. employee_id = 'EMP-[0-9]{6}').",
    )

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        import phonenumbers  # (loaded only by a config that sets it)

        if not _REGION.fullmatch(value) or value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phone numbers are known for (e.g. 'US', 'GB', 'FR')")
        return value

    @field_validator("names")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        for name in names:
            if len(name.strip()) < 2:
                raise ValueError(f"{name!r}: a name is at least 2 characters")
        return names

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, patterns: dict[str, str]) -> dict[str, str]:
        for kind, pattern in patterns.items():
            if not _PATTERN_NAME.fullmatch(kind) or kind in BUILTIN_KINDS:
                raise ValueError(
                    f"{kind!r}: a pattern's kind is 1-32 lower-case letters, digits or '_', starting with a letter, "
                    f"and not one of {', '.join(BUILTIN_KINDS)}"
                )
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{kind}: {pattern!r} is not a regular expression: {exc}") from None
            if compiled.match(""):
                raise ValueError(f"{kind}: {pattern!r} matches the empty string")
        return patterns
