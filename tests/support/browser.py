"""A real headless Chromium (Debian's `chromium`) driven by Playwright, for the end-to-end tests.

Playwright never downloads a browser here: it launches /usr/bin/chromium. Screenshots go to
tests/artifacts/<test name>/ (git-ignored) so a person can look at what the browser saw."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def require_chromium() -> str:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI requires Chromium (apt-get install chromium)")
        pytest.skip("Chromium is not installed")
    return CHROMIUM


class Shots:
    """Numbered full-page screenshots of one test."""

    def __init__(self, name: str) -> None:
        self.folder = ARTIFACTS / name
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.count = 0

    def take(self, page: object, label: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{label}.png"
        page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium (one per test: Playwright's sync API runs one at a time); closed afterwards."""
    from playwright.sync_api import sync_playwright

    executable = require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser: object, locale: str = "en-US") -> object:
    """A browser context: its own cookies, like another person at another computer."""
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    context.set_default_timeout(20_000)
    return context
