"""Review 18 of the audit store's own head across a settle (`body_mcp/audit/_store.py`, `_empty_journal`): two bodies
on one workspace appending around each other's settles, in the same process (two stores, one journal, one
database), with power-loss and crash durability. The chain must neither fork nor lose an event, and verify must
pass from a third body afterwards."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from body_mcp import Body
from tests.body.audit_disk import NO_WINDOW, committed, unsettled_body, write_committed
from tests.conftest import make_body

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _read(body: Body, name: str) -> str:
    out = await body.call_tool("read_text_file", {"path": name, "rationale": "r"})
    assert not out.is_error, out.structured
    body.replies.run()
    await body.audit_writer.settled()
    return out.action_id


@pytest.mark.parametrize("second", ["power_loss", "crash"])
async def test_two_bodies_appending_around_each_others_settles_keep_one_chain(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch, second: str
) -> None:
    a = unsettled_body(workspace, home, monkeypatch, NO_WINDOW)
    b = unsettled_body(workspace, home, monkeypatch, {**NO_WINDOW, "audit": {"durability": second}})
    ids: list[str] = []
    try:
        ids.append(await write_committed(a, "a1.txt"))
        a.audit.settle()  # A's journal emptied: A keeps its head
        ids.append(await write_committed(b, "b1.txt"))  # B appends at the journal's start
        b.audit.settle()  # B's end mark over B's record
        ids.append(await write_committed(a, "a2.txt"))  # A must see B's append, not chain onto its own head
        ids.append(await _read(b, "a1.txt"))
        a.audit.settle()
        ids.append(await _read(a, "b1.txt"))
        b.audit.settle()
        ids.append(await write_committed(b, "b2.txt"))
        a.audit.settle()
        b.audit.settle()
        ids.append(await write_committed(a, "a3.txt"))
        a.audit.settle()
        b.audit.settle()
    finally:
        a.close()
        b.close()
    assert committed(a.paths.db) == ids  # nothing lost, in the order appended
    with closing(make_body(workspace, home)) as third:
        report = third.audit.verify()
        assert report.ok and report.anchor == "match", report.summary()
        events = third.audit.tail(len(ids))
        assert [e.seq for e in events] == list(range(1, len(ids) + 1))


async def test_a_journal_scrubbed_by_another_body_after_a_settle_is_noticed(
    workspace: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A settles (its journal emptied by an end mark, its head kept); B appends, settles and scrubs the journal (the
    file truncated, as after a privacy migration), then appends again at its start; A appends next: it must chain
    onto B's last event, not its own head."""
    a = unsettled_body(workspace, home, monkeypatch, NO_WINDOW)
    b = unsettled_body(workspace, home, monkeypatch, NO_WINDOW)
    ids: list[str] = []
    try:
        ids.append(await write_committed(a, "a1.txt"))
        a.audit.settle()
        ids.append(await write_committed(b, "b1.txt"))
        b.audit.settle()
        b.audit.scrub_journal()
        assert a.paths.journal.read_bytes() == b""
        ids.append(await write_committed(a, "a2.txt"))  # (an empty journal: the end mark's check alone would pass)
        a.audit.settle()
        ids.append(await write_committed(b, "b2.txt"))
        b.audit.settle()
        b.audit.scrub_journal()
        ids.append(await _read(a, "b2.txt"))  # (a read: journaled on the event loop when nothing seems changed)
        a.audit.settle()
    finally:
        a.close()
        b.close()
    assert committed(a.paths.db) == ids
    with closing(make_body(workspace, home)) as third:
        report = third.audit.verify()
        assert report.ok and report.anchor == "match", report.summary()
