"""Review of #21's newest fix (attack 21f): erased subjects' tombstones (`erased_subjects`, `SubjectErased`,
`swarm privacy unerase`) and the brain's keyed `Idempotency-Key`s. Real key stores on SQLite files, a live brain."""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from body_mcp.exceptions import UserError
from shared_protocol.brain import TaskRequest
from shared_protocol.privacy import KEY_STORE_FILE, PrivacyConfig, Protector, SqliteSubjectKeys
from swarm_cli.main import build_parser
from swarm_cli.privacy_cmds import cmd_privacy_unerase
from tests.brain.helpers import LiveBrain

from .plant import plant


def store(tmp_path: Path, name: str = "a") -> tuple[Protector, SqliteSubjectKeys]:
    keys = SqliteSubjectKeys(tmp_path / name / KEY_STORE_FILE)
    return Protector(PrivacyConfig(), keys), keys


def key_rows(keys: SqliteSubjectKeys) -> int:
    with sqlite3.connect(keys.path) as conn:
        return int(conn.execute("SELECT count(*) FROM subject_keys").fetchone()[0])


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_other_writings_of_an_erased_subject_meet_its_tombstone(tmp_path: Path) -> None:
    """Held: after an erasure, the same email in upper case, padded, with a fullwidth `＠`/letters or percent-escaped,
    and the same phone in national, 00-prefixed, dotted or `tel:` form are redacted, and no new key is made."""
    protector, keys = store(tmp_path)
    p = plant()
    local, domain = p.email.split("@")
    protector.protect(f"write to {p.email} or call {p.phone_e164}")
    for text in (p.email, p.phone_e164):
        subject = protector.parse_subject(f"  {text.upper()}  ")
        assert keys.erase(subject.kind, subject.value) is not None
    assert key_rows(keys) == 0
    national = p.phone_e164.replace("+1", "", 1)
    writings = [
        p.email.upper(),
        f"{local}＠{domain}",
        fullwidth(local) + "@" + domain,
        f"{local}%40{domain}",
        f"mailto:{p.email}",
        p.phone_e164,
        f"00{p.phone_e164[1:]}",
        f"tel:{p.phone_e164[:2]}-{p.phone_e164[2:5]}-{p.phone_e164[5:]}",
        f"({national[:3]}) {national[3:6]}-{national[6:]}",
    ]
    for writing in writings:
        kept = protector.protect(f"again: {writing} ok")
        assert ":erased]" in kept and writing not in kept, (writing, kept)
    assert key_rows(keys) == 0


def test_a_fullwidth_phone_of_an_erased_subject_is_not_kept_in_clear(tmp_path: Path) -> None:
    """Was a hole (medium): erase a phone subject, then protect `call ＋１ ６５０ …` (the same number in fullwidth
    digits, NFKC-equal to it): the text was stored unchanged (`_phones` read only ASCII digits; `_Shadow`'s NFKC
    view was used for emails alone), and before any erasure such a number was never protected. Fixed: every
    matcher reads the shadow too, its spans mapped back (`test_detect_reader_view.py`)."""
    protector, keys = store(tmp_path)
    p = plant()
    protector.protect(f"call {p.phone_e164}")
    subject = protector.parse_subject(p.phone_e164)
    assert keys.erase(subject.kind, subject.value) is not None
    written = fullwidth(f"{p.phone_e164[:2]} {p.phone_e164[2:5]} {p.phone_e164[5:8]} {p.phone_e164[8:]}")
    kept = protector.protect(f"call {written} now")
    assert written not in kept, kept


def test_an_email_with_an_invisible_character_is_not_kept_in_clear(tmp_path: Path) -> None:
    """Was a hole (low): erase an email subject, then protect the address with U+00AD or U+200B in its domain: it
    was kept as written (NFKC keeps both; the email pattern stopped at them). Fixed: `_Shadow` drops Unicode's
    default-ignorable code points from the reader's view for every matcher, the span mapped back covering them
    (`test_detect_reader_view.py`, with what must stay apart: two addresses joined by one, Thai words)."""
    protector, keys = store(tmp_path)
    p = plant()
    protector.protect(f"mail {p.email}")
    subject = protector.parse_subject(p.email)
    assert keys.erase(subject.kind, subject.value) is not None
    local, domain = p.email.split("@")
    for mark in ("\u00ad", "\u200b"):
        written = f"{local}@{domain[:2]}{mark}{domain[2:]}"
        kept = protector.protect(f"mail {written} now")
        assert written not in kept, (repr(mark), kept)


def test_an_erasure_where_no_key_is_held_still_tombstones_the_subject(tmp_path: Path) -> None:
    """Was a hole (medium): the brain held a task naming an email, the body never saw it. `swarm privacy erase
    EMAIL --brain ...` erased it on the brain and said `body: nothing held` (`SqliteSubjectKeys.erase` found no
    row and wrote no tombstone). The runner, which read the task before the erasure, then called a tool naming the
    email: the body's `key_for` made a new key and the data was kept, readable by `swarm privacy export`. Fixed:
    `erase` writes the tombstone whether or not a key was held (returning None still), and `privacy_erase` /
    `erase_subject` record the erasure either way (`test_erase_without_a_key.py`)."""
    protector, keys = store(tmp_path)
    p = plant()
    subject = protector.parse_subject(p.email)
    assert keys.erase(subject.kind, subject.value) is None  # (nothing held here)
    kept = protector.protect(f"late tool call naming {p.email}")
    assert keys.erased_at(subject.kind, subject.value) is not None, "no tombstone was written"
    assert ":erased]" in kept and key_rows(keys) == 0, kept


def test_the_tombstone_is_a_keyed_hash_of_the_subject(tmp_path: Path) -> None:
    """Held: a tombstone's lookup is no bare hash of the subject in any form, and two stores tombstone the same
    subject under different lookups (each store's own secret)."""
    p = plant()
    lookups: list[bytes] = []
    for name in ("a", "b"):
        protector, keys = store(tmp_path, name)
        protector.protect(f"mail {p.email}")
        assert keys.erase("email", p.email.lower()) is not None
        with sqlite3.connect(keys.path) as conn:
            ((lookup, kind),) = conn.execute("SELECT lookup, kind FROM erased_subjects").fetchall()
        assert kind == "email"
        lookups.append(bytes(lookup))
        keys.close()
    bare = [p.email.lower(), f"email\0{p.email.lower()}", p.email]
    assert not {h(text.encode()).digest() for text in bare for h in (hashlib.sha256, hashlib.sha1, hashlib.md5)} & {
        *lookups
    }
    assert lookups[0] != lookups[1]


def test_unerase_without_a_reason_or_with_a_blank_one_is_refused() -> None:
    """Held: the CLI requires --reason, and a blank one is refused before anything is opened."""
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["privacy", "unerase", "alice@example.com"])
    for blank in ("", "   ", "\t\n"):
        with pytest.raises(UserError, match="reason"):
            cmd_privacy_unerase(argparse.Namespace(subject="alice@example.com", reason=blank))


@pytest.mark.anyio
async def test_the_brain_refuses_a_blank_unerase_reason_and_an_idempotency_key_with_a_space(live: LiveBrain) -> None:
    """Held: the brain itself refuses an unerase with no or a blank reason (a client need not be the CLI); an
    `Idempotency-Key` with a space, or equal to a kept `hmac ...` row, is refused (422), so a key as sent never
    meets a keyed one."""
    p = plant()
    captain = {"Authorization": f"Bearer {live.tokens['captain']}"}
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        for body in ({"subject": p.email}, {"subject": p.email, "reason": "  "}):
            refused = await http.post("/v1/privacy/unerase", json=body, headers=captain)
            assert refused.status_code in (400, 422), refused.text
        task: dict[str, Any] = {"title": "write the note", "value_usd": 1}
        first = await http.post("/v1/tasks", json=task, headers={**captain, "Idempotency-Key": "k-1"})
        assert first.status_code == 201, first.text
        with sqlite3.connect(live.db) as conn:
            (kept,) = conn.execute("SELECT key FROM task_keys").fetchone()
        for key in ("a b", str(kept)):
            refused = await http.post("/v1/tasks", json=task, headers={**captain, "Idempotency-Key": key})
            assert refused.status_code == 422, refused.text


@pytest.mark.anyio
async def test_the_kept_request_digest_is_keyed_too(live: LiveBrain) -> None:
    """Was a hole (low): POST /v1/tasks `{"title": "refund EMAIL", "value_usd": 5}` with an Idempotency-Key; erase
    the email. `task_keys.request_sha256` still equalled `sha256(TaskRequest(...).model_dump_json())`, so whoever
    read the database (or a backup) and knew the template confirmed which email it was by hashing candidates.
    Fixed: the digest is kept as an HMAC under the key store secret (`keyed_request_digest`), a bare one kept
    before is still compared, and `swarm privacy migrate` keys it (`test_idempotency_request_keyed.py`)."""
    p = plant()
    captain = {"Authorization": f"Bearer {live.tokens['captain']}"}
    task: dict[str, Any] = {"title": f"refund {p.email}", "value_usd": 5}
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        created = await http.post("/v1/tasks", json=task, headers={**captain, "Idempotency-Key": "refund-1"})
        assert created.status_code == 201, created.text
        erased = await http.post("/v1/privacy/erase", json={"subject": p.email, "reason": "asked"}, headers=captain)
        assert erased.status_code == 200, erased.text
    guess = hashlib.sha256(TaskRequest.model_validate(task).model_dump_json().encode()).hexdigest()
    with sqlite3.connect(live.db) as conn:
        digests = [str(d) for (d,) in conn.execute("SELECT request_sha256 FROM task_keys")]
    assert guess not in digests
