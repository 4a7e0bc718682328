"""Finding personal data in text, offline: validated patterns, `phonenumbers`, and `[privacy]`'s own.

Each span found names its kind and its data subject, a normalised identifier: the lower-cased email, the
E.164 phone number, the card's digits, the IP address in its canonical form, the SSN's digits, the IBAN and the UK
National Insurance number upper-case without spaces, the name lower-cased, a configured pattern's match as it
is. `parse_subject` reads what a human types into `swarm privacy erase|export` the same way.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property

from .._base import ProtocolModel
from ._bidi import reading_order
from ._config import PrivacyConfig
from .exceptions import MalformedSubject


class _Lazy:
    """A regular expression compiled on its first use: compiling this module's took ~40 ms of CPU at import, in
    every process that imports `shared_protocol` (its config validates privacy settings), most of which never scan."""

    __slots__ = ("_compiled", "_source")

    def __init__(self, source: str) -> None:
        self._source = source
        self._compiled: re.Pattern[str] | None = None

    @property
    def rx(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self._source)  # (two threads may both compile: either result serves)
        return self._compiled


_SPACELESS = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u2e80-\u2fdf\u3040-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\uff66-\uff9f\U00020000-\U0003134f"
)
"""Scripts written without spaces between words (Thai, Lao, Myanmar, Khmer, Chinese, Japanese): a number glued to
a word of theirs (`卡号4111…`, `IP地址8.8.8.8`) is not inside a word, as it would be after a Latin letter."""
_GLUED = rf"[^\W{_SPACELESS}]"
"""A word character a number or name is glued to (inside an identifier, `id4111…`): any script's letter or digit
but the spaceless scripts'."""

_ADDRESS = (
    r"[.+-]*(\w(?:[\w.%+-]{0,62}[\w%+-])?@"
    r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63})(?![\w-])"
)
_EMAIL = _Lazy(rf"(?<![\w.+-]){_ADDRESS}")
"""Internationalised too (RFC 6531/IDN: `jörg@exämple.de`): letters and digits of any script. The address is group
1: dots, `+` or `-` before it are passed over (`...alice@example.org`, `-bob@…` on a command line), a local part may
start with `_` (`_alice@example.org` is an address)."""
_ADDRESS_HERE = _Lazy(_ADDRESS)
"""An address starting where it is matched (`_run_on_address`)."""
_LOCAL_LIMIT = 64
_RUN_ON_LOCAL = _Lazy(r"(?<![\w.%+-])[\w.%+-]{65,}+(?=@)")
"""A run of what a local part is made of, too long to be one (RFC 5321 allows 64), that ends at an `@`: a name
run on into an address (`<64 hex>-alice@example.org`, `quarterly-review-...-contact-alice@…`), which `_EMAIL`
cannot start inside (an address is not part of a word). Possessive: a megabyte of it is read once."""
_OVERLONG_ADDRESS = _Lazy(_ADDRESS.replace(r"\w(?:[\w.%+-]{0,62}[\w%+-])?@", r"\w(?:[\w.%+-]*[\w%+-])?@"))
"""`_ADDRESS` with a local part of any length (matched at a run's start: its greedy local part runs to the `@`)."""
_DIGEST = _Lazy(r"(?=[a-fA-F]*[0-9])(?=[0-9]*[a-fA-F])[0-9A-Fa-f]+")
"""Hex digits, letters and digits both (a digest; `aaaa…` is a word)."""
_RUN_ON_SEPARATORS = ("-", "_", ".+")
"""Where a name run on into an address is cut, tried in turn until what follows fits a local part: a hyphen first
(the words of a file name, a digest joined on), then `_`, then `.` or `+` (which addresses hold more often)."""
_LOCAL_NOT_SPACELESS = rf"(?:[^\W{_SPACELESS}]|[.%+-])*"
_GLUED_TO_ADDRESS = _Lazy(rf".*[{_SPACELESS}][.+-]*(?={_LOCAL_NOT_SPACELESS}[A-Za-z]{_LOCAL_NOT_SPACELESS}@)")
"""What a local part holds before the address proper: a word of a script written without spaces, up to Latin letters
that run to the `@` (`邮箱alice@example.org`, "mailbox alice@…", is alice's address after a word, as `卡号4111…` is a
card number after one). A local part all in such a script (`用户@例子.广告`), or that ends in one, is one address."""
_TLD_GLUED_WORD = re.compile(r"\.[A-Za-z]{2,63}(?=[^\x00-\x7f]+$)")
"""A top-level domain in Latin letters that a word of another script runs on from (`alice@example.org发送`, "send";
`…orgです`; a Korean particle, `…org로`): the address ends with the Latin letters (no top-level domain mixes
scripts; one all in another script, `例子.广告`, is left whole)."""
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = _Lazy(rf"(?<!{_GLUED}|\.){_OCTET}(?:\.{_OCTET}){{3}}(?!{_GLUED}|\.[0-9])")
_IPV6_CANDIDATE = _Lazy(
    rf"(?<!{_GLUED}|[:.])[0-9A-Fa-f]{{0,4}}(?::[0-9A-Fa-f]{{0,4}}){{2,7}}(?:(?<=:)[0-9.]{{7,15}})?(?!{_GLUED}|[:.])"
)
_CARD = _Lazy(rf"(?<!{_GLUED})(?<![0-9]-)[0-9](?:[ -]?[0-9]){{12,18}}(?!{_GLUED}|-[0-9])")
"""A hyphen beside a card ends a word as a space does (`invoice-4111…`, `4111…-paid`), but not one between digits
(`12-4111-…`: a longer number's groups)."""
_HEX_WORD = _Lazy(rf"(?<!{_GLUED})[0-9A-Fa-f]{{14,}}+(?!{_GLUED})")
"""A word all of hex digits (`_hex_glued_cards`): a digest or an encoded id a card number may be run on from
(`abcdef4111…`, `<sha256><card>`). Possessive: each word is read once."""
_DIGEST_LENGTHS = (32, 40, 64, 128)
"""Hex digests' lengths (MD5, SHA-1, SHA-256, SHA-512): where a digest ends if a card's digits run on from it."""
_CARD_LENGTHS = range(13, 20)
_DOTTED_CARD = _Lazy(rf"(?<!{_GLUED}|[.-])[0-9]{{2,6}}(?:\.[0-9]{{2,6}}){{2,5}}(?!{_GLUED}|-|\.[0-9])")
"""A card printed with dots (`4111.1111.1111.1111`): groups of 2-6 digits, so a version (`1.2.3.4`), an IPv4
address (at most 12 digits) or a date is never one; the length, issuer prefix and Luhn checks still apply."""
_CARD_PREFIX = _Lazy(r"4|5[1-5]|2[2-7]|3[4-9]|30[0-5]|6[0-9]")
"""Issuer prefixes of the card networks (Visa, Mastercard, Amex, Diners, JCB, Discover, UnionPay, ...): a long
number that merely passes Luhn (a nanosecond timestamp, one in ten) is not a card."""
_SHADOWED = _Lazy(r"%[2-7][0-9A-Fa-f]|[^\x00-\x7f]+")
"""What `_Shadow` rewrites: a percent-escape of a printable ASCII character, and non-ASCII characters."""
_INVISIBLE = _Lazy(
    r"[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164"
    r"\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
"""Unicode's default-ignorable code points (`Default_Ignorable_Code_Point`, Unicode 15): the soft hyphen, zero-width
space and joiners, word joiner, BOM, bidi marks and controls, variation selectors, Hangul fillers, tags. Rendered as
nothing, so `alice@ex\u00adample.org` reads as the plain address; `_Shadow` drops them. (Format characters that
are seen, `؀` ARABIC NUMBER SIGN and the like, stay.)"""
_PHONE_EDGE = _Lazy(r"[A-Za-z%]")
"""What the phone matcher refuses beside a number (a Latin letter, `%`), in ASCII (`_Shadow.phone_edges`)."""
_SSN = _Lazy(rf"(?<!{_GLUED}|-)(?!000|666|9[0-9]{{2}})[0-9]{{3}}-(?!00)[0-9]{{2}}-(?!0000)[0-9]{{4}}(?!{_GLUED}|-)")
_IBAN = _Lazy(
    rf"(?<!{_GLUED}|-)[A-Z]{{2}}[0-9]{{2}}"
    rf"(?:[A-Z0-9]{{11,30}}|(?: [A-Z0-9]{{4}}){{2,7}}(?: [A-Z0-9]{{1,4}})?)(?!{_GLUED}|-)"
)
"""An IBAN (ISO 13616) as printed: country, check digits, then its account number run together or in groups of four
separated by single spaces; upper-case (a lower-case hex id is never one). Then its length and mod-97 are checked."""
_IBAN_LENGTHS = {
    **dict.fromkeys(("NO",), 15),
    **dict.fromkeys(("BE",), 16),
    **dict.fromkeys(("DK", "FI", "FK", "FO", "GL", "NL", "SD"), 18),
    **dict.fromkeys(("MK", "SI"), 19),
    **dict.fromkeys(("AT", "BA", "EE", "KZ", "LT", "LU", "MN", "XK"), 20),
    **dict.fromkeys(("CH", "HR", "LI", "LV"), 21),
    **dict.fromkeys(("BG", "BH", "CR", "DE", "GB", "GE", "IE", "ME", "RS", "VA"), 22),
    **dict.fromkeys(("AE", "GI", "IL", "IQ", "OM", "SO", "TL"), 23),
    **dict.fromkeys(("AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG"), 24),
    **dict.fromkeys(("LY", "PT", "ST"), 25),
    **dict.fromkeys(("IS", "TR"), 26),
    **dict.fromkeys(("BI", "DJ", "FR", "GR", "IT", "MC", "MR", "SM"), 27),
    **dict.fromkeys(("AL", "AZ", "BY", "CY", "DO", "GT", "HU", "LB", "NI", "PL", "SV"), 28),
    **dict.fromkeys(("BR", "EG", "PS", "QA", "UA"), 29),
    **dict.fromkeys(("JO", "KW", "MU", "YE"), 30),
    **dict.fromkeys(("MT", "SC"), 31),
    **dict.fromkeys(("LC",), 32),
    **dict.fromkeys(("RU",), 33),
}
"""Each IBAN country's length (the ISO 13616 registry): a string of the right shape in a country not listed, or of
another length, is no IBAN."""
_NINO = _Lazy(rf"(?<!{_GLUED}|-)([A-Z]{{2}}) ?([0-9]{{2}}) ?([0-9]{{2}}) ?([0-9]{{2}}) ?([A-D])(?!{_GLUED}|-)")
"""A UK National Insurance number (`AB 12 34 56 C`, spaced or not), then its prefix's letter rules."""
_NINO_NEVER_FIRST = frozenset("DFIQUV")
_NINO_NEVER_SECOND = frozenset("DFIOQUV")
_NINO_NOT_ALLOCATED = frozenset(("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"))
_NINO_SPECIMEN = "QQ"
"""HMRC's specimen prefix (`QQ 12 34 56 C`): never allocated, but what a form is filled in with; found too."""
_INTERNATIONAL_PREFIX = _Lazy(rf"(?<!{_GLUED}|[.+-])(?:00|011[ -]?)(?=[1-9])")
"""An international dialling prefix (`00` as most of the world dials, `011` as North America does) where a `+`
may stand: read as `+` before `phonenumbers` is asked, whatever `default_region` is."""
_DIGITS_FOR_PHONE = _Lazy(r"[0-9](?:[^0-9\n]{0,3}[0-9]){6}")
_ANY_DIGIT = _Lazy(r"\d")
_HEX_DIGEST = _Lazy(r"(?=[0-9]*[a-f])[0-9a-f]{40,128}")
"""A digest (every event of a write holds its content's sha256): no phone number inside a word, and the phone
matcher's slowest input (it weighs a dozen candidates in each)."""
_TIMESTAMP = _Lazy(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?"
    r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)
"""A date and time, ISO 8601 (`2026-12-07T07:41:42.554519+00:00`: every event stamps when its body heard a kill):
no phone number, though the matcher weighs it (about 0.7 ms) and, in some regions, takes its fraction of a
second for one (`.132097` in region DE: `+495132097`)."""


def compile_patterns() -> None:
    """Compile every pattern of this module now (each is compiled on first use otherwise): for a process that forks
    workers which each scan once, as the warm hook server does, so that no child compiles them again (~35 ms)."""
    for value in list(globals().values()):
        if isinstance(value, _Lazy):
            value.rx  # noqa: B018  (the property compiles and keeps it)


class Subject(ProtocolModel):
    """A data subject: what their data is encrypted under."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    kind: str
    subject: str


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """`iban` (upper-case, no spaces) has its country's length and passes the ISO 7064 mod-97 check."""
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in moved)) % 97 == 1


def nino_ok(prefix: str) -> bool:
    """A UK National Insurance number's two-letter prefix is one HMRC allocates (or its specimen, `QQ`)."""
    if prefix == _NINO_SPECIMEN:
        return True
    return (
        prefix[0] not in _NINO_NEVER_FIRST and prefix[1] not in _NINO_NEVER_SECOND and prefix not in _NINO_NOT_ALLOCATED
    )


def _card_number(digits: str) -> bool:
    return _CARD_PREFIX.rx.match(digits) is not None and luhn_ok(digits)


def _email(text: str, m: re.Match[str]) -> Span:
    """The address `m` (an `_ADDRESS` match) found in `text`, without a glued word either side of it."""
    glued = _GLUED_TO_ADDRESS.rx.match(text, m.start(1), m.end(1))
    start = m.start(1) if glued is None else glued.end()
    tld = _TLD_GLUED_WORD.search(text, m.start(1), m.end(1))
    end = m.end(1) if tld is None else tld.end()
    return Span(start, end, "email", text[start:end].lower())


def _run_on_address(text: str, start: int, at: int) -> re.Match[str] | None:
    """The address at the end of `text[start:at]`, a run too long to be one local part, and the `@` at `at`. The run
    is cut at its last separator that leaves a local part short enough (`_RUN_ON_SEPARATORS`, a kind at a time),
    or after a hex digest it starts with there (`<sha256>alice@…`): the subject is then the address a person would
    name (`alice@example.org`, not `…-contact-alice@example.org`). Else the whole run is taken as the local part: a
    subject nobody would name, but the text is not kept in clear."""
    run = start
    for separators in ("", *_RUN_ON_SEPARATORS):
        if separators:
            cut = max(text.rfind(separator, start, at) for separator in separators)
            if cut < 0:
                continue
            start = cut + 1
        if at - start <= _LOCAL_LIMIT:
            if (m := _ADDRESS_HERE.rx.match(text, start)) is not None:
                return m
            break
        for length in reversed(_DIGEST_LENGTHS):
            if 0 < at - start - length <= _LOCAL_LIMIT and _DIGEST.rx.fullmatch(text, start, start + length):
                after = start + length + (text[start + length] == "_")  # (`<sha256>_alice@…` is alice's)
                if (m := _ADDRESS_HERE.rx.match(text, after)) is not None:
                    return m
    return _OVERLONG_ADDRESS.rx.match(text, run)


def _hex_glued_cards(text: str) -> list[Span]:
    """Cards whose digits end a word of hex digits (`_HEX_WORD`): the word's last 13-19 digits after a hex letter
    (`abcdef4111…`), or the digits after a digest's length (`<sha256><card>`: the digest may end in digits). A
    word of other letters before a number (`id4111…`) is an identifier's, and no card."""
    spans: list[Span] = []
    for m in _HEX_WORD.rx.finditer(text):
        word = m.group()
        digits_at = len(word.rstrip("0123456789"))
        if digits_at == 0:
            continue  # (all digits: `_CARD` reads those)
        starts = [digits_at] if len(word) - digits_at in _CARD_LENGTHS else []
        starts += [d for d in _DIGEST_LENGTHS if digits_at < d and len(word) - d in _CARD_LENGTHS]
        for at in starts:
            if _card_number(word[at:]):
                spans.append(Span(m.start() + at, m.end(), "card", word[at:]))
                break
    return spans


def _public_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (address.is_loopback or address.is_unspecified or address.is_multicast)


class Detector:
    """The detector for one `[privacy]` section."""

    def __init__(self, config: PrivacyConfig) -> None:
        self.config = config

    @cached_property
    def _names(self) -> re.Pattern[str] | None:
        if not self.config.names:
            return None
        alternatives = "|".join(re.escape(n.strip()) for n in sorted(self.config.names, key=len, reverse=True))
        return re.compile(rf"(?<!{_GLUED})(?:{alternatives})(?!{_GLUED})", re.IGNORECASE)

    @cached_property
    def _patterns(self) -> list[tuple[str, re.Pattern[str]]]:
        return [(kind, re.compile(pattern)) for kind, pattern in self.config.patterns.items()]

    def find(self, text: str) -> list[Span]:
        """The spans of personal data in `text`, in order, none overlapping (the longer one wins).

        Text that a reader sees otherwise than it is written (percent-escapes, fullwidth or other NFKC look-alikes:
        `＋１ ２０２…`, `alice＠example.org`) is read twice: as written, and as the reader sees it (`_Shadow`), whose
        spans are mapped back onto the text as written, so what is protected is the text itself and the subject is
        the normalised one (`_reconcile` says which reading wins where they differ). Text with a right-to-left
        override is read in the order it is shown too (`_bidi.reading_order`), the longer span winning (the one shown
        of two as long)."""
        shadow = _Shadow(text) if "%" in text or not text.isascii() else None
        if shadow is None or shadow.text == text:
            found = _disjoint(self._find(text))
        else:
            read = [Span(*shadow.original(s.start, s.end), s.kind, s.subject) for s in self._find(shadow.text)]
            # (the phone matcher, by far the slowest, reads the text as written only where the view may have hidden
            # a number from it: CJK text's fullwidth `：`, `（` beside a number cost it nothing twice)
            found = _reconcile(read, self._find(text, phones=shadow.phone_edges), shadow)
        order = reading_order(text) if shadow is not None else None
        if order is None:
            return found
        # A right-to-left override shows what follows it reversed (`\u202egro.elpmaxe@ecila` is seen as alice's
        # address): the text is read a third time, in the order it is shown, each span mapped back to the characters
        # it was read from (all between the first and the last of them, should an override split it).
        shown = [
            Span(min(order[s.start : s.end]), max(order[s.start : s.end]) + 1, s.kind, s.subject)
            for s in self.find("".join(text[at] for at in order))
        ]
        return _disjoint([*shown, *found])  # (of two as long, the one shown: what a reader knows the subject by)

    def _find(self, text: str, *, phones: bool = True) -> list[Span]:
        """Every span each matcher finds in `text`, overlaps included (with `phones` false, no phone number)."""
        found: list[Span] = []
        if "@" in text:
            ats: set[int] = set()
            for m in _EMAIL.rx.finditer(text):
                ats.add(text.index("@", m.start(1)))
                found.append(_email(text, m))
            for m in _RUN_ON_LOCAL.rx.finditer(text):
                if m.end() not in ats and (address := _run_on_address(text, m.start(), m.end())) is not None:
                    found.append(_email(text, address))
        if _ANY_DIGIT.rx.search(text):
            for m in (*_CARD.rx.finditer(text), *(_DOTTED_CARD.rx.finditer(text) if "." in text else ())):
                digits = re.sub(r"[ .-]", "", m.group())
                if len(digits) in _CARD_LENGTHS and _card_number(digits):
                    found.append(Span(m.start(), m.end(), "card", digits))
            found += _hex_glued_cards(text)
            found += [Span(m.start(), m.end(), "ssn", m.group().replace("-", "")) for m in _SSN.rx.finditer(text)]
            for m in _IBAN.rx.finditer(text):
                iban = m.group().replace(" ", "")
                if iban_ok(iban):
                    found.append(Span(m.start(), m.end(), "iban", iban))
            for m in _NINO.rx.finditer(text):
                if nino_ok(m.group(1)):
                    found.append(Span(m.start(), m.end(), "nino", "".join(m.groups())))
            for m in _IPV4.rx.finditer(text):
                v4 = ipaddress.IPv4Address(m.group())
                if _public_ip(v4):
                    found.append(Span(m.start(), m.end(), "ip", str(v4)))
            if (
                phones
                and _DIGITS_FOR_PHONE.rx.search(text)
                and not _HEX_DIGEST.rx.fullmatch(text)
                and not _TIMESTAMP.rx.fullmatch(text)
            ):
                found += self._phones(text)
        if text.count(":") >= 2:
            for m in _IPV6_CANDIDATE.rx.finditer(text):
                try:
                    v6 = ipaddress.IPv6Address(m.group())
                except ValueError:
                    continue
                if _public_ip(v6):  # (an IPv4-mapped address is its IPv4 subject: `::ffff:8.8.8.8` is 8.8.8.8)
                    subject = str(v6.ipv4_mapped) if v6.ipv4_mapped is not None else str(v6)
                    found.append(Span(m.start(), m.end(), "ip", subject))
        if self._names is not None:
            found += [Span(m.start(), m.end(), "name", m.group().lower()) for m in self._names.finditer(text)]
        for kind, pattern in self._patterns:
            found += [Span(m.start(), m.end(), kind, m.group()) for m in pattern.finditer(text) if m.end() > m.start()]
        return found

    def _phones(self, text: str) -> list[Span]:
        import phonenumbers  # (imported when text is scanned: every `swarm` command and body paid ~5% of its start)

        spans: list[Span] = []
        # An international prefix becomes a `+` in a copy of the same length (`0044 20` -> ` +44 20`), so a number
        # found there maps back to the text as written, its prefix included.
        prefixed: dict[int, int] = {}  # (where a `+` was put: where its prefix starts)
        read = text
        if "0" in text:
            parts: list[str] = []
            at = 0
            for m in _INTERNATIONAL_PREFIX.rx.finditer(text):
                parts += (text[at : m.start()], " " * (m.end() - m.start() - 1), "+")
                prefixed[m.end() - 1] = m.start()
                at = m.end()
            read = "".join((*parts, text[at:])) if prefixed else text
        # A number's own group may start as a prefix does (`+1 800 781 0034`, `(202) 555 0114`): the text is then
        # read as written too, and the longer finding wins.
        for reading, starts in ((read, prefixed), *(((text, {}),) if prefixed else ())):
            matcher = phonenumbers.PhoneNumberMatcher(
                reading, self.config.default_region, leniency=phonenumbers.Leniency.VALID
            )
            for match in matcher:
                e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
                spans.append(Span(starts.get(match.start, match.start), match.end, "phone", e164))
        return spans

    def parse_subject(self, text: str) -> Subject:
        """What a human names as a subject, normalised as the detector normalises what it finds."""
        raw = _INVISIBLE.rx.sub("", text).strip()  # (as the detector reads it)
        if not raw:
            raise MalformedSubject(
                "a subject is an email, a phone number, a card number, an IP address, an SSN, an IBAN or a UK "
                "National Insurance number"
            )
        spans = self.find(raw)
        if len(spans) == 1 and spans[0].start == 0 and spans[0].end == len(raw):
            return Subject(kind=spans[0].kind, value=spans[0].subject)
        spans = self.find(raw.upper())  # (an IBAN or a NINO typed in lower case)
        if len(spans) == 1 and spans[0].start == 0 and spans[0].end == len(raw) and spans[0].kind in ("iban", "nino"):
            return Subject(kind=spans[0].kind, value=spans[0].subject)
        import phonenumbers

        try:  # a phone number written without its formatting, or in another region's form
            number = phonenumbers.parse(_INTERNATIONAL_PREFIX.rx.sub("+", raw, count=1), self.config.default_region)
        except phonenumbers.NumberParseException:
            number = None
        if number is not None and phonenumbers.is_valid_number(number):
            return Subject(kind="phone", value=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
        for parse in (ipaddress.IPv4Address, ipaddress.IPv6Address):
            try:
                return Subject(kind="ip", value=str(parse(raw)))
            except ValueError:
                pass
        raise MalformedSubject(
            f"{_shown(raw)} is not a subject: give an email, a phone number (E.164, or in region "
            f"{self.config.default_region}), a Luhn-valid card number, an IP address, an SSN (123-45-6789), an "
            "IBAN, a UK National Insurance number (QQ 12 34 56 C) or a name or pattern [privacy] configures"
        )


class _Shadow:
    """`text` as a reader sees it, for every matcher: percent-escapes of printable ASCII decoded (an address in a
    URL or a proxy path), each non-ASCII character NFKC-normalised (a fullwidth `＠`, `．` or `１` is `@`, `.`,
    `1`), with the combining marks that follow it (`e` + U+0301, as macOS writes `é`, is `é`; a mark on a digit,
    `2` + U+0301 or a keycap, reads as the digit) and each invisible one dropped (`_INVISIBLE`: a soft hyphen or a
    zero-width space inside an address), with the way back to `text`'s positions, so what is encrypted is the text
    as written (the invisible characters inside a span with it) and the subject is the plain address or number."""

    def __init__(self, text: str) -> None:
        parts: list[str] = []
        self._shadow_starts: list[int] = []  # per rewritten stretch: where it starts in the shadow,
        self._rewrites: list[tuple[int, int, int]] = []  # its shadow end, and its start and end in `text`
        self._beside: tuple[int, int, str, str] = (0, 0, "", "")
        """The last stretch of invisible characters and marks `_seen` looked past: where it starts and ends, and the
        scripts either side of it (each stretch is walked once, or a run of them took quadratic time)."""
        self.phone_edges = False
        """Whether a rewrite made a Latin letter or a `%` (what the phone matcher refuses beside a number: `№` is
        `No`, `ｔｅｌ` is `tel`) or read an invisible character (which may join two numbers): only then may the
        phone matcher find in `text` what it misses here."""
        at = shadow_at = 0
        for m in _SHADOWED.rx.finditer(text):
            for raw_start, raw_end, new in self._rewrites_of(text, m, at):
                if new == text[raw_start:raw_end]:
                    continue
                self.phone_edges = (
                    self.phone_edges
                    or _PHONE_EDGE.rx.search(new) is not None
                    or _INVISIBLE.rx.search(text, raw_start, raw_end) is not None
                )
                parts += (text[at:raw_start], new)
                shadow_at += raw_start - at
                self._shadow_starts.append(shadow_at)
                shadow_at += len(new)
                self._rewrites.append((shadow_at, raw_start, raw_end))
                at = raw_end
        parts.append(text[at:])
        self.text = "".join(parts)

    def _rewrites_of(self, text: str, m: re.Match[str], at: int) -> list[tuple[int, int, str]]:
        """What the reader sees of `_SHADOWED`'s match `m`, as (start, end, seen) stretches of `text`; `at` is where
        the previous rewrite ended."""
        raw = m.group()
        if raw[0] == "%":
            return [(m.start(), m.end(), chr(int(raw[1:], 16)))]
        start = m.start()
        if start - 1 >= at and _mark(raw[0]):  # (a mark on the ASCII character before it: `e` + U+0301)
            start -= 1
        chunk = text[start : m.end()]
        if unicodedata.is_normalized("NFKC", chunk) and not chunk[0].isdigit():  # (only its invisible ones change)
            return [
                (start + i.start(), start + i.end(), self._seen(text, start + i.start()))
                for i in _INVISIBLE.rx.finditer(chunk)
            ]
        rewrites: list[tuple[int, int, str]] = []
        i = 0
        while i < len(chunk):  # (each character with its marks, so a span mapped back covers no more than it read)
            j = i + 1
            if _INVISIBLE.rx.match(chunk[i]) is None:
                while j < len(chunk) and _mark(chunk[j]):
                    j += 1
            if j == i + 1:
                rewrites.append((start + i, start + j, self._seen(text, start + i)))
            else:
                base = unicodedata.normalize("NFKC", chunk[i])
                seen = base if base.isascii() and base.isdigit() else unicodedata.normalize("NFKC", chunk[i:j])
                rewrites.append((start + i, start + j, _INVISIBLE.rx.sub("", seen)))
            i = j
        return rewrites

    def _seen(self, text: str, at: int) -> str:
        """What a reader sees of the non-ASCII character `text[at]`: its NFKC form; nothing for an invisible one, but
        a space where it stands between letters of two scripts (Thai, Lao or Khmer text separates its words with
        zero-width spaces: `ติดต่อ\u200balice@example.org` holds alice's address, not `อalice@…`)."""
        char = text[at]
        if _INVISIBLE.rx.match(char) is None:
            return _INVISIBLE.rx.sub("", unicodedata.normalize("NFKC", char))
        start, end, before, after = self._beside
        if not start <= at < end:
            start, end = at, at + 1
            while start > 0 and _hidden(text[start - 1]):
                start -= 1
            while end < len(text) and _hidden(text[end]):
                end += 1
            before, after = _script(text, start - 1), _script(text, end)
            self._beside = (start, end, before, after)
        return " " if before and after and before != after else ""

    def untouched(self, start: int, end: int) -> bool:
        """Whether the view left every character of `text[start:end]` as it is."""
        index = bisect.bisect_right(self._rewrites, start, key=lambda r: r[2])  # (the first ending after `start`)
        return index == len(self._rewrites) or self._rewrites[index][1] >= end

    def original(self, start: int, end: int) -> tuple[int, int]:
        """The stretch of `text` the shadow's `[start, end)` was made from (all of any character it touches)."""
        return self._position(start, at_end=False), self._position(end, at_end=True)

    def _position(self, pos: int, *, at_end: bool) -> int:
        index = bisect.bisect_right(self._shadow_starts, pos - 1 if at_end else pos) - 1
        if index < 0:
            return pos
        shadow_end, raw_start, raw_end = self._rewrites[index]
        if pos < shadow_end or (at_end and pos == shadow_end):
            return raw_end if at_end else raw_start
        return raw_end + pos - shadow_end


def _mark(char: str) -> bool:
    return unicodedata.category(char)[0] == "M"


def _hidden(char: str) -> bool:
    """What a reader looks past to the letter beside it: an invisible character or a combining mark."""
    return _INVISIBLE.rx.match(char) is not None or _mark(char)


def _script(text: str, at: int) -> str:
    """The script of the letter `text[at]` (the first word of its NFKC form's Unicode name: `LATIN`, `THAI`, `CJK`);
    "" if it is no letter (a digit or punctuation sits in any script) or `at` is outside `text`."""
    if not 0 <= at < len(text) or not text[at].isalpha():
        return ""
    return unicodedata.name(unicodedata.normalize("NFKC", text[at])[0], "").partition(" ")[0]


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:37] + "...")


def _reconcile(read: list[Span], written: list[Span], shadow: _Shadow) -> list[Span]:
    """The spans of a text found in its reader's view (`read`, mapped back) and as written, none overlapping.

    Where the two overlap, the one read wins (its subject is the normalised one: `ａｌｉｃｅ@example.org` is alice's,
    `mailto%3Aalice@…` is not `mailto%3aalice@…`), unless the view joined what is written apart: the span read
    straddles one written (overlaps it, neither holding the other: `a@b.org` + ZWSP + `c@d.org` reads
    `a@b.orgc@d.org`, whose first address would be `a@b.orgc`), or lies inside one written whose further characters
    the view left as they are (so only what the view joined to them can have cut it short: `x@b.example.org` + ZWSP
    + `Mx1@…` reads `x@b.example` and `.orgMx1…`). A span written that no span read overlaps is kept: a character
    the view rewrites into a letter (`№4111…` reads `No4111…`) can hide from the view what the text as written
    shows."""
    written = _disjoint(written)

    def trusted(r: Span) -> bool:
        for w in _overlapping(written, r):
            if not _nested(r, w):
                return False
            inside = (w.start, w.end) != (r.start, r.end) and w.start <= r.start and r.end <= w.end
            if inside and shadow.untouched(w.start, r.start) and shadow.untouched(r.end, w.end):
                return False
        return True

    kept = _disjoint([r for r in read if trusted(r)])
    return sorted([*kept, *(w for w in written if not _overlapping(kept, w))], key=lambda s: s.start)


def _overlapping(spans: list[Span], span: Span) -> list[Span]:
    """The spans of `spans` (disjoint, in order) that overlap `span`."""
    at = bisect.bisect_right(spans, span.start, key=lambda s: s.end)
    found: list[Span] = []
    while at < len(spans) and spans[at].start < span.end:
        found.append(spans[at])
        at += 1
    return found


def _nested(a: Span, b: Span) -> bool:
    return (a.start <= b.start and b.end <= a.end) or (b.start <= a.start and a.end <= b.end)


def _disjoint(spans: list[Span]) -> list[Span]:
    """The longest spans first, each kept unless it overlaps one kept. A span can only meet those of its own cluster
    (spans chained by overlaps), so each cluster is settled alone: a megabyte of addresses is 100,000 clusters of one,
    not 100,000 spans each compared with every other."""
    kept: list[Span] = []
    cluster: list[Span] = []
    reach = -1
    for span in sorted(spans, key=lambda s: s.start):
        if cluster and span.start >= reach:
            kept += _longest_first(cluster)
            cluster = []
        cluster.append(span)
        reach = max(reach, span.end) if len(cluster) > 1 else span.end
    kept += _longest_first(cluster)
    return sorted(kept, key=lambda s: s.start)


def _longest_first(spans: list[Span]) -> list[Span]:
    if len(spans) == 1:
        return spans
    kept: list[Span] = []  # (disjoint, in order: a span can only overlap the kept ones either side of its start)
    for span in sorted(spans, key=lambda s: (s.start - s.end, s.start)):
        at = bisect.bisect_left(kept, span.start, key=lambda k: k.start)
        if (at == 0 or kept[at - 1].end <= span.start) and (at == len(kept) or span.end <= kept[at].start):
            kept.insert(at, span)
    return kept
