"""The brain's copy of the bodies' audit events: kept `audit_retention_days`, each body's newest always kept."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from brain_server import Brain, SqliteStateEngine, StateEngine

from .helpers import BrainClient, Clock, audit_chain, audit_event, batch, ok, refused

pytestmark = pytest.mark.anyio

DAY = 86_400.0


async def stored_seqs(brain: Brain, body_id: str) -> list[int]:
    return [e.seq for e in await brain.state.audit_events(body_id)]


async def test_events_past_the_retention_go_each_body_keeps_its_newest_and_its_chain_goes_on(
    api: BrainClient, brain: Brain, clock: Clock
) -> None:
    a, b = audit_chain("body-a", 6), audit_chain("body-b", 2)
    await api.add_token("body-b")
    ok(await api.post("/v1/audit", batch("body-a", a[:3]), as_="body"))
    ok(await api.post("/v1/audit", batch("body-b", b), as_="body-b"))
    clock.advance(10 * DAY)
    ok(await api.post("/v1/audit", batch("body-a", a[3:5]), as_="body"))
    assert await brain.prune_audit() == {}  # nothing is 90 days old yet

    clock.advance(85 * DAY)  # what the brain received first is now 95 days old, the rest 85
    assert await brain.prune_audit() == {"body-a": 3, "body-b": 1}  # body-b keeps its newest, seq 2
    assert await stored_seqs(brain, "body-a") == [4, 5]
    assert await stored_seqs(brain, "body-b") == [2]
    assert await brain.prune_audit() == {}  # and again: nothing more

    # The chain goes on from the kept head; what the body resends from before the floor stores nothing.
    assert ok(await api.post("/v1/audit", batch("body-a", a), as_="body")) == {"stored_through": 6}
    assert await stored_seqs(brain, "body-a") == [4, 5, 6]
    assert ok(await api.post("/v1/audit", batch("body-a", a[:3]), as_="body")) == {"stored_through": 6}
    # Above the floor the links are still checked.
    forged = audit_event("body-a", 5, prev_mac=a[3].mac, salt="forged")
    refused(await api.post("/v1/audit", batch("body-a", [forged]), as_="body"), 409, "chain_mismatch")
    assert await stored_seqs(brain, "body-a") == [4, 5, 6]

    entries = [e for e in await brain.state.log_entries() if e.action == "audit_prune"]
    assert len(entries) == 1
    assert entries[0].by == "retention" and entries[0].detail["pruned"] == {"body-a": 3, "body-b": 1}


async def test_a_body_cannot_age_its_own_events_by_their_timestamps(
    api: BrainClient, brain: Brain, clock: Clock
) -> None:
    chain = [e.model_copy(update={"ts": "1970-01-01T00:00:00.000000+00:00"}) for e in audit_chain("body-a", 4)]
    ok(await api.post("/v1/audit", batch("body-a", chain), as_="body"))
    clock.advance(DAY)
    assert await brain.prune_audit() == {}  # received a day ago: kept, whatever the events say of themselves
    assert await stored_seqs(brain, "body-a") == [1, 2, 3, 4]


async def test_a_body_whose_every_event_is_old_keeps_its_newest(api: BrainClient, brain: Brain, clock: Clock) -> None:
    ok(await api.post("/v1/audit", batch("body-a", audit_chain("body-a", 4)), as_="body"))
    clock.advance(400 * DAY)
    assert await brain.prune_audit() == {"body-a": 3}
    assert await stored_seqs(brain, "body-a") == [4]


async def test_the_retention_loop_prunes_at_start_and_a_failure_is_logged_and_tried_again(
    api: BrainClient, brain: Brain, clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ok(await api.post("/v1/audit", batch("body-a", audit_chain("body-a", 4)), as_="body"))
    clock.advance(400 * DAY)
    real = brain.state.prune_audit
    failures = [sqlite3.OperationalError("database is locked")]

    async def flaky(*args: object, **kwargs: object) -> dict[str, int]:
        if failures:
            raise failures.pop()
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(brain.state, "prune_audit", flaky)
    with caplog.at_level(logging.ERROR), anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: brain.run_retention(interval_s=0.01))
            while await stored_seqs(brain, "body-a") != [4]:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert "audit retention failed" in caplog.text


@pytest.mark.sqlite
async def test_the_delete_trigger_lets_retention_through_its_own_mark_only(tmp_path: Path, clock: Clock) -> None:
    from brain_server.state import LogEntry

    path = tmp_path / "brain.db"
    state: StateEngine = await SqliteStateEngine.open(path)
    start = datetime.fromtimestamp(clock.now, UTC)
    await state.append_audit("body-a", audit_chain("body-a", 5), at=start)
    await state.append_audit("body-b", audit_chain("body-b", 5), at=start + timedelta(days=10))
    cutoff = start + timedelta(days=1)
    pruned = await state.prune_audit(cutoff, LogEntry(at=cutoff, action="audit_prune", by="retention"))
    assert pruned == {"body-a": 4}
    await state.close()
    conn = sqlite3.connect(path)
    try:
        for statement in (
            "DELETE FROM audit_events WHERE body_id = 'body-a' AND seq = 5",  # above its mark
            "DELETE FROM audit_events WHERE body_id = 'body-b' AND seq = 1",  # below body-a's mark, not its own
            "UPDATE audit_prune_marks SET through_seq = 5",
            "DELETE FROM audit_prune_marks",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
        marks = conn.execute("SELECT body_id, through_seq FROM audit_prune_marks ORDER BY body_id").fetchall()
        assert marks == [("body-a", 4)]
    finally:
        conn.close()


@pytest.mark.sqlite
async def test_a_database_from_before_retention_keeps_its_events_and_prunes_once_upgraded(
    tmp_path: Path, clock: Clock
) -> None:
    from brain_server.state import LogEntry
    from brain_server.state._schema import MIGRATIONS, split_statements

    path = tmp_path / "brain.db"
    old = await SqliteStateEngine.open(path)
    await old.append_audit("body-a", audit_chain("body-a", 4), at=datetime.fromtimestamp(clock.now, UTC))
    await old.close()
    conn = sqlite3.connect(path)  # back to the schema before retention (v5): its delete trigger, no marks
    try:
        v10_columns = [
            "acceptance",
            "repo",
            "claim_mode",
            "logic_version",
            "parked_decision_id",
            "verification",
            "verified",
            "evidence",
            "spend",
            "shadow_runs",
        ]
        conn.executescript(
            "DROP TABLE task_key_secret; "  # (v26)
            # (v25: the v24 triggers of the log, readiness overrides and compensations again; no report triggers)
            "DROP TRIGGER readiness_reports_no_update; DROP TRIGGER readiness_reports_no_delete; "
            "DROP TRIGGER readiness_overrides_no_update; CREATE TRIGGER readiness_overrides_no_update BEFORE UPDATE "
            "ON readiness_overrides BEGIN SELECT RAISE(ABORT, 'readiness overrides are never changed: they expire'); "
            "END; DROP TRIGGER compensations_reversed_once; CREATE TRIGGER compensations_reversed_once BEFORE UPDATE "
            "ON compensations WHEN OLD.reversed_at IS NOT NULL OR NEW.before IS NOT OLD.before "
            "OR NEW.after IS NOT OLD.after "
            "BEGIN SELECT RAISE(ABORT, 'a compensation only gains its reversal, once'); END; "
            "DROP TRIGGER brain_log_no_update; DROP TRIGGER task_events_no_update; "  # (v24)
            "CREATE TRIGGER brain_log_no_update BEFORE UPDATE ON brain_log "
            "BEGIN SELECT RAISE(ABORT, 'brain_log is append-only'); END; "
            "CREATE TRIGGER task_events_no_update BEFORE UPDATE ON task_events "
            "BEGIN SELECT RAISE(ABORT, 'task_events is append-only'); END; "
            "DROP TRIGGER rollout_inputs_task_insert; DROP TRIGGER rollout_inputs_task_update; "
            "DROP TRIGGER rollout_inputs_task_delete; DROP TRIGGER rollout_inputs_task_events; "
            "DROP TRIGGER rollout_inputs_decision_insert; DROP TRIGGER rollout_inputs_decision_update; "
            "DROP TRIGGER rollout_inputs_decision_delete; DROP TRIGGER rollout_inputs_usage; "
            "DROP TRIGGER rollout_inputs_refusal; DROP TRIGGER rollout_inputs_audit_rewrite; "
            "DROP TRIGGER rollout_inputs_audit_prune; DROP TABLE rollout_inputs; "  # (v23)
            "DROP INDEX audit_events_refused; "
            "DROP TABLE audit_rewrite_gate; DROP TRIGGER audit_events_no_update; "  # (v22)
            "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
            "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END; "
            "DROP TABLE rollouts; "  # (v21)
            "ALTER TABLE tokens DROP COLUMN pairing_hash; "  # (v20)
            # (v19: the usage totals and their indexes; its tokens rebuild is undone with v17's, below)
            "DROP TRIGGER usage_records_totals; DROP TABLE usage_totals; DROP INDEX usage_records_at; "
            "DROP INDEX usage_records_task; "
            "DROP TABLE agent_pauses; "  # (v18)
            # (v17: the tokens table as v13 left it, without the reviewer role, its triggers and index again)
            "CREATE TABLE tokens_v13 (id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL "
            "CHECK (role IN ('body', 'approver', 'captain')), label TEXT NOT NULL, created_at TEXT NOT NULL, "
            "body_id TEXT, revoked_at TEXT, agent TEXT); "
            "INSERT INTO tokens_v13 SELECT id, token_hash, role, label, created_at, body_id, revoked_at, agent "
            "FROM tokens; DROP TABLE tokens; ALTER TABLE tokens_v13 RENAME TO tokens; "
            "CREATE TRIGGER tokens_no_delete BEFORE DELETE ON tokens "
            "BEGIN SELECT RAISE(ABORT, 'tokens are never deleted: revoke them'); END; "
            "CREATE TRIGGER tokens_bound_and_revoked_once BEFORE UPDATE ON tokens WHEN NEW.id IS NOT OLD.id "
            "BEGIN SELECT RAISE(ABORT, 'a token only gains its body and its revocation, once each'); END; "
            "CREATE UNIQUE INDEX tokens_one_live_per_body ON tokens (body_id) "
            "WHERE body_id IS NOT NULL AND revoked_at IS NULL; "
            "DROP TABLE verification_uses; DROP TABLE verification_waits; DROP INDEX audit_events_action; "
            "ALTER TABLE bodies DROP COLUMN verify_key; "  # (v16)
            "ALTER TABLE tasks DROP COLUMN setup; "  # (v15)
            "DROP TABLE dashboard_sessions; "  # (v14)
            "DROP TABLE telemetry_presence; "  # (v13)
            "ALTER TABLE tasks DROP COLUMN acceptance_inputs; "  # (v12)
            "DROP TRIGGER tokens_bound_and_revoked_once; ALTER TABLE tokens DROP COLUMN agent; "  # (v11)
            "DROP INDEX tasks_agent; DROP TABLE task_events; DROP TABLE usage_records; DROP TABLE readiness_reports; "
            "DROP TABLE readiness_overrides; "
            + "".join(f"ALTER TABLE tasks DROP COLUMN {column}; " for column in v10_columns)  # (v10)
            + "ALTER TABLE bodies DROP COLUMN left_at; DROP INDEX tokens_one_live_per_body; "  # (v9, v8)
            "DROP TABLE audit_prune_marks; DROP TRIGGER audit_events_no_delete; "
            "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
            "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END; PRAGMA user_version = 5;"
        )
        assert "audit_prune_marks" in " ".join(split_statements(MIGRATIONS[5]))  # (v6, run again on open)
    finally:
        conn.close()

    state = await SqliteStateEngine.open(path)
    try:
        assert [e.seq for e in await state.audit_events("body-a")] == [1, 2, 3, 4]
        cutoff = datetime.fromtimestamp(clock.now, UTC) + timedelta(days=1)
        assert await state.prune_audit(cutoff, LogEntry(at=cutoff, action="audit_prune", by="retention")) == {
            "body-a": 3
        }
        assert [e.seq for e in await state.audit_events("body-a")] == [4]
        from brain_server import issue_token

        await issue_token(state, role="reviewer", label="rev", at=cutoff, agent="rev")  # (v14 again: the role exists)
        assert [(t.role, t.agent) for t in await state.tokens()] == [("reviewer", "rev")]
    finally:
        await state.close()
