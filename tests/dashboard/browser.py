"""Driving the dashboard in the distribution's headless Chromium (Playwright, `executable_path`: never a browser
Playwright downloads), against a live brain on 127.0.0.1. Screenshots go to test-artifacts/screenshots/, which CI
keeps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

from tests.conftest import require_binary

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """/usr/bin/chromium: the test is skipped (a failure when CI=true, which installs it) when it is absent."""
    return require_binary("chromium", "chromium")


@asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    path = chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def log_in(page: Page, url: str, token: str) -> None:
    await page.goto(url + "/")
    await page.locator("#login-view").wait_for(state="visible")
    await page.fill("#token", token)
    await page.click("#login-form button[type=submit]")
    await page.locator("#dashboard-view").wait_for(state="visible")
