"""What the SQLite engine adds to the state contract: a file migrated in WAL mode, a newer schema refused, tables
the database itself keeps append-only (triggers), and writers in several processes (two engines on one file)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from brain_server import SchemaTooNew, SqliteStateEngine, StateBroken
from brain_server.auth import BODY, authenticate, hash_token
from brain_server.state import ClaimGrant
from brain_server.state._rules import iso
from brain_server.state._schema import MIGRATIONS, split_statements
from shared_protocol.brain import KillState

from ..helpers import audit_chain
from .records import NOW, entry, grant, task, token_record

pytestmark = [pytest.mark.anyio, pytest.mark.sqlite]


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


async def test_a_file_deleted_under_the_engine_breaks_it_for_good_and_says_so_once(tmp_path: Path) -> None:
    path = tmp_path / "brain.db"
    engine = await SqliteStateEngine.open(path)
    try:
        await engine.add_token(token_record(1), entry("token_create"))
        path.unlink()
        with pytest.raises(StateBroken) as first:
            await engine.token_by_hash("hash_1")
        with anyio.fail_after(1):
            assert await engine.wait_broken() is first.value
        with pytest.raises(StateBroken) as again:
            await engine.add_token(token_record(2), entry("token_create"))
        assert again.value is first.value and engine.broken is first.value
        assert first.value.status == 503 and first.value.code == "state_unavailable"
    finally:
        await engine.close()


async def test_opening_a_damaged_file_closes_what_it_opened_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "brain.db"
    path.write_bytes(b"not a database at all, " * 200)
    with pytest.raises(StateBroken):
        await SqliteStateEngine.open(path)
    assert not path.with_name("brain.db-wal").exists()
    path.write_bytes(b"")
    with pytest.raises(StateBroken):
        await SqliteStateEngine.open(path)
    assert path.read_bytes() == b"", "an empty file is not taken for a new database"


async def test_a_database_with_two_live_tokens_on_one_body_keeps_the_first_bound_and_revokes_the_other(
    tmp_path: Path,
) -> None:
    path = tmp_path / "brain.db"
    conn = sqlite3.connect(path)
    try:
        for migration in MIGRATIONS[:7]:  # before a body id was held by one token
            for statement in split_statements(migration):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 7")
        for n in range(1, 5):
            conn.execute(
                "INSERT INTO tokens (id, token_hash, role, label, created_at) VALUES (?, ?, 'body', '', ?)",
                (f"tok_{n}", f"hash_{n}", iso(NOW + timedelta(seconds=10 - n))),  # created in reverse order
            )
        for n, body_id in ((2, "body-a"), (3, "body-b"), (1, "body-a"), (4, "body-a")):  # tok_2 bound first
            conn.execute("UPDATE tokens SET body_id = ? WHERE id = ?", (body_id, f"tok_{n}"))
            conn.execute(
                "INSERT INTO brain_log (at, action, by, reason, target, detail) "
                "VALUES (?, 'token_bind', 'test', 'first use', ?, '{}')",
                (iso(NOW), f"tok_{n}"),
            )
        conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = 'tok_4'", (iso(NOW),))
        conn.commit()
    finally:
        conn.close()

    state = await SqliteStateEngine.open(path)
    try:
        live = {t.id: t.body_id for t in await state.tokens() if t.revoked_at is None}
        assert live == {"tok_2": "body-a", "tok_3": "body-b"}
        revoked = [e.target for e in await state.log_entries() if e.action == "token_revoke"]
        assert revoked == ["tok_1"], "one line per token revoked; tok_4 was revoked already"
    finally:
        await state.close()
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "INSERT INTO tokens (id, token_hash, role, label, created_at) VALUES ('tok_5', 'hash_5', 'body', '', ?)",
            (iso(NOW),),
        )
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute("UPDATE tokens SET body_id = 'body-a' WHERE id = 'tok_5'")
    finally:
        conn.close()


async def test_first_uses_of_one_body_by_two_tokens_from_two_connections_bind_exactly_one(tmp_path: Path) -> None:
    path = tmp_path / "brain.db"
    one, two = await SqliteStateEngine.open(path), await SqliteStateEngine.open(path)
    try:
        for n in range(8):
            await one.add_token(token_record(n), entry("token_create"))

        async def first_use(state: SqliteStateEngine, n: int) -> None:
            await state.bind_token(f"tok_{n}", "body-a", entry("token_bind"))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                for n in range(8):
                    group.start_soon(first_use, one if n % 2 else two, n)
        assert len([t for t in await one.tokens() if t.body_id == "body-a"]) == 1
    finally:
        await one.close()
        await two.close()


async def test_a_scan_being_read_never_holds_up_the_token_and_kill_state_reads_every_request_makes(
    tmp_path: Path,
) -> None:
    """A dashboard's scans (every task, every usage record) run on the scanner's own connection and thread: a kill's
    token lookup and a kill-state read are answered while one is still being parsed."""
    engine = await SqliteStateEngine.open(tmp_path / "brain.db")
    try:
        await engine.add_token(token_record(1, "captain"), entry("token_create"))
        parsing, release = threading.Event(), threading.Event()

        def held(rows: list[sqlite3.Row]) -> int:
            parsing.set()
            release.wait(10)
            return len(rows)

        async with anyio.create_task_group() as group:
            group.start_soon(engine._scan, "SELECT * FROM tokens", (), held)  # pyright: ignore[reportPrivateUsage]
            await anyio.to_thread.run_sync(parsing.wait, 10)
            try:
                with anyio.fail_after(5):
                    found = await engine.token_by_hash("hash_1")
                    assert found is not None and found.id == "tok_1"
                    assert not (await engine.kill_state()).engaged
            finally:
                release.set()
    finally:
        await engine.close()


async def test_tasks_read_again_show_every_change_since_the_last_read_even_a_history_line_rewritten_in_place(
    tmp_path: Path,
) -> None:
    """`tasks()` reuses what earlier scans parsed for rows whose text is unchanged (`_parsed.Parsed`): a new state, a
    new history event and a history line's text rewritten in place (a privacy rewrite) are all seen."""
    engine = await SqliteStateEngine.open(tmp_path / "brain.db")
    try:
        await engine.insert_task(task(1), entry("task_create"))
        await engine.insert_task(task(2), entry("task_create"))
        first = await engine.tasks()
        assert [t.state for t in first] == ["queued", "queued"]
        assert (await engine.tasks())[1] is first[1]  # (unchanged: the model parsed before)
        await engine.claim_task(grant(), lambda t: entry("task_claim"))
        claimed = await engine.tasks()
        assert [t.state for t in claimed] == ["claimed", "queued"]
        assert [e.kind for e in claimed[0].history] == ["claimed"]
        event = claimed[0].history[0].model_copy(update={"by": "rewritten"})
        conn = sqlite3.connect(tmp_path / "brain.db")
        try:
            with conn:
                conn.execute("UPDATE audit_rewrite_gate SET open = 1 WHERE id = 1")
                conn.execute(
                    "UPDATE task_events SET event = ? WHERE id = (SELECT MIN(id) FROM task_events WHERE task_id = ?)",
                    (event.model_dump_json(), "task_1"),
                )
                conn.execute("UPDATE audit_rewrite_gate SET open = 0 WHERE id = 1")
        finally:
            conn.close()
        assert (await engine.tasks())[0].history[0].by == "rewritten"
        assert await engine.tasks(state="queued") == [claimed[1]]
    finally:
        await engine.close()
