"""Adversarial review 19b: a full disk under a lone write's journal record (the event loop's path,
`try_append_now`), and what the privacy scan's `known_clean` mark of a write's content digest covers.

Run: python3 -m uv run --frozen pytest -n 0 tests/review19b/test_loop_path_enospc_and_privacy.py
"""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.body.audit_disk import NO_WINDOW, committed, unsettled_body, write_committed
from tests.conftest import make_body
from tests.privacy.plant import plant

pytestmark = pytest.mark.anyio


async def test_a_full_disk_under_a_lone_writes_journal_record_acknowledges_nothing_and_keeps_the_chain(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held: the journal's `pwrite` fails with ENOSPC half-way through a lone write's record (on the event loop's
    path). The call is not acknowledged, the torn record is voided (never replayed, never committed), the next
    write chains on as if it never was, and verify passes from a new body."""
    body = unsettled_body(workspace, home, monkeypatch, NO_WINDOW)
    first = await write_committed(body, "a.txt")
    [journal] = home.rglob("audit.journal")
    ours = journal.stat()
    real = os.pwrite
    full = {"left": 1}

    def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
        st = os.fstat(fd)
        if full["left"] and (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino) and len(data) > 64:
            full["left"] = 0
            real(fd, bytes(data)[: len(data) // 2], offset)  # (what fitted before the disk was full)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    acknowledged: str | None = None
    try:
        out = await body.call_tool("write_file", {"path": "b.txt", "content": "b\n", "rationale": "r"})
        acknowledged = None if out.is_error else out.action_id
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    assert not full["left"], "the journal was not written on this call"
    assert acknowledged is None, "a write was acknowledged though its event could not be journaled"
    body.replies.run()
    await body.audit_writer.settled()
    third = await write_committed(body, "c.txt")
    body.audit.settle()
    body.close()
    ids = committed(body.paths.db)
    assert ids[-2:] == [first, third] or ids[-1] == third, ids
    with closing(make_body(workspace, home, NO_WINDOW)) as after:
        report = after.audit.verify()
        assert report.ok, report.summary()


async def test_a_rationale_path_or_content_equal_to_or_holding_a_digest_still_has_its_personal_data_protected(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held: `known_clean` marks only the exact 64-hex digest text a write's content hashed to. A rationale equal
    to that digest is the digest (no personal data to keep); a rationale, path or content that holds the digest
    and personal data besides is scanned as before, so no planted value reaches the stored events in clear."""
    p = plant()
    body = unsettled_body(workspace, home, monkeypatch, NO_WINDOW)
    assert body.audit.privacy is not None and body.audit.privacy.enabled
    content = p.text()
    digest = hashlib.sha256(content.encode()).hexdigest()
    ids: list[str] = []
    for path, rationale, data in (
        ("one.txt", digest, content),  # (the rationale is the digest marked clean: stored as it is)
        ("two.txt", f"{digest} {p.text()}", content),
        (f"{digest} {p.email}.txt", digest, f"{digest}\n"),
        ("three.txt", f"{digest} {p.card.replace(' ', '')}", f"{digest} {p.card}"),
    ):
        out = await body.call_tool("write_file", {"path": path, "content": data, "rationale": rationale})
        assert not out.is_error, out.structured
        body.replies.run()
        await body.audit_writer.settled()
        ids.append(out.action_id)
    stored = {e.id: e for e in body.audit.tail(10)}
    assert stored[ids[0]].rationale == digest
    body.audit.settle()
    body.close()
    [db] = home.rglob("state.db")
    conn = sqlite3.connect(db)
    try:
        kept = [str(row[0]) for row in conn.execute("SELECT body FROM audit_events")]
    finally:
        conn.close()
    # (The events; `undo_records`, and the journal's copy of their statements, keep the workspace's real names, as
    # its files do.)
    for value in p.values():
        assert not [text for text in kept if value in text], f"{value!r} in clear in the audit trail"


async def test_an_address_run_on_in_a_long_hyphenated_name_is_not_kept_in_clear(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was MEDIUM, fixed: write `<64 hex>-<address>.txt` (or `quarterly-review-...-<address>.txt` past 64 characters
    before the `@`): the detector took the whole run as the local part, longer than an address's 64, and found
    nothing; the path was in the event (arguments, files) and in `undo_records` in clear. Now a run too long to be a
    local part is cut at its last separator, or after a digest it starts with (`_detect._run_on_address`)."""
    p = plant()
    body = unsettled_body(workspace, home, monkeypatch, NO_WINDOW)
    digest = hashlib.sha256(b"x").hexdigest()
    for name in (
        f"{'quarterly-review-of-the-customer-accounts-and-invoices-contact'}-{p.email}.txt",
        f"{digest}-{p.email}.txt",
        f"{digest}{p.email}.txt",
    ):
        out = await body.call_tool("write_file", {"path": name, "content": "x\n", "rationale": "r"})
        assert not out.is_error, out.structured
        body.replies.run()
        await body.audit_writer.settled()
    body.audit.settle()
    body.close()
    [db] = home.rglob("state.db")
    conn = sqlite3.connect(db)
    try:
        bodies = [str(row[0]) for row in conn.execute("SELECT body FROM audit_events")]
    finally:
        conn.close()
    assert not [b for b in bodies if p.email in b], "the address is in the audit trail in clear"


async def test_a_card_number_glued_to_a_word_or_a_digest_is_not_kept_in_clear(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was LOW, fixed: a rationale `<64 hex digest><card digits>` or `invoice-<card digits>`: the card's digits
    followed a letter (or a letter and a hyphen), the detector's boundary rule skipped them, and the event kept them
    in clear. Now a hyphen after a letter ends a word as a space does, and a card's digits ending a word of hex
    digits (after a hex letter, or after a digest's length) are a candidate (`_detect._hex_glued_cards`)."""
    p = plant()
    body = unsettled_body(workspace, home, monkeypatch, NO_WINDOW)
    digits = p.card.replace(" ", "")
    digest = hashlib.sha256(b"x").hexdigest()
    for rationale in (f"{digest}{digits}", f"invoice-{digits}", f"abcdef{digits}", f"{digits}-paid"):
        out = await body.call_tool("write_file", {"path": "a.txt", "content": "x\n", "rationale": rationale})
        assert not out.is_error, out.structured
        body.replies.run()
        await body.audit_writer.settled()
    body.audit.settle()
    body.close()
    [db] = home.rglob("state.db")
    conn = sqlite3.connect(db)
    try:
        bodies = [str(row[0]) for row in conn.execute("SELECT body FROM audit_events")]
    finally:
        conn.close()
    assert not [b for b in bodies if digits in b], "the card number is in the audit trail in clear"
