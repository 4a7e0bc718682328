"""Driving the dashboard in the distribution's headless Chromium (Playwright, `executable_path`: never a browser
Playwright downloads), against a live brain on 127.0.0.1. Screenshots go to test-artifacts/screenshots/, which CI
keeps."""

from __future__ import annotations

from collections.abc import AsyncGenerator
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
async def launched() -> AsyncGenerator[Browser]:
    """The distribution's Chromium, started through Playwright (its driver, a Node process, and the browser: some
    seconds of a loaded machine's CPU); `tests/dashboard/conftest.py` starts one per test module."""
    path = chromium()
    async with async_playwright() as playwright:
        started = await playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield started
        finally:
            await started.close()


@asynccontextmanager
async def browser(shared: Browser) -> AsyncGenerator[Browser]:
    """The module's browser for one test: each page it opens has a new context (`new_page`, `new_context`: cookies and
    storage of its own, as in a browser started afresh), and every context the test opened is closed when the block
    ends (its pages, and their streams to the test's brain, with it)."""
    before = set(shared.contexts)
    try:
        yield shared
    finally:
        for context in shared.contexts:
            if context not in before:
                await context.close()


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
