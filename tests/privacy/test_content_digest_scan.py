"""A write's content digest, made by the body from the content, is not scanned for personal data (it holds none,
and the scan cost ~50 µs a write); everything a person or model wrote in the same event still is."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from body_mcp import Body
from body_mcp.audit import EventDraft, new_action_id
from shared_protocol.privacy import Protector

from ..conftest import make_body
from .plant import plant

pytestmark = pytest.mark.anyio


async def test_a_writes_content_digest_is_not_scanned_and_the_rest_of_its_event_still_is(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body: Body = make_body(workspace, home)
    try:
        privacy = body.audit.privacy
        assert isinstance(privacy, Protector) and privacy.enabled
        scanned: list[str] = []
        find = privacy.detector.find

        def recording(text: str) -> object:
            scanned.append(text)
            return find(text)

        monkeypatch.setattr(privacy.detector, "find", recording)
        p = plant()
        content = "hello\n" * 3
        body.replies.flushed = True
        out = await body.call_tool(
            "write_file", {"path": "a.txt", "content": content, "rationale": f"mail {p.email} about it"}
        )
        assert not out.is_error, out.text
        body.replies.run()
        await body.audit_writer.finish()
        digest = hashlib.sha256(content.encode()).hexdigest()
        assert digest not in scanned  # (the body made it: nothing to find)
        assert any(p.email in text for text in scanned)  # the rationale is scanned as ever
        conn = sqlite3.connect(body.paths.db)
        try:
            stored = "\n".join(str(row[0]) for row in conn.execute("SELECT body FROM audit_events"))
        finally:
            conn.close()
        assert digest in stored and p.email not in stored  # the digest kept as made, the address protected
        assert body.audit.verify().ok
    finally:
        body.close()


async def test_every_field_people_and_models_write_is_protected_in_the_stored_event_and_the_draft_left_as_it_was(
    workspace: Path, home: Path
) -> None:
    body: Body = make_body(workspace, home)
    try:
        p = plant()
        mail = p.email
        draft = EventDraft(
            id=new_action_id(),
            kind="tool_call",
            agent="a",
            session="s",
            rationale=f"r {mail}",
            outcome="failed",
            tool="write_file",
            arguments={"path": f"{mail}.txt", "nested": [{"note": f"to {mail}"}]},
            message=f"m {mail}",
            files=[f"{mail}.txt"],
            detail={"why": f"d {mail}"},
            turn={"step": 0, "text": f"t {mail}"},
        )
        before = dict(draft.__dict__)
        event = body.audit.append(draft)
        assert draft.__dict__ == before  # (protected in the store's own dict, not in the caller's draft)
        (stored,) = [e for e in body.audit.tail(5) if e.id == event.id]
        text = stored.model_dump_json()
        assert mail not in text and text.count("[pii:") >= 7  # rationale, message, 2 arguments, files, detail, turn
        assert body.audit.verify().ok
    finally:
        body.close()
