# pyright: strict
"""Review 18 of the audit store's directory sync at open (commit 82c5afb: only while the journal or the anchor is
empty). A name not on disk when the power goes is a file lost with everything synced into it: every file a record is
written to must have its name synced before. A real body, real files; the directory's syncs counted."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from body_mcp import BodySettings
from body_mcp.audit import _store as audit_store  # pyright: ignore[reportPrivateUsage]
from body_mcp.ide import BodyAuditSink, run_hook
from shared_protocol.config import SwarmConfig
from tests.conftest import make_body
from tests.ide.conftest import claude_event, encode, make_runtime


def _count_dir_syncs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    synced: list[Path] = []
    real = audit_store.sync_dir

    def sync_dir(path: Path) -> None:
        synced.append(path)
        real(path)

    monkeypatch.setattr(audit_store, "sync_dir", sync_dir)
    return synced


def test_every_open_that_may_write_into_an_unsynced_name_syncs_the_directory_first(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held: a store opening a journal and an anchor a store that died before its sync created (both there, empty),
    or a journal emptied since (scrubbed) beside a written anchor, syncs their directory; only once both hold data
    (their names synced by whoever first wrote into them) does an open spare it."""
    body = make_body(workspace, home)
    files = body.paths.audit
    body.close()
    for path in (files.journal, files.anchor):  # (as a store that died between creating them and its sync)
        path.write_bytes(b"")
    synced = _count_dir_syncs(monkeypatch)
    body = make_body(workspace, home)
    assert files.journal.parent in synced
    body.close()

    # an audited hook call: the anchor and the journal both written (the journal is left as it is after a commit)
    sink = BodyAuditSink(lambda ws: BodySettings(workspace=ws, home=home, config=SwarmConfig(), agent="claude-code"))
    runtime = replace(make_runtime("claude-code", workspace, home), sink=sink)
    event = claude_event("Read", {"file_path": str(workspace / ".env")}, cwd=workspace)
    run_hook(runtime, io.BytesIO(encode(event)), io.StringIO())
    assert files.anchor.stat().st_size > 0 and files.journal.stat().st_size > 0
    synced.clear()
    make_body(workspace, home).close()
    assert synced == []  # (both written: their names were synced before the first record)

    files.journal.write_bytes(b"")  # (scrubbed: everything in it committed)
    body = make_body(workspace, home)
    assert files.journal.parent in synced
    body.close()
