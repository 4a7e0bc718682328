"""The brain backs up its own database: consistent while in use, verified, rotated, on a schedule."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from brain_server import BrainSettings, SqliteStateEngine, issue_token
from brain_server.backup import backup_database
from brain_server.exceptions import BackupFailed
from brain_server.state import sqlite_url

from .helpers import live_brain

pytestmark = pytest.mark.anyio


async def test_a_backup_taken_while_the_brain_writes_holds_its_rows_and_old_ones_rotate(tmp_path: Path) -> None:
    db = tmp_path / "brain.db"
    state = await SqliteStateEngine.open(db)
    try:
        await issue_token(state, role="captain", label="first", at=datetime.now(UTC))
        start = datetime(2030, 1, 1, tzinfo=UTC)
        paths = [backup_database(db, tmp_path / "backups", keep=2, now=start + timedelta(hours=h)) for h in range(3)]
        await issue_token(state, role="body", label="after", at=datetime.now(UTC))
    finally:
        await state.close()
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == sorted(p.name for p in paths[1:])
    with sqlite3.connect(paths[-1]) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables and conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert "tokens" in tables
    with sqlite3.connect(paths[-1]) as conn:
        assert conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0] == 1


def test_a_database_that_cannot_be_read_is_a_clear_failure(tmp_path: Path) -> None:
    with pytest.raises(BackupFailed):
        backup_database(tmp_path / "missing.db", tmp_path / "backups", keep=3)
    assert not any((tmp_path / "backups").iterdir())


async def test_the_daemon_backs_up_on_its_schedule(tmp_path: Path) -> None:
    async with live_brain(BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"), backup_interval_s=0.2)):
        with anyio.fail_after(10):
            while not list((tmp_path / "backups").glob("brain-*.db")):
                await anyio.sleep(0.05)
