"""The console's browser tests: a real `lethe serve` (the client tests' fixture, tiny pipeline
registered as `tiny`) and headless Chromium from Debian's packages, driven by Playwright.

Screenshots go to test-artifacts/console/ at the repository root (ignored by git).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client.conftest import ADMIN_KEY, live_server  # noqa: F401  (the fixture, reused)

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
# Headless, and nothing of the browser's own that would reach the network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found: apt-get install chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright not installed: pip install -e '.[dev]'"
    return None


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def admin_key() -> str:
    return ADMIN_KEY
