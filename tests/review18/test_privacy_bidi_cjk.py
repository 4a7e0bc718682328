# pyright: strict
"""Review 18 of the privacy detector's right-to-left override reading (`_bidi.reading_order`) and of the rule for
an address glued to a word of a script written without spaces. Real detector, real key store."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared_protocol.privacy import PrivacyConfig, Protector, SqliteSubjectKeys
from tests.privacy.plant import plant


@pytest.fixture
def protector(tmp_path: Path) -> Protector:
    return Protector(PrivacyConfig(), SqliteSubjectKeys(tmp_path / "keys.sqlite"))


def test_an_address_followed_by_a_glued_word_has_its_own_subject(protector: Protector) -> None:
    """Was a hole (medium), fixed: the fix for `邮箱alice@example.org` cut the glued word before the address only.
    After it, the top-level domain's pattern (letters of any script, for `例子.广告`) ran on into the next word:
    `alice@example.org发送` ("send"), `メールはalice@example.orgです` (Japanese's copula), `alice@example.org로`
    (a Korean particle, written glued to the word it follows) were protected under the subjects
    `alice@example.org发送`, `...orgです`, `...org로`, so `erase alice@example.org` did not reach those copies.
    Fix (`_detect._TLD_GLUED_WORD`): a top-level domain in Latin letters ends at the first letter of another script
    (no top-level domain mixes scripts); one all in another script (`例子.广告`) is as it was."""
    p = plant()
    email = p.email.lower()
    for text, subject, clear in (
        (f"{p.email}发送", email, "发送"),
        (f"メールは{p.email}です", email, "です"),
        (f"{p.email}로 보내세요", email, "로"),
        (f"{p.email}에게", email, "에게"),
        (f"{p.email}กรุณา", email, "ก"),
        ("写信给用户@例子.广告", "写信给用户@例子.广告", ""),
        ("user@example.中国", "user@example.中国", ""),
    ):
        assert [s.subject for s in protector.detector.find(text) if s.kind == "email"] == [subject], text
        kept = protector.protect(text)
        assert clear in kept and protector.reveal(kept) == text, kept
    kept = protector.protect(f"请发到{p.email}谢谢")
    protector.keys.erase("email", protector.parse_subject(p.email).value)
    assert protector.reveal(kept) == "请发到[pii:email:erased]谢谢"


def test_other_bidi_codes_hide_no_address_or_number(protector: Protector) -> None:
    """Held: an override inside an isolate (LRI, RLI, FSI) or inside an embedding (RLE), an override opened twice,
    a zero-width space or a fullwidth `＠` inside the reversed text, and a number or card under an override are
    each read as shown; an isolate's PDI that closes the override first leaves the text read as stored (where it
    shows no address: nothing to find)."""
    p = plant()
    reversed_email = p.email[::-1]
    national = p.phone_e164[2:]
    for text, subject in (
        (f"x \u2066\u202e{reversed_email}\u202c\u2069 y", p.email.lower()),
        (f"x \u2067\u202e{reversed_email}\u2069", p.email.lower()),
        (f"\u2068\u202e{reversed_email}", p.email.lower()),
        (f"\u202b\u202e{reversed_email}\u202c\u202c", p.email.lower()),
        (f"\u202e\u202e{reversed_email}", p.email.lower()),
        (f"\ufeff\u202e{reversed_email}\r\n", p.email.lower()),
        (f"\u202e{reversed_email.replace('@', '＠')}", p.email.lower()),
        (f"\u202e{reversed_email.replace('@', '@' + chr(0x200B))}", p.email.lower()),
        (f"call \u202e{national[::-1]}\u202c now", p.phone_e164),
        ("card \u202e1111 1111 1111 1114\u202c", "4111111111111111"),
    ):
        assert [s.subject for s in protector.detector.find(text)] == [subject], repr(text)
        kept = protector.protect(text)
        assert protector.reveal(kept) == text and "[pii:" in kept, repr(kept)
    assert protector.detector.find(f"\u2067\u202e\u2069{reversed_email}") == []


def test_bidi_codes_and_glued_words_keep_find_linear() -> None:
    """Held: texts built to make the override reading or the glued-word rule slow (overrides 60 deep alternating
    with their ends, isolates closing 60 levels at once, 125 levels then an override and PDI per character, an
    address local part alternating CJK and Latin, digits under one override) take time in proportion to their
    size: 8x the text, under 20x the CPU time. Measured, 32 K characters: 0.04-0.18 s each, but digits under
    an override 1.15 s against 0.27 s for the same digits without it (read three times: as written, as seen, as
    shown), linear."""
    from shared_protocol.privacy import Detector

    detector = Detector(PrivacyConfig())
    shapes: dict[str, Callable[[int], str]] = {
        "overrides": lambda n: ("\u202e" * 60 + "a" + "\u202c" * 60 + "b") * (n // 122),
        "isolates": lambda n: ("\u2067" * 60 + "\u202ea" + "\u2069") * (n // 62),
        "deep": lambda n: "\u2067" * 125 + "\u202ex\u2069" * (n // 3),
        "glued": lambda n: ("邮a" * 31 + "@ex.org ") * (n // 70),
        "digits": lambda n: "\u202e" + "1 " * (n // 2),
    }

    def cpu(text: str, runs: int) -> float:
        best = float("inf")
        for _ in range(runs):
            started = time.process_time()
            detector.find(text)
            best = min(best, time.process_time() - started)
        return best

    for name, make in shapes.items():
        small, large = cpu(make(2_000), 3), cpu(make(16_000), 2)
        assert large < 20 * max(small, 0.01), (name, small, large)
