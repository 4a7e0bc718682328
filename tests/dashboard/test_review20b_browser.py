"""Adversarial review of #20's dashboard in the distribution's headless Chromium against a live brain on 127.0.0.1:
a same-site page on another port (the cookie's SameSite=Strict does not stop it: ports are one site) tries to kill
the swarm through a logged-in captain's session and to frame the dashboard; and what the page shows of governance
(votes, the ladder) and of paused agents, with markup planted in each."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import anyio
import httpx
import pytest
from playwright.async_api import Browser, Dialog, Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from brain_server import SqliteStateEngine
from brain_server.state import LogEntry
from shared_protocol.brain import AgentPause
from shared_protocol.config import ConsensusConfig
from tests.body.test_brain_link import brain_on
from tests.brain.helpers import REVIEWER_LV, decision_request, issue_in
from tests.fakes.serve import serve_app

from .browser import browser, chromium, log_in, screenshot

pytestmark = pytest.mark.anyio

PAYLOAD = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>bold</b>'
REVIEWERS = ["rev-a", "rev-b", "rev-c", "rev-d", "rev-e"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _attacker(brain_url: str) -> Starlette:
    """A page on another port of 127.0.0.1 (same site as the brain): a text/plain form post, a no-cors fetch and a
    fetch with the CSRF header's name, all at POST /v1/kill with the visitor's cookies; and the dashboard framed."""
    page = f"""<!doctype html><html><body>
<iframe name="sink"></iframe>
<form id="f" method="POST" action="{brain_url}/v1/kill" enctype="text/plain" target="sink">
<input name='{{"reason":"pwned by form","x":"' value='"}}'></form>
<iframe id="framed" src="{brain_url}/"></iframe>
<script>
window.results = [];
document.getElementById("f").submit();
fetch("{brain_url}/v1/kill", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: '{{"reason":"pwned by fetch"}}'}})
  .then(() => window.results.push("no-cors sent"), (e) => window.results.push("no-cors " + e));
fetch("{brain_url}/v1/kill", {{method: "POST", credentials: "include",
  headers: {{"Content-Type": "application/json", "X-Swarm-CSRF": "guess"}}, body: '{{"reason":"pwned"}}'}})
  .then((r) => window.results.push("cors " + r.status), (e) => window.results.push("cors blocked"));
</script></body></html>"""

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    return Starlette(routes=[Route("/", index)])


async def _status(url: str, token: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=url) as client:
        answer = await client.get("/v1/status", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        return answer.json()


async def test_a_same_site_page_on_another_port_cannot_kill_or_frame_through_a_captains_session(
    tmp_path: Path, chromium_browser: Browser
) -> None:
    chromium()
    db, port = tmp_path / "brain.db", _free_port()
    url = f"http://127.0.0.1:{port}"
    captain = await issue_in(db, "captain", "captain-rv")
    async with brain_on(port, db), serve_app(_attacker(url)) as evil, browser(chromium_browser) as chrome:
        context = await chrome.new_context()
        page = await context.new_page()
        await log_in(page, url, captain)  # the captain's session cookie is in this browser
        attack = await context.new_page()
        dialogs: list[Dialog] = []
        attack.on("dialog", lambda d: dialogs.append(d))
        await attack.goto(evil + "/")
        with anyio.fail_after(30):
            while len(await attack.evaluate("window.results")) < 2:
                await anyio.sleep(0.05)
        results = await attack.evaluate("window.results")
        assert "cors blocked" in results  # the CSRF header's preflight is never allowed
        await anyio.sleep(0.5)
        kill = (await _status(url, captain))["kill"]
        assert isinstance(kill, dict) and kill["engaged"] is False, kill
        # The framed dashboard never rendered (frame-ancestors 'none', X-Frame-Options DENY).
        framed = [f for f in attack.frames if f != attack.main_frame and f.name != "sink"]
        assert framed  # (the attacker's iframe of the dashboard exists: its content is what is checked)
        for frame in framed:
            assert await frame.locator("#login-form, #dashboard-view, #token").count() == 0
        await screenshot(attack, "review20b-same-site-attacker")
        # The captain's own page still works: the session was not used by the attacker.
        await expect(page.locator("#live")).to_have_text("live")
        assert dialogs == []


async def _nothing_ran(page: Page, dialogs: list[Dialog]) -> None:
    await anyio.sleep(0.5)  # (an onerror would have fired by now)
    assert await page.evaluate("window.__pwned") is None and dialogs == []
    assert await page.locator("main img, main b, main script").count() == 0


async def _page_post(page: Page, path: str, body: dict[str, object], *, csrf: bool = True) -> dict[str, object]:
    """A POST from the logged-in page itself (its cookie, its Origin, and its CSRF header unless `csrf` is False):
    what a pressed button would send; the status and the brain's answer."""
    return await page.evaluate(
        """async ([path, body, csrf]) => {
            const session = await (await fetch("/session", {credentials: "same-origin"})).json();
            const headers = {"Content-Type": "application/json"};
            if (csrf) headers[session.csrf_header] = session.csrf;
            const init = {method: "POST", credentials: "same-origin", headers, body: JSON.stringify(body)};
            const r = await fetch(path, init);
            return {status: r.status, body: await r.json()};
        }""",
        [path, body, csrf],
    )


async def _reviewers_live(client: httpx.AsyncClient, captain: str, names: list[str]) -> None:
    """A human captain lets each reviewer agent's REVIEWER_LV vote live (a readiness override naming it)."""
    for name in names:
        override = {"agent": name, "logic_version": REVIEWER_LV, "reason": "reviewed", "for_s": 3600}
        made = await client.post(
            "/v1/readiness/overrides", json=override, headers={"Authorization": f"Bearer {captain}"}
        )
        assert made.status_code == 201, made.text


async def test_a_pending_decisions_votes_and_ladder_are_shown_as_text(
    tmp_path: Path, chromium_browser: Browser
) -> None:
    """A panel of five reviewer agents ties (2 approve, 2 deny, 1 abstains): the page shows every vote (voter, value,
    rationale, time) as text, the quorum count, the deadlock ladder's steps, and says what this approver's answer
    does (no seat: an approval counts for nothing, a deny denies)."""
    chromium()
    db, port = tmp_path / "brain.db", _free_port()
    url = f"http://127.0.0.1:{port}"
    approver = await issue_in(db, "approver", "approver-rv")
    body = await issue_in(db, "body", "claude-body", "claude")
    reviewers = {name: await issue_in(db, "reviewer", name, name) for name in REVIEWERS}
    captain = await issue_in(db, "captain", "captain-rv")
    panel = ConsensusConfig(panel=REVIEWERS, quorum=3, deadline_s=600)
    votes = [
        ("rev-a", "approve", "rationale " + PAYLOAD),
        ("rev-b", "approve", "small enough"),
        ("rev-c", "deny", "deny " + PAYLOAD),
        ("rev-d", "deny", "touches billing"),
        ("rev-e", "abstain", "not my area"),
    ]
    async with brain_on(port, db, consensus=panel) as _stop, browser(chromium_browser) as chrome:  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url=url) as client:
            request = decision_request("body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py"])
            asked = await client.post("/v1/decisions", json=request, headers={"Authorization": f"Bearer {body}"})
            assert asked.status_code == 201, asked.text
            decision_id = asked.json()["id"]
            await _reviewers_live(client, captain, REVIEWERS)
            for voter, value, reason in votes:
                voted = await client.post(
                    f"/v1/decisions/{decision_id}/votes",
                    json={"value": value, "reason": reason, "logic_version": REVIEWER_LV},
                    headers={"Authorization": f"Bearer {reviewers[voter]}"},
                )
                assert voted.status_code == 200, voted.text
            decision = voted.json()
            assert decision["state"] == "pending" and [s["kind"] for s in decision["ladder"]] == [
                "deadlock",
                "priority",
                "human_captain",
            ]
        page = await chrome.new_page()
        dialogs: list[Dialog] = []
        page.on("dialog", lambda d: dialogs.append(d))
        await log_in(page, url, approver)
        item = page.locator(f"#decisions li[data-decision-id='{decision_id}']")
        await expect(item).to_contain_text("rewrite the billing module")
        cast = item.locator(".votes li.vote-item")
        await expect(cast).to_have_count(5)
        for n, (voter, value, reason) in enumerate(votes):
            await expect(cast.nth(n).locator(".voter")).to_have_text(f"{voter} (reviewer) [{REVIEWER_LV}]")
            await expect(cast.nth(n).locator(".value")).to_have_text(value)
            await expect(cast.nth(n).locator(".rationale")).to_have_text(reason)
        await expect(item.locator(".quorum")).to_have_text(
            "quorum 3 of 5: 2 approve, 2 deny, 1 abstain, 0 not voted (tie: a deadlock)"
        )
        steps = item.locator(".ladder li.ladder-step")
        await expect(steps).to_have_count(3)
        for n, step in enumerate(decision["ladder"]):
            await expect(steps.nth(n)).to_contain_text(f"{step['kind']}: {step['reason']}")
        await expect(item.locator(".vote-note")).to_contain_text("hold no seat on this panel")
        await expect(item.locator(".vote-note")).to_contain_text("A deny from you denies it at once")
        await screenshot(page, "review20b-panel-decision")
        await _nothing_ran(page, dialogs)


async def test_an_approver_votes_from_the_page_with_a_reason_under_its_own_identity(
    tmp_path: Path, chromium_browser: Browser
) -> None:
    """The Vote button posts `POST /v1/decisions/{id}/votes` through the session (CSRF header, own Origin): the vote
    is recorded as `human:<label>` with the reason typed; no reason, no vote; without the CSRF header, 403."""
    chromium()
    db, port = tmp_path / "brain.db", _free_port()
    url = f"http://127.0.0.1:{port}"
    approver = await issue_in(db, "approver", "approver-vo")
    body = await issue_in(db, "body", "claude-body", "claude")
    reviewer = await issue_in(db, "reviewer", "rev-a", "rev-a")
    captain = await issue_in(db, "captain", "captain-vo")
    panel = ConsensusConfig(panel=REVIEWERS, quorum=3, deadline_s=600)
    async with brain_on(port, db, consensus=panel) as _stop, browser(chromium_browser) as chrome:  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url=url) as client:
            request = decision_request("body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py"])
            asked = await client.post("/v1/decisions", json=request, headers={"Authorization": f"Bearer {body}"})
            assert asked.status_code == 201, asked.text
            decision_id = asked.json()["id"]
            await _reviewers_live(client, captain, ["rev-a"])
            voted = await client.post(
                f"/v1/decisions/{decision_id}/votes",
                json={"value": "approve", "reason": "looks fine", "logic_version": REVIEWER_LV},
                headers={"Authorization": f"Bearer {reviewer}"},
            )
            assert voted.status_code == 200, voted.text
        page = await chrome.new_page()
        await log_in(page, url, approver)
        item = page.locator(f"#decisions li[data-decision-id='{decision_id}']")
        await expect(item.locator(".quorum")).to_contain_text("1 approve, 0 deny, 0 abstain, 4 not voted")

        forged = await _page_post(
            page, f"/v1/decisions/{decision_id}/votes", {"value": "deny", "reason": "x"}, csrf=False
        )
        assert forged["status"] == 403 and "CSRF" in str(forged["body"]), forged

        await item.locator("select.vote-value").select_option("deny")
        await item.locator("button.vote").click()  # (no reason typed)
        await expect(page.locator("#action-error")).to_contain_text("a vote needs a reason")
        await item.locator("input.vote-reason").fill("billing needs a migration plan " + PAYLOAD)
        await item.locator("button.vote").click()
        await expect(item).to_have_count(0)  # a human's deny settles it at once
        await expect(page.locator("#action-error")).to_have_text("")
        async with httpx.AsyncClient(base_url=url) as client:
            answered = await client.get(f"/v1/decisions/{decision_id}", headers={"Authorization": f"Bearer {approver}"})
        decision = answered.json()
        assert decision["state"] == "denied"
        mine = decision["votes"][-1]
        assert (mine["voter"], mine["value"], mine["role"], mine["rationale"]) == (
            "human:approver-vo",
            "deny",
            "approver",
            "billing needs a migration plan " + PAYLOAD,
        )
        assert len(decision["votes"]) == 2  # (the forged one was never recorded)
        await screenshot(page, "review20b-voted-from-the-page")


async def test_a_paused_agent_and_its_reason_are_shown_with_a_resume(tmp_path: Path, chromium_browser: Browser) -> None:
    """Agent w1 paused by a captain (its reason planted with markup), w2 by the anomaly detector (its numbers): both
    shown as text, with since when; an approver sees Resume but cannot press it (and the brain refuses it, 403); the
    captain's Resume lifts w1's pause."""
    chromium()
    db, port = tmp_path / "brain.db", _free_port()
    url = f"http://127.0.0.1:{port}"
    captain = await issue_in(db, "captain", "captain-rv")
    approver = await issue_in(db, "approver", "approver-pz")
    await issue_in(db, "body", "w1-body", "w1")
    await issue_in(db, "body", "w2-body", "w2")
    at = datetime.now(UTC)
    detail: dict[str, object] = {
        "tool_calls_per_min": {"value": 480.0, "median": 12.0, "robust_sigma": 3.0, "threshold": 21.0, "samples": 60},
        "sigma": 3.0,
    }
    state = await SqliteStateEngine.open(db)
    try:
        reason = "anomaly: tool_calls_per_min 480 over 21 " + PAYLOAD
        pause = AgentPause(agent="w2", reason=reason, by="anomaly", source="anomaly", at=at, detail=detail)
        log = LogEntry(at=at, action="agent_pause", by="anomaly", reason=reason, target="w2", detail=detail)
        assert await state.pause_agent(pause, log)
    finally:
        await state.close()
    async with brain_on(port, db), browser(chromium_browser) as chrome:
        async with httpx.AsyncClient(base_url=url) as client:
            paused = await client.post(
                "/v1/agents/w1/pause",
                json={"reason": "pause " + PAYLOAD},
                headers={"Authorization": f"Bearer {captain}"},
            )
            assert paused.status_code == 201, paused.text
        page = await chrome.new_page()
        dialogs: list[Dialog] = []
        page.on("dialog", lambda d: dialogs.append(d))
        await log_in(page, url, captain)
        await expect(page.locator("#kill-state")).to_contain_text("released")
        w1 = page.locator("#paused li.paused-agent[data-agent='w1']")
        w2 = page.locator("#paused li.paused-agent[data-agent='w2']")
        await expect(w1).to_contain_text("pause " + PAYLOAD)
        await expect(w1).to_contain_text("captain-rv (captain)")
        await expect(w2).to_contain_text("the anomaly detector (anomaly)")
        await expect(w2).to_contain_text("anomaly: tool_calls_per_min 480 over 21 " + PAYLOAD)
        await expect(w2.locator(".numbers li")).to_have_text(
            [
                "sigma: 3",
                "tool_calls_per_min: value 480, median 12, robust_sigma 3, threshold 21, samples 60",
            ]
        )
        since = await page.evaluate("(iso) => new Date(iso).toLocaleString()", at.isoformat())
        await expect(w2).to_contain_text(since)
        await screenshot(page, "review20b-paused-agent")
        await _nothing_ran(page, dialogs)

        # An approver sees the pauses and the Resume, which it cannot press; the brain refuses it anyway.
        other = await chrome.new_page()
        await other.clock.install()  # (its timers run on, until the test moves them on: its refresh, below)
        await log_in(other, url, approver)
        approver_w1 = other.locator("#paused li.paused-agent[data-agent='w1']")
        await expect(approver_w1.locator("button.resume-agent")).to_be_disabled()
        await expect(approver_w1).to_contain_text("Resuming a paused agent is a captain's")
        refused = await _page_post(other, "/v1/agents/w1/resume", {"reason": "let it go"})
        assert refused["status"] == 403, refused
        message = refused["body"]["message"]  # type: ignore[index]
        assert message == "approver-pz is logged in as an approver, who may not do this (needs: captain)", refused
        await screenshot(other, "review20b-paused-agent-approver")

        await w1.locator("input.reason").fill("false alarm")
        await w1.locator("button.resume-agent").click()
        await expect(w1).to_have_count(0)
        await expect(w2).to_have_count(1)
        status = await _status(url, captain)
        assert [p["agent"] for p in status["paused_agents"]] == ["w2"]  # type: ignore[union-attr, index]
        # The approver's page refreshes too: at its next periodic refresh (every 5 s), which the test brings on.
        await other.clock.fast_forward(5_000)
        await expect(approver_w1).to_have_count(0)
