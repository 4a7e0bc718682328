"""Personal data kept out of Swarm's records: detected, then encrypted per data subject or redacted.

    protector = Protector(config.privacy, SqliteSubjectKeys(state_dir / KEY_STORE_FILE))
    protector.protect("mail alice@example.com")   # -> "mail [pii:email:s…:…]"  (the body's audit, the brain's tasks)
    protector.redact("call +1 202 555 0147")       # -> "call [pii:phone]"        (pages, telemetry)
    protector.keys.erase("email", "alice@example.com")  # crypto-shredding: every copy of that ciphertext is noise

What is where:

    _config   PrivacyConfig (`[privacy]`)
    _detect   Detector: the spans of personal data in a text, each with its normalised subject; parse_subject
    _bidi     reading_order: a text in the order it is shown where a right-to-left override reverses it
    _keys     SubjectKeys: a key per subject in a SQLite file of its own (secure_delete, WAL truncated on erase)
    _protect  Protector: protect / redact / reveal / held, and the token format
    _wire     the brain's privacy routes' request and replies
    exceptions  PrivacyError and its subclasses

Shared by the body and the brain (each has its own key store), so it imports pydantic, `phonenumbers`,
`cryptography` and the standard library only.
"""

from ._config import BUILTIN_KINDS, PrivacyConfig
from ._detect import Detector, Span, Subject, compile_patterns, luhn_ok
from ._keys import KEY_STORE_FILE, MemorySubjectKeys, SqliteSubjectKeys, SubjectKeys
from ._protect import TOKEN, HeldValue, Protector, redact_tokens
from ._wire import HeldItem, PrivacyErasure, PrivacyExport, PrivacyMigration, PrivacyRequest, PrivacyUnerasure
from .exceptions import KeyStoreUnusable, MalformedSubject, PrivacyError, SubjectErased, UnknownSubject

__all__ = [
    "BUILTIN_KINDS",
    "KEY_STORE_FILE",
    "TOKEN",
    "Detector",
    "HeldItem",
    "HeldValue",
    "KeyStoreUnusable",
    "MalformedSubject",
    "MemorySubjectKeys",
    "PrivacyConfig",
    "PrivacyErasure",
    "PrivacyError",
    "PrivacyExport",
    "PrivacyMigration",
    "PrivacyRequest",
    "PrivacyUnerasure",
    "Protector",
    "Span",
    "SqliteSubjectKeys",
    "Subject",
    "SubjectErased",
    "SubjectKeys",
    "UnknownSubject",
    "compile_patterns",
    "luhn_ok",
    "redact_tokens",
]
