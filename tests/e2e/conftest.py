"""End-to-end fixtures: one fake internet, one site, tag-gate instances and one Chromium
per test module (see world.py), gone before the rest of the suite runs. Without Debian's
chromium the tests skip and say how to install it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.e2e.world import STATS, World, find_chromium

INSTALL_HINT = (
    "chromium is not installed: the end-to-end tests need Debian's chromium "
    "(apt-get install chromium; see README 'End-to-end tests in a real browser')"
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world() -> AsyncIterator[World]:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(INSTALL_HINT)
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    w = World(chromium)
    try:
        await w.start()
        yield w
    finally:
        await w.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if STATS.pages:
        terminalreporter.write_line(STATS.summary())
    guard = sys.modules.get("tests.e2e.test_guard")
    results = getattr(guard, "RESULTS", None)
    if results:
        terminalreporter.write_line("runtime guard corpus (consent state: result, requests blocked; control: leaks):")
        for name, cells in results.items():
            terminalreporter.write_line(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in cells.items()))
