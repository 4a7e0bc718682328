"""Privacy errors.

PrivacyError
├── MalformedSubject     what was named is not an email, phone number, card, IP, SSN, name or pattern
├── UnknownSubject       nothing is held about that subject here (no key: never seen, or erased)
├── KeyStoreUnusable     the subject key store cannot be opened or written
└── SubjectErased        the subject was erased: no new key is made for it (its data is redacted instead)
"""

from __future__ import annotations


class PrivacyError(Exception):
    """Something about personal data could not be done; the message says what."""


class MalformedSubject(PrivacyError, ValueError):
    pass


class UnknownSubject(PrivacyError):
    pass


class KeyStoreUnusable(PrivacyError):
    pass


class SubjectErased(PrivacyError):
    pass
