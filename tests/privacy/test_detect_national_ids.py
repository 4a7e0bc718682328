"""IBANs, UK National Insurance numbers and phone numbers dialled with an international prefix (#21): found when
valid, with a normalised subject; random digits, version strings, hex ids, IP addresses and numbers that fail
their checks are not."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from shared_protocol.privacy import MalformedSubject, MemorySubjectKeys, PrivacyConfig, Protector, SqliteSubjectKeys
from shared_protocol.privacy._detect import iban_ok  # pyright: ignore[reportPrivateUsage]


@pytest.fixture
def protector() -> Protector:
    return Protector(PrivacyConfig(), MemorySubjectKeys())


def kinds(protector: Protector, text: str) -> list[tuple[str, str]]:
    return [(span.kind, span.subject) for span in protector.detector.find(text)]


@pytest.mark.parametrize(
    ("text", "subject"),
    [
        ("DE89 3704 0044 0532 0130 00", "DE89370400440532013000"),
        ("GB82WEST12345698765432", "GB82WEST12345698765432"),
        ("FR14 2004 1010 0505 0001 3M02 606", "FR1420041010050500013M02606"),
        ("NO93 8601 1117 947", "NO9386011117947"),
    ],
)
def test_a_valid_iban_is_found_under_its_normalised_form(protector: Protector, text: str, subject: str) -> None:
    assert kinds(protector, f"pay to {text}, thanks") == [("iban", subject)]
    assert protector.parse_subject(text.lower()).value == subject  # (a human may type it in lower case)


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 01",  # (its mod-97 check fails)
        "DE89370400440532013",  # (too short for Germany)
        "XX89370400440532013000",  # (no such country)
        "de89370400440532013000",  # (lower case: a hex id, never one)
        "DE89 37040 0440 5320 1300 0",  # (grouped other than in fours)
    ],
)
def test_what_fails_an_ibans_checks_is_not_one(protector: Protector, text: str) -> None:
    assert "iban" not in [k for k, _ in kinds(protector, f"ref {text} ok")]


def test_one_in_a_thousand_random_ibans_shaped_strings_pass_by_chance_at_most() -> None:
    rng = random.Random(21)
    passed = sum(
        iban_ok("DE" + "".join(rng.choices("0123456789", k=20))) for _ in range(20_000)
    )  # (two check digits: about 1 in 97 random ones pass, the reason the length and country are checked too)
    assert 100 < passed < 330


@pytest.mark.parametrize(
    ("text", "subject"),
    [("QQ 12 34 56 C", "QQ123456C"), ("AB123456D", "AB123456D"), ("JG 10 37 24 A", "JG103724A")],
)
def test_a_uk_national_insurance_number_is_found(protector: Protector, text: str, subject: str) -> None:
    assert kinds(protector, f"NI number {text}.") == [("nino", subject)]
    assert protector.redact(f"NI {text}") == "NI [pii:nino]"


@pytest.mark.parametrize(
    "text",
    [
        "DA 12 34 56 C",  # (D never first)
        "AO 12 34 56 C",  # (O never second)
        "GB 12 34 56 C",  # (a prefix never allocated)
        "TN 12 34 56 A",
        "AB 12 34 56 E",  # (the suffix is A-D)
        "AB 12 34 5 C",
        "ab123456c",
    ],
)
def test_what_breaks_a_ninos_letter_rules_is_not_one(protector: Protector, text: str) -> None:
    assert kinds(protector, f"ref {text} ok") == []


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("call 0044 20 7946 0958 today", "US"),
        ("call 011 44 20 7946 0958 today", "GB"),
        ("call 0044 20 7946 0958 today", "GB"),
        ("call 00442079460958 today", "DE"),
    ],
)
def test_an_international_dialling_prefix_is_read_as_plus(text: str, region: str) -> None:
    protector = Protector(PrivacyConfig(default_region=region), MemorySubjectKeys())
    assert kinds(protector, text) == [("phone", "+442079460958")]
    assert protector.redact(text) == "call [pii:phone] today"  # (the prefix with it)
    assert protector.parse_subject("0044 20 7946 0958").value == "+442079460958"


@pytest.mark.parametrize(
    ("text", "e164"),
    [
        ("+1 800 781 0034", "+18007810034"),
        ("800 781 0034", "+18007810034"),
        ("(800) 781 0034", "+18007810034"),
        ("+1 201 338 0114", "+12013380114"),
        ("201 338 011 4", "+12013380114"),
    ],
)
def test_a_group_of_a_number_that_starts_as_a_prefix_does_is_no_prefix(
    protector: Protector, text: str, e164: str
) -> None:
    """Was a hole (medium): a number written in groups whose last group starts `00` or `011` (one US number in a
    hundred or so, written with spaces) had that group read as an international prefix (`0034` as `+34`), so the
    number was not found and was kept in clear. The text is read as written too; the longer finding wins."""
    assert kinds(protector, f"call {text} today") == [("phone", e164)]
    assert kinds(protector, f"call {text} or 0044 20 7946 0958") == [("phone", e164), ("phone", "+442079460958")]


@pytest.mark.parametrize(
    "text",
    [
        "build 1.0044.2 of 2026",
        "version 0.0.44-rc1",
        "commit 0044a1f9e2b7c3d4e5f60718293a4b5c6d7e8f90",
        "id 0x00442079460958",
        "uuid 00442079-4609-58ab-cdef-0123456789ab",
        "host 10.0.44.20",
        "at 00:44:20.794",
        "count 0012",
        "sha256 deadbeef00442079460958deadbeef00442079460958deadbeef004420794609",
    ],
)
def test_random_digits_versions_hex_ids_and_ips_are_not_flagged(protector: Protector, text: str) -> None:
    assert [k for k, _ in kinds(protector, text) if k != "ip"] == [], kinds(protector, text)


def test_random_digit_strings_are_not_taken_for_ibans_or_ninos(protector: Protector) -> None:
    rng = random.Random(13616)
    for _ in range(500):
        digits = "".join(rng.choices("0123456789", k=rng.randrange(8, 30)))
        assert not {"iban", "nino"} & {k for k, _ in kinds(protector, f"n {digits} n")}, digits


def test_an_iban_is_erased_by_its_subject(tmp_path: Path) -> None:
    protector = Protector(PrivacyConfig(), SqliteSubjectKeys(tmp_path / "privacy.db"))
    try:
        sealed = protector.protect("refund to DE89 3704 0044 0532 0130 00")
        assert "3704" not in sealed and protector.reveal(sealed) == "refund to DE89 3704 0044 0532 0130 00"
        subject = protector.parse_subject("de89370400440532013000")
        assert protector.keys.erase(subject.kind, subject.value) is not None
        assert protector.reveal(sealed) == "refund to [pii:iban:erased]"
        with pytest.raises(MalformedSubject, match="IBAN"):
            protector.parse_subject("DE89 3704 0044 0532 0130 01")
    finally:
        protector.close()
