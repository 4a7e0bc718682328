"""The dashboard in a real browser while bodies flood the brain with audit events: the page shows the newest rows and
says honestly how many earlier events it was not sent (and where they are), and a kill reaches it through the
flood on its live stream."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from playwright.async_api import Browser, Route, expect

from brain_server import BrainSettings
from brain_server.dashboard.feed import AUDIT_ROWS
from brain_server.state import sqlite_url
from shared_protocol import AuditEvent
from tests.brain.helpers import LiveBrain, audit_chain, audit_event, batch, live_brain, ok

from .browser import browser, chromium, log_in, screenshot

pytestmark = pytest.mark.anyio


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveBrain]:
    chromium()
    async with live_brain(BrainSettings(database_url=sqlite_url(tmp_path / "brain.db"))) as brain:
        yield brain


async def _ship(web: httpx.AsyncClient, token: str, body: str, events: list[AuditEvent]) -> None:
    ok(await web.post("/v1/audit", json=batch(body, events), headers={"Authorization": f"Bearer {token}"}))


async def _flood(web: httpx.AsyncClient, token: str, body: str, stored: list[int], *, every: int = 250) -> None:
    """`body` shipping batches of `every` events as fast as the brain takes them (counted in `stored`), until
    cancelled."""
    prev, last = "genesis-" + body, 0
    while True:
        events: list[AuditEvent] = []
        for seq in range(last + 1, last + every + 1):
            events.append(audit_event(body, seq, prev))
            prev = events[-1].mac
        last += every
        await _ship(web, token, body, events)
        stored[0] += len(events)


async def test_a_page_under_a_flood_shows_the_newest_rows_says_how_many_it_was_not_sent_and_hears_the_kill(
    live: LiveBrain, chromium_browser: Browser
) -> None:
    tokens = {body: await live.add_token(body) for body in ("body-b", "body-c", "body-d")}
    captain = {"Authorization": f"Bearer {live.tokens['captain']}"}
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as web, browser(chromium_browser) as chrome:
        page = await chrome.new_page(locale="en-US")
        await log_in(page, live.url, live.tokens["approver"])
        await expect(page.locator("#kill-state")).to_contain_text("released")
        await expect(page.locator("#live")).to_have_text("live")
        skipped, rows = page.locator("#audit-skipped"), page.locator("#audit li")
        await expect(skipped).to_be_hidden()

        await _ship(web, live.tokens["body"], "body-a", audit_chain("body-a", 1000))  # (one batch: one flush)
        await expect(skipped).to_contain_text(f"{1000 - AUDIT_ROWS} earlier events not shown")
        await expect(rows).to_have_count(AUDIT_ROWS)
        await expect(rows.first).to_contain_text("#1000 body-a")
        await expect(rows.last).to_contain_text(f"#{1001 - AUDIT_ROWS} body-a")
        await _ship(web, tokens["body-b"], "body-b", audit_chain("body-b", 1000))
        await expect(skipped).to_contain_text(f"{2 * (1000 - AUDIT_ROWS):,} earlier events not shown")  # 1,600
        await expect(skipped).to_contain_text("swarm audit tail")
        await expect(rows).to_have_count(AUDIT_ROWS)
        await expect(rows.first).to_contain_text("#1000 body-b")
        await screenshot(page, "dashboard-audit-flood")

        async def refuse(route: Route) -> None:
            await route.abort()

        # From here the page's polls cannot tell it the kill state: only its live stream can.
        await page.route(re.compile(r".*/v1/status$"), refuse)
        stored = [0]
        async with anyio.create_task_group() as flood:
            for body in ("body-c", "body-d"):
                flood.start_soon(_flood, web, tokens[body], body, stored)
            with anyio.fail_after(30):
                while stored[0] < 1000:  # (the flood is on: the kill lands in it)
                    await anyio.sleep(0.05)
            ok(await web.post("/v1/kill", json={"reason": "flood drill"}, headers=captain))
            await expect(page.locator("#kill-state")).to_contain_text("ENGAGED", timeout=10_000)
            await expect(page.locator("#kill-state")).to_contain_text("flood drill")
            ok(await web.post("/v1/resume", json={"reason": "drill over"}, headers=captain))
            await expect(page.locator("#kill-state")).to_contain_text("released", timeout=10_000)
            flood.cancel_scope.cancel()
        assert await rows.count() == AUDIT_ROWS
