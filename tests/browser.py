"""Headless Chromium for page tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download is never used (it needs the network): the system browser
at ``/usr/bin/chromium`` (or ``MICROHIVE_TEST_CHROMIUM``) is launched with the flags a closed
network needs. ``scripts/test`` installs it on a fresh Debian machine (``scripts/browser.sh``);
without it, page tests skip with how to get it, and fail under ``CI=true``.

Use the ``page`` fixture (an async Playwright page, 1280x800) and :func:`screenshot` to write
the picture a README shows.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.engines import unavailable

CHROMIUM = os.environ.get("MICROHIVE_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def require_chromium() -> str:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if path is None:
        unavailable(
            "headless Chromium is not installed: run scripts/browser.sh "
            "(Debian: apt-get install -y chromium) or set MICROHIVE_TEST_CHROMIUM"
        )
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A Chromium browser for one test."""
    executable = require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    """A fresh page (its own context: no cookies shared between tests)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield await context.new_page()
    finally:
        await context.close()


SCREENSHOTS = Path(__file__).resolve().parent / ".screenshots"
"""Where a test run leaves its screenshots (not in git); the committed images the docs show
are rewritten only with ``MICROHIVE_SCREENSHOTS=update``."""


async def screenshot(page: Any, path: Path) -> Path:
    """Save what the page shows now (the whole page) as a PNG: at ``path`` (a committed image)
    with ``MICROHIVE_SCREENSHOTS=update``, else under ``tests/.screenshots/`` with the name of
    its folder and file, so a test run leaves the tree as it was. Returns where it went."""
    if os.environ.get("MICROHIVE_SCREENSHOTS") != "update":
        path = SCREENSHOTS / f"{path.parent.name}-{path.name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path
