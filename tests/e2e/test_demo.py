"""`tag-gate demo` in a real browser: the newcomer opening the printed URL sees the
banner; refusing keeps every vendor away and accepting lets them load without a reload,
as the page's live list of the vendor stand-in's requests shows; the decisions are
written as proof-of-consent lines on stdout."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from proxy import demo
from proxy.core.addresses import Address
from tests.e2e.conftest import INSTALL_HINT
from tests.e2e.world import CHROMIUM_FLAGS, find_chromium

pytestmark = [pytest.mark.e2e]


async def categories(page: Any) -> list[str]:
    found: list[str] = await page.evaluate(
        "() => [...document.querySelectorAll('#demo-requests li')].map(li => li.dataset.category)"
    )
    return found


async def wait_until(check: Callable[[], Awaitable[object]], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_the_demo_asks_and_shows_what_the_vendors_received(capfd: pytest.CaptureFixture[str]) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(INSTALL_HINT)
    from playwright.async_api import async_playwright

    out = io.StringIO()
    task = asyncio.ensure_future(demo.run(Address("127.0.0.1", 0), once=False, out=out))
    try:

        async def started() -> bool:
            return "Running;" in out.getvalue()

        await wait_until(started, "the demo to start", 30)
        url = next(line.split()[-1] for line in out.getvalue().splitlines() if "open this:" in line)
        async with async_playwright() as pw:
            # No host-resolver rules: Chromium itself sends every *.localhost name to the loopback.
            browser = await pw.chromium.launch(executable_path=chromium, headless=True, args=list(CHROMIUM_FLAGS))
            try:
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(url, wait_until="load")
                await page.get_by_role("dialog", name="Cookies and your privacy").wait_for()
                await wait_until(lambda: categories(page), "the essential Stripe stand-in in the list")
                assert set(await categories(page)) == {"essential"}

                await page.get_by_role("button", name="Refuse all").click()
                await asyncio.sleep(1.5)
                assert set(await categories(page)) == {"essential"}, "refused vendors receive nothing"
                assert "essential only" in await page.locator("#demo-consent").inner_text()

                await page.evaluate("window.sameDocument = true")
                await page.get_by_role("link", name="Cookie preferences").click()
                await page.get_by_role("button", name="Accept all").click()

                async def everyone() -> bool:
                    return {"analytics", "advertising", "functional", "social"} <= set(await categories(page))

                await wait_until(everyone, "every vendor's request in the list")
                assert await page.evaluate("window.sameDocument === true"), "no reload"
                assert "functional.analytics.advertising.social" in await page.locator("#demo-consent").inner_text()
                assert errors == []
            finally:
                await browser.close()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    proof = [json.loads(line) for line in capfd.readouterr().out.splitlines() if '"event":"consent"' in line]
    assert [p["action"] for p in proof] == ["refuse_all", "accept_all"]
