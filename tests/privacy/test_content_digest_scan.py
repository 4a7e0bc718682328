"""A write's content digest, made by the body from the content, is not scanned for personal data (it holds none,
and the scan cost ~50 µs a write); everything a person or model wrote in the same event still is."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from body_mcp import Body
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
