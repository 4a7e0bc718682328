"""The wake-up protocol end to end: `swarm.toml` → real channels → fake Discord, Twilio and ntfy servers and a real
SMTP server on 127.0.0.1; answers come back through a signed Twilio gather and single-use links on a live brain."""

from __future__ import annotations

import re
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import anyio
import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from brain_server import Brain, BrainSettings, SqliteStateEngine, issue_token, run
from brain_server.auth import Principal
from brain_server.state import sqlite_url
from brain_server.wake.configure import build_wake, prepare_wake
from brain_server.wake.intake import MAX_BODY_BYTES
from brain_server.wake.setup import WakeSetup
from shared_protocol.brain import DecisionRequest
from shared_protocol.config import SwarmConfig, parse_config
from shared_protocol.secrets import Secrets
from tests.brain.helpers import Clock
from tests.fakes.discord import FakeDiscord
from tests.fakes.ntfy import FakeNtfy
from tests.fakes.serve import serve_app
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, post_gather

pytestmark = pytest.mark.anyio

HUMAN = "+15550001111"
TWILIO_NUMBER = "+15557654321"
NTFY_TOKEN = "tk_ntfy-access-token"
BODY = Principal(token_id="tok_b", role="body", label="body-1")


class Mailbox:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


@dataclass
class Services:
    discord: FakeDiscord
    twilio: FakeTwilio
    ntfy: FakeNtfy
    mailbox: Mailbox
    config: SwarmConfig
    secrets: Secrets


@pytest.fixture
async def services(smtp: tuple[Mailbox, int]) -> AsyncIterator[Services]:
    discord, twilio, ntfy = FakeDiscord(), FakeTwilio(), FakeNtfy(token=NTFY_TOKEN)
    mailbox, smtp_port = smtp
    async with serve_app(discord) as d_url, serve_app(twilio) as t_url, serve_app(ntfy) as n_url:
        config = parse_config(
            {
                "brain": {"public_url": "https://brain.example.com"},
                "escalation": {
                    "levels": [
                        {"after_s": 0, "targets": ["discord", "ntfy"]},
                        {"after_s": 300, "targets": ["sms", "email"]},
                        {"after_s": 600, "targets": ["call"]},
                    ],
                    "repeat": 0,
                },
                "discord": {"webhook_url": "env:DISCORD_WEBHOOK"},
                "twilio": {
                    "account_sid": ACCOUNT_SID,
                    "auth_token": "env:TWILIO_TOKEN",
                    "from_number": TWILIO_NUMBER,
                    "to": [HUMAN],
                    "api_base": t_url,
                },
                "ntfy": {"server": n_url, "topic": "env:NTFY_TOPIC", "token": "env:NTFY_TOKEN"},
                "email": {
                    "host": "127.0.0.1",
                    "port": smtp_port,
                    "security": "none",
                    "from_addr": "swarm@brain.example.com",
                    "to": ["oncall@example.com"],
                },
            }
        )
        secrets = Secrets.from_environ(
            {
                "DISCORD_WEBHOOK": FakeDiscord.webhook_url(d_url),
                "TWILIO_TOKEN": AUTH_TOKEN,
                "NTFY_TOPIC": "swarm-ops-7f3a",
                "NTFY_TOKEN": NTFY_TOKEN,
            }
        )
        yield Services(discord, twilio, ntfy, mailbox, config, secrets)


async def test_an_unanswered_decision_climbs_every_real_channel_then_is_denied(
    tmp_path: Path, services: Services
) -> None:
    clock = Clock()
    start = clock.now
    state = await SqliteStateEngine.open(tmp_path / "brain.db")
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            wake = build_wake(services.config, http, prepare_wake(services.config, services.secrets))
            assert sorted(wake.channels) == ["call", "discord", "email", "ntfy", "sms"]
            brain = Brain(BrainSettings(), state=state, clock=clock, wake=wake)
            async with brain.running():

                async def at(seconds: float) -> None:
                    clock.now = start + seconds
                    await brain.sweep()
                    await brain.escalator.tick()

                request = DecisionRequest(
                    summary="drop the orders table",
                    rationale="it looks unused",
                    confidence=0.4,
                    agent="claude",
                    body_id="body-a",
                    deadline_s=900,
                )
                decision = await brain.request_decision(BODY, request)
                await at(0)
                message = services.discord.messages[-1]
                buttons = [c["custom_id"] for c in message["components"][0]["components"]]
                assert buttons == [f"approve:{decision.id}", f"deny:{decision.id}", f"ack:{decision.id}"]
                push = services.ntfy.published[-1]
                assert push["topic"] == "swarm-ops-7f3a" and [a["label"] for a in push["actions"]] == [
                    "Approve",
                    "Deny",
                    "Acknowledge",
                ]
                assert services.twilio.created == [] and services.mailbox.envelopes == []

                await at(300)
                (sms,) = services.twilio.messages
                assert sms["to"] == HUMAN and "https://brain.example.com/wake/" in sms["body"]
                (mail,) = services.mailbox.envelopes
                assert mail.rcpt_tos == ["oncall@example.com"]
                assert services.twilio.calls == []

                await at(600)
                (call,) = [r for r in services.twilio.requests if r.resource == "Calls"]
                gather = ElementTree.fromstring(call.form["Twiml"]).find("Gather")
                assert gather is not None and gather.get("action", "").startswith(
                    "https://brain.example.com/twilio/gather?t="
                )

                await at(900)
                assert (await brain.decision(decision.id)).state == "expired"
                await at(5000)
                assert len(services.twilio.created) == 2 and len(services.discord.messages) == 1
            log = await state.log_entries(limit=100)
    finally:
        await state.close()
    pages = [(e.detail["channel"], e.detail["level"]) for e in log if e.action == "page"]
    assert pages == [("discord", 0), ("ntfy", 0), ("sms", 1), ("email", 1), ("call", 2)]
    text = repr(log)
    for secret in (AUTH_TOKEN, NTFY_TOKEN, "swarm-ops-7f3a", HUMAN, "webhooks/"):
        assert secret not in text, f"{secret!r} leaked into the brain's log"


# -- answers on a live brain -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveWake:
    url: str
    db: Path
    http: httpx.AsyncClient
    twilio: FakeTwilio
    captain: dict[str, str]
    body: dict[str, str]

    async def decision(self, **changes: Any) -> dict[str, Any]:
        request = {"summary": "rotate the API keys", "rationale": "leaked", "confidence": 0.3, "agent": "claude"}
        request.update({"body_id": "body-a", **changes})
        response = await self.http.post("/v1/decisions", json=request, headers=self.body)
        assert response.status_code == 201, response.text
        return response.json()

    async def state_of(self, decision_id: str) -> dict[str, Any]:
        return (await self.http.get(f"/v1/decisions/{decision_id}", headers=self.captain)).json()

    def log(self, action: str) -> list[tuple[str, str]]:
        with sqlite3.connect(self.db) as conn:
            rows = conn.execute("SELECT by, reason FROM brain_log WHERE action = ? ORDER BY id", (action,))
            return list(rows)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveWake]:
    twilio = FakeTwilio()
    db = tmp_path / "brain.db"
    state = await SqliteStateEngine.open(db)

    tokens = {r: await issue_token(state, role=r, label=r, at=datetime.now(UTC)) for r in ("body", "captain")}
    await state.close()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    async with serve_app(twilio) as t_url:
        config = parse_config(
            {
                "brain": {"public_url": url},
                "escalation": {"levels": [{"after_s": 0, "targets": ["call", "sms"]}], "repeat": 0},
                "twilio": {
                    "account_sid": ACCOUNT_SID,
                    "auth_token": "env:TWILIO_TOKEN",
                    "from_number": TWILIO_NUMBER,
                    "to": [HUMAN],
                    "api_base": t_url,
                },
            }
        )
        secrets = Secrets.from_environ({"TWILIO_TOKEN": AUTH_TOKEN})

        def wake(http: httpx.AsyncClient) -> WakeSetup:
            return build_wake(config, http, prepare_wake(config, secrets))

        settings = BrainSettings(host="127.0.0.1", port=port, database_url=sqlite_url(db), sweep_interval_s=0.05)
        ready, stop = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(
                lambda: run(settings, on_ready=lambda _u: ready.set(), stop=stop, handle_signals=False, wake=wake)
            )
            with anyio.fail_after(10):
                await ready.wait()
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                yield LiveWake(
                    url=url,
                    db=db,
                    http=http,
                    twilio=twilio,
                    captain={"Authorization": f"Bearer {tokens['captain']}"},
                    body={"Authorization": f"Bearer {tokens['body']}"},
                )
            stop.set()


async def _paged(live: LiveWake, count: int) -> None:
    with anyio.fail_after(10):
        while len(live.twilio.created) < count:
            await anyio.sleep(0.02)


def _gather_url(live: LiveWake, index: int = -1) -> str:
    calls = [r for r in live.twilio.requests if r.resource == "Calls"]
    gather = ElementTree.fromstring(calls[index].form["Twiml"]).find("Gather")
    assert gather is not None
    return gather.get("action", "")


async def test_pressing_1_on_the_call_approves_and_the_answer_cannot_be_replayed_or_forged(live: LiveWake) -> None:
    decision = await live.decision()
    await _paged(live, 2)
    url = _gather_url(live)
    forged = await post_gather(live.http, url, "not-the-auth-token", "1", to=HUMAN, from_=TWILIO_NUMBER, call_sid="CA1")
    assert forged.status_code == 403
    assert (await live.state_of(decision["id"]))["state"] == "pending"

    wrong_key = await post_gather(live.http, url, AUTH_TOKEN, "7", to=HUMAN, from_=TWILIO_NUMBER, call_sid="CA1")
    assert "not an answer" in wrong_key.text and (await live.state_of(decision["id"]))["state"] == "pending"

    pressed = await post_gather(live.http, url, AUTH_TOKEN, "1", to=HUMAN, from_=TWILIO_NUMBER, call_sid="CA1")
    assert pressed.status_code == 200 and pressed.headers["content-type"].startswith("text/xml")
    assert "approved" in (ElementTree.fromstring(pressed.text).findtext("Say") or "")
    stored = await live.state_of(decision["id"])
    assert stored["state"] == "approved" and stored["answers"][-1]["by"] == "call:…1111"

    replay = await post_gather(live.http, url, AUTH_TOKEN, "2", to=HUMAN, from_=TWILIO_NUMBER, call_sid="CA1")
    assert "already recorded" in replay.text
    assert (await live.state_of(decision["id"]))["state"] == "approved"
    assert [reason for _, reason in live.log("answer_refused")] == [
        "invalid X-Twilio-Signature",
        "gather token already used or expired",
    ]


async def test_an_oversized_gather_is_refused_unread_and_answers_nothing(live: LiveWake) -> None:
    decision = await live.decision()
    await _paged(live, 2)
    huge = "Digits=1&" + "x" * (MAX_BODY_BYTES + 1)
    response = await live.http.post(
        _gather_url(live), content=huge, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 413
    assert (await live.state_of(decision["id"]))["state"] == "pending"
    assert [reason for _, reason in live.log("answer_refused")] == [f"request body of {len(huge)} bytes is over 65536"]


async def test_pressing_2_denies(live: LiveWake) -> None:
    decision = await live.decision()
    await _paged(live, 2)
    await post_gather(live.http, _gather_url(live), AUTH_TOKEN, "2", to=HUMAN, from_=TWILIO_NUMBER, call_sid="CA2")
    assert (await live.state_of(decision["id"]))["state"] == "denied"


async def test_an_sms_link_asks_on_get_acts_once_on_post(live: LiveWake) -> None:
    decision = await live.decision()
    await _paged(live, 2)
    (sms,) = live.twilio.messages
    links = re.findall(r"https?://\S+/wake/[\w-]+", sms["body"])
    assert len(links) == 3, sms["body"]
    deny = next(link for link in links if link in sms["body"].split("Deny", 1)[1])
    path = deny.removeprefix(live.url)

    shown = await live.http.get(path)
    assert shown.status_code == 200 and "<form method=post>" in shown.text and "rotate the API keys" in shown.text
    assert (await live.state_of(decision["id"]))["state"] == "pending", "following a link changes nothing"

    done = await live.http.post(path)
    assert done.status_code == 200 and "denied" in done.text
    assert (await live.state_of(decision["id"]))["state"] == "denied"
    again = await live.http.post(path)
    assert again.status_code == 410
    unknown = await live.http.post("/wake/not-a-token")
    assert unknown.status_code == 404
    assert (await live.state_of(decision["id"]))["answers"][-1]["by"] == "sms:…1111"
