"""Human-typed text on the brain (#21): a kill's and a resume's reason, an agent's pause and resume reasons, a task's
acceptance and setup commands, planted with random personal data over the real HTTP API, are kept in no file under
the brain's state in any common encoding; the API reads them back as written (the acceptance command still runs as
typed), export finds them, and an erasure leaves them redacted."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from brain_server.events import kill_event
from brain_server.privacy import protect_stored_event
from brain_server.state import LogEntry, MemoryStateEngine, SqliteStateEngine, StateEngine
from shared_protocol.brain import KillState
from shared_protocol.privacy import MemorySubjectKeys, PrivacyConfig, Protector
from tests.brain.helpers import LiveBrain, audit_event

from .plant import leaks, plant

pytestmark = pytest.mark.anyio


async def test_reasons_and_commands_typed_on_the_brain_are_kept_protected_and_read_back_as_written(
    live: LiveBrain,
) -> None:
    p = plant()
    await live.add_token("worker", agent="w1")
    captain = {"Authorization": f"Bearer {live.tokens['captain']}"}
    acceptance = f"python -m pytest -q tests --mail {p.email}"
    async with httpx.AsyncClient(base_url=live.url, timeout=10, headers=captain) as http:
        for path, reason in (
            ("/v1/kill", f"stop: {p.email} complained"),
            ("/v1/resume", f"resolved with {p.phone}"),
            ("/v1/agents/w1/pause", f"paused for {p.email}"),
            ("/v1/agents/w1/resume", f"resumed, card {p.card}"),
        ):
            answered = await http.post(path, json={"reason": reason})
            assert answered.status_code in (200, 201), (path, answered.text)
        created = await http.post(
            "/v1/tasks",
            json={"title": "t", "description": "d", "value_usd": 1, "acceptance": acceptance, "setup": f"echo {p.ip}"},
        )
        assert created.status_code == 201, created.text
        task = created.json()
        assert task["acceptance"] == acceptance and task["setup"] == f"echo {p.ip}"  # as typed, for the runner
        assert leaks([live.db.parent], p.values()) == []

        exported = await http.post("/v1/privacy/export", json={"subject": p.email})
        assert exported.status_code == 200, exported.text
        where = {item["where"] for item in exported.json()["held"]}
        assert f"task {task['id']} acceptance" in where
        assert any(w.startswith("log ") and "kill" in w for w in where)
        assert any("agent_pause" in w for w in where)

        erased = await http.post("/v1/privacy/erase", json={"subject": p.email})
        assert erased.status_code == 200, erased.text
        after = (await http.get(f"/v1/tasks/{task['id']}")).json()
        assert after["acceptance"] == "python -m pytest -q tests --mail [pii:email]"
        assert leaks([live.db.parent], p.values()) == []


def test_a_kill_heard_on_an_event_stream_has_its_personal_data_redacted() -> None:
    p = plant()
    protector = Protector(PrivacyConfig(), MemorySubjectKeys())
    event = kill_event(KillState(engaged=True, reason=protector.protect(f"stop: {p.email}")))
    assert json.loads(event.data)["reason"] == "stop: [pii:email]"


@pytest.mark.parametrize("engine", ["memory", "sqlite"])
async def test_both_engines_rewrite_stored_events_keeping_their_links_and_once_only(
    tmp_path: Path, engine: str
) -> None:
    p = plant()
    protector = Protector(PrivacyConfig(), MemorySubjectKeys())
    state: StateEngine = (
        MemoryStateEngine() if engine == "memory" else await SqliteStateEngine.open(tmp_path / "brain.db")
    )
    try:
        first = audit_event("body-a", 1, "genesis")
        second = audit_event("body-a", 2, first.mac).model_copy(update={"rationale": p.text()})
        await state.append_audit("body-a", [first, second])
        log = LogEntry(at=datetime.now(UTC), action="privacy_migrate", by="human:c", token_id=None, role="captain")

        def rewrite(text: str) -> str | None:
            return protect_stored_event(protector, text)

        read, rewritten = await state.rewrite_audit_events(rewrite, log)
        assert (read, rewritten) == (2, {"body-a": 1})
        stored = await state.audit_events("body-a")
        assert [(e.seq, e.id, e.prev_mac, e.mac) for e in stored] == [
            (e.seq, e.id, e.prev_mac, e.mac) for e in (first, second)
        ]
        assert p.email not in stored[1].rationale and protector.reveal(stored[1].rationale) == p.text()
        assert stored[1].detail["privacy_migrated_by_brain"] is True
        assert await state.rewrite_audit_events(rewrite, log) == (2, {})
        assert [e.action for e in await state.log_entries()].count("privacy_migrate") == 1
    finally:
        await state.close()
    if engine == "sqlite":  # the trigger still refuses any other update, and any change of a link
        conn = sqlite3.connect(tmp_path / "brain.db")
        try:
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute("UPDATE audit_events SET event = 'x' WHERE seq = 1")
            conn.execute("UPDATE audit_rewrite_gate SET open = 1")
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute("UPDATE audit_events SET mac = 'x' WHERE seq = 1")
        finally:
            conn.close()
