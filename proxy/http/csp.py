"""The CSP report endpoint (`POST /__tag-gate/csp`) and what it keeps.

Browsers post a report for each request a page made that our CSP layer (`[html.csp]`,
`proxy.core.csp`) did not list. This endpoint classifies each with the gate's matcher
(`proxy.core.csp_reports.classify_report`) under the consent the page was served with
(the `k` query parameter the header wrote), joined with what the request's own
cookies grant now (a visitor who granted after the page loaded has had tags released
in place, which the page's policy still reports) and counts:

- leak: a refused vendor was contacted anyway. `tag_gate_runtime_leaks{category,vendor}`
  (vendor ids come from the catalogue or the config: a bounded label set), one log line
  (URLs without query), and a row in the leak listing;
- gap: a third-party host nothing classifies. `tag_gate_catalogue_gaps` and a row in
  the gap listing (host → count, first/last seen, directive, an example URL without
  query), served as JSON by the admin listener's `/csp-gaps` and shown by
  `tag-gate explain --admin`;
- granted, first_party, other (`inline`, `eval`, `data:`): counted only.

Limits (the endpoint is public): POST only; a body over `html.csp.max_report_size` is
refused (413) unread; a token bucket (`report_rate`/s, `report_burst`) answers 429 when
empty, before reading anything; at most 100 reports per body; the listings are bounded
(`gap_hosts`) and keep the least recently seen out. Every outcome is counted in
`tag_gate_csp_reports{result}`. Anyone can post here: the listings are leads to check
with `tag-gate explain`, not proof.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from aiohttp import hdrs, web

from ..core.csp_reports import classify_report, parse_csp_reports, strip_query
from .relay import error_response
from .request_body import read_report

if TYPE_CHECKING:
    from .exchange import Exchange
    from .state import ProxyState

log = logging.getLogger("tag_gate")


async def handle_csp_report(state: ProxyState, ex: Exchange, page_host: str | None) -> web.StreamResponse:
    """`/__tag-gate/csp`: read, classify and count the reports of one body (module docstring)."""
    request, runtime, metrics = ex.request, ex.runtime, state.metrics
    csp = runtime.config.html.csp
    if csp.mode == "off":
        return error_response(404, "Not Found")
    sink = state.reports
    sink.configure(csp.report_rate, csp.report_burst, csp.gap_hosts)
    body = await read_report(ex, sink.bucket, csp.max_report_size, metrics.csp_reports)
    if not isinstance(body, bytes):
        return body
    try:
        reports = parse_csp_reports(body, request.headers.get(hdrs.CONTENT_TYPE))
    except ValueError as exc:
        metrics.csp_reports["invalid"].inc()
        return error_response(400, f"Bad Request: {exc}")
    stages = runtime.stages
    # The page's policy is fixed when it loads; a visitor who grants later has the guard
    # release tags in place, and the browser reports those hosts too: what the cookie
    # grants now counts as granted alongside what the key says the page was served under.
    now_granted = stages.visitor(
        tuple(request.headers.getall(hdrs.COOKIE, ())), request.headers.get("Sec-GPC")
    ).consent.granted
    granted = None
    key = request.query.get("k")
    if key and stages.layers.csp is not None:
        granted = stages.layers.csp.granted(key)
    granted = now_granted if granted is None else granted | now_granted
    wall = time.time()
    for report in reports:
        verdict = classify_report(stages.policy, granted, report, page_host)
        metrics.csp_reports[verdict.kind].inc()
        if verdict.kind == "leak":
            metrics.runtime_leaks.labels(verdict.category, verdict.vendor).inc()
            sink.leak(verdict, report, wall)
            log.info(
                "runtime leak: %s (%s) %s blocked by %s on %s",
                verdict.vendor,
                verdict.category,
                strip_query(report.blocked)[:300],
                report.directive[:40],
                strip_query(report.document)[:300],
            )
        elif verdict.kind == "gap":
            metrics.catalogue_gaps.inc()
            if sink.gaps.add(verdict.host, report, wall):
                log.info(
                    "catalogue gap: %s first reported (%s) on %s",
                    verdict.host,
                    report.directive[:40],
                    strip_query(report.document)[:300],
                )
    metrics.catalogue_gap_hosts.set(len(sink.gaps))
    return web.Response(status=204)
