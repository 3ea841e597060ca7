"""Header steps that keep the browser from contacting refused hosts by itself, from
a response's headers alone: `Refresh`, reporting endpoints, `Speculation-Rules`,
`Alt-Svc`, and redirects a visitor did not ask for. Listed in
`proxy.http.stages.HEADER_STEPS`; each takes the step context (`Head`, which
`stages.HeaderStep` is) and changes nothing in report-only mode but the counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from aiohttp import hdrs
from multidict import CIMultiDict

from ..core.header_urls import filter_alt_svc, filter_csp, filter_report_to, filter_reporting_endpoints, parse_refresh


@dataclass(frozen=True, slots=True)
class FetchMetadata:
    """The request's `Sec-Fetch-*` headers, lower-cased ("" when not sent)."""

    dest: str = ""
    mode: str = ""
    user: str = ""

    @property
    def sent(self) -> bool:
        """Whether the client sends fetch metadata at all (every current browser does)."""
        return bool(self.dest or self.mode)

    @property
    def user_navigation(self) -> bool:
        """A top-level navigation the visitor started (a click, the address bar)."""
        return self.mode == "navigate" and self.dest == "document" and self.user == "?1"


NO_FETCH_METADATA: Final = FetchMetadata()


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


Trim = Callable[[str, Callable[[str], bool]], tuple[str | None, bool]]
"""A header value and a URL verdict in, (the value to keep or None, whether it changed) out."""

REFRESH: Final = "Refresh"
REPORTING_ENDPOINTS: Final = "Reporting-Endpoints"
REPORT_TO: Final = "Report-To"
EXPECT_CT: Final = "Expect-CT"
SPECULATION_RULES: Final = "Speculation-Rules"
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
    still lead anywhere; clients without fetch metadata are not second-guessed."""
    if not (300 <= h.status < 400 and h.status != 304) or not h.fetch.sent or h.fetch.user_navigation:
        return
    location = h.headers.get(hdrs.LOCATION)
    if location is None or not h.refusable() or h.keep_url(location.strip()):
        return
    h.count_header("location")
    h.refuse("a redirect to a host this visitor's consent refuses")
