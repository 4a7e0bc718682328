"""The detector, the token format and the key store, in-process: what is found, what is kept, what erasure leaves."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shared_protocol.config import ConfigInvalid, parse_config
from shared_protocol.privacy import (
    TOKEN,
    Detector,
    MalformedSubject,
    MemorySubjectKeys,
    PrivacyConfig,
    Protector,
    SqliteSubjectKeys,
    luhn_ok,
)

from .plant import encodings, leaks, plant


def _kinds(text: str, config: PrivacyConfig | None = None) -> list[tuple[str, str]]:
    return [(s.kind, s.subject) for s in Detector(config or PrivacyConfig()).find(text)]


def test_each_kind_is_found_with_its_normalised_subject() -> None:
    p = plant()
    found = _kinds(p.text())
    assert ("email", p.email.lower()) in found
    assert ("phone", p.phone_e164) in found
    assert ("card", p.card.replace(" ", "")) in found
    assert ("ip", p.ip) in found
    assert _kinds("ssn 123-45-6789 and v6 2606:4700::1111") == [("ssn", "123456789"), ("ip", "2606:4700::1111")]


def test_what_is_not_personal_data_is_left_alone() -> None:
    text = (
        "sha256 5f3c1a2b9d8e7f6a1234567890123456 act_17e3f2b4c5d6e7f8 127.0.0.1:8000 ::1 0.0.0.0 12:30:45 "
        "4111 1111 1111 1112 000-12-3456 v1.2.3 build 2024-01-02"
    )
    assert _kinds(text) == []


def test_configured_names_and_patterns_are_found() -> None:
    config = PrivacyConfig(names=["Ada Lovelace"], patterns={"employee_id": r"EMP-[0-9]{6}"})
    assert _kinds("ada lovelace has EMP-123456", config) == [("name", "ada lovelace"), ("employee_id", "EMP-123456")]


def test_protect_encrypts_each_span_and_reveal_gives_back_the_text() -> None:
    p = plant()
    protector = Protector(PrivacyConfig(), MemorySubjectKeys())
    kept = protector.protect(p.text())
    assert all(value not in kept for value in p.values())
    assert [m.group(1) for m in TOKEN.finditer(kept)] == ["email", "phone", "card", "ip"]
    assert protector.protect(kept) == kept  # a token is never looked into again
    assert protector.protect(p.text()) == kept  # deterministic: a retried request compares equal
    assert protector.reveal(kept) == p.text()
    assert protector.redact(p.text()) == "write to [pii:email] or call [pii:phone]; card [pii:card], from [pii:ip]"


def test_a_repeated_text_is_protected_alike_each_time_and_a_token_typed_in_clean_text_is_read_again() -> None:
    p = plant()
    keys = MemorySubjectKeys()
    protector = Protector(PrivacyConfig(), keys)
    clean = "a rationale with no personal data in it"
    assert [protector.protect(clean) for _ in range(3)] == [clean] * 3  # (scanned once: remembered as clean)
    kept = protector.protect(p.text())
    assert [protector.protect(p.text()) for _ in range(2)] == [kept] * 2  # what holds data is never remembered
    # A token in otherwise clean text is read against the keys each time: erased, its text reads differently.
    token = next(TOKEN.finditer(kept)).group()
    beside = f"see {token} again"
    assert protector.redact(beside) == "see [pii:email] again"
    subject = protector.parse_subject(p.email)
    assert keys.erase(subject.kind, subject.value) is not None
    assert "[pii:email:erased]" in protector.reveal(beside)


def test_erasing_a_subject_makes_only_their_tokens_unreadable() -> None:
    p = plant()
    keys = MemorySubjectKeys()
    protector = Protector(PrivacyConfig(), keys)
    kept = protector.protect(p.text())
    subject = protector.parse_subject(p.email.upper())
    assert keys.erase(subject.kind, subject.value) is not None
    revealed = protector.reveal(kept)
    assert "[pii:email:erased]" in revealed and p.email not in revealed
    assert p.phone in revealed
    assert keys.erase(subject.kind, subject.value) is None  # nothing held any more


def test_subjects_are_normalised_and_nonsense_is_refused() -> None:
    protector = Protector(PrivacyConfig(), MemorySubjectKeys())
    p = plant()
    assert protector.parse_subject(p.phone_e164).value == p.phone_e164
    assert protector.parse_subject(p.phone).value == p.phone_e164
    assert protector.parse_subject(p.card.replace(" ", "")).kind == "card"
    for bad in ("", "  ", "nobody", "4111 1111 1111 1112", "not@an", "999.1.1.1"):
        with pytest.raises(MalformedSubject):
            protector.parse_subject(bad)


def test_bad_privacy_config_is_refused_naming_the_key() -> None:
    for section, key in (
        ({"patterns": {"email": "x"}}, "privacy.patterns"),
        ({"patterns": {"emp": "("}}, "privacy.patterns"),
        ({"patterns": {"emp": "x*"}}, "privacy.patterns"),
        ({"default_region": "XX"}, "privacy.default_region"),
        ({"names": ["a"]}, "privacy.names"),
        ({"redact": True}, "privacy.redact"),
    ):
        with pytest.raises(ConfigInvalid, match=key.replace(".", r"\.")):
            parse_config({"privacy": section})


def test_an_erased_key_is_nowhere_in_the_key_store_files(tmp_path: Path) -> None:
    path = tmp_path / "privacy.db"
    keys = SqliteSubjectKeys(path)
    protector = Protector(PrivacyConfig(), keys)
    p = plant()
    protector.protect(p.text())
    subject = protector.parse_subject(p.email)
    sid = keys.find(subject.kind, subject.value)
    assert sid is not None
    key = keys.key_by_id(sid)
    assert key is not None
    reader = sqlite3.connect(path)  # another connection, as another process would hold
    assert reader.execute("SELECT count(*) FROM subject_keys").fetchone() == (4,)
    reader.close()
    assert keys.erase(subject.kind, subject.value) == sid
    files = [f for f in tmp_path.iterdir() if f.is_file()]
    assert all(key not in f.read_bytes() for f in files), files
    assert keys.key_by_id(sid) is None
    assert leaks([tmp_path], p.values()) == []  # (the subject is kept only as a keyed hash)
    keys.close()
    reopened = SqliteSubjectKeys(path)
    assert reopened.find(subject.kind, subject.value) is None
    assert reopened.find("phone", p.phone_e164) is not None
    reopened.close()


def test_the_leak_search_finds_a_value_in_each_encoding(tmp_path: Path) -> None:
    p = plant()
    for n, form in enumerate(sorted(encodings(p.email))):
        (tmp_path / f"f{n}").write_bytes(b"prefix " + form + b" suffix")
    found = leaks([tmp_path], [p.email])
    assert len({line.split(":")[0] for line in found}) == len(encodings(p.email))


def test_a_long_number_that_merely_passes_luhn_is_not_a_card() -> None:
    stamps = [str(1_796_586_018_458_371_000 + n) for n in range(100)]
    assert any(luhn_ok(s) for s in stamps)
    assert _kinds(" ".join(stamps)) == []
    assert _kinds("amex 3782 822463 10005") == [("card", "378282246310005")]


def test_a_content_digest_is_not_scanned_for_phone_numbers_but_text_beside_one_is() -> None:
    import hashlib

    digests = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(300)]
    assert all(_kinds(digest) == [] for digest in digests)  # (every write's event holds one)
    digest = next(d for d in digests if any(c.isdigit() for c in d[:10]))
    p = plant()
    assert _kinds(f"{digest} {p.phone}") == [("phone", p.phone_e164)]
    assert _kinds(f"{digest}\n{p.phone}") == [("phone", p.phone_e164)]


def test_a_timestamp_is_no_phone_number_but_a_number_beside_one_is() -> None:
    # Region DE read these as phone numbers (`+495132097`), and every kill's refusal holds one (when it was heard).
    de = PrivacyConfig(default_region="DE")
    stamps = [
        "1999-12-30T02:46:05.132097+00:00",
        "2076-11-12T03:50:16.942808+00:00",
        "2025-06-09T11:49:51.069836Z",
        "2025-06-09 11:49:51",
    ]
    assert [_kinds(stamp, de) for stamp in stamps] == [[] for _ in stamps]
    assert _kinds("call +49 30 1234567 (2026-12-07T07:38:13+00:00)", de) == [("phone", "+49301234567")]
