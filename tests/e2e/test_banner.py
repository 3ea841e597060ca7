"""The consent banner and the tag manager in a real browser, through a real tag-gate.

The site (tests/e2e/banner_site.py) serves its page with its tags as vendors publish
them, under a strict nonce CSP, and knows nothing of the banner; tag-gate in front of it
defers the refused tags and inserts the banner, activate.js and the `[[tag]]` entries.
Every third-party request goes to the fake internet of world.py and is recorded. Every
proof-of-consent line tag-gate writes during a test is checked against
docs/consent-proof.schema.json, and the record it holds against
docs/consent-record.schema.json and proxy.core.banner.parse_consent_record.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from proxy.core.banner import parse_consent_record
from tests.e2e.banner_site import COOKIE, SALT, BannerWorld
from tests.e2e.conftest import INSTALL_HINT
from tests.e2e.world import category_of_host, find_chromium, is_console_error
from tests.schema_check import check

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
RECORD_SCHEMA = json.loads((REPO / "docs" / "consent-record.schema.json").read_text(encoding="utf-8"))
PROOF_SCHEMA = json.loads((REPO / "docs" / "consent-proof.schema.json").read_text(encoding="utf-8"))
RECORD_KEYS = ("consent_id", "policy_version", "granted", "refused", "page", "action")
ALL = ["functional", "analytics", "advertising", "social"]
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
DESKTOP = {"width": 1280, "height": 800}
MOBILE = {"width": 390, "height": 844}
RECORD = re.compile(r"^([a-z.]*)~(\d+)~(\d+)~([A-Za-z0-9_-]{16,24})$")
TRACKERS_BY_CATEGORY = {"analytics": "gtag", "advertising": "meta-pixel", "functional": "crisp"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bw(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BannerWorld]:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(INSTALL_HINT)
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    world = BannerWorld(chromium, tmp_path_factory.mktemp("proof") / "consent.jsonl")
    try:
        await world.start()
        yield world
    finally:
        await world.stop()


MARKS: dict[int, int] = {}


@pytest_asyncio.fixture(loop_scope="module")
async def site(bw: BannerWorld) -> AsyncIterator[BannerWorld]:
    """The world with tag-gate's config reset; afterwards, every proof-of-consent line
    written during the test must match its schema and hold a valid record."""
    bw.configure()
    MARKS[id(bw)] = len(bw.proof_lines())
    yield bw
    for line in new_lines(bw):
        assert check(PROOF_SCHEMA, line) == [], line
        record = as_record(line)
        assert check(RECORD_SCHEMA, record) == [], record
        parse_consent_record(json.dumps(record).encode())


def new_lines(world: BannerWorld) -> list[dict[str, Any]]:
    """The proof-of-consent lines tag-gate wrote during this test."""
    return world.proof_lines()[MARKS.get(id(world), 0) :]


def as_record(line: dict[str, Any]) -> dict[str, Any]:
    """The record banner.js POSTed, as the proof line holds it."""
    return {**{k: line[k] for k in RECORD_KEYS}, "time": line["decided_at"]}


@dataclass
class Visit:
    context: Any
    page: Any
    errors: list[str] = field(default_factory=list)

    async def cookie(self) -> dict[str, Any] | None:
        for c in await self.context.cookies():
            if c["name"] == COOKIE:
                return dict(c)
        return None

    async def record(self) -> tuple[list[str], int, int, str]:
        c = await self.cookie()
        assert c is not None, "no consent cookie"
        m = RECORD.fullmatch(c["value"])
        assert m is not None, c["value"]
        return [x for x in m.group(1).split(".") if x], int(m.group(2)), int(m.group(3)), m.group(4)

    async def trackers(self) -> list[str]:
        ran: list[str] = await self.page.evaluate("window.trackersRan || []")
        return sorted(ran)

    async def focused(self) -> str:
        """What has the keyboard focus, in words the tests compare."""
        described: str = await self.page.evaluate(
            """() => {
              const host = document.querySelector('tag-gate-banner');
              const a = host && host.shadowRoot.activeElement;
              if (!a) {
                const d = document.activeElement;
                return 'page:' + (d ? d.tagName.toLowerCase() + '#' + d.id : '');
              }
              if (a.tagName === 'INPUT') return 'switch:' + a.dataset.purpose;
              if (a.tagName === 'SUMMARY') {
                return 'services:' + a.closest('.purpose').querySelector('input').dataset.purpose;
              }
              if (a.dataset.action) return a.dataset.action;
              if (a.classList.contains('close')) return 'close';
              if (a.classList.contains('reopen')) return 'reopen';
              if (a.tagName === 'A') return 'link';
              if (a.tagName === 'H2') return 'heading';
              return a.tagName.toLowerCase();
            }"""
        )
        return described

    def dialog(self) -> Any:
        return self.page.locator("tag-gate-banner dialog")

    async def focus_settles_on(self, expected: str, timeout: float = 2.0) -> str:
        """What has the focus once it settles: the dialog's `close` event, which
        restores focus, is a task queued after the key press that closed it."""
        deadline = time.monotonic() + timeout
        while True:
            got = await self.focused()
            if got == expected or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.02)

    async def is_open(self) -> bool:
        opened: bool = await self.page.evaluate(
            "() => !!document.querySelector('tag-gate-banner') && "
            "!!document.querySelector('tag-gate-banner').shadowRoot.querySelector('dialog[open]')"
        )
        return opened

    async def view(self) -> str:
        cls: str = await self.dialog().get_attribute("class")
        return cls


@contextlib.asynccontextmanager
async def visit(
    world: BannerWorld,
    query: str = "",
    *,
    https: bool = False,
    viewport: dict[str, int] | None = None,
    locale: str | None = None,
    cookie: str | None = None,
    wait_banner: bool = True,
    path: str = "shop",
) -> AsyncIterator[Visit]:
    context = await world.browser.new_context(viewport=viewport or DESKTOP, locale=locale)
    try:
        if cookie is not None:
            await context.add_cookies([{"name": COOKIE, "value": cookie, "url": world.origin(https) + "/"}])
        page = await context.new_page()
        v = Visit(context, page)
        page.on("console", lambda m: v.errors.append(f"console: {m.text}") if is_console_error(m) else None)
        page.on("pageerror", lambda e: v.errors.append(f"exception: {e}"))
        await page.goto(world.url(path, query=query, https=https), wait_until="load", timeout=15_000)
        await page.wait_for_function("() => window.appRan === true")
        if wait_banner:
            await page.wait_for_function("() => !!window.tagGateBanner")
        yield v
    finally:
        await context.close()


async def fresh_id() -> str:
    return "".join("Ab3_-xYz9"[i % 9] for i in range(22))


def valid_cookie(
    granted: list[str], version: int = 1, when: float | None = None, cid: str = "KeepMe0123456789abcdEF"
) -> str:
    return f"{'.'.join(granted)}~{version}~{int(when or time.time())}~{cid}"


async def wait_records(world: BannerWorld, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The records of the first `n` proof lines of this test (waiting for them)."""
    deadline = time.monotonic() + timeout
    while len(lines := new_lines(world)) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {n} proof-of-consent lines, got {len(lines)}")
        await asyncio.sleep(0.1)
    return [as_record(line) for line in lines]


def hits_by_category(world: BannerWorld, mark: tuple[int, int]) -> dict[str, list[str]]:
    hits, _ = world.internet.since(mark)
    out: dict[str, list[str]] = {}
    for h in hits:
        # Chromium's own traffic (component updates) carries no Sec-Fetch-Site at all.
        if h.fetch_site in ("same-origin", "same-site", "cross-site"):
            out.setdefault(category_of_host(h.host) or "unknown", []).append(f"{h.host}{h.path}")
    return out


# --------------------------------------------------------------------------- first visit


async def test_first_visit_shows_the_banner_and_runs_nothing(site: BannerWorld) -> None:
    mark = site.internet.mark()
    async with visit(site) as v:
        assert await v.is_open() and await v.view() == "banner"
        dialog = v.page.get_by_role("dialog", name="Cookies and your privacy")
        await dialog.wait_for()
        assert await v.dialog().get_attribute("aria-modal") == "true"
        assert await v.focused() == "heading"
        texts = await v.dialog().inner_text()
        assert "Purposes: Functional, Analytics, Advertising, Social media and embedded content" in texts
        assert await v.page.locator("tag-gate-banner .reopen").is_hidden()
        await asyncio.sleep(0.6)  # activate.js polls the cookie every 500 ms: let it look
        assert await v.trackers() == []
        assert await v.cookie() is None
        # tag-gate deferred the site's tags and put the video behind a placeholder
        assert await v.page.locator("script[type='text/plain'][data-tg-category]").count() == 4
        assert await v.page.locator("[data-tg-placeholder][data-tg-category=social]").count() == 1
        await site.quiet()
        assert hits_by_category(site, mark) == {}
        assert v.errors == []
    assert new_lines(site) == []


async def test_accept_and_refuse_have_the_same_prominence(site: BannerWorld) -> None:
    props = [
        "backgroundColor",
        "color",
        "fontSize",
        "fontWeight",
        "fontFamily",
        "borderTopWidth",
        "borderTopColor",
        "borderRadius",
        "paddingTop",
        "paddingLeft",
        "textDecorationLine",
    ]
    script = "(el, props) => props.map(p => getComputedStyle(el)[p])"
    for viewport in (DESKTOP, MOBILE):
        async with visit(site, viewport=viewport) as v:
            for view, third in (("banner", "choose"), ("preferences", "save")):
                if view == "preferences":
                    await v.dialog().locator("[data-action=choose]").click()
                await v.page.mouse.move(0, 0)  # no button is hovered
                buttons = [v.dialog().locator(f"[data-action={a}]") for a in ("accept_all", "refuse_all", third)]
                styles = [await b.evaluate(script, props) for b in buttons]
                boxes = [await b.bounding_box() for b in buttons]
                assert styles[0] == styles[1] == styles[2], (view, viewport, styles)
                assert all(box is not None for box in boxes)
                sizes = {(round(b["width"]), round(b["height"])) for b in boxes if b}
                assert len(sizes) == 1, (view, viewport, boxes)


# --------------------------------------------------------------------------- decisions


async def test_refuse_all_writes_no_category(site: BannerWorld) -> None:
    mark = site.internet.mark()
    async with visit(site) as v:
        before = time.time()
        await v.page.get_by_role("button", name="Refuse all").click()
        assert not await v.is_open()
        granted, version, when, cid = await v.record()
        assert granted == [] and version == 1 and before - 2 <= when <= time.time() + 1
        c = await v.cookie()
        assert c is not None
        assert c["path"] == "/" and c["sameSite"] == "Lax" and c["secure"] is False and not c["httpOnly"]
        assert abs(c["expires"] - (when + 395 * 86400)) < 5
        assert await v.page.evaluate("window.consentEvents") == [{"granted": []}]
        (record,) = await wait_records(site, 1)
        assert record == {
            "consent_id": cid,
            "policy_version": 1,
            "granted": [],
            "refused": ALL,
            "page": site.url(),
            "time": when,
            "action": "refuse_all",
        }
        await v.page.locator("tag-gate-banner .reopen").wait_for()
        await asyncio.sleep(0.6)
        assert await v.trackers() == []
        placeholder = v.page.locator("[data-tg-placeholder]")
        assert await placeholder.is_visible() and "YouTube" in await placeholder.inner_text()
        assert await placeholder.get_by_role("button", name="Load YouTube").is_visible()
        await site.quiet()
        assert hits_by_category(site, mark) == {}
        assert v.errors == []


async def test_accept_all_runs_deferred_tags_without_reload(site: BannerWorld) -> None:
    mark = site.internet.mark()
    async with visit(site, query="utm_source=mail#top") as v:
        load_id = await v.page.evaluate("window.loadId")
        await v.page.get_by_role("button", name="Accept all").click()
        await v.page.wait_for_function("() => (window.trackersRan || []).length >= 3", timeout=5000)
        assert await v.trackers() == ["crisp", "gtag", "meta-pixel"]
        assert await v.page.evaluate("window.loadId") == load_id, "the page was reloaded"
        assert await v.page.evaluate("typeof window.gtag === 'function' && window.dataLayer.length > 0")
        await v.page.wait_for_function("() => !!document.querySelector('iframe[src*=youtube]')")
        granted, *_ = await v.record()
        assert granted == ALL
        assert await v.page.evaluate("window.consentEvents") == [{"granted": ALL}]
        (record,) = await wait_records(site, 1)
        assert record["granted"] == ALL and record["refused"] == [] and record["action"] == "accept_all"
        assert record["page"] == site.url(), "query and fragment are left out"
        await site.quiet()
        seen = hits_by_category(site, mark)
        assert set(seen) == {"analytics", "advertising", "functional", "social"}, seen
        assert v.errors == []


async def test_choose_analytics_only(site: BannerWorld) -> None:
    mark = site.internet.mark()
    async with visit(site) as v:
        await v.page.get_by_role("button", name="Let me choose").click()
        assert await v.view() == "preferences"
        switches = v.dialog().get_by_role("switch")
        assert await switches.count() == 5
        essential = v.dialog().get_by_role("switch", name="Essential")
        assert await essential.is_checked() and await essential.is_disabled()
        for name in ("Functional", "Analytics", "Advertising", "Social media and embedded content"):
            assert not await v.dialog().get_by_role("switch", name=name).is_checked()
        await v.dialog().get_by_role("switch", name="Analytics").check()
        await v.page.get_by_role("button", name="Save my choices").click()
        await v.page.wait_for_function("() => (window.trackersRan || []).includes('gtag')", timeout=5000)
        granted, *_ = await v.record()
        assert granted == ["analytics"]
        (record,) = await wait_records(site, 1)
        assert record["granted"] == ["analytics"] and record["action"] == "save"
        assert record["refused"] == ["functional", "advertising", "social"]
        await asyncio.sleep(0.6)
        assert await v.trackers() == ["gtag"]
        await site.quiet()
        assert set(hits_by_category(site, mark)) == {"analytics"}
        assert v.errors == []


async def test_vendors_are_listed_per_purpose(site: BannerWorld) -> None:
    async with visit(site) as v:
        await v.page.get_by_role("button", name="Let me choose").click()
        analytics = v.dialog().locator(".purpose", has=v.page.get_by_role("switch", name="Analytics"))
        await analytics.get_by_text("Services (1)").click()
        text = await analytics.inner_text()
        assert "Google Analytics" in text and "Web analytics by Google." in text
        assert "_ga, _ga_*" in text and "Retention: 13 months" in text
        essential = await v.dialog().locator(".purpose").first.inner_text()
        assert "Always on" in essential and "Services (2)" in essential
        await v.dialog().locator(".purpose").first.get_by_text("Services (2)").click()
        essential = await v.dialog().locator(".purpose").first.inner_text()
        assert "This site" in essential and "Cookies: tg_consent" in essential and "Stripe" in essential
        assert await v.dialog().get_by_role("link", name="Privacy policy").get_attribute("href") == "/privacy"


# --------------------------------------------------------------------------- reopening


async def test_reopen_with_the_button_and_withdraw(site: BannerWorld) -> None:
    cid = "KeepMe0123456789abcdEF"
    async with visit(site, cookie=valid_cookie(ALL, cid=cid)) as v:
        assert not await v.is_open()
        await v.page.wait_for_function("() => (window.trackersRan || []).length >= 3", timeout=5000)
        reopen = v.page.locator("tag-gate-banner .reopen")
        assert await reopen.get_attribute("aria-haspopup") == "dialog"
        assert await reopen.inner_text() == "Cookie preferences"
        box = await reopen.bounding_box()
        assert box is not None and box["x"] < 40 and box["y"] + box["height"] > DESKTOP["height"] - 40
        await reopen.click()
        assert await v.view() == "preferences"
        analytics = v.dialog().get_by_role("switch", name="Analytics")
        assert await analytics.is_checked()
        await analytics.uncheck()
        load_id = await v.page.evaluate("window.loadId")
        held = {c["name"] for c in await v.context.cookies()}
        assert {"_ga", "_ga_ABCDE12345", "_fbp", "crisp-client-session"} <= held, held
        await site.quiet()
        mark = site.internet.mark()
        pages = site.site.pages
        async with v.page.expect_navigation(timeout=10_000):
            await v.page.get_by_role("button", name="Save my choices").click()
        await v.page.wait_for_function("() => window.appRan === true && !!window.tagGateBanner")
        assert await v.page.evaluate("window.loadId") != load_id, "withdrawal reloads the page"
        granted, _, _, kept = await v.record()
        assert granted == ["functional", "advertising", "social"] and kept == cid
        (record,) = await wait_records(site, 1)
        assert record["consent_id"] == cid and record["refused"] == ["analytics"]
        # The reload still carried the analytics cookies: the site never saw them, and
        # tag-gate's response expired them.
        assert site.site.pages == pages + 1
        sent = {kv.split("=", 1)[0].strip() for kv in site.site.cookie_headers[-1].split(";")}
        assert not sent & {"_ga", "_ga_ABCDE12345"} and {"_fbp", "crisp-client-session"} <= sent, sent
        held = {c["name"] for c in await v.context.cookies()}
        assert not held & {"_ga", "_ga_ABCDE12345"}, held
        assert {"_fbp", "crisp-client-session"} <= held
        await v.page.wait_for_function("() => (window.trackersRan || []).length >= 2", timeout=5000)
        await asyncio.sleep(0.6)
        assert await v.trackers() == ["crisp", "meta-pixel"]
        await site.quiet()
        assert "analytics" not in hits_by_category(site, mark)
        assert not await v.is_open()


async def test_no_reload_when_nothing_is_withdrawn(site: BannerWorld) -> None:
    async with visit(site, cookie=valid_cookie(["analytics"])) as v:
        load_id = await v.page.evaluate("window.loadId")
        await v.page.locator("tag-gate-banner .reopen").click()
        await v.dialog().get_by_role("switch", name="Functional").check()
        await v.page.get_by_role("button", name="Save my choices").click()
        await v.page.wait_for_function("() => (window.trackersRan || []).includes('crisp')", timeout=5000)
        assert await v.page.evaluate("window.loadId") == load_id
        granted, *_ = await v.record()
        assert granted == ["functional", "analytics"]


@pytest.mark.parametrize("opener", ["#footer-link", "#site-settings"])
async def test_reopen_from_the_site_s_own_link_and_escape(site: BannerWorld, opener: str) -> None:
    async with visit(site, cookie=valid_cookie([])) as v:
        assert not await v.is_open()
        await v.page.locator(opener).focus()
        await v.page.keyboard.press("Enter")
        assert await v.is_open() and await v.view() == "preferences"
        assert await v.focused() == "heading"
        assert v.page.url.endswith("/shop"), "the link's fragment is not followed"
        await v.page.keyboard.press("Escape")
        assert not await v.is_open()
        expected = f"page:{'a' if opener == '#footer-link' else 'button'}{opener}"
        assert await v.focus_settles_on(expected) == expected
        assert (await v.record())[0] == [] and new_lines(site) == []


async def test_open_from_a_link_on_another_page(site: BannerWorld) -> None:
    async with visit(site, query="from=footer#tag-gate-preferences", cookie=valid_cookie(["social"])) as v:
        assert await v.is_open() and await v.view() == "preferences"
        assert await v.dialog().get_by_role("switch", name="Social media and embedded content").is_checked()


async def test_position_and_no_button(site: BannerWorld) -> None:
    site.configure(banner={"position": "bottom-right"})
    async with visit(site, cookie=valid_cookie([])) as v:
        box = await v.page.locator("tag-gate-banner .reopen").bounding_box()
        assert box is not None and box["x"] + box["width"] > DESKTOP["width"] - 40
    site.configure(banner={"position": "none"})
    async with visit(site, cookie=valid_cookie([])) as v:
        assert await v.page.locator("tag-gate-banner .reopen").count() == 0
        await v.page.evaluate("window.tagGateBanner.open()")
        assert await v.is_open()


# --------------------------------------------------------------------------- re-asking


async def test_reask_after_a_policy_version_change(site: BannerWorld) -> None:
    old = valid_cookie(["analytics"], version=1, cid="OldChoice0123456789abc")
    async with visit(site, cookie=old) as v:  # the current version: the choice stands
        assert not await v.is_open()
        await v.page.wait_for_function("() => (window.trackersRan || []).includes('gtag')", timeout=5000)
    site.configure(banner={"policy_version": 2})
    mark = site.internet.mark()
    async with visit(site, cookie=old) as v:
        assert await v.is_open() and await v.view() == "banner"
        # Fail closed: until the visitor answers again, the old choice grants nothing.
        await asyncio.sleep(0.6)
        assert await v.trackers() == []
        await site.quiet()
        assert hits_by_category(site, mark) == {}
        await v.page.get_by_role("button", name="Accept all").click()
        await v.page.wait_for_function("() => (window.trackersRan || []).length >= 3", timeout=5000)
        granted, version, _, cid = await v.record()
        assert granted == ALL and version == 2 and cid == "OldChoice0123456789abc"
        (record,) = await wait_records(site, 1)
        assert record["policy_version"] == 2


@pytest.mark.parametrize(
    ("cookie", "reask"),
    [
        (valid_cookie(["analytics"], when=time.time() - 29 * 86400), False),
        (valid_cookie(["analytics"], when=time.time() - 31 * 86400), True),  # older than lifetime_days
        ("analytics", True),  # no record at all (written by hand)
        (valid_cookie(["analytics"], when=time.time() + 3 * 86400), True),  # from the future
    ],
    ids=["current", "expired", "no-record", "future"],
)
async def test_reask_after_the_lifetime_and_fail_closed(site: BannerWorld, cookie: str, reask: bool) -> None:
    site.configure(banner={"lifetime_days": 30})
    mark = site.internet.mark()
    async with visit(site, cookie=cookie) as v:
        assert await v.is_open() is reask
        await asyncio.sleep(0.6)
        assert await v.trackers() == ([] if reask else ["gtag"])
        await site.quiet()
        assert set(hits_by_category(site, mark)) == (set() if reask else {"analytics"})


# --------------------------------------------------------------------------- keyboard


async def tab_cycle(v: Visit, n: int, key: str = "Tab") -> list[str]:
    seen = []
    for _ in range(n):
        await v.page.keyboard.press(key)
        seen.append(await v.focused())
    return seen


async def test_keyboard_only_path_through_every_control(site: BannerWorld) -> None:
    async with visit(site) as v:
        kb = v.page.keyboard
        assert await v.focused() == "heading"
        assert await tab_cycle(v, 5) == ["link", "accept_all", "refuse_all", "choose", "link"]
        assert await tab_cycle(v, 2, "Shift+Tab") == ["choose", "refuse_all"]
        await kb.press("Tab")
        await kb.press("Enter")  # "Let me choose"
        assert await v.view() == "preferences" and await v.focused() == "heading"
        order = [
            "close",
            "services:essential",
            "switch:functional",
            "services:functional",
            "switch:analytics",
            "services:analytics",
            "switch:advertising",
            "services:advertising",
            "switch:social",
            "services:social",
            "link",
            "accept_all",
            "refuse_all",
            "save",
            "close",
        ]
        assert await tab_cycle(v, len(order)) == order
        assert await tab_cycle(v, 1, "Shift+Tab") == ["save"]
        while await v.focused() != "switch:analytics":
            await kb.press("Shift+Tab")
        await kb.press("Space")
        assert await v.dialog().get_by_role("switch", name="Analytics").is_checked()
        await kb.press("Tab")
        await kb.press("Enter")  # opens the analytics services
        assert await v.dialog().locator(".purpose details").nth(2).get_attribute("open") == ""
        assert await tab_cycle(v, 1) == ["switch:advertising"]  # closed <details> hold nothing focusable
        while await v.focused() != "save":
            await kb.press("Tab")
        await kb.press("Enter")
        assert not await v.is_open()
        assert (await v.record())[0] == ["analytics"]
        await v.page.wait_for_function("() => (window.trackersRan || []).includes('gtag')", timeout=5000)

        # The persistent button is the last stop of the page; Enter opens, Escape closes.
        assert await tab_cycle(v, 1, "Shift+Tab") == ["reopen"]
        await kb.press("Enter")
        assert await v.is_open() and await v.focused() == "heading"
        assert await v.dialog().get_by_role("switch", name="Analytics").is_checked()
        await kb.press("Escape")
        assert not await v.is_open() and await v.focus_settles_on("reopen") == "reopen"
        assert (await v.record())[0] == ["analytics"], "Escape changes nothing"

        # Space works as well; refusing everything withdraws analytics and reloads.
        await kb.press("Space")
        assert await v.is_open()
        while await v.focused() != "refuse_all":
            await kb.press("Tab")
        async with v.page.expect_navigation(timeout=10_000):
            await kb.press("Space")
        await v.page.wait_for_function("() => window.appRan === true && !!window.tagGateBanner")
        assert (await v.record())[0] == []
        assert not await v.is_open()
        assert [r["action"] for r in await wait_records(site, 2)] == ["save", "refuse_all"]
        assert v.errors == []


async def test_escape_on_the_first_banner_decides_nothing(site: BannerWorld) -> None:
    async with visit(site) as v:
        await v.page.keyboard.press("Escape")
        assert not await v.is_open()
        assert await v.cookie() is None and new_lines(site) == []
        assert await v.page.locator("tag-gate-banner .reopen").is_visible()
    async with visit(site) as v:  # still undecided: asked again on the next page
        assert await v.is_open()


async def test_focus_is_visible(site: BannerWorld) -> None:
    async with visit(site) as v:
        await v.page.keyboard.press("Tab")
        await v.page.keyboard.press("Tab")
        assert await v.focused() == "accept_all"
        outline = (
            await v.dialog()
            .locator("[data-action=accept_all]")
            .evaluate("el => [getComputedStyle(el).outlineStyle, getComputedStyle(el).outlineWidth]")
        )
        assert outline == ["solid", "3px"]


# --------------------------------------------------------------------------- accessibility


async def axe_violations(v: Visit) -> list[str]:
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(
        v.page, options={"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}
    )
    # axe_playwright_python's own report cannot print shadow DOM targets (nested lists).
    return [
        f"{item['id']} ({item['impact']}): {item['help']}\n"
        + "\n".join(f"  {node['target']}: {node.get('failureSummary', '')}" for node in item["nodes"])
        for item in results.response["violations"]
    ]


@pytest.mark.parametrize("viewport", [DESKTOP, MOBILE], ids=["desktop", "mobile"])
async def test_axe_finds_no_wcag_violation(site: BannerWorld, viewport: dict[str, int]) -> None:
    async with visit(site, viewport=viewport) as v:
        assert await axe_violations(v) == []
        await v.page.get_by_role("button", name="Let me choose").click()
        for summary in await v.dialog().locator("summary").all():
            await summary.click()
        assert await axe_violations(v) == []
        await v.page.get_by_role("button", name="Save my choices").click()
        assert await axe_violations(v) == []  # the page with the persistent button


async def test_axe_sees_the_shadow_root(site: BannerWorld) -> None:
    """A control: the same run does report a banner that breaks a rule."""
    async with visit(site) as v:
        await v.dialog().locator("[data-action=refuse_all]").evaluate("el => { el.textContent = ''; }")
        found = await axe_violations(v)
        assert [f.split(" ")[0] for f in found] == ["button-name"], found


# --------------------------------------------------------------------------- isolation, languages, https


async def test_site_styles_neither_break_nor_are_broken(site: BannerWorld) -> None:
    script = "el => { const s = getComputedStyle(el); return [s.fontSize, s.backgroundColor, s.letterSpacing]; }"
    async with visit(site) as v:
        normal = await v.dialog().locator("[data-action=accept_all]").evaluate(script)
        dialog_box = await v.dialog().bounding_box()
    async with visit(site, query="hostile") as v:
        assert await v.dialog().locator("[data-action=accept_all]").evaluate(script) == normal
        assert await v.dialog().bounding_box() == dialog_box
        assert await v.dialog().get_by_role("switch").count() == 0
        await v.page.get_by_role("button", name="Let me choose").click()
        assert await v.dialog().get_by_role("switch", name="Analytics").is_visible()
    site.configure(banner={"enabled": False})
    async with visit(site, query="strict&notags", wait_banner=False) as v:
        assert await v.page.locator("tag-gate-banner").count() == 0
        before = await v.page.locator("#buy").evaluate(script)
        heading = await v.page.locator("h1").evaluate(script)
    site.configure()
    async with visit(site, query="strict&notags") as v:
        assert await v.is_open()
        assert await v.page.locator("#buy").evaluate(script) == before
        assert await v.page.locator("h1").evaluate(script) == heading
        assert v.errors == [], "no CSP violation (inline style or script) either"


@pytest.mark.parametrize(
    ("query", "locale", "title", "accept"),
    [
        ("lang=de", "fr-FR", "Cookies und Ihre Privatsphäre", "Alle akzeptieren"),
        ("lang=pt-BR", "fr-FR", "Les cookies et votre vie privée", "Tout accepter"),
        ("lang=es", None, "Las cookies y su privacidad", "Aceptar todo"),
        ("lang=it-IT", None, "I cookie e la tua privacy", "Accetta tutto"),
        ("lang=pl", "nl-BE", "Cookies en uw privacy", "Alles accepteren"),
        ("lang=pl", "pl-PL", "Cookies and your privacy", "Accept all"),
    ],
)
async def test_language(site: BannerWorld, query: str, locale: str | None, title: str, accept: str) -> None:
    async with visit(site, query=query, locale=locale) as v:
        assert await v.page.get_by_role("dialog", name=title).is_visible()
        assert await v.page.get_by_role("button", name=accept).is_visible()
        lang = await v.dialog().get_attribute("lang")
        assert title.startswith(
            {"de": "Cookies und", "fr": "Les", "es": "Las", "it": "I ", "nl": "Cookies en", "en": "Cookies and"}[lang]
        )


async def test_secure_cookie_on_https(site: BannerWorld) -> None:
    async with visit(site, https=True) as v:
        await v.page.get_by_role("button", name="Accept all").click()
        c = await v.cookie()
        assert c is not None and c["secure"] is True and c["sameSite"] == "Lax"
        (record,) = await wait_records(site, 1)
        assert record["page"] == site.url(https=True)


async def test_a_failing_proof_sink_never_affects_the_page(site: BannerWorld, tmp_path: Path) -> None:
    site.configure(banner={"proof_file": str(tmp_path / "missing-directory" / "consent.jsonl")})
    async with visit(site) as v:
        await v.page.get_by_role("button", name="Accept all").click()
        await v.page.wait_for_function("() => (window.trackersRan || []).length >= 3", timeout=5000)
        assert (await v.record())[0] == ALL
        assert v.errors == []
        assert site.proxy is not None
        sink = site.proxy.service.state.proof_sink
        assert sink is not None and sink.file is not None
        deadline = time.monotonic() + 5
        while sink.dropped < 1:  # the line was taken, then lost to the file system, and counted
            assert time.monotonic() < deadline, "the lost line was not counted"
            sink.flush(0.5)
            await asyncio.sleep(0.1)
        assert sink.file.failures >= 1
        await v.page.reload()
        await v.page.wait_for_function("() => window.appRan === true && !!window.tagGateBanner")
        assert not await v.is_open() and (await v.record())[0] == ALL


# --------------------------------------------------------------------------- screenshots


async def test_screenshots_and_layout(site: BannerWorld, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Screenshots for the README (saved with --screenshots docs/images), and the layout
    they show: the banner inside the viewport, at the bottom, its buttons side by side
    on a desktop and stacked full width on a phone."""
    out = Path(request.config.getoption("--screenshots") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    for name, viewport in (("desktop", DESKTOP), ("mobile", MOBILE)):
        async with visit(site, viewport=viewport) as v:
            box = await v.dialog().bounding_box()
            assert box is not None
            assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"] + 0.5
            assert viewport["height"] - 20 <= box["y"] + box["height"] <= viewport["height"] + 0.5
            buttons = [
                await v.dialog().locator(f"[data-action={a}]").bounding_box() for a in ("accept_all", "refuse_all")
            ]
            assert buttons[0] is not None and buttons[1] is not None
            side_by_side = abs(buttons[0]["y"] - buttons[1]["y"]) < 1
            assert side_by_side == (name == "desktop"), buttons
            await v.page.screenshot(path=str(out / f"banner-{name}.png"))
            await v.page.get_by_role("button", name="Let me choose").click()
            await v.dialog().locator(".purpose").nth(2).locator("summary").click()
            box = await v.dialog().bounding_box()
            assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"] + 0.5
            overflow = await v.dialog().evaluate(
                "d => d.querySelector('.scroll').scrollWidth <= d.querySelector('.scroll').clientWidth"
            )
            assert overflow, "no horizontal scrolling"
            await v.dialog().evaluate("d => { d.querySelector('.scroll').scrollTop = 0; }")
            await v.page.mouse.move(0, 0)
            await v.page.screenshot(path=str(out / f"banner-preferences-{name}.png"))
    for f in out.glob("banner*.png"):
        assert f.stat().st_size > 5000


# --------------------------------------------------------------------------- proof of consent


async def test_the_proof_line_holds_the_decision_and_a_salted_client_hash(site: BannerWorld) -> None:
    async with visit(site, query="from=mail") as v:
        user_agent: str = await v.page.evaluate("navigator.userAgent")
        await v.page.get_by_role("button", name="Let me choose").click()
        await v.dialog().get_by_role("switch", name="Social media and embedded content").check()
        await v.page.get_by_role("button", name="Save my choices").click()
        _, _, when, cid = await v.record()
        await wait_records(site, 1)
    (line,) = new_lines(site)
    expected = hmac.new(SALT.encode(), f"127.0.0.1\n{user_agent}".encode(), hashlib.sha256).hexdigest()
    assert {k: v for k, v in line.items() if k != "time"} == {
        "event": "consent",
        "v": 1,
        "consent_id": cid,
        "policy_version": 1,
        "granted": ["social"],
        "refused": ["functional", "analytics", "advertising"],
        "action": "save",
        "page": site.url(),
        "decided_at": when,
        "client": expected,
    }
    assert user_agent not in json.dumps(line) and "127.0.0.1" not in json.dumps(line)


# --------------------------------------------------------------------------- the tag manager

MANAGED: list[dict[str, Any]] = [
    {"id": "a1", "kind": "inline", "category": "analytics", "placement": "head-end", "code": "managedOrder.push('a1')"},
    {
        "id": "hotjar",
        "kind": "script",
        "category": "analytics",
        "placement": "head-end",
        "src": "https://static.hotjar.com/c/hotjar-1234567.js?sv=6",
    },
    {"id": "f1", "kind": "inline", "category": "functional", "code": "managedOrder.push('f1')"},
    {
        "id": "insight",
        "kind": "script",
        "category": "advertising",
        "src": "https://snap.licdn.com/li.lms-analytics/insight.min.js",
    },
    {"id": "a2", "kind": "inline", "category": "analytics", "code": "managedOrder.push('a2')"},
    {
        "id": "li-pixel",
        "kind": "pixel",
        "category": "advertising",
        "src": "https://px.ads.linkedin.com/collect/?pid=1&fmt=gif",
    },
    {
        "id": "other-page",
        "kind": "inline",
        "category": "essential",
        "code": "managedOrder.push('x')",
        "paths": ["/blog/"],
    },
]
MANAGED_HOSTS = {
    "static.hotjar.com": "analytics",
    "snap.licdn.com": "advertising",
    "px.ads.linkedin.com": "advertising",
}


def managed_hits(world: BannerWorld, mark: tuple[int, int]) -> set[str]:
    hits, _ = world.internet.since(mark)
    return {h.host for h in hits if h.host in MANAGED_HOSTS and h.fetch_site != "none"}


async def managed_state(v: Visit) -> dict[str, Any]:
    state: dict[str, Any] = await v.page.evaluate(
        """() => ({
          order: window.managedOrder,
          tags: [...document.querySelectorAll('[data-tg-tag]')].map(e => e.dataset.tgTag),
          inert: [...document.querySelectorAll('[data-tg-tag][data-tg-category]')].map(e => e.dataset.tgTag),
          nonces: [...document.querySelectorAll('script[data-tg-tag]:not([data-tg-category])')]
            .every(e => e.nonce && e.nonce === document.querySelector('script[src="/app.js"]').nonce),
        })"""
    )
    return state


async def test_managed_tags_wait_for_consent_and_run_without_a_reload_in_order(site: BannerWorld) -> None:
    site.configure(tags=MANAGED)
    mark = site.internet.mark()
    async with visit(site, query="notags") as v:
        await asyncio.sleep(0.6)
        state = await managed_state(v)
        assert state["tags"] == ["a1", "hotjar", "f1", "insight", "a2", "li-pixel"], "in order, on their paths only"
        assert state["inert"] == state["tags"] and state["order"] == []
        await site.quiet()
        assert managed_hits(site, mark) == set()

        load_id = await v.page.evaluate("window.loadId")
        await v.page.get_by_role("button", name="Let me choose").click()
        await v.dialog().get_by_role("switch", name="Analytics").check()
        await v.page.get_by_role("button", name="Save my choices").click()
        await v.page.wait_for_function("() => (window.trackersRan || []).includes('hotjar')", timeout=5000)
        await asyncio.sleep(0.6)
        state = await managed_state(v)
        assert state["order"] == ["a1", "a2"] and state["inert"] == ["f1", "insight", "li-pixel"]
        await site.quiet()
        assert managed_hits(site, mark) == {"static.hotjar.com"}

        await v.page.locator("tag-gate-banner .reopen").click()
        await v.page.get_by_role("button", name="Accept all").click()
        await v.page.wait_for_function("() => (window.trackersRan || []).includes('linkedin-insight')", timeout=5000)
        await site.quiet()
        state = await managed_state(v)
        assert state["order"] == ["a1", "a2", "f1"] and state["inert"] == []
        assert managed_hits(site, mark) == set(MANAGED_HOSTS)
        assert await v.page.evaluate("window.loadId") == load_id, "no reload"
        assert v.errors == [], "activated under the page's strict CSP: they carry its nonce"


async def test_managed_tags_granted_at_load_are_live_with_the_nonce(site: BannerWorld) -> None:
    site.configure(tags=MANAGED)
    for granted, order, live in [
        (ALL, ["a1", "f1", "a2"], {"static.hotjar.com", "snap.licdn.com", "px.ads.linkedin.com"}),
        (["analytics"], ["a1", "a2"], {"static.hotjar.com"}),
        ([], [], set()),
    ]:
        mark = site.internet.mark()
        async with visit(site, query="notags", cookie=valid_cookie(granted)) as v:
            await asyncio.sleep(0.6)
            state = await managed_state(v)
            assert state["order"] == order, granted
            assert state["nonces"] is True
            assert len(state["inert"]) == 6 - len([t for t in MANAGED[:6] if t["category"] in granted]), state
            await site.quiet()
            assert managed_hits(site, mark) == live, granted
            assert v.errors == []
    async with visit(site, path="blog/post", query="notags", cookie=valid_cookie([])) as v:
        assert (await managed_state(v))["order"] == ["x"], "an essential tag on its own path"
