"""`POST /__tag-gate/guard-errors`: the runtime guard's own errors, as pages report them.

When the guard fails itself it lets the page's call through unchecked (it fails open for
the page) and counts it in the page (`__tagGateGuard.errors`). The first such error of a
page sends, a second later, how many came by then and the first one's name, as the text
`<count> <ErrorName>`; this endpoint counts them in `tag_gate_guard_errors{error}` (the
name when it is one of `GUARD_ERROR_NAMES`, else "other") and says so in the log, at
most once a second. Each is a call of a page's that went unchecked: a rise after a
browser release, or on one site's pages, is what the figure is for.

Limits (the endpoint is public, like the CSP endpoint): POST only; a body over 64 bytes is
refused (413) unread; a token bucket (5/s, a burst of 50) answers 429 when empty, before
reading anything; a count above 100 counts as 100. Every outcome is counted in
`tag_gate_guard_error_reports{result}`. Anyone can post here: the figures are leads.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Final

from aiohttp import web

from ..metrics import GUARD_ERROR_NAMES
from .relay import error_response
from .request_body import read_report

if TYPE_CHECKING:
    from .exchange import Exchange
    from .state import ProxyState

log = logging.getLogger("tag_gate")

MAX_BODY: Final = 64
MAX_COUNT: Final = 100
_REPORT: Final = re.compile(r"([1-9][0-9]{0,5}) ([A-Za-z][A-Za-z0-9]{0,39})")
_KNOWN: Final = frozenset(GUARD_ERROR_NAMES)


def read_guard_errors(body: bytes) -> tuple[int, str] | None:
    """(how many, the first one's name as counted) of a report body, None when it is not one."""
    m = _REPORT.fullmatch(body.decode("ascii", "replace").strip())
    if m is None:
        return None
    name = m.group(2)
    return min(int(m.group(1)), MAX_COUNT), name if name in _KNOWN else "other"


async def handle_guard_errors(state: ProxyState, ex: Exchange) -> web.StreamResponse:
    """`/__tag-gate/guard-errors`: count one page's report (module docstring)."""
    metrics = state.metrics
    if not ex.runtime.config.html.guard.enabled:
        return error_response(404, "Not Found")
    limits = state.guard_error_limits
    body = await read_report(ex, limits.bucket, MAX_BODY, metrics.guard_error_reports)
    if not isinstance(body, bytes):
        return body
    report = read_guard_errors(body)
    if report is None:
        metrics.guard_error_reports["invalid"].inc()
        return error_response(400, "Bad Request: expected '<count> <ErrorName>'")
    count, name = report
    metrics.guard_error_reports["accepted"].inc()
    metrics.guard_errors[name].inc(count)
    now = time.monotonic()
    if now - limits.logged >= 1.0:
        limits.logged = now
        log.warning(
            "runtime guard: %d of its own errors on a page (first: %s); those calls went unchecked", count, name
        )
    return web.Response(status=204)
