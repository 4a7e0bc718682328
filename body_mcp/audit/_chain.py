"""The keyed hash chain: what an event's MAC signs, and the key that signs it.

Each event's `mac` is HMAC-SHA-256, keyed with `audit.key` (never in the database), over the canonical
JSON of the event, which holds the previous event's `mac` (`prev_mac`); the first event's `prev_mac` is
the chain's genesis, a MAC of the body's id. Editing, inserting, deleting or reordering an event breaks
the chain (`_verify`). The journal's records are tagged with the same key (`_journal`); the anchor and the
verified-through checkpoint with keys derived from it, one for each, so that no tag passes for another.

An event is always writable: a string that UTF-8 cannot encode (a lone surrogate, from a JSON `"\\udcff"`
or a file name that is not UTF-8) would otherwise fail the append after the call ran. Such an event is
stored with every string escaped (`escape_strings`): each backslash doubled, each byte a name could not
decode (U+DC80..U+DCFF, as `os.fsdecode` gives it) as `\\xNN`, any other lone surrogate as `\\uNNNN`; and
`detail["strings_escaped"]` set, so that `unescape_string` gives back exactly what was sent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any, cast

from shared_protocol.audit import AuditEvent, attestation_key, attestation_message

from .. import _json

canonical_json = _json.canonical
"""What the chain signs: `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`."""


def with_mac(signed: str, mac: str) -> str:
    """`canonical_json` of an event's signed payload plus its `mac`, without encoding it all again (hot path).

    Keys are sorted, so `mac` goes right before the top-level `message`. That is the last `,"message":` in
    the text: every key after it holds a string, a number or null, where a quote is escaped, or (`turn`) an
    object whose keys are fixed and none of them `message`.
    """
    at = signed.rfind(',"message":')
    assert at > 0, "an event payload always has a message key"
    return f'{signed[:at]},"mac":"{mac}"{signed[at:]}'


REWRITTEN = "privacy_migrated"
"""The `detail` key of an event whose personal data a one-time migration (`swarm privacy migrate`) encrypted after
it was signed: it holds a tag, under a key derived from the audit key, of the event as rewritten (`Chain.rewrite_tag`).
Its `mac` (and so every link of the chain) stays what it was: it still commits to the text first written."""

ESCAPED = "strings_escaped"
"""The `detail` key of an event stored with its strings escaped."""

_LONE_SURROGATE = re.compile(r"[\\\ud800-\udfff]")  # (and the backslash, doubled to keep it reversible)
_ESCAPED = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    point = ord(char)
    return f"\\x{point - 0xDC00:02x}" if 0xDC80 <= point <= 0xDCFF else f"\\u{point:04x}"


def _unescape_char(match: re.Match[str]) -> str:
    code = match.group(1)
    if code == "\\":
        return "\\"
    return chr(0xDC00 + int(code[1:], 16)) if code[0] == "x" else chr(int(code[1:], 16))


def escape_string(text: str) -> str:
    """`text` with backslashes doubled and lone surrogates written out: encodable, and reversible."""
    return _LONE_SURROGATE.sub(_escape_char, text)


def unescape_string(text: str) -> str:
    """What `escape_string` was given."""
    return _ESCAPED.sub(_unescape_char, text)


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return escape_string(value)
    if isinstance(value, dict):
        return {escape_string(str(k)): _escaped(v) for k, v in cast(dict[Any, Any], value).items()}
    if isinstance(value, list | tuple):
        return [_escaped(item) for item in cast(list[Any], value)]
    return value


def escape_strings(payload: dict[str, Any]) -> None:
    """Escape every string of an event's payload in place (its top-level values replaced, nothing the caller
    holds changed), and mark it in `detail`."""
    for key, value in payload.items():
        payload[key] = _escaped(value)
    payload["detail"] = {**payload.get("detail", {}), ESCAPED: True}


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

    def begin(self, message: bytes) -> Any:
        """The keyed inner hash over `message`, to be continued: `end(state.copy())` is `digest(message)`, and
        after `state.update(more)`, `end(state)` is `digest(message + more)` (`message` hashed once for both)."""
        inner = self._inner.copy()
        inner.update(message)
        return inner

    def end(self, inner: Any) -> bytes:
        """The MAC of what `inner` (from `begin`) has hashed."""
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class Chain:
    """One body's chain under its key: its genesis, each event's MAC, the tags of the journal's records."""

    def __init__(self, key: bytes, body_id: str) -> None:
        self._hmac = HmacSha256(key)
        self._body_id = body_id
        self.tag: HmacSha256 = self._hmac
        """Tags a journal record (`_journal.encode`, `_journal.decode`): the chain's own HMAC, over what no event's
        canonical JSON can be (`_journal`)."""
        self.anchor_tag = self._head_tag(b"anchor")
        """Tags the anchor's head (`_anchor`)."""
        self.checkpoint_tag = self._head_tag(b"verified")
        """Tags the verified-through checkpoint's head (`_anchor`)."""
        self._rewrite = HmacSha256(self._hmac.digest(b"swarm-audit-rewritten\0" + body_id.encode()))

    def _head_tag(self, what: bytes) -> Callable[[bytes], str]:
        """Tags a head as its line writes it (`_anchor.encode`): keyed BLAKE2b (RFC 7693's MAC), under a key derived
        from the audit key for this kind of line and this body. (One call, no state to copy: the anchor is tagged
        after every commit, and half the instructions of a second HMAC.)"""
        key = self._hmac.digest(b"swarm-audit-" + what + b"\0" + self._body_id.encode())

        def tag(head: bytes) -> str:
            return hashlib.blake2b(head, key=key, digest_size=32).hexdigest()

        return tag

    def genesis(self) -> str:
        """The first event's `prev_mac`."""
        return self._hmac.hexdigest(b"swarm-audit-genesis:" + self._body_id.encode())

    def mac(self, payload: dict[str, Any]) -> str:
        """The MAC of an event's signed payload (`AuditEvent.signed_payload()`)."""
        return self._hmac.hexdigest(canonical_json(payload).encode())

    def mac_of(self, signed: bytes) -> str:
        """The MAC of an event's signed payload as its canonical JSON, encoded."""
        return self._hmac.hexdigest(signed)

    def rewrite_tag(self, payload: dict[str, Any]) -> str:
        """The tag of an event rewritten by `swarm privacy migrate`: over its signed payload as rewritten, less the
        tag itself (`REWRITTEN` in its `detail`), under a key of its own (a tag never passes for a MAC)."""
        detail = {k: v for k, v in payload.get("detail", {}).items() if k != REWRITTEN}
        return self._rewrite.hexdigest(canonical_json({**payload, "detail": detail}).encode())

    def rewritten_ok(self, payload: dict[str, Any]) -> bool:
        """Whether `payload` (an event's signed payload whose MAC does not match) is a rewrite the key's holder
        tagged: its text was changed by `swarm privacy migrate`, nothing else."""
        tag = payload.get("detail", {}).get(REWRITTEN)
        if not isinstance(tag, str):
            return False
        try:
            return hmac.compare_digest(self.rewrite_tag(payload), tag)
        except UnicodeEncodeError:
            return False

    def sign(self, payload: dict[str, Any]) -> tuple[str, str]:
        """The event as stored (its canonical JSON with its `mac`), and its `mac` (hot path).

        A payload holding a string UTF-8 cannot encode has its strings escaped first, in place (`escape_strings`).
        """
        signed, data = _canonical_bytes(payload)
        mac = self._hmac.hexdigest(data)
        return with_mac(signed, mac), mac

    def sign_hashed(self, payload: dict[str, Any]) -> tuple[bytes, str, str, Any]:
        """`sign(payload)` for the journal (hot path): also the signed bytes, and the keyed hash over them continued
        (`HmacSha256.begin`), so that the journal record's tag hashes the event no second time (`_journal.encode`).
        Returns (signed bytes, the event as stored, its `mac`, the hash state)."""
        signed, data = _canonical_bytes(payload)
        inner = self._hmac.begin(data)
        mac = self._hmac.end(inner.copy()).hex()
        return data, with_mac(signed, mac), mac, inner

    def rechain(self, payload: dict[str, Any], head: tuple[int, str]) -> tuple[int, str, str, str | None, str, str]:
        """The row of an event signed again onto `head` (seq, id, ts, decision_id, body, mac)."""
        payload = {**payload, "seq": head[0] + 1, "prev_mac": head[1]}
        body, mac = self.sign(payload)
        return (head[0] + 1, payload["id"], payload["ts"], payload["decision_id"], body, mac)


class Attester:
    """What a body vouches for to its brain: its shipped events, each attested (`shared_protocol.audit.attestation`)
    under a key derived from the audit key (`verify_key`, sent when the body registers), once its chain MAC is found
    to be the key's: the body attests only what its own chain signed, never a row someone wrote into its database.

    Done as events are shipped, off the call's hot path (two HMACs per shipped event)."""

    def __init__(self, chain: Chain, key: bytes, body_id: str) -> None:
        self._chain = chain
        self.verify_key = attestation_key(key, body_id)
        """The key the brain checks attestations with (hex): derived, so the brain never holds the audit key."""
        self._hmac = HmacSha256(bytes.fromhex(self.verify_key))

    def attest(self, event: AuditEvent, stored: str | None = None) -> AuditEvent:
        """`event` with its attestation; as it is (no `attest`) when its MAC is not this chain's. `stored`: the
        event's text as the store keeps it (`with_mac`), whose signed part is then taken as it is rather than encoded
        again (what the chain MAC signed is what `signed_payload()` gives back: `swarm audit verify` checks that)."""
        signed = _signed_part(stored, event.mac) if stored is not None else None
        if signed is None:
            try:
                signed = _json.canonical(event.signed_payload()).encode()
            except UnicodeEncodeError:  # (a stored event's strings are escaped: not from this chain)
                return event
        if not hmac.compare_digest(self._chain.mac_of(signed), event.mac):
            return event
        return event.model_copy(update={"attest": self._hmac.hexdigest(attestation_message(signed, event.mac))})


def _signed_part(stored: str, mac: str) -> bytes | None:
    """What the chain MAC of a stored event signed: its text without the `mac` that `with_mac` put in (None: not
    found there)."""
    inserted = f',"mac":"{mac}"'
    at = stored.rfind(inserted + ',"message":')
    if at < 0:
        return None
    try:
        return (stored[:at] + stored[at + len(inserted) :]).encode()
    except UnicodeEncodeError:
        return None


def _canonical_bytes(payload: dict[str, Any]) -> tuple[str, bytes]:
    """The payload's canonical JSON and its UTF-8 bytes; a string UTF-8 cannot encode is escaped first, in place
    (`escape_strings`: rare, so tried after the fast path, not before it)."""
    signed = _json.canonical(payload)
    try:
        return signed, signed.encode()
    except UnicodeEncodeError:
        escape_strings(payload)
        signed = _json.canonical(payload)
        return signed, signed.encode()
