"""`POST /discord/interactions` on a live brain (uvicorn, SQLite): signed as Discord signs (PyNaCl), then refused
when forged, stale, replayed or from an unlisted user; slash commands and buttons act as the user who sent them."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from nacl.signing import SigningKey

from brain_server import Brain, BrainSettings, MemoryStateEngine
from brain_server.state import LogEntry, sqlite_url
from brain_server.wake import interactions
from brain_server.wake.intake import MAX_BODY_BYTES, RefusalLog
from brain_server.wake.interactions import DiscordAccess
from brain_server.wake.setup import WakeSetup
from tests.body.helpers import linked_up
from tests.body.test_brain_link import linked_body, wait_until, write
from tests.brain.helpers import LiveBrain, decision_request, live_brain, ok
from tests.fakes.discord import APP_ID, FakeDiscord
from tests.fakes.serve import serve_app

pytestmark = pytest.mark.anyio

CAPTAIN, USER, ROLE_MEMBER, STRANGER = "100", "200", "300", "999"
ROLE = "4242"


class Discord:
    """Sends interactions the way Discord does: Ed25519 over timestamp + raw body."""

    def __init__(self, key: SigningKey, http: httpx.AsyncClient) -> None:
        self.key = key
        self.http = http
        self._next = 1000

    def command(self, name: str, user: str, roles: list[str] | None = None, **options: str) -> dict[str, Any]:
        return self.with_options(name, user, roles, options)

    def with_options(self, name: str, user: str, roles: list[str] | None, options: dict[str, str]) -> dict[str, Any]:
        return self._interaction(
            2,
            user,
            roles,
            {
                "id": "cmd",
                "name": name,
                "type": 1,
                "options": [{"name": k, "type": 3, "value": v} for k, v in options.items()],
            },
        )

    def button(self, custom_id: str, user: str, roles: list[str] | None = None) -> dict[str, Any]:
        return self._interaction(3, user, roles, {"custom_id": custom_id, "component_type": 2})

    def _interaction(self, kind: int, user: str, roles: list[str] | None, data: dict[str, Any]) -> dict[str, Any]:
        self._next += 1
        return {
            "id": str(self._next),
            "application_id": "555",
            "type": kind,
            "token": "interaction-token",
            "version": 1,
            "guild_id": "77",
            "member": {"user": {"id": user, "username": f"user{user}"}, "roles": roles or []},
            "data": data,
        }

    async def send(
        self, payload: dict[str, Any], *, timestamp: float | None = None, key: SigningKey | None = None
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        stamp = str(int(time.time() if timestamp is None else timestamp))
        signature = (key or self.key).sign(stamp.encode() + body).signature.hex()
        headers = {
            "Content-Type": "application/json",
            "X-Signature-Ed25519": signature,
            "X-Signature-Timestamp": stamp,
        }
        return await self.http.post("/discord/interactions", content=body, headers=headers)


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
async def live(tmp_path: Path, key: SigningKey) -> AsyncIterator[LiveBrain]:
    access = DiscordAccess.from_hex(
        key.verify_key.encode().hex(),
        captain_ids=frozenset({CAPTAIN}),
        user_ids=frozenset({USER}),
        role_ids=frozenset({ROLE}),
    )
    settings = BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"), keepalive_s=0.2)
    async with live_brain(settings, wake=WakeSetup(discord=access)) as brain:
        yield brain


@pytest.fixture
async def discord(live: LiveBrain, key: SigningKey) -> AsyncIterator[Discord]:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        yield Discord(key, http)


async def kill_engaged(live: LiveBrain) -> bool:
    async with live.client() as api:
        return bool(ok(await api.get("/v1/status", as_="captain"))["kill"]["engaged"])


def refusals(db: Path) -> list[str]:
    """The reasons of the brain's `interaction_refused` log lines, oldest first (read from its SQLite file)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT reason FROM brain_log WHERE action = 'interaction_refused' ORDER BY id")
        return [reason for (reason,) in rows]


async def test_a_ping_is_answered_with_a_pong(discord: Discord) -> None:
    response = await discord.send({"id": "1", "type": 1, "application_id": "555", "token": "t", "version": 1})
    assert response.status_code == 200 and response.json() == {"type": 1}


async def test_a_signed_kill_autonomous_from_a_listed_user_engages_the_kill_switch(
    live: LiveBrain, discord: Discord
) -> None:
    response = await discord.send(discord.command("kill-autonomous", USER, reason="runaway agent"))
    data = ok(response)
    assert data["type"] == 4 and "Kill switch engaged" in data["data"]["content"]
    assert "flags" not in data["data"], "a kill is announced to the channel, not only to its sender"
    async with live.client() as api:
        kill = ok(await api.get("/v1/status", as_="captain"))["kill"]
    assert kill["engaged"] and kill["reason"] == "runaway agent" and kill["by"] == f"discord:user{USER}"


async def test_forged_stale_replayed_and_unlisted_are_refused_logged_and_change_nothing(
    live: LiveBrain, discord: Discord, tmp_path: Path
) -> None:
    forged = await discord.send(discord.command("kill-autonomous", CAPTAIN), key=SigningKey.generate())
    assert forged.status_code == 401
    stale = await discord.send(discord.command("kill-autonomous", CAPTAIN), timestamp=time.time() - 301)
    assert stale.status_code == 401
    unlisted = ok(await discord.send(discord.command("kill-autonomous", STRANGER)))
    assert unlisted["data"]["flags"] == 64 and "may not" in unlisted["data"]["content"]
    assert not await kill_engaged(live)

    status = discord.command("status", CAPTAIN)
    assert ok(await discord.send(status))["data"]["flags"] == 64
    replay = await discord.send(status)
    assert replay.status_code == 401
    assert not await kill_engaged(live)
    reasons = refusals(tmp_path / "brain.db")
    assert reasons == [
        "invalid request signature",
        "stale request timestamp",
        "/kill-autonomous needs a listed user",
        "replayed interaction",
    ]


async def test_a_tampered_body_fails_the_signature(live: LiveBrain, discord: Discord) -> None:
    payload = discord.command("status", CAPTAIN)
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    signature = discord.key.sign(stamp.encode() + body).signature.hex()
    tampered = body.replace(b"status", b"resume")
    headers = {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": stamp}
    response = await discord.http.post("/discord/interactions", content=tampered, headers=headers)
    assert response.status_code == 401
    missing = await discord.http.post("/discord/interactions", content=body)
    assert missing.status_code == 401


async def test_resume_and_captain_override_are_for_captains_only(live: LiveBrain, discord: Discord) -> None:
    ok(await discord.send(discord.command("kill-autonomous", CAPTAIN)))
    refused = ok(await discord.send(discord.command("resume", USER)))
    assert refused["data"]["flags"] == 64 and "captain" in refused["data"]["content"]
    assert await kill_engaged(live)
    ok(await discord.send(discord.command("resume", CAPTAIN, reason="fixed")))
    assert not await kill_engaged(live)

    async with live.client() as api:
        decision = ok(await api.post("/v1/decisions", decision_request(confidence=0.4), as_="body"), 201)
    refused = ok(
        await discord.send(discord.command("captain-override", ROLE_MEMBER, [ROLE], decision_id=decision["id"]))
    )
    assert "captain" in refused["data"]["content"]
    done = ok(
        await discord.send(
            discord.command("captain-override", CAPTAIN, decision_id=decision["id"], action="veto", reason="no")
        )
    )
    assert "overridden" in done["data"]["content"]


async def test_captain_override_forces_and_vetoes_at_once_audited_and_reversed_only_by_another_captain(
    live: LiveBrain, discord: Discord, tmp_path: Path
) -> None:
    async with live.client() as api:
        decision = ok(await api.post("/v1/decisions", decision_request(confidence=0.4), as_="body"), 201)
    forced = ok(
        await discord.send(
            discord.command(
                "captain-override", CAPTAIN, decision_id=decision["id"], action="force", reason="ship it tonight"
            )
        )
    )
    assert "flags" not in forced["data"] and "approved" in forced["data"]["content"]
    async with live.client() as api:
        stored = ok(await api.get(f"/v1/decisions/{decision['id']}", as_="captain"))
    last = stored["answers"][-1]
    assert stored["state"] == "approved"
    assert (last["override"], last["by"], last["role"], last["reason"]) == (
        "force",
        f"discord:user{CAPTAIN}",
        "captain",
        "ship it tonight",
    )
    with sqlite3.connect(tmp_path / "brain.db") as conn:
        logged = conn.execute(
            "SELECT by, reason FROM brain_log WHERE action = 'override' AND target = ?", (decision["id"],)
        ).fetchall()
    assert logged == [(f"discord:user{CAPTAIN}", "ship it tonight")]

    # the same captain cannot undo their own override; another human captain (a captain's token) can
    again = ok(
        await discord.send(
            discord.command("captain-override", CAPTAIN, decision_id=decision["id"], action="veto", reason="oops")
        )
    )
    assert again["data"]["flags"] == 64 and "another human captain" in again["data"]["content"]
    async with live.client() as api:
        vetoed = await api.post(
            f"/v1/decisions/{decision['id']}/override", {"action": "veto", "reason": "not tonight"}, as_="captain"
        )
        assert ok(vetoed)["state"] == "overridden"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"action": "veto", "reason": "r"}, "decision_id"),
        ({"decision_id": "DEC", "action": "nuke", "reason": "r"}, "veto or force"),
        ({"decision_id": "DEC", "action": "force"}, "reason"),
        ({"decision_id": "DEC", "action": "force", "reason": "  "}, "reason"),
    ],
)
async def test_captain_override_with_bad_options_says_what_is_wrong_and_changes_nothing(
    live: LiveBrain, discord: Discord, options: dict[str, str], problem: str
) -> None:
    async with live.client() as api:
        decision = ok(await api.post("/v1/decisions", decision_request(confidence=0.4), as_="body"), 201)
    sent: dict[str, str] = {k: (str(decision["id"]) if v == "DEC" else v) for k, v in options.items()}
    answer = ok(await discord.send(discord.with_options("captain-override", CAPTAIN, None, sent)))
    assert answer["data"]["flags"] == 64 and problem in answer["data"]["content"]
    async with live.client() as api:
        stored = ok(await api.get(f"/v1/decisions/{decision['id']}", as_="captain"))
    assert stored["state"] == "pending" and stored["answers"] == []


async def test_captain_override_of_an_unknown_decision_is_refused(discord: Discord) -> None:
    answer = ok(
        await discord.send(
            discord.command("captain-override", CAPTAIN, decision_id="dec_nope", action="veto", reason="r")
        )
    )
    assert answer["data"]["flags"] == 64 and "dec_nope" in answer["data"]["content"]


async def test_the_approve_button_of_a_role_member_answers_the_decision_and_clears_the_buttons(
    live: LiveBrain, discord: Discord
) -> None:
    async with live.client() as api:
        decision = ok(await api.post("/v1/decisions", decision_request(confidence=0.4), as_="body"), 201)
    answer = ok(await discord.send(discord.button(f"approve:{decision['id']}", ROLE_MEMBER, [ROLE])))
    assert answer["type"] == 7 and answer["data"]["components"] == [] and "approved" in answer["data"]["content"]
    async with live.client() as api:
        stored = ok(await api.get(f"/v1/decisions/{decision['id']}", as_="captain"))
    assert stored["state"] == "approved" and stored["answers"][-1]["by"] == f"discord:user{ROLE_MEMBER}"
    again = ok(await discord.send(discord.button(f"deny:{decision['id']}", USER)))
    assert again["data"]["flags"] == 64 and "not pending" in again["data"]["content"]


async def test_slash_approve_deny_and_status(live: LiveBrain, discord: Discord) -> None:
    async with live.client() as api:
        first = ok(await api.post("/v1/decisions", decision_request(confidence=0.4), as_="body"), 201)
        second_ask = decision_request(confidence=0.4, summary="a second question")
        second = ok(await api.post("/v1/decisions", second_ask, as_="body"), 201)
    ok(await discord.send(discord.command("approve", USER, id=first["id"])))
    ok(await discord.send(discord.command("deny", USER, id=second["id"], reason="too risky")))
    async with live.client() as api:
        assert ok(await api.get(f"/v1/decisions/{first['id']}", as_="captain"))["state"] == "approved"
        denied = ok(await api.get(f"/v1/decisions/{second['id']}", as_="captain"))
    assert denied["state"] == "denied" and denied["answers"][-1]["reason"] == "too risky"
    status = ok(await discord.send(discord.command("status", USER)))
    assert "Kill switch: **released**" in status["data"]["content"]
    unknown = ok(await discord.send(discord.command("approve", USER, id="dec_nope")))
    assert unknown["data"]["flags"] == 64 and "no decision" in unknown["data"]["content"]


async def test_without_a_public_key_the_endpoint_is_not_there(tmp_path: Path) -> None:
    async with (
        live_brain(BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"))) as brain,
        brain.client() as api,
    ):
        response = await api.client.post("/discord/interactions", content=b"{}")
    assert response.status_code == 404 and "public_key" in response.json()["message"]


async def test_a_signed_kill_autonomous_stops_every_connected_body(
    tmp_path: Path, home: Path, live: LiveBrain, discord: Discord
) -> None:
    tokens = [await live.add_token(f"body-{n}") for n in range(3)]  # a body token speaks for one body
    bodies = [linked_body(tmp_path, home, n, live.url, tokens[n]) for n in range(3)]
    try:
        async with linked_up(*bodies):
            assert [await write(b, "before.txt") for b in bodies] == [(False, None)] * 3
            ok(await discord.send(discord.command("kill-autonomous", CAPTAIN, reason="stop")))
            await wait_until(lambda: all(b.kill_switch.state().engaged for b in bodies), timeout=5)
            assert [await write(b, "after.txt") for b in bodies] == [(True, "kill_switch_engaged")] * 3
    finally:
        for body in bodies:
            body.close()
    assert not any((tmp_path / f"ws{n}" / "after.txt").exists() for n in range(3))


async def test_an_action_slower_than_the_deadline_is_deferred_then_the_response_is_edited(
    tmp_path: Path, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeDiscord()
    monkeypatch.setattr(interactions, "DEFER_AFTER_S", 0.0)  # every action now outlasts the deadline
    async with serve_app(fake) as discord_url:
        access = DiscordAccess.from_hex(
            key.verify_key.encode().hex(),
            captain_ids=frozenset({CAPTAIN}),
            application_id=APP_ID,
            api_base=FakeDiscord.api_base(discord_url),
        )
        settings = BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"))
        async with (
            live_brain(settings, wake=WakeSetup(discord=access)) as live,
            httpx.AsyncClient(base_url=live.url, timeout=10) as http,
        ):
            response = ok(await Discord(key, http).send(Discord(key, http).command("kill-autonomous", CAPTAIN)))
            assert response == {"type": 5}
            with anyio.fail_after(5):
                while not fake.edits:
                    await anyio.sleep(0.01)
            assert await kill_engaged(live)
    (edit,) = fake.edits
    assert "Kill switch engaged" in edit["content"]
    (patch,) = [r for r in fake.requests if r.method == "PATCH"]
    assert patch.path == f"/api/v10/webhooks/{APP_ID}/interaction-token/messages/@original"


async def test_a_flood_of_forged_requests_fills_the_log_only_at_a_bounded_rate(
    live: LiveBrain, discord: Discord, tmp_path: Path
) -> None:
    forger = SigningKey.generate()
    for _ in range(25):
        assert (await discord.send(discord.command("kill-autonomous", CAPTAIN), key=forger)).status_code == 401
    assert refusals(tmp_path / "brain.db") == ["invalid request signature"] * 20
    assert not await kill_engaged(live)
    # A stranger's genuine request counts against the same budget (anyone can make those) ...
    assert "may not" in ok(await discord.send(discord.command("kill-autonomous", STRANGER)))["data"]["content"]
    assert len(refusals(tmp_path / "brain.db")) == 20
    # ... but the flood cannot hide a listed user asking for more than they may.
    assert "may not" in ok(await discord.send(discord.command("resume", USER)))["data"]["content"]
    assert refusals(tmp_path / "brain.db")[-1] == "/resume needs a captain"


async def test_refusals_past_the_rate_are_counted_in_the_next_line_written() -> None:
    state = MemoryStateEngine()
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    log = RefusalLog(state, lambda: now[0], per_minute=2)

    def refusal(n: int) -> LogEntry:
        return LogEntry(at=now[0], action="interaction_refused", by="discord", reason=f"forged {n}")

    for n in range(5):
        await log.record(refusal(n))
    now[0] += timedelta(seconds=60)
    await log.record(refusal(5))
    lines = await state.log_entries()
    assert [(e.reason, e.detail) for e in lines] == [
        ("forged 0", {}),
        ("forged 1", {}),
        ("forged 5", {"refusals_not_logged_before": 3}),
    ]


async def test_an_oversized_body_is_refused_before_it_is_read_whole(live: LiveBrain, discord: Discord) -> None:
    huge = b"{" + b" " * (MAX_BODY_BYTES + 1) + b"}"
    response = await discord.http.post("/discord/interactions", content=huge)
    assert response.status_code == 413 and "over" in response.json()["message"]
    assert not await kill_engaged(live)


async def test_a_button_that_is_not_ours_and_a_timestamp_that_is_not_whole_seconds_do_nothing(
    live: LiveBrain, discord: Discord
) -> None:
    foreign = ok(await discord.send(discord.button("kill-autonomous:now", CAPTAIN)))
    assert foreign["data"]["flags"] == 64 and "does not belong to Swarm" in foreign["data"]["content"]
    payload = discord.command("kill-autonomous", CAPTAIN)
    body = json.dumps(payload).encode()
    for stamp in ("1e99", "nan", f"{time.time():.3f}"):
        signature = discord.key.sign(stamp.encode() + body).signature.hex()
        headers = {"X-Signature-Ed25519": signature, "X-Signature-Timestamp": stamp}
        response = await discord.http.post("/discord/interactions", content=body, headers=headers)
        assert response.status_code == 401 and response.json()["message"] == "invalid request timestamp"
    assert not await kill_engaged(live)


async def test_an_action_that_crashes_gets_an_ephemeral_answer_and_the_brain_keeps_serving(
    live: LiveBrain, discord: Discord, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Brain) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Brain, "status", broken)  # the fault injected: the action itself fails
    answer = ok(await discord.send(discord.command("status", CAPTAIN)))
    assert answer["data"]["flags"] == 64 and "internal error" in answer["data"]["content"]
    assert "disk on fire" not in answer["data"]["content"]
    killed = ok(await discord.send(discord.command("kill-autonomous", CAPTAIN, reason="drill")))
    assert "Kill switch engaged" in killed["data"]["content"]
