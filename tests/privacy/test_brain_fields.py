"""#21, every other free-text field the brain keeps: planted through a real brain's HTTP API on 127.0.0.1 (a body's
registration, a task's repository and acceptance inputs, an outcome's verification, evidence and spend, a page a
wake-up service refused and the answer links it carries, an alert quoting what a body sent), each is found in no file
under the brain's state in clear, base64, hex, percent- or JSON-escaped form, reads back as written for whoever may
read it, and `swarm privacy export` names where it is. A token's label, which is never encrypted, refuses personal
data."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from brain_server import BrainSettings, SqliteStateEngine, issue_token
from brain_server.exceptions import ConfigError
from brain_server.state import sqlite_url
from brain_server.wake.base import ChannelError, Delivery, Page
from brain_server.wake.setup import WakeSetup
from shared_protocol.refusals import RefusalCode
from shared_protocol.wake import EscalationConfig, EscalationLevel
from tests.brain.helpers import LiveBrain, audit_chain, batch, decision_request, live_brain
from tests.cli.inprocess import swarm_on

from .plant import Planted, encodings, leaks, plant

pytestmark = pytest.mark.anyio


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    state = tmp_path / "brain-state"
    state.mkdir()
    async with live_brain(BrainSettings(database_url=sqlite_url(state / "brain.db"), keepalive_s=0.2)) as brain:
        yield brain


def _client(live: LiveBrain, role: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=live.url, timeout=10, headers={"Authorization": f"Bearer {live.tokens[role]}"})


async def _held(live: LiveBrain, subject: str) -> set[str]:
    """Where `swarm privacy export` says the brain holds `subject`."""
    async with _client(live, "captain") as http:
        exported = await http.post("/v1/privacy/export", json={"subject": subject})
    assert exported.status_code == 200, exported.text
    return {item["where"] for item in exported.json()["held"]}


async def _register(live: LiveBrain, workspace: str = "/srv/ws", hostname: str = "box") -> None:
    async with _client(live, "body") as http:
        registered = await http.post(
            "/v1/bodies/register",
            json={"body_id": "body-a", "workspace": workspace, "hostname": hostname, "version": "0"},
        )
    assert registered.status_code == 200, registered.text


async def test_a_bodys_workspace_and_hostname_are_kept_protected(live: LiveBrain) -> None:
    """Was a hole: `POST /v1/bodies/register` kept the workspace path and the hostname as sent (a path can name a
    person, a host can be an address). Now protected (`Brain.register`), revealed in `GET /v1/status`."""
    p = plant()
    await _register(live, workspace=f"/home/{p.email}/shop", hostname=p.ip)
    assert leaks([live.db.parent], p.values()) == []
    async with _client(live, "captain") as http:
        status = (await http.get("/v1/status")).json()
    assert [(b["workspace"], b["hostname"]) for b in status["bodies"]] == [(f"/home/{p.email}/shop", p.ip)]
    assert "body body-a workspace" in await _held(live, p.email)
    assert await _held(live, p.ip) == {"body body-a hostname"}


async def test_a_tasks_repository_and_acceptance_inputs_are_kept_protected(live: LiveBrain) -> None:
    """Was a hole: `POST /v1/tasks` protected the title, description and commands but kept `repo` and
    `acceptance_inputs` as sent. Now protected (`Brain.queue_task`), revealed in replies (the runner works there)."""
    p = plant()
    request = {"title": "tidy", "repo": f"/srv/{p.email}/shop", "acceptance_inputs": [f"tests/{p.email}/*.py"]}
    async with _client(live, "captain") as http:
        created = await http.post("/v1/tasks", json=request)
        assert created.status_code == 201, created.text
        task = (await http.get(f"/v1/tasks/{created.json()['id']}")).json()
    assert (task["repo"], task["acceptance_inputs"]) == (request["repo"], request["acceptance_inputs"])
    assert leaks([live.db.parent], p.values()) == []
    assert {f"task {task['id']} repo", f"task {task['id']} acceptance_inputs[0]"} <= await _held(live, p.email)


async def test_an_outcomes_verification_evidence_and_spend_are_kept_protected(live: LiveBrain) -> None:
    """Was a hole (medium): a runner reports the acceptance command as it ran it — the task's, which it read
    decrypted — in `verification.command` and `evidence`, with a kept worktree's path and a pytest report's reason;
    `POST /v1/tasks/{id}/outcome` protected only the summary, so a command naming a person was back in clear in the
    task's row and in the compensating record of the outcome — or, for a verification, refused 422 (the command as
    run was compared with the stored, encrypted one). Now protected (`Brain.report_outcome`) before that comparison,
    which holds again (the same text gives the same token)."""
    p = plant()
    await _register(live)
    command = f"pytest -k {p.email}"
    async with _client(live, "captain") as captain, _client(live, "body") as body:
        created = await captain.post("/v1/tasks", json={"title": "tidy", "acceptance": command})
        assert created.status_code == 201, created.text
        claim = {"body_id": "body-a", "agent": "claude", "action_id": "act_claim"}
        claimed = (await body.post("/v1/tasks/claim", json=claim)).json()
        task_id = claimed["task"]["id"]
        assert claimed["task"]["acceptance"] == command  # (what the runner reads, and reports back)
        report = {"verdict": "failed", "reason": f"test_mail_{p.phone_e164} failed", "collected": 1, "failed": 1}
        outcome = {
            "claim_token": claimed["claim_token"],
            "outcome": "failed",
            "summary": "no",
            "verification": {"command": command, "exit_code": 1, "report": report},
            "evidence": {"acceptance": command, "worktree": f"/srv/{p.email}/wt (kept)"},
            "spend": {"usd": 0.5, "model": f"model of {p.email}"},
            "action_id": "act_done",
        }
        done = await body.post(f"/v1/tasks/{task_id}/outcome", json=outcome)
        assert done.status_code == 200, done.text
        task = (await captain.get(f"/v1/tasks/{task_id}")).json()
    assert task["verification"]["command"] == command and task["evidence"] == outcome["evidence"]
    assert task["verification"]["report"]["reason"] == report["reason"]
    assert leaks([live.db.parent], p.values()) == []
    held = await _held(live, p.email)
    assert {f"task {task_id} verification.command", f"task {task_id} evidence.worktree"} <= held, held
    assert f"task {task_id} spend.model" in held
    assert f"task {task_id} verification.report.reason" in await _held(live, p.phone)


@dataclass
class _Channel:
    """A wake-up channel that keeps its pages, or refuses each as Twilio does a bad number (quoting it)."""

    name: str
    refuses: bool = False
    pages: list[Page] = field(default_factory=list[Page])

    async def send(self, page: Page) -> Delivery:
        if self.refuses:
            message = f"Twilio answered 400 (error 21211): The 'To' number {page.target} is not a valid phone number"
            raise ChannelError(message, channel=self.name, retryable=False, status=400)
        self.pages.append(page)
        return Delivery(channel=self.name, target=page.target, provider_id=f"{self.name}-{len(self.pages)}")


def _paging(p: Planted, *channels: _Channel) -> WakeSetup:
    return WakeSetup(
        escalation=EscalationConfig(levels=[EscalationLevel(after_s=0, targets=[c.name for c in channels])], repeat=0),
        channels={c.name: c for c in channels},
        recipients={c.name: [p.phone_e164] for c in channels},
        public_url="https://brain.example.org",
        retry_wait_s=0,
    )


def _log(db: Path, action: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM brain_log WHERE action = ? ORDER BY id", (action,))]
    finally:
        conn.close()


async def _logged(db: Path, action: str) -> list[dict[str, Any]]:
    with anyio.fail_after(10):
        while not (found := _log(db, action)):
            await anyio.sleep(0.02)
    return found


async def test_a_refused_page_and_an_answer_links_recipient_are_kept_protected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Was a hole (medium): the recipient of each answer link was kept in clear (`answer_tokens.target`), and a page a
    service refused was logged with its answer as given — Twilio's and SMTP servers' quote the number or address they
    refused — in the brain's log (`page_failed`: reason and `detail.error`) and the process log. Now the recipient
    and the error are protected where kept (`Escalator`), the error redacted in the process log; an answer link
    still answers, as its recipient shortened."""
    p = plant()
    sms, call = _Channel("sms"), _Channel("call", refuses=True)
    state = tmp_path / "brain-state"
    state.mkdir()
    settings = BrainSettings(database_url=sqlite_url(state / "brain.db"), keepalive_s=0.2, sweep_interval_s=0.05)
    caplog.set_level(logging.INFO)
    async with live_brain(settings, wake=_paging(p, sms, call)) as live:
        async with _client(live, "body") as body:
            asked = await body.post("/v1/decisions", json=decision_request(confidence=0.4))
            assert asked.status_code == 201, asked.text
        failed = await _logged(live.db, "page_failed")
        assert "[pii:phone:" in failed[0]["detail"] and "[pii:phone:" in failed[0]["reason"]
        assert sms.pages and sms.pages[0].links is not None
        link = sms.pages[0].links.acknowledge.removeprefix("https://brain.example.org")
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as anyone:
            answered = await anyone.post(link)
            assert answered.status_code == 200, answered.text
        (acked,) = await _logged(live.db, "acknowledge")
        assert acked["by"] == f"sms:…{p.phone_e164[-4:]}"  # (the recipient, shortened as the log shows it)
        held = await _held(live, p.phone)
        assert any(w.startswith("answer link of page ") and w.endswith("recipient") for w in held), held
        assert any(w.endswith("page_failed detail.error") for w in held), held
        assert leaks([state], p.values()) == []
    logged = caplog.text.encode()
    assert [v for v in p.values() for form in encodings(v) if form in logged] == []


async def test_an_alert_quoting_what_a_body_sent_is_kept_protected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Was a hole (low): an alert's title, summary and facts were kept as the brain wrote them, and a breaker alert's
    summary is the refusal message a body sent — in clear from a body with `[privacy]` off. Now an escalation record
    is protected when it is stored (`Escalator._start`), and so is the log entry that starts it. (The body's own
    event stays as it shipped it, in clear: `swarm privacy migrate` rewrites the brain's copy.)"""
    p = plant()
    state = tmp_path / "brain-state"
    state.mkdir()
    settings = BrainSettings(database_url=sqlite_url(state / "brain.db"), keepalive_s=0.2)
    caplog.set_level(logging.INFO)
    async with live_brain(settings, wake=_paging(p, _Channel("sms"))) as live:
        await _register(live)
        (event,) = audit_chain("body-a", 1)
        event = event.model_copy(
            update={"outcome": "refused", "code": RefusalCode.CIRCUIT_OPEN, "message": f"breaker: {p.email} flood"}
        )
        async with _client(live, "body") as body:
            shipped = await body.post("/v1/audit", json=batch("body-a", [event]))
            assert shipped.status_code == 200, shipped.text
        (alert,) = await _logged(live.db, "alert")
        conn = sqlite3.connect(f"file:{live.db}?mode=ro", uri=True)
        try:
            (stored,) = [str(row[0]) for row in conn.execute("SELECT escalation FROM escalations")]
        finally:
            conn.close()
        kept = (stored + json.dumps(alert)).encode()
        assert [v for v in p.values() for form in encodings(v) if form in kept] == []
        assert json.loads(stored)["summary"].startswith("breaker: [pii:email:")
        held = await _held(live, p.email)
        assert any(w.startswith("escalation alr_") and w.endswith(" summary") for w in held), held
    logged = caplog.text.encode()
    assert [v for v in p.values() for form in encodings(v) if form in logged] == []


async def test_a_token_label_holding_personal_data_is_refused(tmp_path: Path) -> None:
    """Was a hole (low): a token's label is who acts in every record the brain keeps (the log's `by`, votes, tasks'
    creators), never encrypted and never changed, and `swarm brain token create --label` took an address. Now
    refused, naming the flag and the kind found, and nothing is written."""
    p = plant()
    db = tmp_path / "brain.db"
    home = tmp_path / "home"
    home.mkdir()
    code, out, err = await swarm_on(
        None, "brain", "token", "create", "--db", str(db), "--role", "captain", "--label", p.email, home=home
    )
    assert code != 0 and "--label" in err and "email" in err, (code, out, err)
    assert not db.exists() or p.email.encode() not in db.read_bytes()
    state = await SqliteStateEngine.open(db)
    try:
        with pytest.raises(ConfigError, match="phone"):
            await issue_token(state, role="approver", label=f"on call {p.phone}", at=datetime.now(UTC))
        assert await state.tokens() == []
        await issue_token(state, role="approver", label="ops-captain", at=datetime.now(UTC))
    finally:
        await state.close()


async def test_reasons_the_cli_writes_to_the_brains_log_itself_are_kept_protected(
    live: LiveBrain, tmp_path: Path
) -> None:
    """Was a hole (medium): `swarm brain token revoke --reason` and `swarm brain body rebind --reason` without
    `--brain` write the brain's log on its database themselves, and kept the reason as typed (the HTTP rebind
    protected it). Now encrypted under the brain's keys (its `privacy.db`) first; export finds both."""
    p = plant()
    home = tmp_path / "home"
    home.mkdir()
    await _register(live)  # (binds the `body` token to body-a)
    await live.add_token("body-2")
    state = await SqliteStateEngine.open(live.db)
    try:
        ids = {t.label: t.id for t in await state.tokens()}
    finally:
        await state.close()
    db = ["--db", str(live.db)]
    reason = f"moved, ask {p.email}"
    code, out, err = await swarm_on(
        None, "brain", "body", "rebind", "body-a", "--token-id", ids["body-2"], "--reason", reason, *db, home=home
    )
    assert code == 0, (out, err)
    code, out, err = await swarm_on(
        None, "brain", "token", "revoke", ids["approver-1"], "--reason", f"left, call {p.phone}", *db, home=home
    )
    assert code == 0, (out, err)
    assert leaks([live.db.parent], p.values()) == []
    held = await _held(live, p.email)
    assert any(w.endswith("body_rebind reason") for w in held), held
    assert any(w.endswith("token_revoke reason") for w in await _held(live, p.phone))


async def test_a_captains_reason_for_promoting_or_rolling_back_a_rollout_is_kept_protected(live: LiveBrain) -> None:
    """Was a hole (medium): `POST /v1/agents/{name}/rollout/promote` and `/rollback` passed the captain's reason
    to the brain's log as typed (`Rollouts.promote`, `rollback`). Now protected (`app`), as every reason is."""
    p = plant()
    await live.add_token("worker", agent="worker-1")
    async with _client(live, "captain") as captain, _client(live, "worker") as worker:
        assert (await captain.post("/v1/tasks", json={"title": "tidy"})).status_code == 201
        claim = {"body_id": "body-w", "mode": "shadow", "logic_version": "lv-1"}
        claimed = await worker.post("/v1/tasks/claim", json=claim)
        assert claimed.status_code == 200 and claimed.json()["task"] is not None, claimed.text
        promoted = await captain.post("/v1/agents/worker-1/rollout/promote", json={"reason": f"ok'd by {p.email}"})
        assert promoted.status_code == 200, promoted.text  # (lv-1 live: a first version has no other to wait for)
        assert (await captain.post("/v1/tasks", json={"title": "tidy again"})).status_code == 201
        claimed = await worker.post("/v1/tasks/claim", json={**claim, "logic_version": "lv-2"})
        assert claimed.status_code == 200 and claimed.json()["task"] is not None, claimed.text
        dropped = await captain.post("/v1/agents/worker-1/rollout/rollback", json={"reason": f"call {p.phone}"})
        assert dropped.status_code == 200, dropped.text
    assert leaks([live.db.parent], p.values()) == []
    assert any(w.endswith("rollout_promote reason") for w in await _held(live, p.email))
    assert any(w.endswith("rollout_rollback reason") for w in await _held(live, p.phone))


async def test_an_undos_reason_is_kept_protected(live: LiveBrain) -> None:
    """Was a hole (medium): `POST /v1/undo/{id}`'s reason went to the brain's log (`reverse` entries) as typed
    (`Brain.reverse`). Now protected, as every reason is."""
    p = plant()
    await _register(live)
    async with _client(live, "captain") as captain, _client(live, "body") as body:
        assert (await captain.post("/v1/tasks", json={"title": "tidy"})).status_code == 201
        claim = {"body_id": "body-a", "agent": "claude", "action_id": "act_claim"}
        assert (await body.post("/v1/tasks/claim", json=claim)).json()["task"] is not None
        undone = await captain.post("/v1/undo/act_claim", json={"reason": f"wrong task, says {p.email}"})
        assert undone.status_code == 200, undone.text
    assert leaks([live.db.parent], p.values()) == []
    assert any(w.endswith(" reverse reason") for w in await _held(live, p.email))
