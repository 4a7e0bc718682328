"""The keyed hash chain: what an event's MAC signs, and the key that signs it.

Each event's `mac` is HMAC-SHA-256, keyed with `audit.key` (never in the database), over the canonical
JSON of the event, which holds the previous event's `mac` (`prev_mac`); the first event's `prev_mac` is
the chain's genesis, a MAC of the body's id. Editing, inserting, deleting or reordering an event breaks
the chain (`_verify`). The journal's records are tagged with the same key (`_journal`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from .. import _json

canonical_json = _json.canonical
"""What the chain signs: `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`."""


def with_mac(signed: str, mac: str) -> str:
    """`canonical_json` of an event's signed payload plus its `mac`, without encoding it all again (hot path).

    Keys are sorted, so `mac` goes right before the top-level `message`. That is the last `,"message":` in
    the text: every key after it holds a string, a number or null, where a quote is escaped.
    """
    at = signed.rfind(',"message":')
    assert at > 0, "an event payload always has a message key"
    return f'{signed[:at]},"mac":"{mac}"{signed[at:]}'


class HmacSha256:
    """HMAC-SHA-256 (RFC 2104) with the keyed inner and outer states computed once.

    `hmac.new` and `hmac.digest` look the digest up in OpenSSL on every call, which costs more than hashing
    an event; copying a prepared SHA-256 state does not.
    """

    def __init__(self, key: bytes) -> None:
        block = hashlib.sha256().block_size
        padded = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def hexdigest(self, message: bytes) -> str:
        return self.digest(message).hex()


class Chain:
    """One body's chain under its key: its genesis, each event's MAC, the tags of the journal's records."""

    def __init__(self, key: bytes, body_id: str) -> None:
        self._hmac = HmacSha256(key)
        self._body_id = body_id
        self.tag: Callable[[bytes], bytes] = self._hmac.digest
        """Tags a journal record (`_journal.encode`, `_journal.decode`)."""

    def genesis(self) -> str:
        """The first event's `prev_mac`."""
        return self._hmac.hexdigest(b"swarm-audit-genesis:" + self._body_id.encode())

    def mac(self, payload: dict[str, Any]) -> str:
        """The MAC of an event's signed payload (`AuditEvent.signed_payload()`)."""
        return self._hmac.hexdigest(canonical_json(payload).encode())

    def sign(self, payload: dict[str, Any]) -> tuple[str, str]:
        """The event as stored (its canonical JSON with its `mac`), and its `mac` (hot path)."""
        signed = _json.canonical(payload)
        mac = self._hmac.hexdigest(signed.encode())
        return with_mac(signed, mac), mac

    def rechain(self, payload: dict[str, Any], head: tuple[int, str]) -> tuple[int, str, str, str | None, str, str]:
        """The row of an event signed again onto `head` (seq, id, ts, decision_id, body, mac)."""
        payload = {**payload, "seq": head[0] + 1, "prev_mac": head[1]}
        body, mac = self.sign(payload)
        return (head[0] + 1, payload["id"], payload["ts"], payload["decision_id"], body, mac)
