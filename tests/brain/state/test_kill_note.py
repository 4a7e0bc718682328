"""A kill noted ahead of its commit (`_kill_note`): committed as the engine opens when the commit never came; spent
once committed or released; dropped when it cannot be read back (written as the brain stopped, told to nobody)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from brain_server import LogEntry, SqliteStateEngine
from shared_protocol.brain import KillState

pytestmark = pytest.mark.anyio

AT = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)


def _kill(at: datetime = AT) -> tuple[KillState, LogEntry]:
    state = KillState(engaged=True, reason="runaway", by="captain-1", at=at)
    return state, LogEntry(at=at, action="kill", by="captain-1", token_id="tok_c", role="captain", reason="runaway")


async def test_a_kill_noted_and_never_committed_is_committed_as_the_engine_opens(tmp_path: Path) -> None:
    db = tmp_path / "brain.db"
    state = await SqliteStateEngine.open(db)
    await state.note_kill(*_kill())  # (then the brain dies: no commit)
    await state.close()
    await (await SqliteStateEngine.open(db)).close()  # (the brain starts, and stops again)
    reopened = await SqliteStateEngine.open(db)
    try:
        kill = await reopened.kill_state()
        assert (kill.engaged, kill.reason, kill.by, kill.at) == (True, "runaway", "captain-1", AT)
        kills = [e for e in await reopened.log_entries() if e.action == "kill"]
        assert len(kills) == 1  # (committed once, however often the brain opens after)
        assert kills[0].by == "captain-1" and kills[0].at == AT and "noted_ahead" in kills[0].detail
    finally:
        await reopened.close()


async def test_a_noted_kill_once_committed_or_released_later_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "brain.db"
    state = await SqliteStateEngine.open(db)
    await state.note_kill(*_kill())
    await state.set_kill_state(*_kill())
    released = KillState(engaged=False, reason="fixed", by="captain-1", at=AT + timedelta(seconds=5))
    await state.set_kill_state(released, LogEntry(at=released.at or AT, action="resume", by="captain-1"))
    await state.close()
    reopened = await SqliteStateEngine.open(db)
    try:
        assert (await reopened.kill_state()).engaged is False  # (the release, later than the note, holds)
        assert len([e for e in await reopened.log_entries() if e.action == "kill"]) == 1
    finally:
        await reopened.close()


async def test_a_note_that_cannot_be_read_back_is_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "brain.db"
    await (await SqliteStateEngine.open(db)).close()
    note = tmp_path / "brain.db.kill"
    assert note.exists()  # (made as the engine opens: a kill rewrites it in place)
    note.write_bytes(b'{"state":{"engaged":tr')  # (a crash mid-write: it was published to nobody)
    reopened = await SqliteStateEngine.open(db)
    try:
        assert (await reopened.kill_state()).engaged is False
        assert "cannot be read back" in caplog.text
    finally:
        await reopened.close()


async def test_a_committed_kill_leaves_no_reason_in_its_note(tmp_path: Path) -> None:
    """The note holds the kill's reason (personal data, where a brain keeps it in the clear); once committed it is
    emptied, and a spent note found as the engine opens (an older brain's, or one back after a power loss) too:
    erasure and migration read the database, not this file."""
    db = tmp_path / "brain.db"
    note = tmp_path / "brain.db.kill"
    state = await SqliteStateEngine.open(db)
    try:
        await state.note_kill(*_kill())
        assert b"runaway" in note.read_bytes()
        await state.set_kill_state(*_kill())
        assert note.read_bytes() == b""
        await state.note_kill(*_kill())  # (noted, committed, and the note left behind: as a brain before the emptying)
        await state.set_kill_state(*_kill())
        await state.note_kill(*_kill())
    finally:
        await state.close()
    assert b"runaway" in note.read_bytes()
    reopened = await SqliteStateEngine.open(db)
    try:
        assert note.read_bytes() == b""
        assert (await reopened.kill_state()).engaged
        assert len([e for e in await reopened.log_entries() if e.action == "kill"]) == 2  # (a spent note: no third)
    finally:
        await reopened.close()
