"""`swarm privacy migrate` on the brain's own records (#21): random personal data planted over the real HTTP API of a
brain running with `[privacy] redaction = false` (as a brain before #21 wrote it) — a kill's reason, a task's title
and description, its cancel reason (its history line and a log entry), a decision's summary and rationale — and in
an escalation record, and a backup taken then, is found in no file under the brain's state once migrated (the
backups included), in clear, base64, hex, percent- or JSON-escaped form. The API still reads it as written, export
finds every place (escalations too), an erasure leaves it redacted, a second run does nothing, and the schema's
triggers still refuse any other change of the log or a task's history. Both engines rewrite the same records."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from brain_server import BrainSettings
from brain_server.backup import backup_database
from brain_server.privacy import RecordProtection
from brain_server.state import LogEntry, MemoryStateEngine, SqliteStateEngine, StateEngine, sqlite_url
from brain_server.wake.records import Escalation
from shared_protocol.brain import Task
from shared_protocol.privacy import MemorySubjectKeys, PrivacyConfig, Protector
from tests.brain.helpers import decision_request, live_brain

from .plant import Planted, leaks, plant

pytestmark = pytest.mark.anyio


def _escalation(p: Planted, escalation_id: str = "alr_0123456789abcdef") -> Escalation:
    now = datetime.now(UTC)
    return Escalation(
        id=escalation_id,
        kind="alert",
        title=f"a page about {p.email}",
        summary=f"call {p.phone}",
        facts={"Card": p.card},
        created_at=now,
        updated_at=now,
    )


async def test_the_brains_own_records_are_migrated_exported_and_erased_and_old_backups_replaced(
    tmp_path: Path,
) -> None:
    p = plant()
    state = tmp_path / "brain-state"
    state.mkdir()
    db = state / "brain.db"
    off = BrainSettings(database_url=sqlite_url(db), keepalive_s=0.2, privacy=PrivacyConfig(redaction=False))
    async with live_brain(off) as brain:
        captain = {"Authorization": f"Bearer {brain.tokens['captain']}"}
        body = {"Authorization": f"Bearer {brain.tokens['body']}"}
        async with httpx.AsyncClient(base_url=brain.url, timeout=10) as http:
            for path in ("/v1/kill", "/v1/resume"):
                said = await http.post(path, json={"reason": f"{path}: {p.email} asked"}, headers=captain)
                assert said.status_code == 200, said.text
            created = await http.post(
                "/v1/tasks",
                json={"title": f"mail {p.email}", "description": f"call {p.phone}", "value_usd": 1},
                headers=captain,
            )
            assert created.status_code == 201, created.text
            task_id = created.json()["id"]
            cancelled = await http.post(
                f"/v1/tasks/{task_id}/cancel", json={"reason": f"{p.email} withdrew"}, headers=captain
            )
            assert cancelled.status_code == 200, cancelled.text
            asked = await http.post(
                "/v1/decisions",
                json=decision_request("body-a", summary=f"write to {p.email}", rationale=f"card {p.card}"),
                headers=body,
            )
            assert asked.status_code == 201, asked.text
            decision_id = asked.json()["id"]
    escalation = _escalation(p)
    conn = sqlite3.connect(db)
    try:  # (as the escalator stores one: no wake-up channel is configured here)
        conn.execute(
            "INSERT INTO escalations (id, state, next_at, dedup_key, created_at, version, escalation) "
            "VALUES (?, 'active', NULL, NULL, ?, 0, ?)",
            (escalation.id, escalation.created_at.isoformat(), escalation.model_dump_json()),
        )
        conn.commit()
    finally:
        conn.close()
    old_backup = backup_database(db, state / "backups", keep=5)
    assert leaks([state], p.values())  # in clear, as a brain before #21 kept it

    async with live_brain(BrainSettings(database_url=sqlite_url(db), keepalive_s=0.2)) as brain:
        captain = {"Authorization": f"Bearer {brain.tokens['captain']}"}
        async with httpx.AsyncClient(base_url=brain.url, timeout=10, headers=captain) as http:
            migrated = await http.post("/v1/privacy/migrate")
            assert migrated.status_code == 200, migrated.text
            done = migrated.json()
            assert done["records"]["tasks"] == 1 and done["records"]["decisions"] == 1, done
            assert done["records"]["escalations"] == 1 and done["records"]["task_events"] >= 1, done
            assert done["records"]["log"] >= 3, done  # the kill, the resume, the cancel
            assert done["backups_deleted"] == [old_backup.name]
            assert leaks([state], p.values()) == []
            (fresh,) = list((state / "backups").glob("brain-*.db"))  # a backup of the migrated database instead
            assert fresh != old_backup

            again = (await http.post("/v1/privacy/migrate")).json()
            assert again["rewritten"] == 0 and again["records"] == {} and again["backups_deleted"] == []

            task = (await http.get(f"/v1/tasks/{task_id}")).json()
            assert task["title"] == f"mail {p.email}" and task["description"] == f"call {p.phone}"
            assert any(line.get("detail", {}).get("reason") == f"{p.email} withdrew" for line in task["history"])
            exported = await http.post("/v1/privacy/export", json={"subject": p.email})
            assert exported.status_code == 200, exported.text
            where = {item["where"] for item in exported.json()["held"]}
            assert {f"task {task_id} title", f"decision {decision_id} summary"} <= where, where
            assert f"escalation {escalation.id} title" in where
            assert any(w.startswith("log ") and w.endswith("task_cancel reason") for w in where), where
            card = (await http.post("/v1/privacy/export", json={"subject": p.card})).json()
            assert f"escalation {escalation.id} facts.Card" in {item["where"] for item in card["held"]}

            erased = await http.post("/v1/privacy/erase", json={"subject": p.email})
            assert erased.status_code == 200, erased.text
            assert (await http.post("/v1/privacy/export", json={"subject": p.email})).status_code == 404
            task = (await http.get(f"/v1/tasks/{task_id}")).json()
            assert task["title"] == "mail [pii:email]"
            assert leaks([state], p.values()) == []

    conn = sqlite3.connect(db)
    try:  # the log and a task's history are still append-only outside the migration, and for anything but text
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE brain_log SET reason = 'x'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE task_events SET event = '{}'")
        conn.execute("UPDATE audit_rewrite_gate SET open = 1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE brain_log SET action = 'kill'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE task_events SET task_id = 'other'")
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.parametrize("engine", ["memory", "sqlite"])
async def test_both_engines_rewrite_the_brains_records_once(tmp_path: Path, engine: str) -> None:
    p = plant()
    protector = Protector(PrivacyConfig(), MemorySubjectKeys())
    state: StateEngine = (
        MemoryStateEngine() if engine == "memory" else await SqliteStateEngine.open(tmp_path / "brain.db")
    )
    now = datetime.now(UTC)
    log = LogEntry(at=now, action="privacy_migrate", by="human:c", token_id=None, role="captain")
    try:
        task = Task(
            id="task_a", title=p.text(), description="", value_usd=1, state="queued", created_at=now, created_by="c"
        )
        await state.insert_task(task, LogEntry(at=now, action="task_create", by="c", reason=f"for {p.email}"))
        await state.insert_escalation(_escalation(p), LogEntry(at=now, action="page", by="rules"))
        changed = await state.rewrite_records(RecordProtection(protector), log)
        assert changed == {"tasks": 1, "escalations": 1, "log": 1}
        stored = await state.task("task_a")
        assert stored is not None and p.email not in stored.title and protector.reveal(stored.title) == p.text()
        page = await state.escalation(_escalation(p).id)
        assert page is not None and protector.reveal(page.facts["Card"]) == p.card
        assert await state.rewrite_records(RecordProtection(protector), log) == {}
        entries = await state.log_entries()
        assert [e.action for e in entries].count("privacy_migrate") == 1
        assert all(p.email not in e.reason for e in entries)
    finally:
        await state.close()
