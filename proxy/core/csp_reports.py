"""CSP violation reports: reading them, classifying what they name, keeping the gaps (pure).

The report endpoint (`proxy.http.csp`) hands each body here:

- `parse_csp_reports(body, content_type)` reads both formats browsers send: the
  `report-uri` form (`application/csp-report`, one `{"csp-report": {...}}`) and the
  Reporting API's (`application/reports+json`, a list of `{"type": "csp-violation",
  "body": {...}}`); `application/json` is read as either. Raises ValueError on anything
  else, with a short reason.
- `classify_report(policy, granted, report, page_host)` decides with the gate's own
  matcher (`Policy.classify_url`: operator rules, catalogue URL prefixes and hosts,
  first party): a refused vendor is a **runtime leak**, a granted one is ignored, a host
  nobody classified is a **catalogue gap**; `inline`, `eval`, `data:` and the like are
  `other`.
- `GapTable` keeps the catalogue gaps, host → count, first and last seen, the directive
  and one example URL without its query: bounded, the least recently seen host leaves
  first (anyone can post reports, so nothing here may grow with the traffic).
- `TokenBucket` is the endpoint's rate limit; `ReportSink` holds it with the gap
  listing and a leak listing (vendor → count, last seen, example) for the process.

URLs are kept and shown without their query string or fragment (`strip_query`): a
beacon's query is where visitor identifiers travel.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final, Literal

from .categories import ESSENTIAL
from .policy import Origin, Policy
from .url import host_of

__all__ = [
    "MAX_REPORTS_PER_BODY",
    "CspReport",
    "Gap",
    "GapTable",
    "GuardErrorLimits",
    "ReportSink",
    "TokenBucket",
    "Verdict",
    "classify_report",
    "parse_csp_reports",
    "strip_query",
]

MAX_REPORTS_PER_BODY: Final = 100
"""Reports read from one Reporting API batch; the rest are ignored."""

_MAX_FIELD: Final = 2048


@dataclass(frozen=True, slots=True)
class CspReport:
    """One violation, as the browser described it."""

    blocked: str
    """The blocked URL (`blocked-uri` / `blockedURL`), or a keyword: inline, eval, data."""
    directive: str
    """The effective directive (`connect-src`, ...)."""
    document: str
    disposition: str
    """`report` (report-only) or `enforce`."""


def _text(value: Any) -> str:
    return value[:_MAX_FIELD] if isinstance(value, str) else ""


def _one(body: Any, *, reporting_api: bool) -> CspReport | None:
    if not isinstance(body, dict):
        return None
    if reporting_api:
        blocked, directive = body.get("blockedURL"), body.get("effectiveDirective")
        document, disposition = body.get("documentURL"), body.get("disposition")
    else:
        blocked, document = body.get("blocked-uri"), body.get("document-uri")
        directive = body.get("effective-directive") or _first_word(body.get("violated-directive"))
        disposition = body.get("disposition")
    if not isinstance(blocked, str) or not isinstance(directive, str):
        return None
    return CspReport(_text(blocked), _text(directive).lower(), _text(document), _text(disposition) or "report")


def _first_word(value: Any) -> str:
    return value.split()[0] if isinstance(value, str) and value.split() else ""


def parse_csp_reports(body: bytes, content_type: str | None) -> list[CspReport]:
    """The violations in one report body (see the module docstring)."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media not in ("application/csp-report", "application/reports+json", "application/json"):
        raise ValueError(f"unsupported content type {media or '(none)'!r}")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not JSON") from None
    out: list[CspReport] = []
    if isinstance(data, dict) and "csp-report" in data and media != "application/reports+json":
        report = _one(data["csp-report"], reporting_api=False)
        if report is not None:
            out.append(report)
    elif isinstance(data, list) and media != "application/csp-report":
        for item in data[:MAX_REPORTS_PER_BODY]:
            if isinstance(item, dict) and item.get("type") == "csp-violation":
                report = _one(item.get("body"), reporting_api=True)
                if report is not None:
                    out.append(report)
    else:
        raise ValueError("neither a csp-report object nor a list of reports")
    return out


def strip_query(url: str) -> str:
    """`url` without its query string and fragment."""
    return url.partition("#")[0].partition("?")[0]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a report shows."""

    kind: Literal["leak", "granted", "gap", "first_party", "other"]
    category: str = ""
    vendor: str = ""
    """The vendor id, or `rule:<name>` when an operator rule without a vendor decided."""
    host: str = ""


_OTHER: Final = Verdict("other")


def classify_report(policy: Policy, granted: Collection[str], report: CspReport, page_host: str | None) -> Verdict:
    """Classify the blocked URL of a report with the gate's matcher (module docstring).
    A WebSocket's `ws:`/`wss:` URL reads as its `http:`/`https:` twin (the same host)."""
    url = report.blocked
    if url[:3].lower() == "ws:" or url[:4].lower() == "wss:":
        url = "http" + url[2:]
    host = host_of(url)
    if host is None:
        return _OTHER
    c = policy.classify_url(url, page_host)
    if c.origin is Origin.UNKNOWN_HOST:
        return Verdict("gap", c.category or "", "", host)
    if c.category is None:
        return Verdict("first_party" if c.origin is Origin.FIRST_PARTY else "granted", "", "", host)
    if c.category == ESSENTIAL or c.category in granted:
        return Verdict("granted", c.category, c.vendor.id if c.vendor else "", host)
    vendor = c.vendor.id if c.vendor else f"rule:{c.rule}"
    return Verdict("leak", c.category, vendor, host)


@dataclass
class Gap:
    """One host nobody classified, as reports showed it."""

    host: str
    count: int
    first_seen: float
    last_seen: float
    directive: str
    example: str
    """A blocked URL without its query."""
    page: str
    """A page that reported it, without its query."""

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "count": self.count,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "directive": self.directive,
            "example": self.example,
            "page": self.page,
        }


class GapTable:
    """Catalogue gaps by host: at most `limit` hosts, least recently seen out first."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self.evicted = 0
        self._gaps: OrderedDict[str, Gap] = OrderedDict()

    def add(self, host: str, report: CspReport, now: float) -> bool:
        """Count a report of `host`; True when the host is new to the listing."""
        gap = self._gaps.get(host)
        if gap is None:
            if len(self._gaps) >= self.limit:
                self._gaps.popitem(last=False)
                self.evicted += 1
            self._gaps[host] = Gap(
                host, 1, now, now, report.directive, strip_query(report.blocked), strip_query(report.document)
            )
            return True
        gap.count += 1
        gap.last_seen = now
        gap.directive = report.directive
        self._gaps.move_to_end(host)
        return False

    def __len__(self) -> int:
        return len(self._gaps)

    def listing(self) -> list[Gap]:
        """The gaps, most reported first."""
        return sorted(self._gaps.values(), key=lambda g: (-g.count, g.host))


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved; `take(now)` spends one if it can."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at: float | None = None

    def take(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class GuardErrorLimits:
    """The guard-error endpoint's rate limit (5/s, a burst of 50) and log pace (when it
    last logged), for the life of the process (`proxy.http.guard_errors`)."""

    def __init__(self) -> None:
        self.bucket = TokenBucket(5.0, 50)
        self.logged = float("-inf")


class ReportSink:
    """What the endpoint keeps for the life of the process (across reloads): the rate
    limit, the gap listing and the leak listing."""

    def __init__(self) -> None:
        self.bucket = TokenBucket(20.0, 200)
        self.gaps = GapTable()
        self.leaks: dict[tuple[str, str], dict[str, Any]] = {}

    def configure(self, rate: float, burst: int, hosts: int) -> None:
        """Apply the running config's limits (cheap when nothing changed)."""
        bucket = self.bucket
        if (bucket.rate, bucket.burst) != (rate, burst):
            self.bucket = TokenBucket(rate, burst)
        self.gaps.limit = hosts

    def leak(self, verdict: Verdict, report: CspReport, now: float) -> None:
        key = (verdict.category, verdict.vendor)
        row = self.leaks.get(key)
        if row is None:
            if len(self.leaks) >= self.gaps.limit:
                return
            row = self.leaks[key] = {"category": verdict.category, "vendor": verdict.vendor, "count": 0}
        row.update(
            count=row["count"] + 1,
            last_seen=now,
            directive=report.directive,
            example=strip_query(report.blocked),
            page=strip_query(report.document),
        )

    def listing(self) -> dict[str, Any]:
        """The admin listener's `/csp-gaps` document."""
        return {
            "gaps": [g.as_json() for g in self.gaps.listing()],
            "gap_limit": self.gaps.limit,
            "gaps_evicted": self.gaps.evicted,
            "leaks": sorted(self.leaks.values(), key=lambda r: (-r["count"], r["vendor"])),
        }
