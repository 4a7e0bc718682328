"""The dashboard in a real browser against a live brain and real linked bodies: log in, see a running agent,
approve a pending decision, kill (every body refuses), resume; and markup planted by an agent stays text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from playwright.async_api import Browser, Dialog, Page, expect

from body_mcp import build_server
from shared_protocol.brain import KillState
from tests.body.helpers import call, linked_up, ok, refused
from tests.body.test_brain_link import brain_on, linked_body, wait_until
from tests.brain.helpers import audit_chain, batch, decision_request, issue_in

from .browser import browser, chromium, log_in, screenshot

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _kill_state(url: str, captain: str) -> KillState:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/v1/status", headers={"Authorization": f"Bearer {captain}"})
        return KillState.model_validate(response.json()["kill"])


async def test_a_captain_sees_the_agents_approves_kills_and_resumes(
    tmp_path: Path, home: Path, chromium_browser: Browser
) -> None:
    chromium()
    db, port = tmp_path / "brain.db", _free_port()
    url = f"http://127.0.0.1:{port}"
    captain = await issue_in(db, "captain", "captain-ann")
    body_tokens = [await issue_in(db, "body", f"body-{n}") for n in range(2)]
    async with brain_on(port, db, heartbeat_interval_s=0.2):
        bodies = [linked_body(tmp_path, home, n, url, body_tokens[n]) for n in range(2)]
        try:
            async with (
                linked_up(*bodies),
                Client(build_server(bodies[0])) as first,
                Client(build_server(bodies[1])) as second,
                httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {captain}"}) as http,
                browser(chromium_browser) as chrome,
            ):
                queued = await http.post("/v1/tasks", json={"title": "fix the flaky login test"})
                assert queued.status_code == 201
                claimed = ok(await call(first, "next_task"))
                assert claimed["task"]["title"] == "fix the flaky login test"
                agent = claimed["task"]["claimed_by"]["agent"]
                asked = ok(
                    await call(
                        second,
                        "request_approval",
                        summary="delete the old fixtures",
                        confidence=0.3,
                        rationale="they are unused",
                        options=["delete", "keep"],
                    )
                )
                decision = asked["decision_id"]

                page = await chrome.new_page()
                dialogs: list[str] = []
                page.on("dialog", lambda d: dialogs.append(d.message))
                await log_in(page, url, captain)
                await expect(page.locator("#who")).to_have_text("captain-ann (captain)")
                row = page.locator(f"#agents tr[data-agent='{agent}']")
                await expect(row).to_contain_text("fix the flaky login test")
                await expect(row).to_contain_text("working")
                await expect(page.locator("#live")).to_have_text("live")
                item = page.locator(f"#decisions li[data-decision-id='{decision}']")
                await expect(item).to_contain_text("delete the old fixtures")
                await expect(item).to_contain_text("they are unused")
                await expect(item.locator(".options li")).to_have_text(["delete", "keep"])
                await screenshot(page, "dashboard-running-agent")

                await item.locator("input.reason").fill("fixtures are generated now")
                await item.locator("button.approve").click()
                await expect(item).to_have_count(0)
                answered = (await http.get(f"/v1/decisions/{decision}")).json()
                assert answered["state"] == "approved"
                assert answered["answers"][-1]["by"] == "captain-ann"
                assert answered["answers"][-1]["reason"] == "fixtures are generated now"
                await screenshot(page, "dashboard-decision-approved")

                await page.fill("#kill-reason", "browser drill")
                await page.click("#kill-button")
                await expect(page.locator("#kill-state")).to_contain_text("ENGAGED")
                await wait_until(lambda: all(b.kill_switch.state().engaged for b in bodies), timeout=10)
                for client in (first, second):
                    refused(await call(client, "write_file", path="during.txt", content="x"), "kill_switch_engaged")
                # (the kill reaches the streams before its commit: the stored state follows within the commit's time)
                with anyio.fail_after(10):
                    while not (killed := await _kill_state(url, captain)).engaged:
                        await anyio.sleep(0.05)
                assert (killed.engaged, killed.by, killed.reason) == (True, "captain-ann", "browser drill")
                await screenshot(page, "dashboard-killed")

                await page.click("#resume-button")
                await expect(page.locator("#kill-state")).to_contain_text("released")
                await wait_until(lambda: not any(b.kill_switch.state().engaged for b in bodies), timeout=10)
                for client in (first, second):
                    ok(await call(client, "write_file", path="after.txt", content="y"))
                # The audit stream shows the bodies' refusals live, and each opens its explanation.
                for b in bodies:
                    assert b.link is not None
                    await b.link.ship_pending()
                refusal = page.locator("#audit li.refused").first
                await expect(refusal).to_contain_text("kill_switch_engaged")
                await refusal.click()
                await expect(page.locator("#explanation")).to_contain_text("The guard refused it")
                await expect(page.locator("#errors")).to_contain_text("kill_switch_engaged")
                await screenshot(page, "dashboard-resumed-audit")
                assert dialogs == []
        finally:
            for body in bodies:
                body.close()


PAYLOAD = '<img src=x onerror="window.__pwned=1;alert(1)"><script>window.__pwned=2</script><b>bold</b>'


async def _nothing_ran(page: Page, dialogs: list[Dialog]) -> None:
    assert await page.evaluate("window.__pwned") is None
    assert dialogs == []
    # Nothing became markup: no element the payload names exists anywhere in the page.
    assert await page.locator("main img, main b, main script").count() == 0


async def _pause_in(db: Path, agent: str, reason: str, detail: dict[str, Any]) -> None:
    """Agent `agent` paused by the anomaly detector, written through an engine of its own on `db`."""
    from datetime import UTC, datetime

    from brain_server import SqliteStateEngine
    from brain_server.state import LogEntry
    from shared_protocol.brain import AgentPause

    at = datetime.now(UTC)
    state = await SqliteStateEngine.open(db)
    try:
        pause = AgentPause(agent=agent, reason=reason, by="anomaly", source="anomaly", at=at, detail=detail)
        log = LogEntry(at=at, action="agent_pause", by="anomaly", reason=reason, target=agent, detail=detail)
        assert await state.pause_agent(pause, log)
    finally:
        await state.close()


async def test_markup_an_agent_wrote_is_shown_as_text_and_never_runs(tmp_path: Path, chromium_browser: Browser) -> None:
    chromium()
    db, port = tmp_path / "brain.db", _free_port()
    url = f"http://127.0.0.1:{port}"
    approver = await issue_in(db, "approver", "approver-bo")
    body = await issue_in(db, "body", "body-x")
    await _pause_in(db, "w9", "paused " + PAYLOAD, {"metric " + PAYLOAD: {"value": PAYLOAD}})
    async with (
        brain_on(port, db),
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {body}"}) as agent,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {approver}"}) as human,
        browser(chromium_browser) as chrome,
    ):
        task = await human.post("/v1/tasks", json={"title": "title " + PAYLOAD, "description": PAYLOAD})
        assert task.status_code == 201
        asked = await agent.post(
            "/v1/decisions",
            json=decision_request(
                "body-x",
                summary="summary " + PAYLOAD,
                rationale="why " + PAYLOAD,
                options=[PAYLOAD],
                confidence=0.1,
                action=PAYLOAD,
                files=["a.txt"],
            ),
        )
        assert asked.status_code == 201, asked.text
        claimed = await agent.post("/v1/tasks/claim", json={"body_id": "body-x", "agent": "claude"})
        assert claimed.json()["task"]["title"] == "title " + PAYLOAD
        events = audit_chain("body-x", 1)
        planted = events[0].model_copy(
            update={
                "rationale": "because " + PAYLOAD,
                "decision_id": asked.json()["id"],
                "detail": {"diff": "--- a/x\n+++ b/x\n+" + PAYLOAD + "\n"},
                "arguments": {"path": PAYLOAD},
                "outcome": "refused",
                "code": "protected_path",
                "rule": "paths.protected",
                "message": "message " + PAYLOAD,
            }
        )
        page = await chrome.new_page()
        dialogs: list[Dialog] = []
        page.on("dialog", lambda d: dialogs.append(d))
        await log_in(page, url, approver)
        await expect(page.locator("#kill-button")).to_be_hidden()  # (a captain's)
        assert (await agent.post("/v1/audit", json=batch("body-x", [planted]))).status_code == 200

        # Every view that shows what the agent wrote: tasks, active agents, pending decisions, paused agents (the
        # reason and numbers of an anomaly pause), errors, the audit stream, an action's explanation. (Votes'
        # rationales: test_review20b_browser.)
        await expect(page.locator("#tasks .task-title")).to_have_text("title " + PAYLOAD)
        await expect(page.locator("#agents tr[data-agent='claude']")).to_contain_text("title " + PAYLOAD)
        await expect(page.locator("#errors")).to_contain_text("message " + PAYLOAD)
        item = page.locator("#decisions li.decision")
        await expect(item.locator(".summary")).to_have_text("summary " + PAYLOAD)
        await expect(item).to_contain_text("why " + PAYLOAD)
        await expect(item.locator(".options li")).to_have_text([PAYLOAD])
        paused = page.locator("#paused li.paused-agent[data-agent='w9']")
        await expect(paused).to_contain_text("paused " + PAYLOAD)
        await expect(paused.locator(".numbers li")).to_have_text([f"metric {PAYLOAD}: value {PAYLOAD}"])
        audit = page.locator("#audit li.audit-item")
        await expect(audit).to_contain_text("because " + PAYLOAD)
        await audit.click()
        explanation = page.locator("#explanation")
        await expect(explanation.locator("pre.diff")).to_have_text("--- a/x\n+++ b/x\n+" + PAYLOAD + "\n")
        await expect(explanation).to_contain_text("because " + PAYLOAD)
        await expect(explanation).to_contain_text("message " + PAYLOAD)
        await expect(explanation.locator(".options li")).to_have_text([PAYLOAD])
        assert json.loads(await explanation.locator("pre.arguments").text_content() or "{}") == {"path": PAYLOAD}
        await screenshot(page, "dashboard-planted-markup")
        await anyio.sleep(0.5)  # (an onerror would have fired by now)
        await _nothing_ran(page, dialogs)


async def test_a_revoked_token_ends_the_pages_session(tmp_path: Path, chromium_browser: Browser) -> None:
    chromium()
    db, port = tmp_path / "brain.db", _free_port()
    url = f"http://127.0.0.1:{port}"
    captain = await issue_in(db, "captain", "captain-cy")
    async with brain_on(port, db), browser(chromium_browser) as chrome:
        page = await chrome.new_page()
        await page.goto(url + "/")
        await page.fill("#token", "swb_not-a-token")
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#login-error")).to_contain_text("unknown token")
        await log_in(page, url, captain)
        await expect(page.locator("#live")).to_have_text("live")
        from brain_server import SqliteStateEngine, revoke_token

        state = await SqliteStateEngine.open(db)
        try:
            record = next(t for t in await state.tokens() if t.label == "captain-cy")
            await revoke_token(state, record.id, reason="left", at=(await _kill_state_at(state)))
        finally:
            await state.close()
        await page.locator("#login-view").wait_for(state="visible", timeout=15_000)
        await expect(page.locator("#login-error")).to_contain_text("revoked")
        await screenshot(page, "dashboard-session-ended")


async def _kill_state_at(state: Any) -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def test_the_task_list_shows_the_newest_hundred_and_pages_to_the_older(
    tmp_path: Path, chromium_browser: Browser
) -> None:
    chromium()
    db, port = tmp_path / "brain.db", _free_port()
    url = f"http://127.0.0.1:{port}"
    captain = await issue_in(db, "captain", "captain-di")
    async with (
        brain_on(port, db),
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {captain}"}) as http,
        browser(chromium_browser) as chrome,
    ):
        for n in range(103):
            assert (await http.post("/v1/tasks", json={"title": f"task {n}"})).status_code == 201
        page = await chrome.new_page()
        await log_in(page, url, captain)
        rows = page.locator("#tasks .task-title")
        await expect(page.locator("#task-count")).to_have_text("newest first: 1 to 100 of 103")
        await expect(rows).to_have_count(100)
        await expect(rows.first).to_have_text("task 102")
        await expect(page.locator("#tasks-newer")).to_be_disabled()
        await page.click("#tasks-older")
        await expect(page.locator("#task-count")).to_have_text("newest first: 101 to 103 of 103")
        await expect(rows).to_have_text(["task 2", "task 1", "task 0"])
        await expect(page.locator("#tasks-older")).to_be_disabled()
        await page.click("#tasks-newer")
        await expect(rows.first).to_have_text("task 102")
