"""Response header steps that keep the browser from contacting refused hosts by itself:
Refresh, reporting endpoints, Speculation-Rules, Alt-Svc, redirects (table tests, no
sockets: each builds a `HeaderStep` and runs one step)."""

from __future__ import annotations

import html
from collections.abc import Callable

import pytest
from multidict import CIMultiDict

from proxy.core.config import parse_config
from proxy.core.header_urls import (
    filter_alt_svc,
    filter_csp,
    filter_report_to,
    filter_reporting_endpoints,
    parse_refresh,
)
from proxy.core.policy import Kind
from proxy.http.header_filters import (
    TOP_LEVEL_CSP,
    FetchMetadata,
    alt_svc,
    refresh_header,
    refused_redirect,
    reporting_headers,
    speculation_rules,
    top_level_page,
)
from proxy.http.stages import HEADER_STEPS, Body, HeaderStep, ResponsePlan, Stages
from proxy.metrics import Metrics

STAGES = Stages(parse_config({"server": {"upstream": "http://127.0.0.1:1"}}), Metrics())
REPORT_ONLY = Stages(parse_config({"server": {"upstream": "http://127.0.0.1:1", "mode": "report-only"}}), Metrics())
FB = "https://www.facebook.com/tr?id=1"
GA = "https://www.google-analytics.com/collect"
IMG = FetchMetadata("image", "no-cors", "")


def keep(url: str) -> bool:
    return STAGES.policy.decide_url(STAGES.visitor((), None).consent, Kind.HEADER, url, "www.shop.test").keeps


def step(
    headers: list[tuple[str, str]],
    *,
    status: int = 200,
    cookies: tuple[str, ...] = (),
    fetch: FetchMetadata | None = None,
    stages: Stages = STAGES,
) -> HeaderStep:
    h = CIMultiDict(headers)
    return HeaderStep(
        stages=stages,
        method="GET",
        status=status,
        path="/p",
        headers=h,
        visitor=stages.visitor(cookies, None),
        client_accept_encoding=None,
        host="www.shop.test",
        secure=True,
        conditional_ours=False,
        plan=ResponsePlan(headers=h, body=Body.PASS),
        fetch=IMG if fetch is None else fetch,
    )


def run(one: Callable[[HeaderStep], None], h: HeaderStep) -> list[tuple[str, str]]:
    assert one in HEADER_STEPS
    one(h)
    return list(h.headers.items())


# ------------------------------------------------------------------------ Refresh

REFRESHES: list[tuple[str, tuple[bool, list[str]]]] = [
    ("5", (True, [])),
    ("0; url=https://t.example/x", (True, ["https://t.example/x", "url=https://t.example/x"])),
    ("0;URL = 'https://t.example/x'junk", (True, ["https://t.example/x", "URL = 'https://t.example/x'junk"])),
    ("0, https://t.example/y", (True, ["https://t.example/y"])),
    ("  3.5  ;  /next", (True, ["/next"])),
    (".5; url=/a", (True, ["/a", "url=/a"])),
    ("0x; url=/a", (False, [])),
    ("soon", (False, [])),
    ("", (False, [])),
    ("0 url=https://t.example/", (True, ["https://t.example/", "url=https://t.example/"])),
]


@pytest.mark.parametrize(("value", "expected"), REFRESHES)
def test_parse_refresh(value: str, expected: tuple[bool, list[str]]) -> None:
    assert parse_refresh(value) == expected


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (f"0; url={FB}", False),
        (f"0;url='{FB}'", False),
        ("0; url=//www.facebook.com/tr", False),
        ("0; url=/thanks", True),
        ("30", True),
        ("garbage", False),
        # the whole remainder is one URL on this host
        (f"0; url=https://www.shop.test/x', {FB}", True),
    ],
)
def test_refresh_step(value: str, kept: bool) -> None:
    h = step([("Refresh", value)])
    assert run(refresh_header, h) == ([("Refresh", value)] if kept else [])
    assert h.dependent is not kept


def test_refresh_kept_when_everything_granted() -> None:
    cookie = ("tg_consent=functional.analytics.advertising.social",)
    assert run(refresh_header, step([("Refresh", f"0; url={FB}")], cookies=cookie)) == [("Refresh", f"0; url={FB}")]


# ------------------------------------------------------------------ reporting


CSPS: list[tuple[str, str | None, bool]] = [
    (f"default-src 'self'; report-uri {FB}", "default-src 'self'", True),
    (f"img-src 'none'; report-uri /csp {FB}; report-to g", "img-src 'none'; report-uri /csp; report-to g", True),
    (f"REPORT-URI {FB}", None, True),
    (f"default-src 'self', img-src 'none'; report-uri {FB}", "default-src 'self', img-src 'none'", True),
    ("default-src 'self'; report-uri /csp", "default-src 'self'; report-uri /csp", False),
]


@pytest.mark.parametrize(("value", "new", "changed"), CSPS)
def test_filter_csp(value: str, new: str | None, changed: bool) -> None:
    assert filter_csp(value, keep) == (new if changed else value, changed)


ENDPOINTS: list[tuple[str, str | None, bool]] = [
    (f'csp="{FB}", main="/reports"', 'main="/reports"', True),
    (f'a="{GA}"', None, True),
    ('a="/r";x=1, b="https://reports.example/r"', 'a="/r";x=1, b="https://reports.example/r"', False),
    ('a=/unquoted, b="/r"', 'b="/r"', True),
    ('A="/r"', None, True),
    (f'a="/r", b="{FB}\\"x"', 'a="/r"', True),
]


@pytest.mark.parametrize(("value", "new", "changed"), ENDPOINTS)
def test_filter_reporting_endpoints(value: str, new: str | None, changed: bool) -> None:
    assert filter_reporting_endpoints(value, keep) == (new if changed else value, changed)


REPORT_TOS: list[tuple[str, str | None, bool]] = [
    (
        f'{{"group":"csp","max_age":100,"endpoints":[{{"url":"{FB}"}},{{"url":"/r"}}]}}',
        '{"group":"csp","max_age":100,"endpoints":[{"url":"/r"}]}',
        True,
    ),
    (
        f'{{"group":"a","endpoints":[{{"url":"{FB}"}}]}}, {{"group":"b","endpoints":[{{"url":"/r"}}]}}',
        '{"group":"b","endpoints":[{"url":"/r"}]}',
        True,
    ),
    ('{"group":"a","endpoints":[{"url":"/r"}]}', '{"group":"a","endpoints":[{"url":"/r"}]}', False),
    ("{not json", None, True),
    ('{"group":"a"}', None, True),
]


@pytest.mark.parametrize(("value", "new", "changed"), REPORT_TOS)
def test_filter_report_to(value: str, new: str | None, changed: bool) -> None:
    assert filter_report_to(value, keep) == (new if changed else value, changed)


def test_reporting_step() -> None:
    h = step(
        [
            ("Content-Security-Policy", f"img-src 'none'; report-uri {FB}"),
            ("Content-Security-Policy-Report-Only", "script-src 'none'; report-uri /csp"),
            ("Reporting-Endpoints", f'default="{GA}"'),
            ("Report-To", f'{{"group":"nel","endpoints":[{{"url":"{FB}"}}]}}'),
            ("NEL", '{"report_to":"nel","max_age":100}'),
            ("Expect-CT", f'max-age=0, report-uri="{FB}"'),
        ]
    )
    assert run(reporting_headers, h) == [
        ("Content-Security-Policy-Report-Only", "script-src 'none'; report-uri /csp"),
        ("NEL", '{"report_to":"nel","max_age":100}'),
        ("Content-Security-Policy", "img-src 'none'"),
    ]
    assert h.dependent


def test_report_only_mode_counts_and_changes_nothing() -> None:
    lines = [("Content-Security-Policy", f"img-src 'none'; report-uri {FB}"), ("Speculation-Rules", '"/r.json"')]
    h = step(lines, stages=REPORT_ONLY)
    reporting_headers(h)
    speculation_rules(h)
    assert list(h.headers.items()) == lines and not h.dependent


# --------------------------------------------------------- speculation, alt-svc


def test_speculation_rules_dropped() -> None:
    assert run(speculation_rules, step([("Speculation-Rules", '"/rules.json"'), ("X", "1")])) == [("X", "1")]


ALT_SVCS: list[tuple[str, str | None, bool]] = [
    ('h3=":443"; ma=86400', 'h3=":443"; ma=86400', False),
    ('h3="www.facebook.com:443", h2=":443"', 'h2=":443"', True),
    ('h3="cdn.example:443"', 'h3="cdn.example:443"', False),
    ("clear", "clear", False),
    ("h3=nonsense", None, True),
]


@pytest.mark.parametrize(("value", "new", "changed"), ALT_SVCS)
def test_filter_alt_svc(value: str, new: str | None, changed: bool) -> None:
    assert filter_alt_svc(value, keep) == (new if changed else value, changed)


def test_alt_svc_step() -> None:
    assert run(alt_svc, step([("Alt-Svc", 'h3="connect.facebook.net:443"')])) == []


# ------------------------------------------------------------------ redirects

CLICK = FetchMetadata("document", "navigate", "?1")
PLAIN_NAVIGATION = FetchMetadata(accepts_html=True)
"""A navigation on a plain-http site: no `Sec-Fetch-*`, an `Accept` naming HTML."""
REDIRECTS: list[tuple[str, int, str, FetchMetadata, str]] = [
    # id, status, Location, fetch metadata -> "refused" (403), "top" (top-level page), "kept"
    ("pixel redirect", 302, FB, IMG, "refused"),
    (
        "script redirect",
        301,
        "https://connect.facebook.net/en_US/fbevents.js",
        FetchMetadata("script", "no-cors", ""),
        "refused",
    ),
    ("iframe redirect", 307, "https://www.youtube.com/embed/x", FetchMetadata("iframe", "navigate", ""), "refused"),
    ("beacon", 308, GA, FetchMetadata("empty", "no-cors", ""), "refused"),
    ("protocol-relative", 302, "//www.facebook.com/tr", IMG, "refused"),
    ("backslashes", 302, "/\\www.facebook.com/tr", IMG, "refused"),
    ("navigation a page caused", 302, FB, FetchMetadata("document", "navigate", ""), "refused"),
    ("the visitor's click", 302, FB, CLICK, "kept"),
    ("the visitor's click, Accept too", 302, FB, FetchMetadata("document", "navigate", "?1", True), "kept"),
    ("first-party", 302, "/img/a.png", IMG, "kept"),
    ("unknown host (kept by default)", 302, "https://cdn.example/a.png", IMG, "kept"),
    ("no fetch metadata, a subresource's Accept", 302, FB, FetchMetadata(), "refused"),
    ("no fetch metadata, a navigation's Accept", 302, FB, PLAIN_NAVIGATION, "top"),
    ("no fetch metadata, first-party", 302, "/next", PLAIN_NAVIGATION, "kept"),
    ("not a redirect", 201, FB, IMG, "kept"),
    ("304", 304, FB, IMG, "kept"),
]


@pytest.mark.parametrize(
    ("status", "location", "fetch", "outcome"), [r[1:] for r in REDIRECTS], ids=[r[0] for r in REDIRECTS]
)
def test_refused_redirect(status: int, location: str, fetch: FetchMetadata, outcome: str) -> None:
    h = step([("Location", location)], status=status, fetch=fetch)
    refused_redirect(h)
    got = "refused" if h.plan.refused is not None else "top" if h.plan.top_level_only is not None else "kept"
    assert got == outcome
    if outcome == "top":
        assert h.plan.top_level_only == location


@pytest.mark.parametrize(
    "url",
    [FB, "//www.facebook.com/tr", 'https://x.example/"><script>alert(1)</script>', "http://[bad"],
)
def test_top_level_page(url: str) -> None:
    """The stand-in page only links to the URL: no script, no refresh, the link intact."""
    body = top_level_page(url)
    assert "<script" not in body and "refresh" not in body
    assert html.unescape(body.split('href="', 1)[1].split('"', 1)[0]) == url
    assert TOP_LEVEL_CSP.startswith("default-src 'none'")


def test_redirect_kept_when_granted_or_report_only() -> None:
    h = step([("Location", FB)], status=302, cookies=("tg_consent=advertising",))
    refused_redirect(h)
    assert h.plan.refused is None
    h = step([("Location", FB)], status=302, stages=REPORT_ONLY)
    refused_redirect(h)
    assert h.plan.refused is None
