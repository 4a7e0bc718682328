"""Random personal data for one test run, and a search of files for any of it in any common encoding."""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import secrets
import string
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import phonenumbers

from shared_protocol.privacy import luhn_ok


@dataclass(frozen=True)
class Planted:
    email: str
    phone: str
    """As typed: `(202) 555-0147`-like, US."""
    phone_e164: str
    card: str
    """As typed, in groups of four."""
    ip: str

    def values(self) -> list[str]:
        """Every form a leak could take: as typed and as normalised."""
        return [
            self.email,
            self.email.lower(),
            self.phone,
            self.phone_e164,
            self.phone_e164[2:],
            self.card,
            self.card.replace(" ", ""),
            self.ip,
        ]

    def text(self) -> str:
        return f"write to {self.email} or call {self.phone}; card {self.card}, from {self.ip}"


def plant(rng: random.Random | None = None) -> Planted:
    rng = rng or random.Random(secrets.randbits(64))
    local = "".join(rng.choices(string.ascii_lowercase, k=8)) + str(rng.randrange(100, 999))
    domain = "".join(rng.choices(string.ascii_lowercase, k=7))
    email = f"{local.capitalize()}@{domain}.example.org"
    while True:
        national = f"{rng.randrange(201, 989)}{rng.randrange(200, 999)}{rng.randrange(0, 10_000):04d}"
        number = phonenumbers.parse(national, "US")
        if phonenumbers.is_valid_number(number):
            break
    phone = f"({national[:3]}) {national[3:6]}-{national[6:]}"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    while True:
        digits = "4" + "".join(rng.choices(string.digits, k=15))
        if luhn_ok(digits):
            break
    card = " ".join(digits[i : i + 4] for i in range(0, 16, 4))
    while True:
        ip = ipaddress.IPv4Address(rng.randrange(1 << 24, 224 << 24))
        if ip.is_global:
            break
    return Planted(email=email, phone=phone, phone_e164=e164, card=card, ip=str(ip))


def encodings(value: str) -> set[bytes]:
    """`value` in clear, base64 (standard and URL-safe, unpadded), hex, percent- and JSON-escaped."""
    raw = value.encode()
    forms = {
        raw,
        base64.b64encode(raw).rstrip(b"="),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        raw.hex().encode(),
        raw.hex().upper().encode(),
        urllib.parse.quote(value).encode(),
        urllib.parse.quote_plus(value).encode(),
        urllib.parse.quote(value, safe="").encode(),
        json.dumps(value)[1:-1].encode(),
        json.dumps(value, ensure_ascii=False)[1:-1].encode(),
        value.encode("utf-16-le"),
    }
    return {form for form in forms if len(form) >= 6}


def leaks(roots: list[Path], values: list[str]) -> list[str]:
    """Every (file, value) where a form of a value is found under `roots`: SQLite files, WAL, journals, logs,
    snapshots, backups, whatever is there."""
    wanted = {form: value for value in values for form in encodings(value)}
    found: list[str] = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            found += [f"{path}: {value!r} as {form[:40]!r}" for form, value in wanted.items() if form in data]
    return found


def files_under(roots: list[Path]) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]
