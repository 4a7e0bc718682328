"""Adversarial review of #21 (the detector and the Protector, in-process with a real key store file): data hidden
in shapes the Protector skips, or in encodings the detector misses, and whether erasure still reaches it."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from brain_server.privacy import protect_stored_event
from shared_protocol.privacy import TOKEN, PrivacyConfig, Protector, SqliteSubjectKeys

from .plant import Planted, encodings, plant


@pytest.fixture
def protector(tmp_path: Path) -> Iterator[Protector]:
    p = Protector(PrivacyConfig(), SqliteSubjectKeys(tmp_path / "privacy.db"))
    yield p
    p.close()


def _clear(kept: str, values: list[str]) -> list[str]:
    data = kept.encode()
    return [value for value in values for form in encodings(value) if form in data]


def _digits(p: Planted) -> str:
    return p.card.replace(" ", "")


def test_a_forged_token_does_not_carry_data_past_the_detector(protector: Protector) -> None:
    """Was a hole (high): text already in token shape was never looked into, so a rationale or a command's output
    reading `[pii:card:s0123456789abcdef:4111111111111111]` (or a phone as `202-555-0147`) was kept in clear in
    every store, and no erasure could reach it. Fixed by `Protector._is_token`: a token-shaped stretch counts as a
    token only if a key opens it or its payload is no personal data; otherwise it is scanned like the rest."""
    p = plant()
    national = p.phone_e164[2:]
    dashed = f"{national[:3]}-{national[3:6]}-{national[6:]}"
    text = f"paid with [pii:card:s0123456789abcdef:{_digits(p)}], call [pii:phone:sfedcba9876543210:{dashed}]"
    kept = protector.protect(text)
    assert _clear(kept, [_digits(p), dashed, national]) == []
    assert protector.reveal(kept) == text  # still readable back while the keys exist
    assert protector.protect(kept) == kept  # a real token is still never looked into again
    protector.keys.erase("card", _digits(p))
    assert _digits(p) not in protector.reveal(kept)


def test_json_object_keys_are_protected_like_values(protector: Protector) -> None:
    """Was a hole (medium): `protect_value` walked only values, so personal data as an object's key (a model
    turn's free-form arguments, an environment mapping, a detail keyed by address) was kept in clear. Fixed in
    `_walk`: string keys are changed like values (reveal puts them back)."""
    p = plant()
    value = {"by_contact": {p.email: {"phone": p.phone}, p.ip: [p.card]}}
    kept = protector.protect_value(value)
    assert _clear(json.dumps(kept), p.values()) == []
    assert protector.reveal_value(kept) == value
    redacted = json.dumps(protector.redact_value(value))
    assert _clear(redacted, p.values()) == []


def test_an_ipv4_mapped_address_is_the_ipv4_subject(protector: Protector) -> None:
    """Was a hole (low): `::ffff:203.0.113.9` was taken as the IPv6 `::ffff:203` and `.0.113.9` was left in
    clear; the subject was not the IPv4's, so erasing the IPv4 left it readable. Fixed in the detector: an IPv6
    candidate may not stop before a dot, and an IPv4-mapped address has its IPv4 as subject."""
    p = plant()
    kept = protector.protect(f"peer ::ffff:{p.ip} connected")
    octets = p.ip.split(".", 1)[1]
    assert _clear(kept, [p.ip, octets]) == []
    assert protector.reveal(kept) == f"peer ::ffff:{p.ip} connected"
    assert protector.keys.erase("ip", p.ip) is not None
    assert p.ip not in protector.reveal(kept)


def test_the_same_subject_in_other_writings_is_one_subject(protector: Protector) -> None:
    """Withstood: an email upper-cased, a phone in E.164, with dots, bare or with its country code, a card with
    dashes or bare: each is found, and erasing the subject as typed once makes all of them unreadable."""
    p = plant()
    national = p.phone_e164[2:]
    digits = _digits(p)
    writings = [
        p.email.upper(),
        p.email.lower(),
        p.phone,
        p.phone_e164,
        f"{national[:3]}.{national[3:6]}.{national[6:]}",
        national,
        f"+1 {national[:3]} {national[3:6]} {national[6:]}",
        "-".join(digits[i : i + 4] for i in range(0, 16, 4)),
        digits,
    ]
    kept = [protector.protect(f"contact: {w} today") for w in writings]
    assert all(TOKEN.search(k) for k in kept)
    assert _clear("\n".join(kept), [*p.values(), national]) == []
    for subject in (p.email, p.phone, p.card):
        parsed = protector.parse_subject(subject)
        assert protector.keys.erase(parsed.kind, parsed.value) is not None
    assert [protector.reveal(k) for k in kept] == [
        f"contact: [pii:{k}:erased] today" for k in ["email"] * 2 + ["phone"] * 5 + ["card"] * 2
    ]


def test_a_percent_encoded_email_in_a_url_is_protected(protector: Protector) -> None:
    """Was a hole (medium): command output and tool arguments carry URLs (`curl 'https://x/?to=alice%40example.org'`,
    a mailto link); the detector needed a literal `@`, so `alice%40example.org` was kept in clear. Fixed by the
    detector's `_Shadow`: the email pattern reads the text with percent-escapes decoded, and its spans are mapped
    back, so the escaped text as written is what is encrypted, under the plain lower-cased address."""
    p = plant()
    quoted = urllib.parse.quote(p.email, safe="")
    plus = p.email.replace("@", "+news@")
    texts = [f"GET /unsubscribe?to={quoted}&x=1", f"proxy /mail/{urllib.parse.quote(plus, safe='')}/inbox"]
    kept = [protector.protect(t) for t in texts]
    assert all(p.email.split("@")[0] not in k for k in kept)
    assert [protector.reveal(k) for k in kept] == texts
    assert protector.parse_subject(quoted) == protector.parse_subject(p.email.lower())
    erased = protector.parse_subject(p.email)  # one erasure, typed plainly, reaches the escaped copy
    assert protector.keys.erase(erased.kind, erased.value) is not None
    assert protector.reveal(kept[0]) == "GET /unsubscribe?to=[pii:email:erased]&x=1"


def test_a_percent_escape_that_is_no_email_is_left_alone(protector: Protector) -> None:
    """The guard on the fix above: `%40` alone, an `@` with no domain, an escaped URL with no address in it."""
    for text in ("%40", "a%40b", "100%40 done", "GET /search?q=%40home%20sweet", "50% of 40%40"):
        assert protector.protect(text) == text


def test_an_email_with_a_fullwidth_at_is_protected(protector: Protector) -> None:
    """Was a hole (low): `alice＠example.org` (FULLWIDTH COMMERCIAL AT), `alice@example．org` read as the same
    address to a human but were not detected, so they were kept in clear. Fixed by the detector's `_Shadow`: the
    email pattern reads an NFKC-normalised copy of each non-ASCII character, its spans mapped back, so the
    look-alike characters as written are encrypted, under the plain lower-cased address."""
    p = plant()
    local, domain = p.email.split("@")
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in local)  # ＡＢＣ...
    writings = [f"{local}＠{domain}", f"{local}@{domain.replace('.', '．')}", f"{fullwidth}＠{domain}"]
    texts = [f"write to {w} 今日" for w in writings]
    kept = [protector.protect(t) for t in texts]
    assert all(local not in k and fullwidth not in k and "＠" not in k for k in kept)
    assert [protector.reveal(k) for k in kept] == texts
    assert {str(protector.parse_subject(w)) for w in writings} == {f"email:{p.email.lower()}"}
    erased = protector.parse_subject(p.email.upper())
    assert protector.keys.erase(erased.kind, erased.value) is not None
    assert [protector.reveal(k) for k in kept] == ["write to [pii:email:erased] 今日"] * 3


def test_a_card_written_with_dots_is_protected(protector: Protector) -> None:
    """Was a hole (low): the card pattern allowed only spaces and dashes between digits, so `4111.1111.1111.1111`
    (as some forms and logs print it) was kept in clear. Fixed by `_DOTTED_CARD`: groups of 2-6 digits between
    dots, then the same length, issuer prefix and Luhn checks; the subject is the digits, as for any card."""
    p = plant()
    dotted = p.card.replace(" ", ".")
    kept = protector.protect(f"card {dotted}.")
    assert dotted not in kept and _digits(p) not in kept
    assert protector.reveal(kept) == f"card {dotted}."
    assert protector.parse_subject(dotted) == protector.parse_subject(p.card)
    protector.keys.erase("card", _digits(p))
    assert protector.reveal(kept) == "card [pii:card:erased]."


def test_dotted_numbers_that_are_no_card_are_left_alone(protector: Protector) -> None:
    """The guard on the fix above: versions, IPv4 addresses, dates and dotted numbers failing Luhn or the issuer
    prefix are no card (an IP is still found as an IP, never as a card)."""
    p = plant()
    digits = _digits(p)
    wrong_luhn = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    no_issuer = "1" + digits[1:]
    texts = [
        "release 1.2.3.4 built",
        "python 3.11.10.2024.12.07",
        "on 2024.12.07.1530",
        ".".join(wrong_luhn[i : i + 4] for i in range(0, 16, 4)),
        ".".join(no_issuer[i : i + 4] for i in range(0, 16, 4)),
        "4111111.11111111",  # a decimal, two groups
    ]
    assert [[s.kind for s in protector.detector.find(t)] for t in texts] == [["ip"], [], [], [], [], []]
    assert [s.kind for s in protector.detector.find("peer 10.0.0.1 and 192.168.100.200")] == ["ip", "ip"]


def test_an_internationalised_email_is_protected_and_erased(protector: Protector) -> None:
    """Was a hole (medium): the email pattern took only ASCII letters, so `jörg.müller@example.org`,
    `José@correo.es` or an IDN domain (`ana@exämple.de`) were not found at all and kept in clear. Fixed in
    `_EMAIL`: letters and digits of any script (RFC 6531 / IDN), the TLD letters only; the subject is still the
    lower-cased address, so erasing it as typed in any case reaches every copy."""
    p = plant()
    local = p.email.split("@")[0]
    for address in (f"{local}jörg.müller@example.org", f"José{local}@correo.es", f"{local}@exämple.de"):
        kept = protector.protect(f"write to {address} today")
        assert address not in kept and local not in kept
        assert protector.reveal(kept) == f"write to {address} today"
        subject = protector.parse_subject(address.upper())
        assert subject.value == address.lower()
        assert protector.keys.erase(subject.kind, subject.value) is not None
        assert protector.reveal(kept) == "write to [pii:email:erased] today"


def test_migrate_is_not_fooled_by_a_forged_token(protector: Protector) -> None:
    """Was a hole (high), the same as the forged token above, seen from `swarm privacy migrate`: an old stored
    event whose rationale already read `[pii:card:s…:<digits>]` counted as protected, so the one-time rewrite
    left it in clear (and reported nothing to change). Fixed by the same `Protector._is_token`."""
    p = plant()
    digits = _digits(p)
    old = json.dumps({"kind": "tool_call", "rationale": f"charge [pii:card:s0123456789abcdef:{digits}]", "seq": 3})
    rewritten = protect_stored_event(protector, old)
    assert rewritten is not None
    assert _clear(rewritten, [digits]) == []
    assert json.loads(rewritten)["seq"] == 3
