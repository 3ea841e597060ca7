"""tag-gate in a real browser: every request that reaches a tracker is counted.

Each visit loads a page from tests/e2e/pages through tag-gate in a fresh Chromium
context and asks what the browser did: which third-party hosts it contacted (HTTP
requests and TLS handshakes seen by the fake internet), which cookies it holds, which
first-party scripts ran and which console errors it logged. "No refused tracker was
contacted" is measured against the vendor catalogue's categories, not assumed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.world import (
    ALL_CATEGORIES,
    REGISTRABLE,
    SITE_HOST,
    STATS,
    TRACKERS,
    Visit,
    World,
    category_of_host,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@dataclass(frozen=True)
class State:
    name: str
    cookies: dict[str, str]
    granted: frozenset[str]
    gpc: bool = False


def _granted(*names: str) -> frozenset[str]:
    return frozenset({"essential", *names})


def _onetrust(groups: dict[str, int]) -> str:
    flags = "%2C".join(f"{g}%3A{v}" for g, v in groups.items())
    return (
        "isGpcEnabled=0&datestamp=Thu+Sep+26+2024+06%3A52%3A32+GMT%2B0900&version=202310.2.0"
        "&browserGpcFlag=0&isIABGlobal=false&hosts=&consentId=00000000-0000-0000-0000-000000000000"
        f"&interactionCount=1&isAnonUser=1&landingPath=NotLandingPage&groups={flags}&AwaitingReconsent=false"
    )


def _cookiebot(preferences: bool, statistics: bool, marketing: bool) -> str:
    def js(b: bool) -> str:
        return "true" if b else "false"

    return (
        "{stamp:%27AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D%3D%27%2Cnecessary:true"
        f"%2Cpreferences:{js(preferences)}%2Cstatistics:{js(statistics)}%2Cmarketing:{js(marketing)}"
        "%2Cmethod:%27explicit%27%2Cver:1%2Cutc:1745620490943%2Cregion:%27pl%27}"
    )


ALL = "functional.analytics.advertising.social"
STATES = (
    State("none", {}, _granted()),
    State("analytics", {"tg_consent": "analytics"}, _granted("analytics")),
    State("advertising+social", {"tg_consent": "advertising.social"}, _granted("advertising", "social")),
    State("all", {"tg_consent": ALL}, ALL_CATEGORIES),
    State(
        "onetrust analytics",
        {"OptanonConsent": _onetrust({"C0001": 1, "C0002": 1, "C0003": 0, "C0004": 0, "C0005": 0})},
        _granted("analytics"),
    ),
    State(
        "onetrust advertising+social",
        {"OptanonConsent": _onetrust({"C0001": 1, "C0002": 0, "C0003": 0, "C0004": 1, "C0005": 1})},
        _granted("advertising", "social"),
    ),
    State(
        "onetrust all",
        {"OptanonConsent": _onetrust({"C0001": 1, "C0002": 1, "C0003": 1, "C0004": 1, "C0005": 1})},
        ALL_CATEGORIES,
    ),
    State("cookiebot analytics", {"CookieConsent": _cookiebot(False, True, False)}, _granted("analytics")),
    # Cookiebot files social embeds under "marketing".
    State(
        "cookiebot advertising+social",
        {"CookieConsent": _cookiebot(False, False, True)},
        _granted("advertising", "social"),
    ),
    State("cookiebot all", {"CookieConsent": _cookiebot(True, True, True)}, ALL_CATEGORIES),
    # Sec-GPC: 1 refuses advertising whatever the cookie says (consent.gpc_refuses default).
    State("all + Sec-GPC", {"tg_consent": ALL}, ALL_CATEGORIES - {"advertising"}, gpc=True),
)

# What each page makes the browser fetch when everything is granted: (host, path prefix).
EXPECTED: dict[str, tuple[tuple[str, str], ...]] = {
    "shop.html": (
        ("www.googletagmanager.com", "/gtag/js?id=G-ABCDE12345"),
        ("www.googletagmanager.com", "/gtm.js?id=GTM-XXXX"),
        ("connect.facebook.net", "/en_US/fbevents.js"),
        ("static.hotjar.com", "/c/hotjar-1234567.js"),
        ("analytics.tiktok.com", "/i18n/pixel/events.js?sdkid=CABCDEFGHIJKLMNOPQRS"),
        ("snap.licdn.com", "/li.lms-analytics/insight.min.js"),
        ("widget.intercom.io", "/widget/abc123"),
        ("js.stripe.com", "/v3/"),
    ),
    "media.html": (
        ("client.crisp.chat", "/l.js"),
        ("www.youtube.com", "/embed/dQw4w9WgXcQ"),
        ("i.ytimg.com", "/vi/dQw4w9WgXcQ/"),
        ("player.vimeo.com", "/video/76979871"),
        ("player.vimeo.com", "/api/player.js"),
        ("www.youtube-nocookie.com", "/embed/9bZkp7q19f0"),
    ),
    "awkward.html": (
        ("www.googletagmanager.com", "/gtag/js?id=G-UPPERCASE1"),
        ("analytics.tiktok.com", "/i18n/pixel/events.js?sdkid=SPLIT"),
        ("analytics.tiktok.com", "/i18n/pixel/events.js?sdkid=ESCAPED"),
        ("snap.licdn.com", "/li.lms-analytics/insight.min.js"),
        ("static.hotjar.com", "/c/hotjar-7654321.js"),
        ("www.youtube.com", "/embed/UPPERCASE"),
        ("player.vimeo.com", "/video/"),
        ("px.ads.linkedin.com", "/collect/?pid=1234567"),
        ("bat.bing.com", "/action/0?ti=1234"),
        ("bat.bing.com", "/action/0?ti=backslash"),
        ("bat.bing.com", "/action/0?ti=newline"),
        ("ct.pinterest.com", "/v3/?tid=2612345"),
        # <template> content, stamped out by the site's own script
        ("connect.facebook.net", "/en_US/fbevents.js"),
        ("bat.bing.com", "/action/0?ti=tpl"),
    ),
}
PAGES = tuple(EXPECTED)

CONFIGS: dict[str, dict[str, Any]] = {
    "remove": {},
    "defer": {"html": {"action": "defer"}},
    "placeholder": {"html": {"category": {"social": {"action": "placeholder"}}}},
    "inline-styles": {"html": {"inline_styles": True}},
}


async def _port(world: World, config: str) -> int:
    return (await world.proxy(config, **CONFIGS[config])).port


async def visit(world: World, config: str, page: str, state: State) -> Visit:
    port = await _port(world, config)
    async with world.tab(state.cookies, gpc=state.gpc, port=port) as tab:
        await tab.goto(world.url(port, page))
        v = await tab.snapshot()
    count(v, page, state)
    return v


def count(v: Visit, page: str, state: State) -> None:
    STATS.pages.add(page)
    STATS.states.add(state.name)
    STATS.tracker_requests += sum(1 for h in v.page_hits if h.category is not None)
    STATS.refused += len(v.refused_contacts(state.granted))


_BASELINE: dict[str, Visit] = {}


async def baseline(world: World, page: str) -> Visit:
    """The page with everything granted (tag-gate then has nothing to remove)."""
    if page not in _BASELINE:
        _BASELINE[page] = await visit(world, "remove", page, STATES[3])
    return _BASELINE[page]


def _trackers_expected(page: str, granted: frozenset[str]) -> list[str]:
    """Names of the fake vendor scripts this page must have run under `granted`."""
    names = []
    for host, path in EXPECTED[page]:
        for t in TRACKERS:
            if t.host == host and path.startswith(t.path) and category_of_host(host) in granted:
                names.append(t.name)
    return names


def _report(problems: dict[str, list[str]]) -> str:
    return "\n".join(f"{label}:\n  " + "\n  ".join(items) for label, items in problems.items() if items)


@pytest.mark.parametrize("page", PAGES)
async def test_everything_granted_page_is_clean(world: World, page: str) -> None:
    """The comparison base: with all granted, every tag loads and nothing logs an error."""
    v = await baseline(world, page)
    problems = {
        "console errors": v.console_errors,
        "not fetched": [f"{h}{p}" for h, p in EXPECTED[page] if not v.requested(h, p)],
        "vendor scripts that did not run": sorted(set(_trackers_expected(page, ALL_CATEGORIES)) - set(v.trackers_ran)),
        "first-party scripts that did not run": sorted(v.expected_first_party - v.first_party),
    }
    assert v.expected_first_party, "the page declares its first-party markers"
    assert not any(problems.values()), _report(problems)


DEFER_STATES = ("none", "analytics", "advertising+social", "all + Sec-GPC")
"""The defer configuration's markup does not depend on which CMP said it: a few states."""

CASES = [
    pytest.param(
        page,
        state,
        config,
        id=f"{page}-{state.name}-{config}",
    )
    for config in ("remove", "defer")
    for state in STATES
    if config == "remove" or state.name in DEFER_STATES
    for page in PAGES
]


@pytest.mark.parametrize(("page", "state", "config"), CASES)
async def test_consent_state(world: World, page: str, state: State, config: str) -> None:
    base = await baseline(world, page)
    v = await visit(world, config, page, state)
    problems = {
        # Nothing of a refused category was contacted, by request or by handshake ...
        "contacted refused": v.refused_contacts(state.granted),
        # ... and no refused cookie is in the jar (set by the site or by a script).
        "refused cookies in the jar": v.refused_cookies(state.granted),
        # Every granted tag was fetched, and the granted vendor scripts ran.
        "granted but not fetched": [
            f"{h}{p}" for h, p in EXPECTED[page] if category_of_host(h) in state.granted and not v.requested(h, p)
        ],
        "granted but did not run": sorted(set(_trackers_expected(page, state.granted)) - set(v.trackers_ran)),
        # The site's own scripts ran, and the rewrite caused no console error.
        "first-party scripts that did not run": sorted(v.expected_first_party - v.first_party),
        "new console errors": sorted(set(v.console_errors) - set(base.console_errors)),
    }
    assert v.expected_first_party, "the page declares its first-party markers"
    assert not any(problems.values()), _report(problems)


ANALYTICS_ONLY = STATES[1]


@pytest.mark.parametrize("page", ["shop.html", "awkward.html"])
async def test_defer_activates_analytics_without_reload(world: World, page: str) -> None:
    """Native defer: granting analytics from the page brings its tags to life in place."""
    port = await _port(world, "defer")
    none = STATES[0]
    analytics = [(h, p) for h, p in EXPECTED[page] if category_of_host(h) == "analytics"]
    assert analytics
    async with world.tab(port=port) as tab:
        await tab.goto(world.url(port, page))
        before = await tab.snapshot()
        count(before, page, none)
        assert before.refused_contacts(none.granted) == []
        assert before.refused_cookies(none.granted) == []
        deferred = await tab.page.evaluate("document.querySelectorAll('[data-tg-category=analytics]').length")
        assert deferred > 0, "analytics tags are in the page, inert"
        navigations = len(world.site.cookie_headers)

        # The newer cookie form appends metadata after "~" (categories~version~time~id).
        value = "analytics" if page == "shop.html" else "analytics~3~1796300000~Hk3J9dPq"
        await tab.page.evaluate(f"window.sameDocument = 'yes'; document.cookie = 'tg_consent={value}; path=/'")
        await tab.wait_for(
            lambda: all(
                any(h.host == host and h.path.startswith(path) for h in tab.hits()) for host, path in analytics
            ),
            "the deferred analytics tags to be fetched",
        )
        await tab.settle()
        after = await tab.snapshot()
        assert await tab.page.evaluate("window.sameDocument") == "yes", "no reload"
        assert len(world.site.cookie_headers) == navigations, "no new page request"
    count(after, page, ANALYTICS_ONLY)
    names = {c["name"] for c in after.cookies}
    problems = {
        "analytics scripts that did not run": sorted(
            set(_trackers_expected(page, ANALYTICS_ONLY.granted)) - set(after.trackers_ran)
        ),
        "analytics cookies missing": sorted({"_ga", "_hjSessionUser_1234567"} - names) if page == "shop.html" else [],
        "analytics beacons missing": [
            host
            for host in ("region1.google-analytics.com", "in.hotjar.com")
            if not any(h.host == host for h in after.page_hits)
        ],
        "contacted refused": after.refused_contacts(ANALYTICS_ONLY.granted),
        "refused cookies in the jar": after.refused_cookies(ANALYTICS_ONLY.granted),
        "first-party scripts that did not run": sorted(after.expected_first_party - after.first_party),
        "console errors": after.console_errors,
    }
    assert not any(problems.values()), _report(problems)


async def test_placeholder_loads_the_player_only_on_click(world: World) -> None:
    port = await _port(world, "placeholder")
    none = STATES[0]
    async with world.tab(port=port) as tab:
        await tab.goto(world.url(port, "media.html"))
        before = await tab.snapshot()
        count(before, "media.html", none)
        assert before.refused_contacts(none.granted) == []
        assert not before.requested("www.youtube.com", "/embed/")
        boxes = tab.page.locator('[data-tg-placeholder][data-tg-vendor="youtube"]')
        assert await boxes.count() == 2  # youtube.com and youtube-nocookie.com
        clicked_at = time.monotonic()
        await boxes.first.locator("[data-tg-load]").click()
        await tab.wait_for(
            lambda: any(h.host == "www.youtube.com" and h.path.startswith("/embed/dQw4w9WgXcQ") for h in tab.hits()),
            "the YouTube embed request after the click",
        )
        await tab.settle()
        after = await tab.snapshot()
    embeds = [h for h in after.page_hits if h.host == "www.youtube.com" and h.path.startswith("/embed/")]
    assert len(embeds) == 1 and embeds[0].at >= clicked_at
    # The other placeholders stayed placeholders: nothing else social was contacted.
    social = {h.host for h in after.page_hits if h.category == "social"} - {"www.youtube.com", "i.ytimg.com"}
    assert social == set()
    assert after.console_errors == []
    assert after.expected_first_party <= after.first_party


async def test_withdrawal_expires_held_cookies_in_one_navigation(world: World) -> None:
    """A browser holding _ga (on the host and on the registrable domain) and a consent
    cookie granting nothing ends up without _ga after one page load."""
    port = await _port(world, "remove")
    async with world.tab(port=port) as tab:
        await tab.context.add_cookies(
            [
                {"name": "_ga", "value": "GA1.1.111.222", "url": f"http://{SITE_HOST}:{port}/"},
                {"name": "_ga", "value": "GA1.2.333.444", "domain": f".{REGISTRABLE}", "path": "/"},
                {"name": "_gid", "value": "GA1.2.555", "domain": f".{REGISTRABLE}", "path": "/"},
                {"name": "tg_consent", "value": "", "url": f"http://{SITE_HOST}:{port}/"},
            ]
        )
        held = [(c["name"], c["domain"]) for c in await tab.context.cookies()]
        assert ("_ga", SITE_HOST) in held and ("_ga", f".{REGISTRABLE}") in held
        await tab.goto(world.url(port, "shop.html"))
        v = await tab.snapshot()
    count(v, "shop.html", STATES[0])
    left = sorted((c["name"], c["domain"]) for c in v.cookies)
    assert [c for c in left if c[0] in ("_ga", "_gid")] == []
    assert ("tg_consent", SITE_HOST) in left
    assert "_ga=" not in world.site.cookie_headers[-1], "the site never saw the withdrawn cookie"


@pytest.mark.parametrize("page", PAGES)
async def test_without_tag_gate_refused_trackers_are_contacted(world: World, page: str) -> None:
    """The counting is real: the same pages straight from the site, with no consent,
    contact refused trackers and leave refused cookies."""
    none = STATES[0]
    async with world.tab(port=world.site.port) as tab:
        await tab.goto(world.url(world.site.port, page))
        v = await tab.snapshot()
    refused = v.refused_contacts(none.granted)
    STATS.control_refused += len(refused)
    assert len(refused) >= 3
    assert v.refused_cookies(none.granted) != []


_GAPS: dict[str, Visit] = {}

GAPS = {
    "link-preload-imagesrcset": ("bat.bing.com", "/action/0?ti=imagesrcset"),
    "link-rel-icon": ("bat.bing.com", "/action/0?ti=icon"),
    "body-background-attribute": ("bat.bing.com", "/action/0?ti=body-background"),
    "inline-style-url": ("bat.bing.com", "/action/0?ti=inline-css"),
    "iframe-srcdoc": ("connect.facebook.net", "/en_US/fbevents.js"),
}


@pytest.mark.parametrize("gap", GAPS)
async def test_less_common_fetching_markup_is_gated(world: World, gap: str) -> None:
    """Markup outside the usual tag forms that still makes Chromium contact a tracker
    (found by this suite, now gated): none of it reaches a refused host."""
    if "gaps" not in _GAPS:
        _GAPS["gaps"] = await visit(world, "inline-styles", "gaps.html", STATES[0])
    v = _GAPS["gaps"]
    assert v.expected_first_party <= v.first_party
    host, path = GAPS[gap]
    assert not v.requested(host, path)
