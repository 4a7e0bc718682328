"""`POST /v1/privacy/erase|unerase|export` (captain): the subject goes in the body, never a URL."""

from __future__ import annotations

from pydantic import Field

from .._base import NonEmpty, ProtocolModel


class PrivacyRequest(ProtocolModel):
    subject: NonEmpty = Field(max_length=320, description="An email, phone, card, IP, SSN, IBAN, UK NINO or name.")
    reason: str = Field(default="", max_length=2000, description="Why (erase only); kept encrypted like any text.")


class HeldItem(ProtocolModel):
    """One value held about a subject: where (a record's id and field), its kind, and the value decrypted."""

    where: str
    kind: str
    value: str


class PrivacyErasure(ProtocolModel):
    """`erase`: the subject is tombstoned here either way (nothing new is kept about them); `erased` says whether a key
    was held and destroyed with it."""

    kind: str
    """The subject's kind (email, phone, ...); the subject itself is never echoed into a log."""
    erased: bool
    """False: no key was held about the subject here (never seen, or erased before); tombstoned all the same."""
    erased_before: float | None = None
    """When the subject was erased here before (a Unix time), if it was: then this erasure changed nothing."""


class PrivacyUnerasure(ProtocolModel):
    """`unerase`: the subject's tombstone lifted (a subject who came back); what is written about them from now on is
    kept encrypted under a new key. What was erased stays erased."""

    kind: str
    unerased: bool


class PrivacyExport(ProtocolModel):
    kind: str
    held: list[HeldItem] = Field(default_factory=list[HeldItem])
    erased_at: float | None = None
    """When the subject was erased here (a Unix time; nothing is held since): all an export says of them."""


class PrivacyMigration(ProtocolModel):
    """`POST /v1/privacy/migrate`: what the brain's one-time migration of its stored audit events did."""

    events: int
    """Stored events read."""
    rewritten: int
    """Events whose personal data was encrypted now (0: nothing to do, as on a second run)."""
    bodies: dict[str, int] = Field(default_factory=dict[str, int])
    """Rewritten events per body."""
    records: dict[str, int] = Field(default_factory=dict[str, int])
    """The brain's own records rewritten, per kind (`tasks`, `task_events`, `decisions`, `escalations`, `log`)."""
    backups_deleted: list[str] = Field(default_factory=list[str])
    """The brain's backups taken before the migration (holding what it rewrote in clear), deleted once a backup
    of the migrated database was written in their place."""
