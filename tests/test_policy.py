"""policy: classification order, actions per kind, cookies, Link headers (pure tables)."""

from __future__ import annotations

import re

import pytest

from proxy.core.catalog import Catalog, Vendor, make_catalog, url_path
from proxy.core.consent import read_consent
from proxy.core.policy import Action, CookieRule, Kind, Policy, UrlRule, compile_globs, filter_link_header

CATALOG = make_catalog()
NONE = read_consent(None, None)
ANALYTICS = read_consent("tg_consent=analytics", None)
ALL = read_consent("tg_consent=functional.analytics.advertising.social", None)


@pytest.mark.parametrize(
    ("url", "page_host", "category", "rule"),
    [
        ("https://www.googletagmanager.com/gtm.js", "shop.example", "analytics", "catalog"),
        ("//connect.facebook.net/x.js", "shop.example", "advertising", "catalog"),
        ("/js/app.js", "shop.example", None, "first-party"),
        ("app.js", "shop.example", None, "first-party"),
        ("https://shop.example/js/app.js", "shop.example", None, "first-party"),
        ("https://cdn.unknown-cdn.example/lib.js", "shop.example", None, "unknown-host"),
        ("data:image/gif;base64,R0lGOD", "shop.example", None, "not-a-tracker"),
        ("javascript:void(0)", "shop.example", None, "not-a-tracker"),
        ("https://js.stripe.com/v3/", "shop.example", "essential", "catalog"),
        ("https://googletagmanager.com@evil.example/x.js", "shop.example", None, "unknown-host"),
        ("https://evilgoogletagmanager.com/x.js", "shop.example", None, "unknown-host"),
        ("HTTPS://WWW.GOOGLETAGMANAGER.COM/gtm.js", "shop.example", "analytics", "catalog"),
    ],
)
def test_classify_url(url: str, page_host: str, category: str | None, rule: str) -> None:
    c = Policy(CATALOG).classify_url(url, page_host)
    assert (c.category, c.rule) == (category, rule)


def test_rules_come_first_in_file_order() -> None:
    policy = Policy(
        CATALOG,
        rules=[
            UrlRule("allow-stats", path_prefixes=("/stats/public",), allow=True),
            UrlRule("own-stats", path_prefixes=("/stats/",), category="analytics"),
            UrlRule("gtm-remove", vendor="google-tag-manager", action=Action.REMOVE),
            UrlRule("regex", url_regex=re.compile(r"/pixel\.gif"), category="advertising"),
            UrlRule("hosts", hosts=frozenset({"cdn.partner.example"}), category="social"),
        ],
        default_action=Action.DEFER,
    )
    assert policy.decide_url(NONE, Kind.SCRIPT, "/stats/public/x.js", "s").action is Action.KEEP
    d = policy.decide_url(NONE, Kind.SCRIPT, "/stats/x.js", "s")
    assert (d.action, d.category, d.rule) == (Action.DEFER, "analytics", "own-stats")
    assert policy.decide_url(ANALYTICS, Kind.SCRIPT, "/stats/x.js", "s").action is Action.KEEP
    d = policy.decide_url(NONE, Kind.SCRIPT, "https://www.googletagmanager.com/gtm.js", "s")
    assert (d.action, d.rule) == (Action.REMOVE, "gtm-remove")
    assert policy.decide_url(NONE, Kind.MEDIA, "/img/pixel.gif?x", "s").category == "advertising"
    assert policy.decide_url(NONE, Kind.FRAME, "https://a.cdn.partner.example/w", "s").category == "social"


@pytest.mark.parametrize(
    ("configured", "kind", "effective"),
    [
        (Action.PLACEHOLDER, Kind.FRAME, Action.PLACEHOLDER),
        (Action.PLACEHOLDER, Kind.SCRIPT, Action.DEFER),
        (Action.PLACEHOLDER, Kind.MEDIA, Action.DEFER),
        (Action.PLACEHOLDER, Kind.LINK, Action.REMOVE),
        (Action.DEFER, Kind.LINK, Action.REMOVE),
        (Action.DEFER, Kind.PING, Action.REMOVE),
        (Action.DEFER, Kind.INLINE, Action.DEFER),
        (Action.REMOVE, Kind.FRAME, Action.REMOVE),
    ],
)
def test_actions_are_limited_by_element_kind(configured: Action, kind: Kind, effective: Action) -> None:
    policy = Policy(CATALOG, default_action=configured)
    assert policy.decide_url(NONE, kind, "https://www.youtube.com/embed/1", "s").action is effective


def test_category_actions_override_the_default() -> None:
    policy = Policy(CATALOG, default_action=Action.REMOVE, category_actions={"social": Action.PLACEHOLDER})
    assert policy.decide_url(NONE, Kind.FRAME, "https://www.youtube.com/embed/1", "s").action is Action.PLACEHOLDER
    assert policy.decide_url(NONE, Kind.SCRIPT, "https://connect.facebook.net/x", "s").action is Action.REMOVE


def test_unknown_hosts_can_be_gated_as_a_category() -> None:
    policy = Policy(CATALOG, unknown_hosts="advertising", first_party_hosts=frozenset({"cdn.shop.example"}))
    assert (
        policy.decide_url(NONE, Kind.SCRIPT, "https://x.unknown.example/a.js", "shop.example").action is Action.REMOVE
    )
    assert policy.decide_url(NONE, Kind.SCRIPT, "https://cdn.shop.example/a.js", "shop.example").keeps
    assert policy.decide_url(NONE, Kind.SCRIPT, "https://img.cdn.shop.example/a.js", "shop.example").keeps
    assert policy.decide_url(NONE, Kind.SCRIPT, "/a.js", "shop.example").keeps


def test_refusable_and_page_exceptions() -> None:
    policy = Policy(CATALOG, exceptions=("/admin/",))
    assert policy.refusable(NONE) and not policy.refusable(ALL)
    assert not policy.gates_page("/admin/users") and policy.gates_page("/shop")


@pytest.mark.parametrize(
    ("text", "vendor"),
    [
        ("gtag('config', 'G-1');", "google-analytics"),
        ("!function(f,b,e,v,n,t,s){if(f.fbq)return;n=f.fbq=function(){}}; fbq('init', '1');", "meta-pixel"),
        ("h._hjSettings={hjid:1,hjsv:6};", "hotjar"),
        ("document.title = 'first party';", None),
    ],
)
def test_inline_classification(text: str, vendor: str | None) -> None:
    c = Policy(CATALOG).classify_inline(text)
    assert (c.vendor.id if c.vendor else None) == vendor


def test_inline_rules_win_over_the_catalogue() -> None:
    policy = Policy(CATALOG, rules=[UrlRule("mine", inline=("acmeTrack(",), category="analytics")])
    assert policy.decide_inline(NONE, "acmeTrack('x')").action is Action.REMOVE
    assert policy.decide_inline(ANALYTICS, "acmeTrack('x')").keeps


@pytest.mark.parametrize(
    ("name", "consent", "keeps", "rule"),
    [
        ("_ga", NONE, False, "catalog"),
        ("_ga", ANALYTICS, True, "catalog"),
        ("_ga_ABC123", NONE, False, "catalog"),
        ("_gid", NONE, False, "catalog"),
        ("_fbp", ANALYTICS, False, "catalog"),
        ("IDE", NONE, False, "catalog"),
        ("sessionid", NONE, True, "unknown-cookie"),
        ("tg_consent", NONE, True, "consent-cookie"),
        ("OptanonConsent", NONE, True, "consent-cookie"),
        ("euconsent-v2", NONE, True, "consent-cookie"),
        ("cmplz_marketing", NONE, True, "consent-cookie"),
        ("", NONE, False, "nameless"),
        ("", ALL, True, "nameless"),
    ],
)
def test_cookie_decisions(name: str, consent: object, keeps: bool, rule: str) -> None:
    from proxy.core.config import make_policy

    d = make_policy(None).decide_cookie(consent, name)  # type: ignore[arg-type]
    assert (d.keeps, d.rule) == (keeps, rule)


def test_cookie_rules_and_unknown_default() -> None:
    policy = Policy(
        CATALOG,
        cookie_rules=[
            CookieRule("mine", frozenset({"acme_id"}), compile_globs(["acme_seg_*"]), "analytics", False),
            CookieRule("keep-ga", frozenset({"_ga"}), None, None, True),
        ],
        cookie_unknown="drop",
        essential_cookies=frozenset({"sessionid"}),
    )
    assert not policy.decide_cookie(NONE, "acme_seg_3").keeps
    assert policy.decide_cookie(ANALYTICS, "acme_seg_3").keeps
    assert policy.decide_cookie(NONE, "_ga").keeps
    assert policy.decide_cookie(NONE, "sessionid").keeps
    assert not policy.decide_cookie(ALL, "mystery").keeps, "unknown = drop drops whatever the consent"
    assert policy.known_essential_cookie("sessionid") and not policy.known_essential_cookie("mystery")


def test_vendor_overrides_by_id() -> None:
    custom = Vendor("youtube", "YouTube", "functional", hosts=("youtube.com",), description="Videos.")
    catalog = Catalog([*CATALOG.vendors, custom])
    d = Policy(catalog).decide_url(NONE, Kind.FRAME, "https://www.youtube.com/embed/1", "s")
    assert d.category == "functional"


@pytest.mark.parametrize(
    ("value", "kept", "removed"),
    [
        (
            "<https://www.google-analytics.com>; rel=preconnect",
            None,
            ["<https://www.google-analytics.com>; rel=preconnect"],
        ),
        (
            '</style.css>; rel=preload; as=style, <https://connect.facebook.net/x.js>; rel=preload; as="script,x"',
            "</style.css>; rel=preload; as=style",
            ['<https://connect.facebook.net/x.js>; rel=preload; as="script,x"'],
        ),
        ("</a.css>; rel=preload", "</a.css>; rel=preload", []),
    ],
)
def test_link_header_filter(value: str, kept: str | None, removed: list[str]) -> None:
    policy = Policy(CATALOG)
    new, gone = filter_link_header(value, lambda u: policy.decide_url(NONE, Kind.HEADER, u, "s").keeps)
    assert (new, gone) == (kept, removed)
    if not removed:
        assert new is value


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/a/b?c#d", "/a/b"),
        ("https://h/x/y?z", "/x/y"),
        ("//h", "/"),
        ("rel/p#f", "rel/p"),
        ("", "/"),
        # dot segments, as the browser resolves them before requesting
        ("https://h/x/../tr?id=1", "/tr"),
        ("https://h/./tr", "/tr"),
        ("https://h/%2e%2E/tr", "/tr"),
        ("https://h/a/.%2e/b/.", "/b/"),
        ("https://h/tr/..", "/"),
        ("https://h/../../x", "/x"),
        ("https://h/a..b/.c/", "/a..b/.c/"),
        ("../rel/x", "../rel/x"),
        # the authority ends at `?` or `#` too: a `/` there is not the path's
        ("https://h?next=/x/y", "/"),
        ("https://h#/x", "/"),
        ("https://h/t\tr?x", "/tr"),
    ],
)
def test_url_path(url: str, path: str) -> None:
    assert url_path(url) == path


def test_memo_tables_are_bounded_by_bytes_not_only_entries() -> None:
    from proxy.core.memo import Memo

    memo: Memo[str, int] = Memo(entries=8192, max_bytes=1 << 20)
    for i in range(10_000):
        memo.put(f"{i}" + "n" * 15_000, i, 15_000 + len(str(i)))  # over 1/64 of the budget: never kept
        memo.put(f"{i}" + "k" * 10_000, i, 10_000 + len(str(i)))
        assert memo.bytes_used <= 1 << 20
    assert 0 < len(memo.table) < 110
