"""Keeping personal data out of records: each span becomes a token, encrypted under its subject's key or redacted.

    [pii:email:s1f2e3d4c5b6a7980:<base64url(nonce + AES-GCM ciphertext)>]    encrypted: readable while the key exists
    [pii:email]                                                               redacted: gone

`Protector.protect` encrypts (a record that must keep the value: a rationale, a task's text), `redact` drops (a
page to a human, telemetry). Encryption is deterministic per subject key (a synthetic nonce): the same text gives
the same tokens. Tokens are never detected again, so protecting twice changes nothing. `reveal`
puts back what a key still opens (an erased subject's tokens read `[pii:email:erased]`, as does what is protected
after the erasure: an erased subject gets no new key), `held` lists one
subject's values for `swarm privacy export`. The same functions walk JSON values (`protect_value`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._config import PrivacyConfig
from ._detect import Detector, Span, Subject
from ._keys import SubjectKeys
from .exceptions import SubjectErased

TOKEN = re.compile(r"\[pii:([a-z][a-z0-9_]*)(?::(s[0-9a-f]{16}):([A-Za-z0-9_-]+))?\]")
_NONCE = 12
_CLEAN_MAX_ENTRIES = 4096
_CLEAN_MAX_CHARS = 4096


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def redact_tokens(text: str) -> str:
    """Every token as its redacted form: what a page to a human or a metric may carry."""
    return TOKEN.sub(lambda m: f"[pii:{m.group(1)}]", text)


@dataclass(frozen=True, slots=True)
class HeldValue:
    """One value held about a subject, where it was found (`where`, set by the caller)."""

    kind: str
    value: str


class Protector:
    """Detection plus the subject keys of one body or brain."""

    def __init__(self, config: PrivacyConfig, keys: SubjectKeys) -> None:
        self.config = config
        self.detector = Detector(config)
        self.keys = keys
        self._clean: dict[str, None] = {}
        """Texts found to hold no personal data and no token (`_replace`), up to `_CLEAN_MAX_ENTRIES`."""

    def close(self) -> None:
        self.keys.close()

    @property
    def enabled(self) -> bool:
        return self.config.redaction

    def parse_subject(self, text: str) -> Subject:
        return self.detector.parse_subject(text)

    # -- writing ----------------------------------------------------------------------

    def protect(self, text: str) -> str:
        """`text` with each span of personal data encrypted under its subject's key."""
        return self._replace(text, self._encrypt)

    def known_clean(self, text: str) -> None:
        """Take `text` as holding no personal data without scanning it: one its caller made itself from no text a
        person wrote (a content digest, which the scan read for cards, IBANs and addresses at ~50 µs a write)."""
        if len(text) <= _CLEAN_MAX_CHARS and "[pii:" not in text:
            if len(self._clean) >= _CLEAN_MAX_ENTRIES:
                self._clean.clear()
            self._clean[text] = None

    def redact(self, text: str) -> str:
        """`text` with each span of personal data, and each token, redacted."""
        return redact_tokens(self._replace(text, lambda span, _value: f"[pii:{span.kind}]"))

    def protect_value(self, value: Any) -> Any:
        return _walk(value, self.protect)

    def redact_value(self, value: Any) -> Any:
        return _walk(value, self.redact)

    def _replace(self, text: str, token: Callable[[Span, str], str]) -> str:
        if not self.enabled or len(text) < 5 or text in self._clean:
            return text
        out: list[str] = []
        at = 0
        for segment_start, segment_end in _outside_tokens(text, self._is_token):
            segment = text[segment_start:segment_end]
            spans = self.detector.find(segment)
            if not spans:
                continue
            for span in spans:
                out.append(text[at : segment_start + span.start])
                out.append(token(span, segment[span.start : span.end]))
                at = segment_start + span.end
        if at == 0:
            if "[pii:" not in text and len(text) <= _CLEAN_MAX_CHARS:
                # Clean, and no token whose reading depends on the keys: the same answer every time (the detector
                # is its config's alone). Agents repeat their rationales, a kill's refusals their message: each is
                # scanned once, not on every call.
                if len(self._clean) >= _CLEAN_MAX_ENTRIES:
                    self._clean.clear()
                self._clean[text] = None
            return text
        out.append(text[at:])
        return "".join(out)

    def _is_token(self, match: re.Match[str]) -> bool:
        """A redacted token, one a key still opens, or one whose payload is no personal data (an erased subject's:
        random base64). Not `[pii:card:s0123456789abcdef:4111111111111111]` typed in a rationale."""
        sealed = match.group(3)
        return sealed is None or self._decrypt(match) is not None or not self.detector.find(sealed)

    def _encrypt(self, span: Span, value: str) -> str:
        try:
            sid, key = self.keys.key_for(span.kind, span.subject)
        except SubjectErased:  # (work under way when the subject was erased: what it writes now is not kept)
            return f"[pii:{span.kind}:erased]"
        plain, aad = value.encode("utf-8", "surrogatepass"), f"{span.kind}:{sid}".encode()
        # A synthetic nonce (a MAC of the value under the subject's key): the same value gives the same token, so
        # a retried request still compares equal to its first (a decision's `same_question`), and a nonce is
        # never used with two different values.
        nonce = hmac.new(key, b"nonce\0" + aad + b"\0" + plain, hashlib.sha256).digest()[:_NONCE]
        sealed = AESGCM(key).encrypt(nonce, plain, aad)
        return f"[pii:{span.kind}:{sid}:{_b64(nonce + sealed)}]"

    # -- reading ----------------------------------------------------------------------

    def reveal(self, text: str) -> str:
        """`text` with every token whose key still exists decrypted; an erased subject's reads `[pii:KIND:erased]`."""
        if "[pii:" not in text:
            return text

        def one(match: re.Match[str]) -> str:
            value = self._decrypt(match)
            if value is not None:
                return value
            return f"[pii:{match.group(1)}:erased]" if match.group(2) else match.group()

        return TOKEN.sub(one, text)

    def reveal_value(self, value: Any) -> Any:
        return _walk(value, self.reveal)

    def held(self, text: str, subject_id: str) -> list[HeldValue]:
        """The values of `subject_id` in `text`, decrypted (none once the key is erased)."""
        found: list[HeldValue] = []
        if f":{subject_id}:" not in text:
            return found
        for match in TOKEN.finditer(text):
            if match.group(2) == subject_id and (value := self._decrypt(match)) is not None:
                found.append(HeldValue(kind=match.group(1), value=value))
        return found

    def _decrypt(self, match: re.Match[str]) -> str | None:
        kind, sid, sealed = match.group(1), match.group(2), match.group(3)
        if sid is None:
            return None
        key = self.keys.key_by_id(sid)
        if key is None:
            return None
        try:
            raw = _unb64(sealed)
            return (
                AESGCM(key)
                .decrypt(raw[:_NONCE], raw[_NONCE:], f"{kind}:{sid}".encode())
                .decode("utf-8", "surrogatepass")
            )
        except (InvalidTag, ValueError):
            return None


def _outside_tokens(text: str, is_token: Callable[[re.Match[str]], bool]) -> list[tuple[int, int]]:
    """The stretches of `text` between tokens (a token is never looked into again). A token-shaped stretch whose
    payload is itself personal data (`[pii:card:s0123456789abcdef:4111111111111111]`, typed by anyone) is no
    token: it is scanned with the rest, or it would be kept in clear."""
    if "[pii:" not in text:
        return [(0, len(text))]
    stretches: list[tuple[int, int]] = []
    at = 0
    for match in TOKEN.finditer(text):
        if not is_token(match):
            continue
        stretches.append((at, match.start()))
        at = match.end()
    stretches.append((at, len(text)))
    return stretches


def _walk(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {  # (a key is data too: an environment variable's name, a model turn's free-form object)
            change(key) if isinstance(key, str) else key: _walk(item, change)
            for key, item in value.items()  # pyright: ignore[reportUnknownVariableType]
        }
    if isinstance(value, list):
        return [_walk(item, change) for item in value]  # pyright: ignore[reportUnknownVariableType]
    return value
