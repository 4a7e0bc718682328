"""Every matcher reads the text as a reader sees it too (#21): fullwidth and other NFKC look-alike digits and
letters (`＋１ ２０２…`, as CJK text writes numbers) and percent-escapes are found under the plain subject, and
what is encrypted is the text as written; where the two readings differ, neither loses what the other finds."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared_protocol.privacy import TOKEN, PrivacyConfig, Protector, SqliteSubjectKeys

from .plant import plant


@pytest.fixture
def protector(tmp_path: Path) -> Iterator[Protector]:
    config = PrivacyConfig(names=["Ada Lovelace"], patterns={"employee_id": r"EMP-[0-9]{6}"})
    found = Protector(config, SqliteSubjectKeys(tmp_path / "privacy.db"))
    yield found
    found.close()


def fullwidth(text: str) -> str:
    """`text` with each printable ASCII character as its fullwidth form (`+1` -> `＋１`), spaces kept."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def found(protector: Protector, text: str) -> list[tuple[str, str, str]]:
    return [(s.kind, s.subject, text[s.start : s.end]) for s in protector.detector.find(text)]


def test_each_kind_written_fullwidth_is_found_under_its_plain_subject(protector: Protector) -> None:
    p = plant()
    national = p.phone_e164[2:]
    digits = p.card.replace(" ", "")
    plain = [
        ("phone", p.phone_e164, f"{p.phone_e164[:2]} {national[:3]} {national[3:6]} {national[6:]}"),
        ("phone", p.phone_e164, p.phone),
        ("card", digits, p.card),
        ("ssn", "078051120", "078-05-1120"),
        ("iban", "DE89370400440532013000", "DE89 3704 0044 0532 0130 00"),
        ("nino", "QQ123456C", "QQ 12 34 56 C"),
        ("ip", p.ip, p.ip),
        ("ip", "2606:4700::1111", "2606:4700::1111"),
        ("email", p.email.lower(), p.email),
        ("name", "ada lovelace", "Ada Lovelace"),
        ("employee_id", "EMP-123456", "EMP-123456"),
    ]
    for kind, subject, text in plain:
        written = fullwidth(text)
        assert found(protector, f"見てください、{written}。") == [(kind, subject, written)], text
        kept = protector.protect(f"see {written} now")
        assert written not in kept and [m.group(1) for m in TOKEN.finditer(kept)] == [kind]
        assert protector.reveal(kept) == f"see {written} now"
        assert protector.parse_subject(written).value == subject or kind in ("name", "employee_id")


def test_erasing_the_plain_subject_reaches_its_fullwidth_copies(protector: Protector) -> None:
    p = plant()
    national = p.phone_e164[2:]
    texts = [
        f"電話 {fullwidth(p.phone_e164)} まで",
        f"call {fullwidth(f'({national[:3]}) {national[3:6]}-{national[6:]}')} today",
        f"card {fullwidth(p.card)}",
        f"call {p.phone_e164}",
    ]
    kept = [protector.protect(text) for text in texts]
    assert [protector.reveal(k) for k in kept] == texts
    for subject in (p.phone_e164, p.card):
        parsed = protector.parse_subject(subject)
        assert protector.keys.erase(parsed.kind, parsed.value) is not None
    assert [protector.reveal(k) for k in kept] == [
        "電話 [pii:phone:erased] まで",
        "call [pii:phone:erased] today",
        "card [pii:card:erased]",
        "call [pii:phone:erased]",
    ]
    assert protector.protect(texts[0]) == "電話 [pii:phone:erased] まで"  # (tombstoned: no new key)


def test_a_percent_escaped_number_in_a_url_is_found(protector: Protector) -> None:
    p = plant()
    for text in (
        f"GET /lookup?phone={urllib.parse.quote(p.phone_e164, safe='')}&x=1",
        f"GET /lookup?phone={urllib.parse.quote(p.phone, safe='')}",
        f"GET /pay?card={urllib.parse.quote(p.card, safe='')}",
    ):
        ((kind, subject, _),) = found(protector, text)
        assert (kind, subject) in (("phone", p.phone_e164), ("card", p.card.replace(" ", ""))), text
        assert protector.reveal(protector.protect(text)) == text


def test_what_the_reader_view_hides_is_still_found_as_written(protector: Protector) -> None:
    """A character NFKC turns into letters (`№` is `No`, `™` is `TM`) sits against what follows in the reader's
    view, where no pattern starts after a letter: the text as written still shows the number."""
    p = plant()
    digits = p.card.replace(" ", "")
    national = p.phone_e164[2:]
    for mark in ("№", "™", "ⓐ"):
        assert found(protector, f"{mark}{p.card}") == [("card", digits, p.card)], mark
        assert found(protector, f"{mark}078-05-1120") == [("ssn", "078051120", "078-05-1120")], mark
    for mark in ("№", "ｔｅｌ", "％"):  # (the phone matcher refuses a number beside a Latin letter or a `%`)
        assert found(protector, f"{mark}{national}") == [("phone", p.phone_e164, national)], mark


def test_where_both_readings_find_the_same_text_the_plain_subject_wins(protector: Protector) -> None:
    p = plant()
    local, domain = p.email.split("@")
    for text in (f"mailto%3A{p.email}", f"{fullwidth(local)}@{domain}", f"{local}@{domain}%2C"):
        ((kind, subject, _),) = found(protector, text)
        assert (kind, subject) == ("email", p.email.lower()), text


def test_fullwidth_text_with_no_personal_data_is_left_alone(protector: Protector) -> None:
    texts = [
        "２０２６年１２月７日（月）、会議は１４：３０から。",
        fullwidth("4111 1111 1111 1112"),  # (fails Luhn)
        fullwidth("2026-12-07T07:41:42.554519+00:00"),
        fullwidth("v1.2.3 build 2024-01-02 sha 5f3c1a2b9d8e7f6a1234567890123456"),
        "価格：１，２００円（税込）、在庫：３４個。",
        "100%25 done, 50%25 left",
    ]
    assert [found(protector, text) for text in texts] == [[] for _ in texts]
