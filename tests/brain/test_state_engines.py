"""The state engines: SQLite on disk (migrations, reopening, append-only tables, writers in parallel), and the
token checks both engines share (binding, revocation)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from brain_server import BodyMismatch, SchemaTooNew, SqliteStateEngine, StateEngine, TokenRecord
from brain_server.auth import BODY, authenticate, hash_token
from brain_server.state import ClaimGrant, LogAction, LogEntry
from brain_server.state._rules import iso
from brain_server.state._schema import MIGRATIONS, split_statements
from shared_protocol.brain import KillState, Role, Task

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


# -- tokens: binding and revocation, the same on both engines (the `state` fixture is each engine) ---------------


def token_record(n: int, role: Role = "body") -> TokenRecord:
    return TokenRecord(id=f"tok_{n}", token_hash=f"hash_{n}", role=role, label=f"t{n}", created_at=NOW)


async def test_a_body_token_binds_once_and_keeps_its_first_body(state: StateEngine) -> None:
    await state.add_token(token_record(1), entry("token_create"))
    bound = await state.bind_token("tok_1", "body-a", entry("token_bind"))
    assert bound is not None and bound.body_id == "body-a"
    again = await state.bind_token("tok_1", "body-b", entry("token_bind"))
    assert again is not None and again.body_id == "body-a", "the first body wins, for good"
    assert await state.token_by_hash("hash_1") == bound
    assert [e.action for e in await state.log_entries()] == ["token_create", "token_bind"], "a lost bind logs nothing"
    assert await state.bind_token("tok_unknown", "body-a", entry("token_bind")) is None


async def test_approver_captain_and_revoked_tokens_are_never_bound(state: StateEngine) -> None:
    await state.add_token(token_record(1, "approver"), entry("token_create"))
    await state.add_token(token_record(2, "captain"), entry("token_create"))
    await state.add_token(token_record(3), entry("token_create"))
    await state.revoke_token("tok_3", at=NOW, log=entry("token_revoke"))
    for token_id in ("tok_1", "tok_2", "tok_3"):
        record = await state.bind_token(token_id, "body-a", entry("token_bind"))
        assert record is not None and record.body_id is None
    assert "token_bind" not in [e.action for e in await state.log_entries()]


async def test_revoking_returns_the_token_as_it_was_and_a_second_revocation_changes_nothing(
    state: StateEngine,
) -> None:
    await state.add_token(token_record(1), entry("token_create"))
    await state.bind_token("tok_1", "body-a", entry("token_bind"))
    before = await state.revoke_token("tok_1", at=NOW, log=entry("token_revoke"))
    assert before is not None and before.revoked_at is None and before.body_id == "body-a"
    stored = await state.token_by_hash("hash_1")
    assert stored is not None and stored.revoked_at == NOW and stored.body_id == "body-a"
    later = NOW + timedelta(hours=1)
    again = await state.revoke_token("tok_1", at=later, log=entry("token_revoke"))
    assert again == stored, "already revoked: the first revocation stands"
    assert await state.token_by_hash("hash_1") == stored
    assert [e.action for e in await state.log_entries()].count("token_revoke") == 1
    assert await state.revoke_token("tok_unknown", at=NOW, log=entry("token_revoke")) is None
    assert [e.action for e in await state.log_entries()].count("token_revoke") == 1


async def test_tokens_are_listed_oldest_first_with_their_binding_and_revocation(state: StateEngine) -> None:
    for n, role in ((1, "captain"), (2, "body"), (3, "approver")):
        record = replace(token_record(n, role), created_at=NOW + timedelta(seconds=10 - n))
        await state.add_token(record, entry("token_create"))
    await state.add_token(replace(token_record(4), created_at=NOW + timedelta(seconds=7)), entry("token_create"))
    await state.bind_token("tok_2", "body-a", entry("token_bind"))
    await state.revoke_token("tok_1", at=NOW, log=entry("token_revoke"))
    listed = await state.tokens()
    assert [t.id for t in listed] == ["tok_3", "tok_4", "tok_2", "tok_1"], "by creation time, then insertion"
    assert [(t.body_id, t.revoked_at) for t in listed] == [(None, None), (None, None), ("body-a", None), (None, NOW)]


async def test_an_outcome_for_a_task_of_another_body_is_refused_and_changes_nothing(state: StateEngine) -> None:
    await state.insert_task(task(1), entry("task_create"))
    grant = ClaimGrant(body_id="body-a", agent="a", claim_token="clm_1", at=NOW, lease_expires=NOW + timedelta(1))
    claimed = await state.claim_task(grant, lambda t: entry("task_claim"))
    assert claimed is not None
    log_before = await state.log_entries()

    async def finish(holder: str | None) -> Task:
        return await state.finish_task(
            "task_1",
            claim_token="clm_1",
            outcome="succeeded",
            summary="",
            at=NOW,
            log=entry("task_outcome"),
            holder=holder,
        )

    with pytest.raises(BodyMismatch, match="body-b"):
        await finish("body-b")
    assert await state.task("task_1") == claimed and await state.log_entries() == log_before
    assert (await finish("body-a")).state == "succeeded"


async def test_tokens_of_a_database_from_the_previous_schema_keep_working_unbound_and_unrevoked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "brain.db"
    conn = sqlite3.connect(path)
    try:
        for migration in MIGRATIONS[:3]:  # the schema before tokens could be bound or revoked
            for statement in split_statements(migration):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 3")
        conn.execute(
            "INSERT INTO tokens (id, token_hash, role, label, created_at) VALUES (?, ?, ?, ?, ?)",
            ("tok_old", hash_token("swb_old"), "body", "laptop", iso(NOW)),
        )
        conn.commit()
    finally:
        conn.close()

    state = await SqliteStateEngine.open(path)
    try:
        who = await authenticate(state, "Bearer swb_old", BODY)
        assert (who.token_id, who.role, who.label, who.body_id) == ("tok_old", "body", "laptop", None)
        (old,) = await state.tokens()
        assert (old.body_id, old.revoked_at, old.created_at) == (None, None, NOW)
        bound = await state.bind_token("tok_old", "body-a", entry("token_bind"))
        assert bound is not None and bound.body_id == "body-a"
    finally:
        await state.close()


async def test_a_token_gains_its_body_and_its_revocation_once_and_is_never_deleted(tmp_path: Path) -> None:
    path = tmp_path / "brain.db"
    state = await SqliteStateEngine.open(path)
    await state.add_token(token_record(1), entry("token_create"))
    await state.add_token(token_record(2, "approver"), entry("token_create"))
    await state.bind_token("tok_1", "body-a", entry("token_bind"))
    await state.revoke_token("tok_1", at=NOW, log=entry("token_revoke"))
    await state.close()
    conn = sqlite3.connect(path)
    try:
        for statement in (
            "UPDATE tokens SET body_id = 'body-b' WHERE id = 'tok_1'",
            "UPDATE tokens SET body_id = NULL WHERE id = 'tok_1'",
            "UPDATE tokens SET revoked_at = NULL WHERE id = 'tok_1'",
            "UPDATE tokens SET role = 'captain' WHERE id = 'tok_1'",
            "UPDATE tokens SET body_id = 'body-a' WHERE id = 'tok_2'",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="once each"):
                conn.execute(statement)
        with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
            conn.execute("DELETE FROM tokens")
    finally:
        conn.close()


async def test_first_uses_from_two_connections_bind_exactly_one_body(tmp_path: Path) -> None:
    """Two engines on one file stand in for two processes; each token gets many concurrent first uses."""
    path = tmp_path / "brain.db"
    one, two = await SqliteStateEngine.open(path), await SqliteStateEngine.open(path)
    try:
        for n in range(10):
            await one.add_token(token_record(n), entry("token_create"))
        results: dict[int, list[str | None]] = {n: [] for n in range(10)}

        async def first_use(state: SqliteStateEngine, n: int, body_id: str) -> None:
            record = await state.bind_token(f"tok_{n}", body_id, entry("token_bind"))
            assert record is not None
            results[n].append(record.body_id)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for n in range(10):
                    for k in range(4):
                        group.start_soon(first_use, one if k % 2 else two, n, f"body-{n}-{k}")
        for n, seen in results.items():
            assert len(seen) == 4 and len(set(seen)) == 1, f"every use of tok_{n} sees the one winner: {seen}"
        binds = [e for e in await one.log_entries(limit=1000) if e.action == "token_bind"]
        assert len(binds) == 10, "one bind logged per token"
    finally:
        await one.close()
        await two.close()
