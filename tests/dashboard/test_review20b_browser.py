"""Adversarial review of #20's dashboard in the distribution's headless Chromium against a live brain on 127.0.0.1:
a same-site page on another port (the cookie's SameSite=Strict does not stop it: ports are one site) tries to kill
the swarm through a logged-in captain's session and to frame the dashboard; and what the page shows of governance
(votes, the ladder) and of paused agents, with markup planted in each."""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import httpx
import pytest
from playwright.async_api import Dialog, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from shared_protocol.config import ConsensusConfig
from tests.body.test_brain_link import brain_on
from tests.brain.helpers import decision_request, issue_in
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
    tmp_path: Path,
) -> None:
    chromium()
    db, port = tmp_path / "brain.db", _free_port()
    url = f"http://127.0.0.1:{port}"
    captain = await issue_in(db, "captain", "captain-rv")
    async with brain_on(port, db), serve_app(_attacker(url)) as evil, browser() as chrome:
        context = await chrome.new_context()
        page = await context.new_page()
        await log_in(page, url, captain)  # the captain's session cookie is in this browser
        attack = await context.new_page()
        dialogs: list[Dialog] = []
        attack.on("dialog", lambda d: dialogs.append(d))
        await attack.goto(evil + "/")
        with anyio.fail_after(10):
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


@pytest.mark.xfail(
    strict=True,
    reason="HOLE (low, a gap against #19/#20): the dashboard's pending decision shows neither its panel's votes "
    "(who, approve/deny, rationale) nor its deadlock ladder, and offers no vote: an approver without a seat "
    "presses Approve on a panel decision that needs no human and nothing happens (a vote outside the panel counts "
    "for nothing) with no word why. Reproduce: [consensus] panel of 5 reviewer agents, a 6-file decision, rev-a "
    "votes approve with a rationale, open the dashboard. Fix: renderDecision lists `d.votes` (voter, value, "
    "rationale, as text), `d.ladder` steps, the quorum count and whether a human is required; Approve/Deny "
    "explained for panel decisions.",
)
async def test_a_pending_decisions_votes_and_ladder_are_shown_as_text(tmp_path: Path) -> None:
    chromium()
    db, port = tmp_path / "brain.db", _free_port()
    url = f"http://127.0.0.1:{port}"
    approver = await issue_in(db, "approver", "approver-rv")
    body = await issue_in(db, "body", "claude-body", "claude")
    reviewer = await issue_in(db, "reviewer", "rev-a", "rev-a")
    panel = ConsensusConfig(panel=REVIEWERS, quorum=3, deadline_s=600)
    async with brain_on(port, db, consensus=panel) as _stop, browser() as chrome:  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url=url) as client:
            request = decision_request("body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py"])
            asked = await client.post("/v1/decisions", json=request, headers={"Authorization": f"Bearer {body}"})
            assert asked.status_code == 201, asked.text
            voted = await client.post(
                f"/v1/decisions/{asked.json()['id']}/votes",
                json={"value": "approve", "reason": "rationale " + PAYLOAD},
                headers={"Authorization": f"Bearer {reviewer}"},
            )
            assert voted.status_code == 200, voted.text
        page = await chrome.new_page()
        dialogs: list[Dialog] = []
        page.on("dialog", lambda d: dialogs.append(d))
        await log_in(page, url, approver)
        item = page.locator("#decisions li.decision")
        await expect(item).to_contain_text("rewrite the billing module")
        await screenshot(page, "review20b-panel-decision")
        assert await page.evaluate("window.__pwned") is None and dialogs == []
        await expect(item).to_contain_text("rationale " + PAYLOAD, timeout=2000)
        await expect(item).to_contain_text("rev-a", timeout=500)


@pytest.mark.xfail(
    strict=True,
    reason="HOLE (low, a gap against #20 point 6): a paused agent is invisible on the dashboard and cannot be "
    "resumed from it. The anomaly watch (or a captain) pauses agent w1; /v1/status lists it in `paused_agents` "
    "with the numbers, but the page shows only the global kill switch as 'released', so the human woken to look "
    "sees nothing paused and has no resume. Fix: render `status.paused_agents` (agent, by, reason as text) with a "
    "captain's Resume button calling POST /v1/agents/{name}/resume.",
)
async def test_a_paused_agent_and_its_reason_are_shown_with_a_resume(tmp_path: Path) -> None:
    chromium()
    db, port = tmp_path / "brain.db", _free_port()
    url = f"http://127.0.0.1:{port}"
    captain = await issue_in(db, "captain", "captain-rv")
    await issue_in(db, "body", "w1-body", "w1")
    async with brain_on(port, db), browser() as chrome:
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
        await screenshot(page, "review20b-paused-agent")
        assert await page.evaluate("window.__pwned") is None and dialogs == []
        await expect(page.locator("main")).to_contain_text("pause " + PAYLOAD, timeout=2000)
