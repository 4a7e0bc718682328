"""The SQLite engine's verification tables (schema v16): what settling reads is found by index, never by scanning the
tasks or a body's whole chain; a database from before v16 gets its pending and confirmed verifications indexed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from brain_server import SqliteStateEngine

pytestmark = pytest.mark.anyio

LOOKUPS = {
    "a body's event by its action id": (
        "SELECT event FROM audit_events WHERE body_id = ? AND id = ? ORDER BY seq LIMIT 1",
        ("body-a", "act_1"),
    ),
    "the tasks waiting for new events": (
        "SELECT w.task_id FROM verification_waits AS w JOIN tasks AS t ON t.id = w.task_id "
        "WHERE w.action_id IN (?, ?) GROUP BY w.task_id ORDER BY MIN(t.seq)",
        ("act_1", "act_2"),
    ),
    "the verification an event confirmed": (
        "SELECT slot FROM verification_uses WHERE body_id = ? AND action_id = ?",
        ("body-a", "act_1"),
    ),
}


async def test_settling_reads_by_index_never_by_scanning(tmp_path: Path) -> None:
    path = tmp_path / "brain.db"
    await (await SqliteStateEngine.open(path)).close()
    conn = sqlite3.connect(path)
    try:
        for what, (query, params) in LOOKUPS.items():
            plan = " | ".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {query}", params))
            assert "SCAN" not in plan.replace("SCAN CONSTANT ROW", ""), (what, plan)
            assert "USING" in plan, (what, plan)
            assert "(body_id=?)" not in plan, f"{what}: every event of the body read ({plan})"
    finally:
        conn.close()


async def test_a_database_from_before_v16_gets_its_verifications_indexed(tmp_path: Path) -> None:
    path = tmp_path / "brain.db"
    await (await SqliteStateEngine.open(path)).close()
    pending = {"command": "true", "action_id": "act_p", "status": "pending", "body_id": "body-a", "after_seq": 0}
    confirmed = {**pending, "action_id": "act_c", "status": "confirmed", "verified": True, "exit_code": 0}
    shadow = [{"agent": "w1", "logic_version": "lv-1", "verification": {**pending, "action_id": "act_s"}}]
    conn = sqlite3.connect(path)
    try:
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
            "ALTER TABLE tokens DROP COLUMN pairing_hash; "  # (v20)
            "DROP TABLE verification_uses; DROP TABLE verification_waits; DROP INDEX audit_events_action; "
            "ALTER TABLE bodies DROP COLUMN verify_key; DROP TABLE agent_pauses; DROP TRIGGER usage_records_totals; "
            "DROP TABLE usage_totals; DROP INDEX usage_records_at; DROP INDEX usage_records_task; "
            "DROP TABLE rollouts; PRAGMA user_version = 15;"
        )
        rows = [("task_p", json.dumps(pending), "[]"), ("task_c", json.dumps(confirmed), json.dumps(shadow))]
        conn.executemany(
            "INSERT INTO tasks (id, title, description, value_usd, state, created_at, created_by, verification, "
            "shadow_runs) VALUES (?, 't', '', 0, 'succeeded', '2030-01-01T00:00:00.000000+00:00', 'x', ?, ?)",
            rows,
        )
        conn.commit()
    finally:
        conn.close()
    await (await SqliteStateEngine.open(path)).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 16
        waits = sorted(conn.execute("SELECT action_id, task_id, body_id FROM verification_waits").fetchall())
        assert waits == [("act_p", "task_p", "body-a"), ("act_s", "task_c", "body-a")]
        uses = conn.execute("SELECT body_id, action_id, task_id, slot FROM verification_uses").fetchall()
        assert uses == [("body-a", "act_c", "task_c", "task_c")]
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM verification_uses")
    finally:
        conn.close()
