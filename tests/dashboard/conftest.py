"""The dashboard's fixtures: the brain fixtures (a brain on every state engine, a controllable clock), and one
headless Chromium per test module for the tests that drive a page."""

from collections.abc import AsyncGenerator

import pytest
from playwright.async_api import Browser

from tests.brain.conftest import brain, clock, pages, settings, state

from .browser import launched

__all__ = ["anyio_backend", "brain", "chromium_browser", "clock", "pages", "settings", "state"]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Module-wide, so that a module's async fixtures can be too (`chromium_browser`). A module with none still runs
    each test on an event loop of its own (the anyio plugin keeps a loop only while a wider fixture holds it)."""
    return "asyncio"


@pytest.fixture(scope="module")
async def chromium_browser() -> AsyncGenerator[Browser]:
    """One browser for a module's tests (Playwright's driver and Chromium started once, not per test: a second or
    more of CPU each); every test opens its pages in contexts of their own (`browser.browser`), closed at its end."""
    async with launched() as started:
        yield started
