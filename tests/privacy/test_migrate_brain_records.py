"""`swarm privacy migrate` on the brain's own records (#21): random personal data planted over the real HTTP API of a
brain running with `[privacy] redaction = false` (as a brain before #21 wrote it) — a kill's reason, a task's title
and description, its cancel reason (its history line and a log entry), a decision's summary and rationale — and in
an escalation record, and a backup taken then, is found in no file under the brain's state once migrated (the
backups included), in clear, base64, hex, percent- or JSON-escaped form. The API still reads it as written, export
finds every place (escalations too), an erasure leaves it redacted, a second run does nothing, and the schema's
triggers still refuse any other change of the log or a task's history. Both engines rewrite the same records.

What the first migration left out is here too: readiness reports and overrides, the task rows compensating records
keep, bodies' registrations, answer links' recipients, a failed page's error and a task's outcome report (its
verification, evidence, spend, shadow runs) — written as a brain before the fix wrote them (its API with redaction
off, or hand-written rows) — inside the same gated transaction (brain schema v25), all or nothing, once."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from brain_server import BrainSettings
from brain_server.backup import backup_database
from brain_server.privacy import RecordProtection
from brain_server.state import (
    BodyRecord,
    ClaimGrant,
    CompensationDraft,
    LogEntry,
    MemoryStateEngine,
    SqliteStateEngine,
    StateEngine,
    sqlite_url,
)
from brain_server.wake.records import AnswerToken, Escalation
from shared_protocol.brain import (
    ReadinessItem,
    ReadinessOverride,
    ReadinessReport,
    ShadowRun,
    Task,
    Verification,
)
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
            gone = (await http.post("/v1/privacy/export", json={"subject": p.email})).json()
            assert gone["held"] == [] and gone["erased_at"] is not None  # (when it was erased, nothing more)
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


def _at(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _plant_old_rows(db: Path, p: Planted) -> None:
    """What a brain before the readiness and paging fixes kept in clear, written as it wrote it: a readiness report
    whose item quotes a recipient, a captain's override with its reason, an answer link's recipient, and a page
    that failed with the service's answer quoting the number it refused."""
    now = datetime.now(UTC)
    report = {
        "at": _at(now),
        "by": "captain-1",
        "ready": False,
        "items": [
            {"name": "wake_channels", "ok": False, "detail": f"sms to {p.phone} failed", "fix": f"ask {p.email}"}
        ],
        "drill_at": None,
    }
    override = {
        "id": "ovr_old0000000001",
        "agent": "worker-1",
        "logic_version": "lv-1",
        "reason": f"approved on the phone by {p.email}",
        "by": "captain-1",
        "at": _at(now),
        "expires_at": _at(now + timedelta(days=20)),
    }
    conn = sqlite3.connect(db)
    try:
        conn.execute("INSERT INTO readiness_reports (at, report) VALUES (?, ?)", (report["at"], _canonical(report)))
        conn.execute(
            "INSERT INTO readiness_overrides (id, agent, logic_version, expires_at, override) VALUES (?, ?, ?, ?, ?)",
            (override["id"], "worker-1", "lv-1", override["expires_at"], _canonical(override)),
        )
        conn.execute(
            "INSERT INTO answer_tokens (token_hash, page_id, subject_id, verb, channel, target, created_at, "
            "expires_at, used_at) VALUES ('0' || hex(randomblob(31)), 'pg_old1', 'alr_old', 'ack', 'sms', ?, ?, ?, "
            "NULL)",
            (p.phone_e164, _at(now), _at(now + timedelta(days=1))),
        )
        error = f"Twilio answered 400 (error 21211): The 'To' number {p.phone_e164} is not a valid phone number."
        detail = {"attempt": 1, "channel": "sms", "error": error, "level": 0, "page_id": "", "to": "sms:…0147"}
        conn.execute(
            "INSERT INTO brain_log (at, action, by, token_id, role, reason, target, detail) "
            "VALUES (?, 'page_failed', 'escalation', NULL, NULL, ?, 'alr_old', ?)",
            (_at(now), error, _canonical(detail)),
        )
        conn.commit()
    finally:
        conn.close()


async def test_readiness_compensations_bodies_pages_and_task_reports_written_before_are_migrated(
    tmp_path: Path,
) -> None:
    """#21, what the first migration left: readiness reports and overrides, the task rows compensating records keep,
    bodies' registrations, answer links' recipients, a failed page's error, and a task's outcome report (its
    verification command, evidence, spend) — kept in clear by a brain before the fix (over its API with
    `[privacy] redaction = false`, or hand-written rows) — are found nowhere in clear once migrated; the API still
    reads them as written, an undo still finds its task as the record left it, export names each place, an erasure
    leaves them redacted, and a second run does nothing."""
    p = plant()
    state = tmp_path / "brain-state"
    state.mkdir()
    db = state / "brain.db"
    off = BrainSettings(database_url=sqlite_url(db), keepalive_s=0.2, privacy=PrivacyConfig(redaction=False))
    async with live_brain(off) as brain:
        body = {"Authorization": f"Bearer {brain.tokens['body']}"}
        captain = {"Authorization": f"Bearer {brain.tokens['captain']}"}
        async with httpx.AsyncClient(base_url=brain.url, timeout=10) as http:
            registered = await http.post(
                "/v1/bodies/register",
                json={"body_id": "body-a", "workspace": f"/srv/{p.email}/repo", "hostname": p.ip, "version": "0"},
                headers=body,
            )
            assert registered.status_code == 200, registered.text
            task = {"title": f"mail {p.email}", "value_usd": 1, "repo": f"/srv/{p.email}/repo"}
            created = await http.post("/v1/tasks", json=task, headers=captain)
            assert created.status_code == 201, created.text
            task_id = created.json()["id"]
            claim = {"body_id": "body-a", "agent": "claude", "action_id": "act_claim"}
            claimed = (await http.post("/v1/tasks/claim", json=claim, headers=body)).json()
            assert claimed["task"]["id"] == task_id, claimed
            outcome = {
                "claim_token": claimed["claim_token"],
                "outcome": "failed",
                "summary": f"{p.email} did not answer",
                "verification": {"command": f"pytest -k {p.email}", "exit_code": 1},
                "evidence": {"acceptance": f"pytest -k {p.email}", "worktree": f"/srv/{p.email}/wt"},
                "spend": {"usd": 0.1, "model": "m"},
                "action_id": "act_done",
            }
            done = await http.post(f"/v1/tasks/{task_id}/outcome", json=outcome, headers=body)
            assert done.status_code == 200, done.text
    _plant_old_rows(db, p)
    assert leaks([state], p.values())  # in clear, as a brain before the fix kept it

    async with live_brain(BrainSettings(database_url=sqlite_url(db), keepalive_s=0.2)) as brain:
        captain = {"Authorization": f"Bearer {brain.tokens['captain']}"}
        async with httpx.AsyncClient(base_url=brain.url, timeout=10, headers=captain) as http:
            migrated = await http.post("/v1/privacy/migrate")
            assert migrated.status_code == 200, migrated.text
            records = migrated.json()["records"]
            assert records["readiness_reports"] == 1 and records["readiness_overrides"] == 1, records
            assert records["compensations"] == 2 and records["bodies"] == 1, records
            assert records["answer_tokens"] == 1 and records["tasks"] == 1 and records["log"] >= 3, records
            assert leaks([state], p.values()) == []
            again = (await http.post("/v1/privacy/migrate")).json()
            assert again["rewritten"] == 0 and again["records"] == {}, again

            readiness = (await http.get("/v1/readiness")).json()
            assert readiness["report"]["items"][0]["detail"] == f"sms to {p.phone} failed"
            assert [o["reason"] for o in readiness["overrides"]] == [f"approved on the phone by {p.email}"]
            task = (await http.get(f"/v1/tasks/{task_id}")).json()
            assert task["verification"]["command"] == f"pytest -k {p.email}", task["verification"]
            assert task["evidence"]["worktree"] == f"/srv/{p.email}/wt" and task["repo"] == f"/srv/{p.email}/repo"
            status = (await http.get("/v1/status")).json()
            assert [(b["workspace"], b["hostname"]) for b in status["bodies"]] == [(f"/srv/{p.email}/repo", p.ip)]
            dry = await http.post("/v1/undo/act_done", json={"reason": "check", "dry_run": True})
            assert dry.status_code == 200 and dry.json()["conflicts"] == [], dry.text  # (rewritten alike)

            exported = await http.post("/v1/privacy/export", json={"subject": p.email})
            where = {item["where"] for item in exported.json()["held"]}
            expected = {
                "readiness override ovr_old0000000001 reason",
                f"task {task_id} repo",
                f"task {task_id} verification.command",
                f"task {task_id} evidence.worktree",
                f"task {task_id} outcome_summary",
                "body body-a workspace",
            }
            assert expected <= where, expected - where
            assert any(w.startswith("readiness report ") and w.endswith("items[0].fix") for w in where), where
            assert any(w.startswith("compensation ") and w.endswith("after.outcome_summary") for w in where), where
            phone = (await http.post("/v1/privacy/export", json={"subject": p.phone})).json()
            phone_where = {item["where"] for item in phone["held"]}
            assert "answer link of page pg_old1 (ack) recipient" in phone_where, phone_where
            assert any(w.endswith("page_failed detail.error") for w in phone_where), phone_where
            ip = (await http.post("/v1/privacy/export", json={"subject": p.ip})).json()
            assert {item["where"] for item in ip["held"]} == {"body body-a hostname"}

            erased = await http.post("/v1/privacy/erase", json={"subject": p.email})
            assert erased.status_code == 200, erased.text
            readiness = (await http.get("/v1/readiness")).json()
            assert [o["reason"] for o in readiness["overrides"]] == ["approved on the phone by [pii:email]"]
            assert leaks([state], p.values()) == []


async def test_the_v25_gate_lets_only_the_text_of_readiness_compensations_and_a_log_error_change(
    tmp_path: Path,
) -> None:
    """Brain schema v25: outside the migration's gate readiness reports and overrides, compensating records' rows
    and a log entry's detail never change (nor a report go); inside it only their text may."""
    p = plant()
    db = tmp_path / "brain.db"
    await (await SqliteStateEngine.open(db)).close()
    _plant_old_rows(db, p)
    conn = sqlite3.connect(db)
    try:
        row = {"id": "task_x", "title": "t", "state": "claimed", "claimed_body": "body-a"}
        conn.execute(
            "INSERT INTO compensations (action_id, body_id, kind, target, before, after, created_at) "
            "VALUES ('act_x', 'body-a', 'task_claim', 'task_x', ?, ?, '2030-01-01T00:00:00.000000+00:00')",
            (_canonical({**row, "state": "queued"}), _canonical(row)),
        )
        conn.commit()
        closed = [
            ("UPDATE readiness_overrides SET override = json_set(override, '$.reason', 'x')", "never changed"),
            ("UPDATE readiness_reports SET report = json_set(report, '$.items[0].fix', 'x')", "never changed"),
            ("DELETE FROM readiness_reports", "never deleted"),
            ("UPDATE compensations SET after = json_set(after, '$.title', 'x')", "only gains its reversal"),
            ("UPDATE brain_log SET detail = json_set(detail, '$.error', 'x')", "append-only"),
        ]
        for statement, why in closed:
            with pytest.raises(sqlite3.IntegrityError, match=why):
                conn.execute(statement)
        conn.execute("UPDATE audit_rewrite_gate SET open = 1")
        refused = [
            ("UPDATE readiness_overrides SET expires_at = '2031'", "never changed"),
            ("UPDATE readiness_overrides SET override = json_set(override, '$.agent', 'x')", "never changed"),
            ("UPDATE readiness_reports SET report = json_set(report, '$.ready', json('true'))", "never changed"),
            ("UPDATE readiness_reports SET report = json_set(report, '$.items[0].ok', json('true'))", "never changed"),
            ("DELETE FROM readiness_reports", "never deleted"),
            ("UPDATE compensations SET after = json_set(after, '$.state', 'x')", "only gains its reversal"),
            ("UPDATE compensations SET reversed_at = 'now'", "only gains its reversal"),
            ("UPDATE brain_log SET detail = json_set(detail, '$.channel', 'x')", "append-only"),
        ]
        for statement, why in refused:
            with pytest.raises(sqlite3.IntegrityError, match=why):
                conn.execute(statement)
        for statement in (
            "UPDATE readiness_overrides SET override = json_set(override, '$.reason', 'x')",
            "UPDATE readiness_reports SET report = json_set(report, '$.items[0].detail', 'x', '$.items[0].fix', 'y')",
            "UPDATE compensations SET before = json_set(before, '$.title', 'x'), "
            "after = json_set(after, '$.title', 'x')",
            "UPDATE brain_log SET detail = json_set(detail, '$.error', 'x') WHERE action = 'page_failed'",
        ):
            assert conn.execute(statement).rowcount == 1, statement
    finally:
        conn.rollback()
        conn.close()


class _FailsOnOverrides(RecordProtection):
    """A migration that fails after it rewrote the tasks, reports and everything before the overrides."""

    def readiness_override(self, override: ReadinessOverride) -> ReadinessOverride | None:
        raise RuntimeError("disk gone")


@pytest.mark.parametrize("engine", ["memory", "sqlite"])
async def test_both_engines_rewrite_readiness_compensations_bodies_and_pages_once(tmp_path: Path, engine: str) -> None:
    p = plant()
    protector = Protector(PrivacyConfig(), MemorySubjectKeys())
    state: StateEngine = (
        MemoryStateEngine() if engine == "memory" else await SqliteStateEngine.open(tmp_path / "brain.db")
    )
    now = datetime.now(UTC)
    log = LogEntry(at=now, action="privacy_migrate", by="human:c", role="captain")
    try:
        await state.upsert_body(
            BodyRecord(
                body_id="body-a",
                workspace=f"/srv/{p.email}",
                hostname=p.ip,
                version="0",
                registered_at=now,
                last_heartbeat=now,
            )
        )
        shadow = ShadowRun(
            at=now,
            agent="w",
            logic_version="lv",
            outcome="failed",
            summary=f"{p.email} never answered",
            verification=Verification(command=f"pytest -k {p.email}", exit_code=1),
        )
        task = Task(
            id="task_a",
            title=p.text(),
            description="",
            value_usd=1,
            state="queued",
            created_at=now,
            created_by="c",
            shadow_runs=[shadow],
        )
        await state.insert_task(task, LogEntry(at=now, action="task_create", by="c"))
        grant = ClaimGrant(
            body_id="body-a",
            agent="claude",
            claim_token="clm_x",
            at=now,
            lease_expires=now + timedelta(hours=1),
            by="body",
        )
        await state.claim_task(
            grant,
            lambda t: LogEntry(at=now, action="task_claim", by="body", target=t.id),
            compensation=CompensationDraft(action_id="act_claim"),
        )
        report = ReadinessReport(
            at=now, by="c", ready=False, items=[ReadinessItem(name="wake", ok=False, detail=f"sms {p.phone}")]
        )
        await state.add_readiness_report(report, LogEntry(at=now, action="readiness_report", by="c"))
        override = ReadinessOverride(
            id="ovr_a",
            agent="w",
            logic_version="lv",
            reason=f"by {p.email}",
            by="c",
            at=now,
            expires_at=now + timedelta(days=1),
        )
        await state.add_readiness_override(override, LogEntry(at=now, action="readiness_override", by="c"))
        token = AnswerToken(
            token_hash="h" * 64,
            page_id="pg_a",
            subject_id="alr_a",
            verb="ack",
            channel="sms",
            target=p.phone_e164,
            created_at=now,
            expires_at=now + timedelta(days=1),
        )
        await state.add_answer_tokens([token], now=now)
        await state.append_log(
            LogEntry(
                at=now,
                action="page_failed",
                by="escalation",
                reason="x",
                detail={"error": f"refused {p.phone_e164}", "channel": "sms"},
            )
        )

        with pytest.raises(RuntimeError, match="disk gone"):
            await state.rewrite_records(_FailsOnOverrides(protector), log)
        stored = await state.task("task_a")  # (one transaction: nothing of it was kept)
        assert stored is not None and stored.title == p.text()
        assert (await state.all_compensations())[0].after["title"] == p.text()

        changed = await state.rewrite_records(RecordProtection(protector), log)
        assert changed == {
            "tasks": 1,
            "compensations": 1,
            "log": 1,
            "readiness_reports": 1,
            "readiness_overrides": 1,
            "bodies": 1,
            "answer_tokens": 1,
        }, changed
        (compensation,) = await state.all_compensations()
        stored = await state.task("task_a")
        assert stored is not None and compensation.after["title"] == stored.title != p.text()
        (run,) = stored.shadow_runs
        assert run.verification is not None and p.email not in run.summary + run.verification.command
        assert protector.reveal(run.summary) == shadow.summary
        assert protector.reveal(run.verification.command) == f"pytest -k {p.email}"
        assert protector.reveal(compensation.before["title"]) == p.text()
        (body,) = await state.bodies()
        assert protector.reveal(body.workspace) == f"/srv/{p.email}" and p.ip not in body.hostname
        (kept,) = await state.readiness_reports()
        assert protector.reveal(kept.items[0].detail) == f"sms {p.phone}" and p.phone not in kept.items[0].detail
        (kept_override,) = await state.readiness_overrides(at=None)
        assert protector.reveal(kept_override.reason) == f"by {p.email}" != kept_override.reason
        (kept_token,) = await state.answer_tokens()
        assert protector.reveal(kept_token.target) == p.phone_e164 != kept_token.target
        failed = [e for e in await state.log_entries() if e.action == "page_failed"]
        assert protector.reveal(failed[0].detail["error"]) == f"refused {p.phone_e164}" != failed[0].detail["error"]
        assert await state.rewrite_records(RecordProtection(protector), log) == {}
    finally:
        await state.close()
