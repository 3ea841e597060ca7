"""Header steps that keep the browser from contacting refused hosts by itself, from
a response's headers alone: `Refresh`, reporting endpoints, `Speculation-Rules`,
`Alt-Svc`, and redirects a visitor did not ask for. Listed in
`proxy.http.stages.HEADER_STEPS`; each takes the step context (`Head`, which
`stages.HeaderStep` is) and changes nothing in report-only mode but the counts.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlsplit

from aiohttp import hdrs
from multidict import CIMultiDict

from ..core.header_urls import filter_alt_svc, filter_csp, filter_report_to, filter_reporting_endpoints, parse_refresh


@dataclass(frozen=True, slots=True)
class FetchMetadata:
    """The request's `Sec-Fetch-*` headers, lower-cased ("" when not sent)."""

    dest: str = ""
    mode: str = ""
    user: str = ""
    accepts_html: bool = False
    """The request's `Accept` names `text/html`: what browsers send for navigations
    (top level and frames) and never for images, scripts, styles or fetches. It is what
    tells them apart where `Sec-Fetch-*` is not sent (Chromium sends it only to
    potentially trustworthy origins: https, localhost)."""

    @property
    def sent(self) -> bool:
        """Whether the client sends fetch metadata at all (every current browser does)."""
        return bool(self.dest or self.mode)

    @property
    def user_navigation(self) -> bool:
        """A top-level navigation the visitor started (a click, the address bar)."""
        return self.mode == "navigate" and self.dest == "document" and self.user == "?1"


NO_FETCH_METADATA: Final = FetchMetadata()

FRAGMENT_VARY: Final = ("Sec-Fetch-Dest", "Accept", "HX-Request", "X-Requested-With")
"""The request headers `from_page_code` reads: a fragment answered without tag-gate's
additions says them in `Vary`."""


def from_page_code(fetch: FetchMetadata, headers: Mapping[str, str]) -> bool:
    """Whether the page's own code made the request (fetch, XHR: htmx, Turbo, jQuery's
    `load`) rather than a navigation: `Sec-Fetch-Dest: empty`. Where no fetch metadata
    comes (plain http, Safari before 16.4): an `HX-Request` header (htmx),
    `X-Requested-With: XMLHttpRequest` (jQuery), or an `Accept` that does not name HTML
    (a navigation's always does; fetch and XHR send `*/*` unless told otherwise)."""
    if fetch.sent:
        return fetch.dest == "empty"
    return (
        not fetch.accepts_html
        or "HX-Request" in headers
        or headers.get("X-Requested-With", "").strip().lower() == "xmlhttprequest"
    )


class Head(Protocol):
    """What these steps read and change of one response head (`stages.HeaderStep`)."""

    headers: CIMultiDict[str]
    status: int
    fetch: FetchMetadata

    def keep_url(self, url: str) -> bool: ...
    def refusable(self) -> bool: ...
    def count_header(self, name: str) -> None: ...
    def replace_all(self, name: str, values: list[str]) -> None: ...
    def refuse(self, reason: str) -> None: ...
    def top_level_only(self, url: str) -> None: ...


Trim = Callable[[str, Callable[[str], bool]], tuple[str | None, bool]]
"""A header value and a URL verdict in, (the value to keep or None, whether it changed) out."""

REFRESH: Final = "Refresh"
REPORTING_ENDPOINTS: Final = "Reporting-Endpoints"
REPORT_TO: Final = "Report-To"
EXPECT_CT: Final = "Expect-CT"
SPECULATION_RULES: Final = "Speculation-Rules"
_REPORTING: Final = (
    hdrs.CONTENT_SECURITY_POLICY,
    hdrs.CONTENT_SECURITY_POLICY_REPORT_ONLY,
    REPORTING_ENDPOINTS,
    REPORT_TO,
    EXPECT_CT,
)
"""The headers `reporting_headers` reads."""
_EXPECT_CT_URI: Final = re.compile(r'report-uri\s*=\s*"([^"]*)"', re.IGNORECASE)


def _filter_lines(h: Head, name: str, trim: Trim) -> None:
    """Run `trim` over every `name` line; replace them all if any changed, counted once."""
    values = h.headers.getall(name, ())
    if not values:
        return
    kept: list[str] = []
    changed = False
    for value in values:
        new, removed = trim(value, h.keep_url)
        changed = changed or removed
        if new is not None:
            kept.append(new)
    if changed:
        h.count_header(name.lower())
        h.replace_all(name, kept)


def refresh_header(h: Head) -> None:
    """Remove a `Refresh` header that would navigate to a host the visitor refuses (one
    that does not parse goes too: the browser ignores it, it cannot be checked)."""
    if REFRESH not in h.headers or not h.refusable():
        return

    def trim(value: str, keep: Callable[[str], bool]) -> tuple[str | None, bool]:
        ok, urls = parse_refresh(value)
        return (value, False) if ok and all(keep(u) for u in urls) else (None, True)

    _filter_lines(h, REFRESH, trim)


def reporting_headers(h: Head) -> None:
    """Reports go only where consent allows: `report-uri` in the site's own CSP (enforced
    or report-only), the `Reporting-Endpoints` and `Report-To` endpoints every Reporting
    API report is sent to (CSP `report-to`, NEL, COOP/COEP, ...), and `Expect-CT`'s
    report-uri lose what names a refused host."""
    headers = h.headers
    for name in _REPORTING:
        if name in headers:
            break
    else:
        return  # the usual response: none of them (checked before anything else)
    if not h.refusable():
        return
    _filter_lines(h, hdrs.CONTENT_SECURITY_POLICY, filter_csp)
    _filter_lines(h, hdrs.CONTENT_SECURITY_POLICY_REPORT_ONLY, filter_csp)
    _filter_lines(h, REPORTING_ENDPOINTS, filter_reporting_endpoints)
    _filter_lines(h, REPORT_TO, filter_report_to)

    def expect_ct(value: str, keep: Callable[[str], bool]) -> tuple[str | None, bool]:
        urls = _EXPECT_CT_URI.findall(value)
        return (value, False) if all(keep(u) for u in urls) else (None, True)

    _filter_lines(h, EXPECT_CT, expect_ct)


def speculation_rules(h: Head) -> None:
    """Drop `Speculation-Rules`: its rule sets can prefetch or prerender any host and are
    not read here (prefetching is an optimisation, the page works without it)."""
    if SPECULATION_RULES in h.headers and h.refusable():
        h.count_header(SPECULATION_RULES.lower())
        h.replace_all(SPECULATION_RULES, [])


def alt_svc(h: Head) -> None:
    """Remove `Alt-Svc` alternatives on a refused host (the browser would connect there)."""
    if hdrs.ALT_SVC in h.headers and h.refusable():
        _filter_lines(h, hdrs.ALT_SVC, filter_alt_svc)


def refused_redirect(h: Head) -> None:
    """A redirect to a refused host answering anything but a navigation the visitor
    started (an image, script, frame, beacon, or a navigation a page caused by itself)
    is not relayed: the handler answers 403 instead. The visitor's own clicks may
    still lead anywhere.

    Without fetch metadata (plain-http sites, other clients), a request whose `Accept`
    does not name HTML is a subresource: 403. One that does is a navigation of unknown
    kind (a click, a frame, a page's own refresh): it gets a small page with a link
    to the redirect's target (`top_level_page`), so neither a frame nor the page
    itself reaches the tracker and a visitor's click arrives with one more click."""
    if not (300 <= h.status < 400 and h.status != 304):
        return
    if h.fetch.sent and h.fetch.user_navigation:
        return
    location = h.headers.get(hdrs.LOCATION)
    if location is None or not h.refusable() or h.keep_url(location.strip()):
        return
    h.count_header("location")
    if h.fetch.sent or not h.fetch.accepts_html:
        h.refuse("a redirect to a host this visitor's consent refuses")
    else:
        h.top_level_only(location.strip())


TOP_LEVEL_PAGE: Final = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex"><title>Leaving this site</title></head>
<body><p>This link leads to another site: <a href="{href}" target="_top" rel="noreferrer">{host}</a>.</p>
</body></html>
"""
TOP_LEVEL_CSP: Final = "default-src 'none'; base-uri 'none'; form-action 'none'"
"""Nothing on the stand-in page loads from anywhere."""


def top_level_page(url: str) -> str:
    """The page that stands in for a redirect to a refused host on a navigation of
    unknown kind (a click, a frame, a page's own refresh: without fetch metadata they
    look alike): a link to `url` (resolved against the request's URL, as `Location`
    is) that the visitor may follow, out of any frame. It does not follow it by itself."""
    try:
        host = urlsplit(url).hostname or url
    except ValueError:  # an unparseable authority: show the URL itself
        host = url
    return TOP_LEVEL_PAGE.format(href=html.escape(url), host=html.escape(host))
