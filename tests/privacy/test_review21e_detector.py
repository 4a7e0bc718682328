"""Adversarial review of #21 (the detector, in-process with a real key store file): personal data of kinds the
issue names ("national id patterns") that the built-in detector does not know."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from shared_protocol.privacy import PrivacyConfig, Protector, SqliteSubjectKeys


@pytest.fixture
def protector(tmp_path: Path) -> Generator[Protector]:
    found = Protector(PrivacyConfig(), SqliteSubjectKeys(tmp_path / "privacy.db"))
    yield found
    found.close()


def test_national_ids_and_bank_accounts_are_found(protector: Protector) -> None:
    """Was a hole (low): #21 names "national id patterns"; the detector knows one, the US SSN written with dashes. A UK
    National Insurance number (`QQ 12 34 56 C`), a German IBAN (`DE89 3704 0044 0532 0130 00`, mod-97 checked, as a
    card is Luhn-checked) and a phone number in the international `00` form outside the default region
    (`0044 20 7946 0958` with `default_region = "US"`) are kept in clear in every record. The README's detector
    table says which kinds are found, and `[privacy] patterns` can add a regex (unvalidated). Fixed: validated
    patterns (IBAN with its country's length and mod-97 check, UK NINO with its prefix rules), and `00` / `011`
    read as an international prefix (`+`) before `phonenumbers` is asked (`test_detect_national_ids.py`)."""
    texts = ["NI number QQ 12 34 56 C", "pay to DE89 3704 0044 0532 0130 00", "call 0044 20 7946 0958 today"]
    kept = [text for text in texts if protector.redact(text) == text]
    assert kept == [], f"kept in clear: {kept}"


def test_the_kinds_the_readme_lists_are_found_in_their_common_forms(protector: Protector) -> None:
    """Withstood: an SSN with dashes, an American Express card in 4-6-5 groups, a phone with its `+` country code
    and a US one written bare, each found (redacted where a record must not keep it)."""
    texts = ["SSN 078-05-1120", "amex 3782 822463 10005", "tel: +49 30 901820", "call 2025550147"]
    assert [protector.redact(text) for text in texts] == [
        "SSN [pii:ssn]",
        "amex [pii:card]",
        "tel: [pii:phone]",
        "call [pii:phone]",
    ]
