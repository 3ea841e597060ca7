"""proxy.core.catalog: host_of, the lookups, the built-in data, validation, purity, properties."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from proxy.core.catalog import (
    Catalog,
    Vendor,
    VendorError,
    host_of,
    load_builtin_catalog,
    load_builtin_vendors,
    make_catalog,
    parse_catalog,
    parse_cookie_pattern,
    parse_host,
    parse_host_path,
    parse_inline_signature,
    parse_source,
    parse_vendor,
    parse_vendors,
    read_catalog,
)
from proxy.core.catalog_files import SNAPSHOT_NAME, _snapshot_documents, _toml_files, catalog_digest, make_snapshot
from proxy.core.categories import ADVERTISING, ANALYTICS, BUILTIN_CATEGORIES, ESSENTIAL, FUNCTIONAL, SOCIAL

CATALOG = make_catalog()


def vendor_id(vendor: Vendor | None) -> str | None:
    return None if vendor is None else vendor.id


# ---------------------------------------------------------------------------
# host_of
# ---------------------------------------------------------------------------

HOST_OF = [
    # the plain shapes
    ("https://www.googletagmanager.com/gtm.js?id=GTM-X", "www.googletagmanager.com"),
    ("http://example.com", "example.com"),
    ("https://example.com?q=1", "example.com"),
    ("https://example.com#top", "example.com"),
    ("//connect.facebook.net/en_US/fbevents.js", "connect.facebook.net"),
    # case, trailing dots, ports
    ("HTTPS://WWW.Google-Analytics.COM/collect", "www.google-analytics.com"),
    ("https://www.google-analytics.com./g/collect", "www.google-analytics.com"),
    ("https://www.google-analytics.com.:443/x", "www.google-analytics.com"),
    ("http://example.com:8080/", "example.com"),
    ("http://example.com:/", "example.com"),
    ("https://example.com:0000443/", "example.com"),
    # userinfo: the last "@" ends it
    ("https://googletagmanager.com@evil.example/", "evil.example"),
    ("https://user:pass@evil.example:8443/p", "evil.example"),
    ("https://a@b@evil.example/", "evil.example"),
    ("https://www.googletagmanager.com:443@evil.example/", "evil.example"),
    # backslashes count as slashes in http(s)
    ("https:\\\\evil.example\\path", "evil.example"),
    ("https://good.example\\@evil.example/", "good.example"),
    ("/\\evil.example/x.js", "evil.example"),
    ("\\\\evil.example/x.js", "evil.example"),
    ("https:///evil.example/", "evil.example"),
    # whitespace: stripped at the ends, tab/newline removed anywhere
    ("  https://evil.example/  ", "evil.example"),
    ("\x00\x1f https://evil.example/", "evil.example"),
    ("\thttps://ev\nil.exa\rmple/", "evil.example"),
    ("ht\ttps://evil.example/", "evil.example"),
    # IDN and percent-encoding
    ("https://münchen.de/", "xn--mnchen-3ya.de"),
    ("https://MÜNCHEN.de/", "xn--mnchen-3ya.de"),
    ("https://xn--mnchen-3ya.de/", "xn--mnchen-3ya.de"),
    ("https://example\u3002com/", "example.com"),
    ("https://%65vil.example/", "evil.example"),
    ("https://evil%2Eexample/", "evil.example"),
    # a tracker's name as a label of someone else's host is someone else's host
    ("https://www.google-analytics.com.evil.example/", "www.google-analytics.com.evil.example"),
    # IP literals
    ("https://[::1]:8080/", "[::1]"),
    ("https://[0:0::1]/", "[::1]"),
    ("http://127.0.0.1:8000/", "127.0.0.1"),
    ("http://0x7f.1/", "127.0.0.1"),
    ("http://2130706433/", "127.0.0.1"),
]

HOST_OF_NONE = [
    "data:text/html,<script src=https://evil.example/></script>",
    "javascript:alert(1)",
    " JavaScript:fetch('https://evil.example/')",
    "java\tscript:alert(1)",
    "blob:https://evil.example/0b6c6d3a",
    "about:blank",
    "mailto:someone@evil.example",
    "ftp://evil.example/",
    "ws://evil.example/",
    "/relative/path.js",
    "relative.js",
    "evil.example/x.js",
    "?q=1",
    "#fragment",
    "",
    "   ",
    "//",
    "https://",
    "https://:443/",
    "https://user@/",
    "https://evil.example:99999/",
    "https://evil.example:-1/",
    "https://evil.example:8o/",
    "https://evil.example:" + "9" * 5000 + "/",
    "https://ev il.example/",
    "https://evil.example%2F/",
    "https://evil.example%/",
    "https://evil.example%zz/",
    "https://[::1/",
    "https://[::1]x/",
    "https://[not-ip]/",
    "http://1.2.3.256/",
    "http://1.2.3.4.5/",
]


@pytest.mark.parametrize(("url", "host"), HOST_OF)
def test_host_of(url: str, host: str) -> None:
    assert host_of(url) == host


@pytest.mark.parametrize("url", HOST_OF_NONE)
def test_host_of_none(url: str) -> None:
    assert host_of(url) is None


@given(st.text())
def test_host_of_never_raises_and_returns_a_bare_host(text: str) -> None:
    check_bare_host(host_of(text))


URLISH = st.builds(
    "".join,
    st.tuples(
        st.sampled_from(["", "http:", "https:", "HTTPS:", "javascript:", "data:", " ", "\t"]),
        st.sampled_from(["//", "/\\", "\\\\", "///", "/", ""]),
        st.sampled_from(["", "user@", "a:b@", "x.com@", "@"]),
        st.text(alphabet="abcXYZ019.-_%@:[]ü\u3002 \t\n", max_size=20),
        st.sampled_from(["", ":", ":80", ":08080", ":70000", ":x"]),
        st.sampled_from(["", "/", "/p?q#f", "\\p", "?", "#"]),
    ),
)


@given(URLISH)
@example("//0..")  # found by hypothesis in CI: "0" came out, which reads as 0.0.0.0
@example("//0x..")
@example("//a..")
def test_host_of_on_url_shaped_text(url: str) -> None:
    host = host_of(url)
    check_bare_host(host)
    if host is not None:
        # What host_of returns is a fixed point: the same host comes back out.
        assert host_of(f"https://{host}/") == host


def check_bare_host(host: str | None) -> None:
    if host is None:
        return
    assert host
    assert host == host.lower()
    assert host.isascii()
    assert not re.search(r"[\x00-\x20\x7f@/\\?#%]", host)
    assert not host.endswith(".")
    if ":" in host:  # only inside an IPv6 literal, never a port
        assert host.startswith("[") and host.endswith("]")


# ---------------------------------------------------------------------------
# vendor_for_host / vendor_for_url
# ---------------------------------------------------------------------------

HOSTS = [
    ("googletagmanager.com", "google-tag-manager"),
    ("www.googletagmanager.com", "google-tag-manager"),
    ("WWW.GoogleTagManager.COM", "google-tag-manager"),
    ("www.googletagmanager.com.", "google-tag-manager"),
    (".googletagmanager.com", "google-tag-manager"),  # a cookie's Domain attribute
    ("a.b.c.www.googletagmanager.com", "google-tag-manager"),
    ("evilgoogletagmanager.com", None),
    ("googletagmanager.com.evil.example", None),
    ("googletagmanager.co", None),
    ("region1.google-analytics.com", "google-analytics"),
    # shared Google hosts: only the specific ones are classified
    ("www.google.com", None),
    ("www.gstatic.com", None),
    ("googleapis.com", None),
    ("ajax.googleapis.com", None),
    ("maps.googleapis.com", "google-maps"),
    ("maps.gstatic.com", "google-maps"),
    ("fonts.googleapis.com", "google-fonts"),
    ("fonts.gstatic.com", "google-fonts"),
    ("www.recaptcha.net", "google-recaptcha"),
    # the longest listed suffix wins
    ("googleads.g.doubleclick.net", "google-ads"),
    ("stats.g.doubleclick.net", "google-ads"),
    ("securepubads.g.doubleclick.net", "google-ad-manager"),
    ("tt.omtrdc.net", "adobe-target"),
    ("acme.tt.omtrdc.net", "adobe-target"),
    ("acme.sc.omtrdc.net", "adobe-analytics"),
    ("analytics.tiktok.com", "tiktok-pixel"),
    ("www.tiktok.com", "tiktok-embeds"),
    ("snap.licdn.com", "linkedin-insight"),
    ("static.licdn.com", "linkedin-widgets"),
    ("px.ads.linkedin.com", "linkedin-insight"),
    ("platform.linkedin.com", "linkedin-widgets"),
    ("s.pinimg.com", "pinterest-tag"),
    ("i.pinimg.com", "pinterest-widgets"),
    ("analytics.twitter.com", "x-ads"),
    ("platform.twitter.com", "x-widgets"),
    ("quantcast.mgr.consensu.org", "inmobi-choice"),
    ("other.mgr.consensu.org", "iab-consent-strings"),
    # Meta: the pixel script host and the social host
    ("connect.facebook.net", "meta-pixel"),
    ("www.facebook.com", "facebook-social"),
    ("cdn.logr-i.com", "logrocket"),
    ("r.lrkt-in.com", "logrocket"),
    ("cdn.us.heap-api.com", "heap"),
    ("o123456.ingest.us.sentry.io", "sentry"),
    ("js.stripe.com", "stripe"),
    ("m.stripe.network", "stripe"),
    ("", None),
    (".", None),
    ("com", None),
    ("example.org", None),
    ("[::1]", None),
]


@pytest.mark.parametrize(("host", "expected"), HOSTS)
def test_vendor_for_host(host: str, expected: str | None) -> None:
    assert vendor_id(CATALOG.vendor_for_host(host)) == expected


URLS = [
    ("https://www.googletagmanager.com/gtm.js?id=GTM-XXXX", "google-tag-manager"),
    ("//www.google-analytics.com/analytics.js", "google-analytics"),
    ("https://googletagmanager.com@evil.example/", None),
    ("https://evil.example@www.googletagmanager.com/", "google-tag-manager"),
    ("https://www.google-analytics.com.evil.example/", None),
    ("https://WWW.YOUTUBE-NOCOOKIE.COM:443/embed/x", "youtube"),
    ("https:\\\\connect.facebook.net\\en_US\\fbevents.js", "meta-pixel"),
    ("\thttps://static.hotjar.com/c/hotjar-1.js", "hotjar"),
    ("data:text/javascript,fetch('https://www.google-analytics.com/')", None),
    ("javascript:void(0)", None),
    ("/gtm.js", None),
]


@pytest.mark.parametrize(("url", "expected"), URLS)
def test_vendor_for_url(url: str, expected: str | None) -> None:
    assert vendor_id(CATALOG.vendor_for_url(url)) == expected
    assert vendor_id(CATALOG.vendor_for_url(url)) == expected  # memoised answer is the same


SHARED = Catalog(
    [
        Vendor("social", "Social", "social", hosts=("example-social.com",)),
        Vendor("pixel", "Pixel", "advertising", urls=("example-social.com/tr", "cdn.example.org/ads/")),
        Vendor("captcha", "Captcha", "essential", urls=("www.example.org/captcha/", "www.example.org/captcha/v2")),
        Vendor("sub", "Sub", "functional", hosts=("widgets.example-social.com",)),
    ]
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://www.example-social.com/tr?id=1", "pixel"),
        ("https://example-social.com/tr", "pixel"),
        ("https://www.example-social.com/tr/x", "pixel"),
        ("https://www.example-social.com/track", "social"),  # whole segments only
        ("https://www.example-social.com/TR", "social"),  # paths are case-sensitive
        ("https://www.example-social.com/plugins/like.php", "social"),
        ("https://www.example-social.com\\tr?id=1", "pixel"),  # a backslash is a slash
        ("//www.example-social.com/tr#x", "pixel"),
        ("https://widgets.example-social.com/tr", "sub"),  # a longer listed host wins
        ("https://cdn.example.org/ads/x.gif", "pixel"),
        ("https://cdn.example.org/ads", None),  # "/ads/" lists what is under it
        ("https://cdn.example.org/other.js", None),
        ("https://www.example.org/captcha/v2/api.js", "captcha"),
        ("https://www.example.org/search", None),
        ("/tr", None),
    ],
)
def test_url_prefixes_split_a_shared_host(url: str, expected: str | None) -> None:
    assert vendor_id(SHARED.vendor_for_url(url)) == expected
    host = host_of(url)
    if host is not None:
        assert vendor_id(SHARED.vendor_for_location(host, url)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("www.google.com", "no path"),
        ("www.google.com/", "no path"),
        ("https://www.google.com/recaptcha/", "has a scheme"),
        ("//www.google.com/recaptcha/", "has a scheme"),
        ("www.google.com/recaptcha?x", "has no '='; write '[?]x=[*]'"),
        ("www.google.com/a?=1", "no parameter name"),
        ("www.google.com/a?a b=1", "has ' '"),
        ("www.google.com/a?id*=1", "names are literal"),
        ("www.google.com/a?a=1&b=2", "one condition"),
        ("www.google.com/a?a=1#x", "fragment"),
        ("www.google.com/a?a=\x01", "control character"),
        ("www.google.com/a#b", "fragment"),
        ("www.google.com/a b", "whitespace"),
        ("www.google.com/caf\u00e9", "write '%C3%A9'"),
        ("www.google.com/a{b}", "percent-encoded"),
        ("www.google.com/a\\b", "backslash"),
        ("www.google.com//a", "empty path segment"),
        ("*.google.com/a", "wildcard"),
        ("google.com:443/a", "port"),
    ],
)
def test_parse_host_path_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_host_path(text)


def test_parse_host_path_normalises_the_host() -> None:
    assert parse_host_path("WWW.Google.COM/recaptcha/") == "www.google.com/recaptcha/"
    assert parse_host_path("bücher.example/Tr") == "xn--bcher-kva.example/Tr"
    assert parse_host_path("WWW.GoogleTagManager.com/gtag/js?id=AW-*") == "www.googletagmanager.com/gtag/js?id=AW-*"
    assert parse_host_path("x.example/*/sdk.js") == "x.example/*/sdk.js"
    assert parse_host_path("x.example?utm=*") == "x.example/?utm=*"  # every path of the host
    assert parse_host_path("x.example/a?q=a=b c") == "x.example/a?q=a=b c"  # the value is free text


QUERIES = Catalog(
    [
        Vendor("tm", "Tag manager", "analytics", hosts=("tags.example",)),
        Vendor("ads", "Ads", "advertising", urls=("tags.example/t/js?id=AW-*", "tags.example/t/js?id=DC-*")),
        Vendor("stats", "Stats", "analytics", urls=("tags.example/t/js?id=G-*",)),
        Vendor("any", "Any id", "functional", urls=("tags.example/t?id=*",)),
        Vendor("sdk", "SDK", "social", urls=("cdn.example/*/sdk.js", "cdn.example/lib/v*/")),
        Vendor("plain", "Plain", "essential", urls=("tags.example/t/js",)),
    ]
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://tags.example/t/js?id=AW-1", "ads"),
        ("https://tags.example/t/js?id=DC-1", "ads"),
        ("https://www.tags.example/t/js?id=G-1", "stats"),
        ("https://tags.example/t/js?id=GT-1", "plain"),  # at equal path, conditions first
        ("https://tags.example/t/js", "plain"),
        ("https://tags.example/t/js/x?id=AW-1", "ads"),  # the path is a segment-wise prefix
        ("https://tags.example/t/jsx?id=AW-1", "any"),
        ("https://tags.example/t/jsx", "tm"),
        ("https://tags.example/t/js?l=d&id=AW-1", "ads"),
        ("https://tags.example/t/js?id=x&id=AW-1", "ads"),  # any value of a repeated parameter
        ("https://tags.example/t/js?id=AW%2D1", "ads"),  # percent-decoded
        ("https://tags.example/t/js?%69d=AW-1", "ads"),  # the name too
        ("https://tags.example/t/js?id=aw-1", "plain"),  # case-sensitive
        ("https://tags.example/t/js?ID=AW-1", "plain"),
        ("https://tags.example/t/js#?id=AW-1", "plain"),  # a fragment is no query
        ("https://tags.example/t/js?id=AW-1#x", "ads"),
        ("https://tags.example?id=AW-1", "tm"),  # the path is "/"
        ("https://tags.example/t?id=", "any"),  # `*` matches the empty value
        ("https://tags.example/t?id", "any"),
        ("https://tags.example/t?idx=1", "tm"),
        ("https://cdn.example/en_US/sdk.js", "sdk"),
        ("https://cdn.example/en_US/sdk.js/x", "sdk"),
        ("https://cdn.example/en_US/sdk.jsx", None),  # still segment-wise
        ("https://cdn.example/a/b/sdk.js", None),  # `*` stays inside one segment
        ("https://cdn.example/lib/v2/x.js", "sdk"),
        ("https://cdn.example/lib/v2", None),  # "v*/" lists what is under it
        ("https://cdn.example/lib/w2/x.js", None),
    ],
)
def test_query_conditions_and_path_globs(url: str, expected: str | None) -> None:
    assert vendor_id(QUERIES.vendor_for_url(url)) == expected


def test_entry_for_location_names_the_deciding_entry() -> None:
    assert QUERIES.entry_for_location("tags.example", "https://tags.example/t/js?id=AW-1") == (
        "tags.example/t/js?id=AW-*",
        QUERIES.vendor("ads"),
    )
    assert QUERIES.entry_for_location("www.tags.example", "https://www.tags.example/") == (
        "tags.example",
        QUERIES.vendor("tm"),
    )
    assert QUERIES.entry_for_location("www.tags.example", None) == ("tags.example", QUERIES.vendor("tm"))
    assert QUERIES.entry_for_location("other.example", "https://other.example/") is None


def test_conditions_at_one_path_later_vendor_first() -> None:
    first = Vendor("first", "First", "analytics", urls=("t.example/js?id=*",))
    second = Vendor("second", "Second", "advertising", urls=("t.example/js?id=A*",))
    assert vendor_id(Catalog([first, second]).vendor_for_url("https://t.example/js?id=A1")) == "second"
    assert vendor_id(Catalog([second, first]).vendor_for_url("https://t.example/js?id=A1")) == "first"
    # the same entry in two vendors: the later one owns it
    again = Vendor("again", "Again", "social", urls=("t.example/js?id=A*",))
    assert vendor_id(Catalog([second, again]).vendor_for_url("https://t.example/js?id=A1")) == "again"


def test_builtin_gtag_is_split_by_tag_id() -> None:
    gtag = "https://www.googletagmanager.com/gtag/js?id="
    assert vendor_id(CATALOG.vendor_for_url(gtag + "AW-123")) == "google-ads"
    assert vendor_id(CATALOG.vendor_for_url(gtag + "DC-123")) == "google-ads"
    assert vendor_id(CATALOG.vendor_for_url(gtag + "G-ABC")) == "google-analytics"
    assert vendor_id(CATALOG.vendor_for_url(gtag + "UA-1-1")) == "google-analytics"
    assert vendor_id(CATALOG.vendor_for_url(gtag + "GT-ABC")) == "google-tag-manager"
    assert vendor_id(CATALOG.vendor_for_url("https://www.googletagmanager.com/gtm.js?id=GTM-1")) == "google-tag-manager"
    assert vendor_id(CATALOG.vendor_for_url("https://connect.facebook.net/fr_FR/sdk.js")) == "facebook-social"
    assert vendor_id(CATALOG.vendor_for_url("https://connect.facebook.net/en_US/fbevents.js")) == "meta-pixel"


def test_operator_vendor_can_claim_a_path_on_a_builtin_host() -> None:
    vendor = parse_vendor(
        {"name": "Shop reviews", "category": "functional", "urls": ["www.facebook.com/plugins/reviews/"]},
        "vendor[0]",
        BUILTIN_CATEGORIES,
    )
    catalog = Catalog([*load_builtin_vendors(), vendor])
    assert vendor_id(catalog.vendor_for_url("https://www.facebook.com/plugins/reviews/x")) == "shop-reviews"
    assert vendor_id(catalog.vendor_for_url("https://www.facebook.com/plugins/page.php")) == "facebook-social"
    assert vendor_id(catalog.vendor_for_url("https://www.facebook.com/tr?id=1")) == "meta-pixel"


LABEL = st.text(alphabet="abcgx-", min_size=1, max_size=4)


@given(st.lists(LABEL, min_size=1, max_size=5), st.lists(st.lists(LABEL, min_size=2, max_size=3), max_size=6))
def test_vendor_for_host_is_the_longest_listed_suffix(labels: list[str], listed: list[list[str]]) -> None:
    hosts = list(dict.fromkeys(".".join(h) for h in listed))
    catalog = Catalog(Vendor(id=f"v{i}", name=f"V{i}", category=ANALYTICS, hosts=(h,)) for i, h in enumerate(hosts))
    host = ".".join(labels)
    matches = [h for h in hosts if host == h or host.endswith("." + h)]
    expected = max(matches, key=len) if matches else None
    got = catalog.vendor_for_host(host)
    assert (got.hosts[0] if got else None) == expected


# ---------------------------------------------------------------------------
# vendor_for_cookie
# ---------------------------------------------------------------------------

COOKIES = [
    ("_ga", "google-analytics"),
    ("_ga_ABC123XYZ", "google-analytics"),
    ("_gid", "google-analytics"),
    ("_gat_UA-1234-5", "google-analytics"),
    ("__utmz", "google-analytics"),
    ("AMP_TOKEN", "google-analytics"),  # exact name beats Amplitude's AMP_* pattern
    ("AMP_5c8a0b", "amplitude"),
    ("_hjSessionUser_123456", "hotjar"),
    ("_hjSession_123456", "hotjar"),
    ("_hjid", "hotjar"),
    ("_hjBrandNewCookie", "hotjar"),  # only the catch-all _hj* matches
    ("_hp2_id.1234", "heap"),
    ("_hp5_meta.1234", "heap"),  # heap.js v5
    ("userty.core.p.ab12", "heap"),  # Heap's session replay
    ("_lr_tabs_app-1/x", "logrocket"),
    ("_lr_hb_app-1/x", "logrocket"),
    ("_lr_env", "liveramp"),  # LiveRamp's _lr_ cookies are not LogRocket's
    ("_fbp", "meta-pixel"),
    ("_fbc", "meta-pixel"),
    ("IDE", "google-ads"),
    ("_gcl_au", "google-ads"),
    ("_gcl_xx", "google-ads"),
    ("__gads", "google-ad-manager"),
    ("_pk_id.1.1fff", "matomo"),
    ("_uetsid", "bing-uet"),
    ("li_sugr", "linkedin-insight"),
    ("_ttp", "tiktok-pixel"),
    ("cto_bundle", "criteo"),
    ("VISITOR_INFO1_LIVE", "youtube"),
    ("__Secure-YNID", "youtube"),
    ("vuid", "vimeo"),
    ("intercom-session-abc123", "intercom"),
    ("__cf_bm", "cloudflare-edge"),
    ("__stripe_mid", "stripe"),
    ("OptanonConsent", "onetrust"),
    ("OptanonAlertBoxClosed", "onetrust"),
    ("CookieConsent", "cookiebot"),
    ("klaro", "klaro"),
    ("cc_cookie", "cookieconsent"),
    ("tarteaucitron", "tarteaucitron"),
    ("cmplz_marketing", "complianz"),
    ("cookieyes-consent", "cookieyes"),
    ("didomi_token", "didomi"),
    ("euconsent-v2", "iab-consent-strings"),
    ("cookieconsent_status", "osano"),
    ("osano_consentmanager_uuid", "osano"),
    ("__cmpconsentx12345", "consentmanager"),
    ("tg_consent", "tag-gate"),
    # not ours: first-party and look-alike names
    ("sessionid", None),
    ("ide", None),
    ("_GA", None),
    ("ga", None),
    ("_g", None),
    ("", None),
]


@pytest.mark.parametrize(("name", "expected"), COOKIES)
def test_vendor_for_cookie(name: str, expected: str | None) -> None:
    assert vendor_id(CATALOG.vendor_for_cookie(name)) == expected
    assert vendor_id(CATALOG.vendor_for_cookie(name)) == expected  # memoised answer is the same


def test_cookie_precedence_exact_then_most_literal_pattern() -> None:
    catalog = Catalog(
        [
            Vendor(id="broad", name="Broad", category=ANALYTICS, cookies=("_x_*",)),
            Vendor(id="narrow", name="Narrow", category=ANALYTICS, cookies=("_x_y*",)),
            Vendor(id="exact", name="Exact", category=ANALYTICS, cookies=("_x_yz",)),
            Vendor(id="infix", name="Infix", category=ANALYTICS, cookies=("*_suffix",)),
        ]
    )
    assert vendor_id(catalog.vendor_for_cookie("_x_yz")) == "exact"
    assert vendor_id(catalog.vendor_for_cookie("_x_yq")) == "narrow"
    assert vendor_id(catalog.vendor_for_cookie("_x_y")) == "narrow"
    assert vendor_id(catalog.vendor_for_cookie("_x_q")) == "broad"
    assert vendor_id(catalog.vendor_for_cookie("_x_")) == "broad"
    assert vendor_id(catalog.vendor_for_cookie("_x")) is None
    assert vendor_id(catalog.vendor_for_cookie("a_suffix")) == "infix"
    # "_x_y_suffix" matches both _x_y* (4 literal chars) and *_suffix (7): most literal wins
    assert vendor_id(catalog.vendor_for_cookie("_x_y_suffix")) == "infix"
    assert vendor_id(catalog.vendor_for_cookie("_x_\n")) == "broad"


COOKIE_PATTERN = st.text(alphabet="ab_*", min_size=1, max_size=5).filter(lambda p: p.strip("*") != "")


@given(st.lists(COOKIE_PATTERN, max_size=8, unique=True), st.text(alphabet="ab_", max_size=6))
def test_vendor_for_cookie_is_exact_then_the_most_literal_pattern(patterns: list[str], name: str) -> None:
    catalog = Catalog(Vendor(f"v{i}", f"V{i}", ANALYTICS, cookies=(p,)) for i, p in enumerate(patterns))
    if name in patterns:
        expected: str | None = name
    else:
        # The reference: patterns by literal characters, most first, ties by text.
        ordered = sorted((p for p in patterns if "*" in p), key=lambda p: (-len(p.replace("*", "")), p))
        glob = [".*".join(map(re.escape, p.split("*"))) for p in ordered]
        expected = next((p for p, g in zip(ordered, glob, strict=True) if re.fullmatch(g, name, re.DOTALL)), None)
    got = catalog.vendor_for_cookie(name)
    assert (got.cookies[0] if got else None) == expected


# ---------------------------------------------------------------------------
# vendor_for_inline
# ---------------------------------------------------------------------------

GA4_BOOTSTRAP = """
  window.dataLayer = window.dataLayer || [];
  function gtag(){dataLayer.push(arguments);}
  gtag('js', new Date());

  gtag('config', 'G-XXXXXXXXXX');
"""

GOOGLE_ADS_BOOTSTRAP = GA4_BOOTSTRAP.replace("'G-XXXXXXXXXX'", "'AW-123456789'")

CONSENT_DEFAULT = """
  window.dataLayer = window.dataLayer || [];
  function gtag(){dataLayer.push(arguments);}
  gtag('consent', 'default', {'ad_storage': 'denied', 'analytics_storage': 'denied', 'wait_for_update': 500});
"""

GTM_SNIPPET = """(function(w,d,s,l,i){w[l]=w[l]||[];w[l].push({'gtm.start':
new Date().getTime(),event:'gtm.js'});var f=d.getElementsByTagName(s)[0],
j=d.createElement(s),dl=l!='dataLayer'?'&l='+l:'';j.async=true;j.src=
'https://www.googletagmanager.com/gtm.js?id='+i+dl;f.parentNode.insertBefore(j,f);
})(window,document,'script','dataLayer','GTM-XXXX');"""

META_PIXEL = """!function(f,b,e,v,n,t,s)
{if(f.fbq)return;n=f.fbq=function(){n.callMethod?
n.callMethod.apply(n,arguments):n.queue.push(arguments)};
if(!f._fbq)f._fbq=n;n.push=n;n.loaded=!0;n.version='2.0';
n.queue=[];t=b.createElement(e);t.async=!0;
t.src=v;s=b.getElementsByTagName(e)[0];
s.parentNode.insertBefore(t,s)}(window, document,'script',
'https://connect.facebook.net/en_US/fbevents.js');
fbq('init', '{your-pixel-id-goes-here}');
fbq('track', 'PageView');"""

HOTJAR_LOADER = """(function(h,o,t,j,a,r){
    h.hj=h.hj||function(){(h.hj.q=h.hj.q||[]).push(arguments)};
    h._hjSettings={hjid:1234567,hjsv:6};
    a=o.getElementsByTagName('head')[0];
    r=o.createElement('script');r.async=1;
    r.src=t+h._hjSettings.hjid+j+h._hjSettings.hjsv;
    a.appendChild(r);
})(window,document,'https://static.hotjar.com/c/hotjar-','.js?sv=');"""

FIRST_PARTY = """document.addEventListener('DOMContentLoaded', function () {
  var menu = document.querySelector('.menu-toggle');
  menu.addEventListener('click', function () { document.body.classList.toggle('open'); });
});"""

INLINE = [
    (GA4_BOOTSTRAP, "google-analytics"),
    (GA4_BOOTSTRAP.replace("'", '"'), "google-analytics"),
    (GOOGLE_ADS_BOOTSTRAP, "google-ads"),
    (GTM_SNIPPET, "google-tag-manager"),
    (META_PIXEL, "meta-pixel"),
    (HOTJAR_LOADER, "hotjar"),
    (CONSENT_DEFAULT, None),  # a Consent Mode default block is no tracker
    (FIRST_PARTY, None),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), INLINE)
def test_vendor_for_inline(text: str, expected: str | None) -> None:
    assert vendor_id(CATALOG.vendor_for_inline(text)) == expected
    assert vendor_id(CATALOG.vendor_for_inline(text)) == expected  # memoised answer is the same


def test_inline_first_position_then_longest() -> None:
    catalog = Catalog(
        [
            Vendor(id="short", name="Short", category=ANALYTICS, inline=("track('x'",)),
            Vendor(id="long", name="Long", category=ADVERTISING, inline=("track('x', 'ads",)),
            Vendor(id="late", name="Late", category=SOCIAL, inline=("widget.load(",)),
        ]
    )
    assert vendor_id(catalog.vendor_for_inline("a; track('x', 'ads'); widget.load()")) == "long"
    assert vendor_id(catalog.vendor_for_inline("a; track('x', 'analytics')")) == "short"
    assert vendor_id(catalog.vendor_for_inline("widget.load(); track('x', 'ads')")) == "late"
    assert vendor_id(catalog.vendor_for_inline("TRACK('X', 'ADS')")) is None  # case-sensitive


def test_inline_scan_of_100kb_is_one_pass() -> None:
    body = (FIRST_PARTY + "\n") * (100_000 // (len(FIRST_PARTY) + 1))
    catalog = make_catalog()
    start = time.perf_counter()
    assert catalog.vendor_for_inline(body) is None
    assert vendor_id(catalog.vendor_for_inline(body + META_PIXEL)) == "meta-pixel"
    # About 5 ms here; the bound only catches a per-signature rescan (~100x slower).
    assert time.perf_counter() - start < 0.5


# ---------------------------------------------------------------------------
# Catalog behaviour: overrides, vendor(), by_service
# ---------------------------------------------------------------------------


def test_later_vendor_with_same_id_overrides() -> None:
    base = Vendor(id="gtm", name="GTM", category=ANALYTICS, hosts=("googletagmanager.com",), cookies=("_gtm",))
    override = Vendor(id="gtm", name="GTM (ads)", category=ADVERTISING, hosts=("googletagmanager.com",))
    other = Vendor(id="other", name="Other", category=SOCIAL, hosts=("other.example",))
    catalog = Catalog([base, other, override])
    assert catalog.vendor("gtm") is override
    assert catalog.vendors == (other, override)
    assert catalog.vendor_for_host("www.googletagmanager.com") is override
    assert catalog.vendor_for_cookie("_gtm") is None  # the override replaced the whole entry
    assert catalog.vendor("missing") is None


def test_later_vendor_wins_a_shared_host() -> None:
    first = Vendor(id="a", name="A", category=ANALYTICS, hosts=("shared.example",))
    second = Vendor(id="b", name="B", category=SOCIAL, hosts=("shared.example",))
    assert Catalog([first, second]).vendor_for_host("shared.example") is second


def test_operator_vendor_overrides_builtin() -> None:
    operator = parse_vendor(
        {"id": "google-tag-manager", "name": "GTM", "category": "advertising", "hosts": ["googletagmanager.com"]},
        "vendor[0]",
        BUILTIN_CATEGORIES,
    )
    catalog = make_catalog([operator])
    found = catalog.vendor_for_url("https://www.googletagmanager.com/gtm.js")
    assert found is not None and found.category == ADVERTISING
    assert len(catalog.vendors) == len(load_builtin_vendors())


def test_empty_catalog() -> None:
    catalog = Catalog([])
    assert catalog.vendors == ()
    assert catalog.vendor_for_host("www.googletagmanager.com") is None
    assert catalog.vendor_for_cookie("_ga") is None
    assert catalog.vendor_for_inline(GA4_BOOTSTRAP) is None
    assert catalog.by_service("gtag") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gtag", "google-analytics"),
        ("GoogleAnalytics", "google-analytics"),
        ("Google Analytics", "google-analytics"),  # vendor name
        ("google-tag-manager", "google-tag-manager"),  # vendor id
        ("googletagmanager", "google-tag-manager"),
        ("intercomChat", "intercom"),
        ("facebookpixel", "meta-pixel"),
        ("Facebook Pixel", "meta-pixel"),
        ("facebook", "facebook-social"),
        ("YouTube Video", "youtube"),
        ("  youtube  ", "youtube"),
        ("recaptcha", "google-recaptcha"),
        ("no-such-service", None),
        ("", None),
    ],
)
def test_by_service(name: str, expected: str | None) -> None:
    assert vendor_id(CATALOG.by_service(name)) == expected


# ---------------------------------------------------------------------------
# The built-in data
# ---------------------------------------------------------------------------

BUILTIN = load_builtin_vendors()
MINIMUM_PER_CATEGORY = {ANALYTICS: 25, ADVERTISING: 40, SOCIAL: 15, FUNCTIONAL: 12, ESSENTIAL: 15}


def raw_documents() -> dict[str, dict[str, object]]:
    folder = resources.files("proxy") / "data" / "vendors"
    return {e.name: tomllib.loads(e.read_text(encoding="utf-8")) for e in folder.iterdir() if e.name.endswith(".toml")}


def test_builtin_size_and_categories() -> None:
    assert len(BUILTIN) >= 350
    counts = {category: sum(v.category == category for v in BUILTIN) for category in BUILTIN_CATEGORIES}
    for category, minimum in MINIMUM_PER_CATEGORY.items():
        assert counts[category] >= minimum, (category, counts[category])


def test_builtin_meta() -> None:
    meta, vendors = load_builtin_catalog()
    assert meta.version
    assert isinstance(meta.updated, datetime.date)
    assert vendors is BUILTIN  # read once per process


def test_builtin_entries_are_complete() -> None:
    assert len({v.id for v in BUILTIN}) == len(BUILTIN)
    for vendor in BUILTIN:
        assert vendor.description.strip(), vendor.id
        assert vendor.description.endswith("."), vendor.id
        assert parse_source(vendor.source) == vendor.source, vendor.id  # every entry names its source
        assert vendor.hosts or vendor.cookies, vendor.id
        for host in vendor.hosts:
            assert parse_host(host) == host, (vendor.id, host)
        for cookie in vendor.cookies:
            assert parse_cookie_pattern(cookie) == cookie, (vendor.id, cookie)
        for signature in vendor.inline:
            assert parse_inline_signature(signature) == signature, (vendor.id, signature)


def test_builtin_tables_spell_out_their_ids() -> None:
    documents = raw_documents()
    assert "_meta.toml" in documents
    for name, document in documents.items():
        assert ("meta" in document) == (name == "_meta.toml"), name
        tables = document.get("vendor", [])
        assert isinstance(tables, list)
        for table in tables:
            assert "id" in table and "description" in table and "source" in table, (name, table.get("name"))


@pytest.mark.parametrize("key", ["hosts", "urls", "cookies", "inline", "services"])
def test_builtin_values_have_one_owner(key: str) -> None:
    owners: dict[str, str] = {}
    for vendor in BUILTIN:
        for value in getattr(vendor, key):
            assert owners.setdefault(value, vendor.id) == vendor.id, (key, value, owners[value], vendor.id)


# A host under another vendor's host overrides it (longest suffix wins). Each of
# these is deliberate and commented in the data; a new one must be added here.
EXPECTED_HOST_OVERRIDES = {
    ("securepubads.g.doubleclick.net", "doubleclick.net"),
    ("pubads.g.doubleclick.net", "doubleclick.net"),
    ("snap.licdn.com", "licdn.com"),
    ("ads.linkedin.com", "linkedin.com"),
    ("analytics.tiktok.com", "tiktok.com"),
    ("analytics.twitter.com", "twitter.com"),
    ("ads-api.twitter.com", "twitter.com"),
    ("ads-api.x.com", "x.com"),
    ("ct.pinterest.com", "pinterest.com"),
    ("s.pinimg.com", "pinimg.com"),
    ("alb.reddit.com", "reddit.com"),
    ("pixel-config.reddit.com", "reddit.com"),
    ("tt.omtrdc.net", "omtrdc.net"),
    ("consentmanager.mgr.consensu.org", "consensu.org"),
    ("quantcast.mgr.consensu.org", "consensu.org"),
    ("sourcepoint.mgr.consensu.org", "consensu.org"),
}


def test_builtin_host_overrides_are_deliberate() -> None:
    owner = {host: vendor.id for vendor in BUILTIN for host in vendor.hosts}
    found = set()
    for host, vendor in owner.items():
        labels = host.split(".")
        for i in range(1, len(labels) - 1):
            parent = ".".join(labels[i:])
            if parent in owner and owner[parent] != vendor:
                found.add((host, parent))
    assert found == EXPECTED_HOST_OVERRIDES


def test_builtin_cookie_patterns_resolve_to_their_owner() -> None:
    contested = set()
    for vendor in BUILTIN:
        for cookie in vendor.cookies:
            sample = cookie.replace("*", "Q7")
            assert vendor_id(CATALOG.vendor_for_cookie(sample)) == vendor.id, (cookie, vendor.id)
            for other in BUILTIN:
                if other is vendor or "*" in cookie:
                    continue
                for pattern in other.cookies:
                    if "*" in pattern and re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), cookie):
                        contested.add((cookie, pattern))
    # Exact names that also fit another vendor's pattern (the exact name wins).
    assert contested == {("AMP_TOKEN", "AMP_*")}


def test_builtin_inline_signatures_resolve_to_their_owner() -> None:
    for vendor in BUILTIN:
        for signature in vendor.inline:
            assert vendor_id(CATALOG.vendor_for_inline(f"/* x */ {signature} /* y */")) == vendor.id, signature


@pytest.mark.parametrize(
    ("lookup", "category"),
    [
        # category decisions documented in the data files
        ("https://www.googletagmanager.com/gtm.js", ANALYTICS),
        ("https://www.googletagmanager.com/gtag/js?id=G-X", ANALYTICS),
        ("https://connect.facebook.net/en_US/fbevents.js", ADVERTISING),
        ("https://www.facebook.com/plugins/page.php", SOCIAL),
        # shared hosts, decided by URL prefix
        ("https://www.facebook.com/tr?id=1&ev=PageView&noscript=1", ADVERTISING),
        ("https://www.facebook.com/tr/", ADVERTISING),
        ("https://www.google.com/recaptcha/api.js", ESSENTIAL),
        ("https://www.google.com/recaptcha/enterprise.js?render=k", ESSENTIAL),
        ("https://www.gstatic.com/recaptcha/releases/abc/recaptcha__en.js", ESSENTIAL),
        ("https://www.google.com/maps/embed?pb=!1m18", SOCIAL),
        ("https://www.google.com/pagead/1p-conversion/123/?random=1", ADVERTISING),
        ("https://www.google.com/ads/ga-audiences?v=1&t=sr", ADVERTISING),
        ("https://fonts.googleapis.com/css2?family=Inter", FUNCTIONAL),
        ("https://use.typekit.net/abc.css", FUNCTIONAL),
        ("https://www.recaptcha.net/recaptcha/api.js", ESSENTIAL),
        ("https://js.hs-scripts.com/123.js", ANALYTICS),  # HubSpot files its tracking under analytics
        ("https://track.hsadspixel.net/x", ADVERTISING),
        ("https://js.hs-banner.com/123.js", ESSENTIAL),
        ("https://js.usemessages.com/conversations-embed.js", FUNCTIONAL),
        ("https://js.hsforms.net/forms/embed/v2.js", FUNCTIONAL),
        ("https://browser.sentry-cdn.com/7.0.0/bundle.min.js", FUNCTIONAL),
        ("https://js-agent.newrelic.com/nr-loader.js", ANALYTICS),
        ("https://h.online-metrix.net/fp/tags.js", ESSENTIAL),
        ("https://fpjscdn.net/v3/key", ADVERTISING),
        ("https://api.fpjs.io/", ADVERTISING),
        ("https://js.stripe.com/v3/", ESSENTIAL),
        ("https://challenges.cloudflare.com/turnstile/v0/api.js", ESSENTIAL),
        ("https://consent.cookiebot.com/uc.js", ESSENTIAL),
        ("https://cdn.cookielaw.org/scripttemplates/otSDKStub.js", ESSENTIAL),
        ("https://app.usercentrics.eu/browser-ui/latest/loader.js", ESSENTIAL),
        ("https://sdk.privacy-center.org/loader.js", ESSENTIAL),
        ("https://www.youtube-nocookie.com/embed/x", SOCIAL),
        ("https://maps.googleapis.com/maps/api/js", SOCIAL),
    ],
)
def test_builtin_category_decisions(lookup: str, category: str) -> None:
    vendor = CATALOG.vendor_for_url(lookup)
    assert vendor is not None and vendor.category == category


@pytest.mark.parametrize(
    ("lookup", "expected"),
    [
        # services added for issue 18: ad platforms, affiliates, tag managers, replay,
        # chat, embeds (hosts), their snippets (inline) and cookies
        ("https://www.ezojs.com/ezoic/sa.min.js", "ezoic"),
        ("https://scripts.mediavine.com/tags/site.js", "mediavine"),
        ("https://cdn.attn.tv/shop/dtag.js", "attentive"),
        ("https://prf.hn/click/camref:1", "partnerize"),
        ("https://cdn.viglink.com/api/vglnk.js", "sovrn-commerce"),
        ("https://siteimproveanalytics.com/js/siteanalyze_1.js", "siteimprove-analytics"),
        ("https://cdn.tagcommander.com/1/tc_Site_1.js", "commanders-act"),
        ("https://static.openreplay.com/latest/openreplay.js", "openreplay"),
        ("https://lptag.liveperson.net/tag/tag.js", "liveperson"),
        ("https://static.widget.trengo.eu/embed.js", "trengo"),
        ("https://public.flourish.studio/resources/embed.js", "flourish"),
        ("https://gist.github.com/user/abc.js", "github-gist"),
        ("https://embed.ted.com/talks/x", "ted"),
        ("inline:w.ChatraID = 'abc';", "chatra"),
        ("inline:var pp_gemius_identifier = 'x';", "gemius"),
        ("inline:s.src='https://a.omappapi.com/app/js/api.min.js';", "optinmonster"),
        ("cookie:__attentive_id", "attentive"),
        ("cookie:LPSID-123", "liveperson"),
        ("cookie:_conv_v", "convert"),
        ("cookie:DotMetrics.DeviceKey", "dotmetrics"),
    ],
)
def test_builtin_covers_services_sites_carry(lookup: str, expected: str) -> None:
    kind, _, rest = lookup.partition(":")
    if kind == "inline":
        found = CATALOG.vendor_for_inline(rest)
    elif kind == "cookie":
        found = CATALOG.vendor_for_cookie(rest)
    else:
        found = CATALOG.vendor_for_url(lookup)
    assert vendor_id(found) == expected


@pytest.mark.parametrize(
    "name",
    [
        "OptanonConsent",
        "OptanonAlertBoxClosed",
        "CookieConsent",
        "klaro",
        "cc_cookie",
        "tarteaucitron",
        "cmplz_statistics",
        "cookieyes-consent",
        "didomi_token",
        "euconsent-v2",
        "cookieconsent_status",
        "osano_consentmanager",
        "uc_settings",
        "tg_consent",
    ],
)
def test_consent_cookies_are_essential(name: str) -> None:
    vendor = CATALOG.vendor_for_cookie(name)
    assert vendor is not None and vendor.category == ESSENTIAL


# ---------------------------------------------------------------------------
# Validation: parse_host, parse_cookie_pattern, parse_vendor, parse_vendors
# ---------------------------------------------------------------------------

KNOWN_CATEGORIES = "(known: " + ", ".join(BUILTIN_CATEGORIES) + ")"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://x.com/", "'https://x.com/' is a URL, not a host name, write 'x.com'"),
        ("//x.com", "is a URL, not a host name, write 'x.com'"),
        ("x.com/path", "has a path; a catalogue host is only a host name, write 'x.com'"),
        ("user@x.com", "has userinfo ('@')"),
        ("x.com:443", "has a port; ports are not matched, write 'x.com'"),
        ("*.x.com", "has a wildcard; hosts already match every subdomain, so write 'x.com'"),
        (".x.com", "starts with '.'"),
        ("x.com.", "ends with '.'; write 'x.com'"),
        ("com", "is a single label"),
        ("x..com", "has an empty label"),
        ("1.2.3.4", "is an IP address"),
        ("[::1]", "is an IP address"),
        ("ex ample.com", "has ' ', which is not allowed"),
        (" x.com", "leading or trailing whitespace"),
        ("-x.com", "starts or ends with '-'"),
        ("", "empty host"),
        ("a" * 64 + ".com", "label longer than 63"),
    ],
)
def test_parse_host_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_host(text)


@pytest.mark.parametrize(
    ("text", "host"),
    [("X.COM", "x.com"), ("Bücher.de", "xn--bcher-kva.de"), ("a_b.example", "a_b.example")],
)
def test_parse_host_normalises(text: str, host: str) -> None:
    assert parse_host(text) == host


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("_ga?", "only '*' is a wildcard"),
        ("_ga_[0-9]+", "only '*' is a wildcard"),
        ("a;b", "cannot appear in a cookie name"),
        ("a b", "cannot appear in a cookie name"),
        ("a=b", "cannot appear in a cookie name"),
        ("**", "would match every cookie"),
        ("", "empty cookie name"),
    ],
)
def test_parse_cookie_pattern_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_cookie_pattern(text)


def test_parse_inline_signature_errors() -> None:
    with pytest.raises(ValueError, match="too short"):
        parse_inline_signature("ga(")
    with pytest.raises(ValueError, match="longer than"):
        parse_inline_signature("x" * 201)
    with pytest.raises(ValueError, match="whitespace"):
        parse_inline_signature(" gtag('config'")


def test_parse_vendor_minimal_and_defaults() -> None:
    vendor = parse_vendor(
        {"name": "Acme Pixel", "category": "advertising", "hosts": ["Pixel.Acme.example"], "services": ["AcmePixel"]},
        "vendor[0]",
        BUILTIN_CATEGORIES,
    )
    assert vendor == Vendor(
        id="acme-pixel",
        name="Acme Pixel",
        category=ADVERTISING,
        hosts=("pixel.acme.example",),
        services=("acmepixel",),
    )


def test_parse_vendor_reports_every_problem_with_its_path() -> None:
    table = {
        "name": 3,
        "category": "marketing",
        "hosts": ["https://x.com/", "ok.example", 7, "ok.example"],
        "cookies": "_ga",
        "inline": ["ga("],
        "colour": "red",
    }
    with pytest.raises(VendorError) as info:
        parse_vendor(table, "vendor[3]", BUILTIN_CATEGORIES)
    assert info.value.problems == (
        "vendor[3]: unknown key 'colour' "
        "(known: id, name, category, hosts, urls, cookies, inline, services, description, source)",
        "vendor[3].name: expected a string, got integer",
        f"vendor[3].category: unknown category 'marketing' {KNOWN_CATEGORIES}",
        "vendor[3].hosts[0]: 'https://x.com/' is a URL, not a host name, write 'x.com'",
        "vendor[3].hosts[2]: expected a string, got integer",
        "vendor[3].hosts[3]: duplicate of hosts[1] ('ok.example')",
        "vendor[3].cookies: expected an array of strings, got string",
        "vendor[3].inline[0]: 'ga(' is too short (at least 6 characters); it would match unrelated scripts",
    )
    assert str(info.value) == "\n".join(info.value.problems)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("table", "problems"),
    [
        ([], ("vendor[0]: expected a table, got array",)),
        (
            {},
            (
                "vendor[0]: missing required key 'name'",
                "vendor[0]: missing required key 'category'",
                "vendor[0]: needs at least one of 'hosts', 'urls', 'cookies' or 'inline'",
            ),
        ),
        (
            {"name": " ", "category": "", "hosts": ["a.example"]},
            (
                "vendor[0].name: must not be empty",
                f"vendor[0].category: unknown category '' {KNOWN_CATEGORIES}",
            ),
        ),
        (
            {"id": "Not A Slug", "name": "X", "category": "social", "cookies": ["x"], "description": "d" * 201},
            (
                "vendor[0].id: 'Not A Slug' is not a slug (lowercase letters and digits joined by '-')",
                "vendor[0].description: longer than 200 characters",
            ),
        ),
        (
            {"name": "X", "category": "social", "hosts": ["x..example"]},
            ("vendor[0].hosts[0]: 'x..example' has an empty label ('..')",),
        ),
        (
            {"name": "X", "category": "social", "hosts": [], "services": [" "]},
            (
                "vendor[0].services[0]: empty service key",
                "vendor[0]: needs at least one of 'hosts', 'urls', 'cookies' or 'inline'",
            ),
        ),
        (
            {"name": "!!!", "category": "social", "cookies": ["x"]},
            ("vendor[0]: cannot derive an id from name '!!!'; give 'id'",),
        ),
    ],
)
def test_parse_vendor_errors(table: object, problems: tuple[str, ...]) -> None:
    with pytest.raises(VendorError) as info:
        parse_vendor(table, "vendor[0]", BUILTIN_CATEGORIES)
    assert info.value.problems == problems


@pytest.mark.parametrize(
    "text",
    [
        "https://help.hotjar.com/hc/en-us/articles/6952777582999-Cookies-Set-by-the-Hotjar-Tracking-Code",
        "https://developers.google.com/tag-platform/security/concepts/cookies#cookie_usage",
        "reason: a CAPTCHA the site needs to accept forms; it sets no tracking cookie",
    ],
)
def test_parse_source_accepts_urls_and_reasons(text: str) -> None:
    assert parse_source(text) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty source"),
        ("   ", "empty source"),
        (" https://x.example/", "leading or trailing whitespace"),
        ("http://x.example/cookies", "is not https"),
        ("HTTP://x.example/cookies", "is not https"),
        ("www.example.com/cookies", "neither an https URL"),
        ("because it tracks", "neither an https URL"),
        ("Reason: capitalised prefix", "neither an https URL"),
        ("reason:", "say the reason after 'reason:'"),
        ("reason: short", "say the reason after 'reason:'"),
        ("https://x.example/a b", "no whitespace"),
        ("https://", "no valid host"),
        ("https://localhost/cookies", "no valid host"),
        ("https://[::1]/cookies", "no valid host"),
        ("https://x.example/" + "a" * 500, "longer than 500"),
    ],
)
def test_parse_source_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_source(text)


def test_parse_vendor_source_is_optional_for_operators_and_required_on_demand() -> None:
    table = {"name": "Acme", "category": "analytics", "hosts": ["acme.example"]}
    assert parse_vendor(table, "vendor[0]", BUILTIN_CATEGORIES).source == ""
    with pytest.raises(VendorError) as info:
        parse_vendor(table, "vendor[0]", BUILTIN_CATEGORIES, require_source=True)
    assert info.value.problems == (
        "vendor[0]: missing required key 'source' (an https URL of the vendor's documentation, or 'reason: ...')",
    )
    cited = {**table, "source": "https://acme.example/docs/cookies"}
    assert parse_vendor(cited, "v", BUILTIN_CATEGORIES, require_source=True).source == cited["source"]
    for bad, problem in [
        (7, "vendor[0].source: expected a string, got integer"),
        ("", "vendor[0].source: empty source; give an https URL of the vendor's documentation or 'reason: ...'"),
        ("http://acme.example/", "vendor[0].source: 'http://acme.example/' is not https; cite the https address"),
    ]:
        with pytest.raises(VendorError) as info:
            parse_vendor({**table, "source": bad}, "vendor[0]", BUILTIN_CATEGORIES)
        assert info.value.problems == (problem,)


def test_parse_catalog_requires_sources_only_when_asked() -> None:
    unsourced = {"id": "a", "name": "A", "category": "social", "hosts": ["a.example"]}
    vague = {"id": "b", "name": "B", "category": "social", "hosts": ["b.example"], "source": "reason: x"}
    cited = {"id": "c", "name": "C", "category": "social", "hosts": ["c.example"], "source": "reason: a video embed"}
    documents: list[tuple[str, Mapping[str, object]]] = [
        ("vendors/_meta.toml", META),
        ("vendors/a.toml", {"vendor": [unsourced, vague, cited]}),
    ]
    with pytest.raises(VendorError) as info:
        parse_catalog(documents, BUILTIN_CATEGORIES)  # a bad source is refused even when none is required
    assert len(info.value.problems) == 1
    with pytest.raises(VendorError) as info:
        parse_catalog(documents, BUILTIN_CATEGORIES, require_source=True)
    assert info.value.problems == (
        "vendors/a.toml: vendor[0]: missing required key 'source' "
        "(an https URL of the vendor's documentation, or 'reason: ...')",
        "vendors/a.toml: vendor[1].source: 'reason: x': say the reason after 'reason:' (at least 10 characters)",
    )
    only_cited: list[tuple[str, Mapping[str, object]]] = [documents[0], ("vendors/a.toml", {"vendor": [cited]})]
    assert [v.source for v in parse_catalog(only_cited, BUILTIN_CATEGORIES, require_source=True)[1]] == [
        "reason: a video embed"
    ]


def test_parse_vendor_accepts_operator_categories() -> None:
    vendor = parse_vendor({"name": "X", "category": "personalisation", "cookies": ["x"]}, "v", ["personalisation"])
    assert vendor.category == "personalisation"


def test_parse_vendors_uniqueness() -> None:
    items = [
        {"id": "a", "name": "A", "category": "social", "hosts": ["a.example"], "cookies": ["c"]},
        {"id": "b", "name": "B", "category": "social", "hosts": ["a.example"], "cookies": ["c"], "services": ["s"]},
        {"id": "a", "name": "A again", "category": "social", "hosts": ["z.example"]},
        {"id": "c", "name": "C", "category": "nope", "hosts": ["c.example"]},
    ]
    with pytest.raises(VendorError) as info:
        parse_vendors(items, "vendor", BUILTIN_CATEGORIES)
    assert info.value.problems == (
        "vendor[1].hosts[0]: 'a.example' already belongs to vendor[0] ('a')",
        "vendor[1].cookies[0]: 'c' already belongs to vendor[0] ('a')",
        "vendor[2].id: 'a' is already used by vendor[0]",
        f"vendor[3].category: unknown category 'nope' {KNOWN_CATEGORIES}",
    )
    with pytest.raises(VendorError, match=r"^vendor: expected an array of tables, got table$"):
        parse_vendors({}, "vendor", BUILTIN_CATEGORIES)
    assert parse_vendors([], "vendor", BUILTIN_CATEGORIES) == ()


# ---------------------------------------------------------------------------
# parse_catalog / read_catalog: several files, one catalogue
# ---------------------------------------------------------------------------

META = {"meta": {"version": "1", "updated": datetime.date(2026, 1, 1)}}


def test_parse_catalog_is_the_union_in_order() -> None:
    meta, vendors = parse_catalog(
        [
            ("vendors/_meta.toml", META),
            ("vendors/a.toml", {"vendor": [{"id": "a", "name": "A", "category": "social", "hosts": ["a.example"]}]}),
            ("vendors/b.toml", {"vendor": [{"id": "b", "name": "B", "category": "social", "hosts": ["b.example"]}]}),
        ],
        BUILTIN_CATEGORIES,
    )
    assert meta.version == "1" and meta.updated == datetime.date(2026, 1, 1)
    assert [v.id for v in vendors] == ["a", "b"]


def test_parse_catalog_names_file_and_path() -> None:
    documents: list[tuple[str, Mapping[str, object]]] = [
        ("vendors/_meta.toml", {"meta": {"version": "", "updated": datetime.datetime(2026, 1, 1), "x": 1}}),
        ("vendors/a.toml", {"vendor": [{"id": "a", "name": "A", "category": "social", "hosts": ["a.example"]}]}),
        (
            "vendors/b.toml",
            {
                "vendor": [
                    {"id": "b", "name": "B", "category": "social", "hosts": ["https://b.example/"]},
                    {"id": "a", "name": "A2", "category": "social", "hosts": ["z.example"]},
                    {"id": "c", "name": "C", "category": "social", "hosts": ["a.example"]},
                ],
                "vendors": [],
            },
        ),
        ("vendors/c.toml", {"meta": META["meta"], "vendor": {}}),
    ]
    with pytest.raises(VendorError) as info:
        parse_catalog(documents, BUILTIN_CATEGORIES)
    assert info.value.problems == (
        "vendors/_meta.toml: meta: unknown key 'x' (known: version, updated)",
        "vendors/_meta.toml: meta.version: expected a non-empty string, got string",
        "vendors/_meta.toml: meta.updated: expected a date, got datetime",
        "vendors/b.toml: vendors: unknown key (known: meta, vendor)",
        "vendors/b.toml: vendor[0].hosts[0]: 'https://b.example/' is a URL, not a host name, write 'b.example'",
        "vendors/b.toml: vendor[1].id: 'a' is already used by vendors/a.toml: vendor[0]",
        "vendors/b.toml: vendor[2].hosts[0]: 'a.example' already belongs to vendors/a.toml: vendor[0] ('a')",
        "vendors/c.toml: meta: a second [meta] table; the first is in vendors/_meta.toml",
        "vendors/c.toml: vendor: expected an array of tables, got table",
    )


def test_parse_catalog_needs_meta() -> None:
    with pytest.raises(VendorError, match=r"^no \[meta\] table in any catalogue file$"):
        parse_catalog([("vendors/a.toml", {})], BUILTIN_CATEGORIES)
    with pytest.raises(VendorError, match=r"^vendors/_meta.toml: meta: expected a table, got string$"):
        parse_catalog([("vendors/_meta.toml", {"meta": "x"})], BUILTIN_CATEGORIES)


def write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


def test_read_catalog_reads_toml_files_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "vendors"
    folder.mkdir()
    write(folder, "b.toml", '[[vendor]]\nid = "b"\nname = "B"\ncategory = "social"\nhosts = ["b.example"]\n')
    write(folder, "a.toml", '[[vendor]]\nid = "a"\nname = "A"\ncategory = "social"\nhosts = ["a.example"]\n')
    write(folder, "_meta.toml", '[meta]\nversion = "1"\nupdated = 2026-01-01\n')
    write(folder, "README.md", "not TOML, not read")
    (folder / "sub.toml").mkdir()  # a folder, not a file: skipped
    meta, vendors = read_catalog(folder, BUILTIN_CATEGORIES)
    assert meta.version == "1"
    assert [v.id for v in vendors] == ["a", "b"]


def test_read_catalog_reports_bad_files_and_keeps_checking(tmp_path: Path) -> None:
    folder = tmp_path / "vendors"
    folder.mkdir()
    write(folder, "_meta.toml", '[meta]\nversion = "1"\nupdated = 2026-01-01\n')
    write(folder, "broken.toml", "[[vendor]\n")
    (folder / "latin1.toml").write_bytes(b'[[vendor]]\nname = "\xe9"\n')
    write(folder, "z.toml", '[[vendor]]\nname = "Z"\ncategory = "social"\nhosts = ["z.example:8080"]\n')
    with pytest.raises(VendorError) as info:
        read_catalog(folder, BUILTIN_CATEGORIES)
    problems = info.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("vendors/broken.toml: not valid TOML: ")
    assert problems[1].startswith("vendors/latin1.toml: not valid TOML: ")
    assert (
        problems[2]
        == "vendors/z.toml: vendor[0].hosts[0]: 'z.example:8080' has a port; ports are not matched, write 'z.example'"
    )


# ---------------------------------------------------------------------------
# Purity: importing and building the catalogue pulls in no network or HTML stack
# ---------------------------------------------------------------------------


def test_import_and_build_load_no_heavy_modules() -> None:
    code = (
        "import sys\n"
        "import proxy.core.catalog as c\n"
        "catalog = c.make_catalog()\n"
        "assert catalog.vendor_for_url('https://www.google-analytics.com/g/collect').id == 'google-analytics'\n"
        "heavy = ('aiohttp', 'lolhtml', 'yarl', 'multidict', 'asyncio')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "ours = sorted(m for m in sys.modules if m == 'proxy' or m.startswith('proxy.'))\n"
        "print(heavy, ours)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert (
        result.stdout.strip()
        == "[] ['proxy', 'proxy.core', 'proxy.core.catalog', 'proxy.core.catalog_files', 'proxy.core.categories',"
        " 'proxy.core.memo', 'proxy.core.ocd', 'proxy.core.url', 'proxy.core.url_entries', 'proxy.core.vendors']"
    )


def test_entry_for_cookie_names_the_owning_name_or_pattern() -> None:
    assert CATALOG.entry_for_cookie("_ga") == ("_ga", CATALOG.vendor("google-analytics"), False)
    assert CATALOG.entry_for_cookie("_ga_ABC") == ("_ga_*", CATALOG.vendor("google-analytics"), False)
    hit = CATALOG.entry_for_cookie("GRV_BHV_UID_42")
    assert hit is not None and hit[0] == "GRV_BHV_UID*" and hit[2] is True
    assert hit[1] is CATALOG.vendor_for_cookie("GRV_BHV_UID_42")
    assert CATALOG.entry_for_cookie("shop_session_42") is None
    assert CATALOG.entry_for_cookie("") is None
    inner = Catalog([Vendor("v", "V", "analytics", cookies=("a*b", "a*"))])
    assert inner.entry_for_cookie("axb") == ("a*b", inner.vendor("v"), False)
    assert inner.entry_for_cookie("axc") == ("a*", inner.vendor("v"), False)


# ---------------------------------------------------------------------------
# The snapshot of the TOML files (a faster load, never a different catalogue)
# ---------------------------------------------------------------------------


def test_shipped_snapshot_is_fresh_and_holds_the_toml_documents() -> None:
    folder = resources.files("proxy") / "data" / "vendors"
    files = _toml_files(folder)
    snapshot = json.loads((folder / SNAPSHOT_NAME).read_text(encoding="utf-8"))
    assert snapshot["digest"] == catalog_digest(files), "stale snapshot: run python tools/snapshot_catalog.py"
    assert make_snapshot(folder) == (folder / SNAPSHOT_NAME).read_text(encoding="utf-8")
    documents = _snapshot_documents(folder, catalog_digest(files))
    assert documents == [(name, tomllib.loads(data.decode())) for name, data in files]


def _write_folder(path: Path, toml_text: str) -> Path:
    folder = path / "vendors"
    folder.mkdir()
    (folder / "a.toml").write_text(toml_text, encoding="utf-8")
    return folder


SMALL = """
[meta]
version = "1"
updated = 2026-01-02

[[vendor]]
name = "Acme"
category = "analytics"
hosts = ["acme.example"]
"""


def test_a_snapshot_is_used_only_with_the_digest_of_the_toml(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path, SMALL)
    (folder / SNAPSHOT_NAME).write_text(make_snapshot(folder), encoding="utf-8")
    meta, vendors = read_catalog(folder, BUILTIN_CATEGORIES, snapshot=True)
    assert meta.updated == datetime.date(2026, 1, 2) and vendors[0].hosts == ("acme.example",)
    # A snapshot with the right stamp is what is read (here doctored, to tell them apart) ...
    doctored = (folder / SNAPSHOT_NAME).read_text(encoding="utf-8").replace("acme.example", "other.example")
    (folder / SNAPSHOT_NAME).write_text(doctored, encoding="utf-8")
    assert read_catalog(folder, BUILTIN_CATEGORIES, snapshot=True)[1][0].hosts == ("other.example",)
    assert read_catalog(folder, BUILTIN_CATEGORIES)[1][0].hosts == ("acme.example",)
    # ... and once the TOML changes, the stale snapshot is ignored.
    (folder / "a.toml").write_text(SMALL.replace("acme.example", "new.example"), encoding="utf-8")
    assert read_catalog(folder, BUILTIN_CATEGORIES, snapshot=True)[1][0].hosts == ("new.example",)


@pytest.mark.parametrize("text", ["", "{", "[]", '{"digest": 1}', '{"digest": "x", "documents": [[1, 2]]}'])
def test_a_malformed_snapshot_falls_back_to_the_toml(tmp_path: Path, text: str) -> None:
    folder = _write_folder(tmp_path, SMALL)
    (folder / SNAPSHOT_NAME).write_text(text, encoding="utf-8")
    assert read_catalog(folder, BUILTIN_CATEGORIES, snapshot=True)[1][0].hosts == ("acme.example",)


def test_a_snapshot_of_bad_toml_is_refused(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path, "[meta\n")
    with pytest.raises(VendorError, match="not valid TOML"):
        make_snapshot(folder)


def test_operator_url_entries_are_checked_with_their_toml_path() -> None:
    from proxy.core.config import ConfigError, parse_config

    vendor = {"name": "A", "category": "advertising", "urls": ["x.example/t.js?acct", "x.example/a?b=1&c=2"]}
    with pytest.raises(ConfigError) as info:
        parse_config({"vendor": [vendor]})
    assert info.value.problems == [
        "vendor[0].urls[0]: 'x.example/t.js?acct': the query condition '?acct' has no '='; write '?acct=*' to ask"
        " for the parameter with any value",
        "vendor[0].urls[1]: 'x.example/a?b=1&c=2': the query condition '1&c=2' has '&': an entry takes one"
        " condition (one parameter)",
    ]
    ok = parse_config({"vendor": [{**vendor, "urls": ["x.example/t.js?acct=ACME-*"]}]})
    assert ok.policy.catalog.vendor_for_url("https://x.example/t.js?acct=ACME-1") is not None
