"""The SQLite state engine on disk: migrations, persistence across reopen, append-only tables, writers in parallel."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from brain_server import SchemaTooNew, SqliteStateEngine
from brain_server._schema import MIGRATIONS
from brain_server.state import ClaimGrant, LogAction, LogEntry
from shared_protocol.brain import KillState, Task

from .helpers import audit_chain

pytestmark = pytest.mark.anyio

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def entry(action: LogAction = "kill") -> LogEntry:
    return LogEntry(at=NOW, action=action, by="test", reason="because")


def task(n: int) -> Task:
    return Task(
        id=f"task_{n}", title=f"t{n}", description="", value_usd=0, state="queued", created_at=NOW, created_by="t"
    )


async def test_a_new_file_is_migrated_in_wal_mode_and_reopening_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "state" / "brain.db"
    state = await SqliteStateEngine.open(path)
    await state.set_kill_state(KillState(engaged=True, reason="r", by="cap", at=NOW), entry())
    await state.append_audit("body-a", audit_chain("body-a", 3))
    await state.close()

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()

    state = await SqliteStateEngine.open(path)
    try:
        assert await state.kill_state() == KillState(engaged=True, reason="r", by="cap", at=NOW)
        assert await state.audit_events("body-a") == audit_chain("body-a", 3)
        assert [e.action for e in await state.log_entries()] == ["kill"]
    finally:
        await state.close()


async def test_a_database_from_a_newer_brain_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "brain.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew):
        await SqliteStateEngine.open(path)


async def test_the_audit_events_and_the_brain_log_are_append_only(tmp_path: Path) -> None:
    path = tmp_path / "brain.db"
    state = await SqliteStateEngine.open(path)
    await state.append_audit("body-a", audit_chain("body-a", 2))
    await state.set_kill_state(KillState(engaged=True), entry())
    await state.close()
    conn = sqlite3.connect(path)
    try:
        for statement in (
            "UPDATE audit_events SET mac = 'x'",
            "DELETE FROM audit_events",
            "UPDATE brain_log SET reason = 'x'",
            "DELETE FROM brain_log",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()


async def test_claims_from_two_connections_never_take_the_same_task(tmp_path: Path) -> None:
    """Two engines on one file stand in for two processes: SQLite's write lock serialises them."""
    path = tmp_path / "brain.db"
    one, two = await SqliteStateEngine.open(path), await SqliteStateEngine.open(path)
    try:
        for n in range(30):
            await one.insert_task(task(n), entry("task_create"))
        won: list[str] = []

        async def claimer(state: SqliteStateEngine, agent: str) -> None:
            while True:
                grant = ClaimGrant(
                    body_id="b",
                    agent=agent,
                    claim_token=f"clm_{agent}",
                    at=NOW,
                    lease_expires=NOW + timedelta(minutes=5),
                )
                claimed = await state.claim_task(grant, lambda t: entry("task_claim"))
                if claimed is None:
                    return
                won.append(claimed.id)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for n in range(4):
                    group.start_soon(claimer, one if n % 2 else two, f"a{n}")
        assert sorted(won) == sorted(f"task_{n}" for n in range(30))
    finally:
        await one.close()
        await two.close()
