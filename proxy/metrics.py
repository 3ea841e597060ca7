"""Prometheus metrics, one registry per running proxy.

Label values come from small fixed sets (status class, error kind, category, action),
never from paths, hosts or cookie values, so the series count stays bounded whatever
the traffic. Children for every known label value are resolved once here so the
request path only calls `.inc()` / `.observe()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from . import __version__

STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
UPSTREAM_ERROR_KINDS: Final = (
    "connect",
    "timeout",
    "header_overflow",
    "invalid_response",
    "disconnect",
    "body_aborted",
    "queue_timeout",
    "queue_full",
)
WEBSOCKET_CLOSE_REASONS: Final = ("too_big", "idle", "client", "upstream", "error", "shutdown")
"""Why a WebSocket relay ended (proxy.http.websocket documents each)."""
LOG_STREAMS: Final = ("access", "error")
"""`access`: the JSON access log on stdout; `error`: the event log on stderr."""
GUARD_DELIVERIES: Final = ("inline", "external", "none")
"""How the runtime guard went into a gated page (proxy.http.layers)."""
CSP_REPORT_RESULTS: Final = (
    "leak",
    "granted",
    "gap",
    "first_party",
    "other",
    "invalid",
    "too_large",
    "rate_limited",
)
"""What became of a CSP violation report (proxy.http.csp documents each)."""
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Every metric tag-gate exports, registered in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "tag_gate_requests",
            "Requests answered on the public listener, by status class.",
            ["status_class"],
            registry=r,
        )
        self.by_status_class = [self.requests.labels(c) for c in STATUS_CLASSES]
        self.upstream_errors = Counter("tag_gate_upstream_errors", "Upstream failures, by kind.", ["kind"], registry=r)
        self.upstream_error = {k: self.upstream_errors.labels(k) for k in UPSTREAM_ERROR_KINDS}
        self.latency = Histogram(
            "tag_gate_request_duration_seconds",
            "Time from request head to the last response byte, public listener.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("tag_gate_in_flight_requests", "Requests being handled.", registry=r)
        self.client_disconnects = Counter(
            "tag_gate_client_disconnects",
            "Requests whose client went away before the response ended.",
            registry=r,
        )
        self.header_timeouts = Counter(
            "tag_gate_header_timeouts",
            "Connections closed because the request head did not arrive in time (slow clients).",
            registry=r,
        )
        self.rejected = Counter(
            "tag_gate_rejected_requests",
            "Requests refused before forwarding, by reason.",
            ["reason"],
            registry=r,
        )
        self.upstream_connections = Gauge(
            "tag_gate_upstream_connections",
            "Upstream connections, by state (open includes idle).",
            ["state"],
            registry=r,
        )
        self.upstream_queued = Gauge(
            "tag_gate_upstream_queued_requests",
            "Requests waiting for a free upstream connection (limits.upstream_pool_size).",
            registry=r,
        )
        self.gate_cache = Counter(
            "tag_gate_gate_cache",
            "Gated-page cache lookups and evictions (html.cache_size), by event.",
            ["event"],
            registry=r,
        )
        self.gate_cache_event = {e: self.gate_cache.labels(e) for e in ("hit", "miss", "eviction")}
        self.gate_cache_bytes = Gauge(
            "tag_gate_gate_cache_bytes", "Bytes of gated pages held in the cache.", registry=r
        )
        self.websockets = Gauge("tag_gate_websockets_open", "WebSocket relays open.", registry=r)
        self.websocket_closes = Counter(
            "tag_gate_websocket_closes",
            "WebSocket relays ended, by reason: too_big (a message over limits.websocket_max_message), "
            "idle (timeouts.websocket_idle), client or upstream (that side closed or went away), "
            "error (a protocol error or a failed write), shutdown (cut at the drain deadline).",
            ["reason"],
            registry=r,
        )
        self.websocket_close = {k: self.websocket_closes.labels(k) for k in WEBSOCKET_CLOSE_REASONS}
        self.loop_lag = Gauge(
            "tag_gate_event_loop_lag_seconds", "How late the last periodic event-loop tick ran.", registry=r
        )
        self.consent_reads = Counter(
            "tag_gate_consent_reads",
            "Consent read from a distinct Cookie/Sec-GPC combination, by deciding source and reason.",
            ["source", "reason"],
            registry=r,
        )
        self.elements = Counter(
            "tag_gate_elements",
            "HTML elements acted on by the gate (or that would be, in report-only mode).",
            ["action", "category"],
            registry=r,
        )
        self.cookies = Counter(
            "tag_gate_cookies",
            "Set-Cookie lines dropped (or that would be), by category.",
            ["action", "category"],
            registry=r,
        )
        self.unknown_cookies = Counter(
            "tag_gate_unknown_cookies", "Set-Cookie lines whose cookie nobody classified.", registry=r
        )
        self.withdrawal_expiries = Counter(
            "tag_gate_withdrawal_expiries",
            "Expiring Set-Cookie lines sent for refused cookies still held.",
            registry=r,
        )
        self.fail_safe = Counter(
            "tag_gate_fail_safe",
            "Responses the gate could not process, by reason (see README: failure modes).",
            ["reason"],
            registry=r,
        )
        self.guard_pages_total = Counter(
            "tag_gate_guard_pages",
            "Gated pages that got the runtime guard, by delivery: inline; external (/__tag-gate/guard.js, the"
            " site's CSP blocks inline scripts but allows 'self'); none (its CSP allows neither).",
            ["delivery"],
            registry=r,
        )
        self.guard_pages = {k: self.guard_pages_total.labels(k) for k in GUARD_DELIVERIES}
        self.csp_headers = Counter(
            "tag_gate_csp_headers",
            "Responses that got tag-gate's CSP header ([html.csp]), by mode and target (page, worker script).",
            ["mode", "target"],
            registry=r,
        )
        self.csp_reports_total = Counter(
            "tag_gate_csp_reports",
            "CSP violation reports received at /__tag-gate/csp, by result: leak (a refused vendor), granted,"
            " gap (a host nothing classifies), first_party, other (inline, eval, data:), invalid, too_large,"
            " rate_limited.",
            ["result"],
            registry=r,
        )
        self.csp_reports = {k: self.csp_reports_total.labels(k) for k in CSP_REPORT_RESULTS}
        self.runtime_leaks = Counter(
            "tag_gate_runtime_leaks",
            "CSP reports of a refused vendor contacted anyway (nothing in the page stopped it), by category and"
            " vendor id (from the catalogue, or rule:NAME for an operator rule).",
            ["category", "vendor"],
            registry=r,
        )
        self.catalogue_gaps = Counter(
            "tag_gate_catalogue_gaps",
            "CSP reports of a third-party host that no rule or catalogue entry classifies (listed by host on the"
            " admin listener's /csp-gaps).",
            registry=r,
        )
        self.catalogue_gap_hosts = Gauge(
            "tag_gate_catalogue_gap_hosts", "Hosts in the catalogue-gap listing (admin /csp-gaps).", registry=r
        )
        self.reloads = Counter(
            "tag_gate_config_reloads",
            "SIGHUP config reloads, applied or refused (the running config kept).",
            ["result"],
            registry=r,
        )
        self.log_drops = _LogDrops()
        r.register(self.log_drops)
        self.ready = Gauge("tag_gate_ready", "1 when ready to serve, 0 while starting or draining.", registry=r)
        info = Gauge("tag_gate_info", "Build information.", ["version"], registry=r)
        info.labels(__version__).set(1)

    def count_refused_head(self, status: int) -> None:
        """A request head aiohttp's parser refused (answered before any handler ran)."""
        self.rejected.labels("bad_request").inc()
        self.count_status(status)

    def count_status(self, status: int) -> None:
        index = status // 100 - 1
        if 0 <= index < 5:
            self.by_status_class[index].inc()

    def count_log_drops(self, stream: str, read: Callable[[], float]) -> None:
        """Report `read()` (the lines a log has dropped so far) as `stream`'s count."""
        assert stream in LOG_STREAMS
        self.log_drops.sources[stream] = read

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LogDrops(Collector):
    """`tag_gate_log_dropped_total{stream}`, read at scrape time from the logs' own
    counts: lines are dropped on the logging thread (or the writer thread) without
    touching the registry."""

    def __init__(self) -> None:
        self.sources: dict[str, Callable[[], float]] = {stream: _zero for stream in LOG_STREAMS}

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "tag_gate_log_dropped",
            "Log lines dropped because their stream did not keep up (stdout or stderr blocked), by stream.",
            labels=["stream"],
        )
        for stream, read in self.sources.items():
            family.add_metric([stream], read())
        yield family


def _zero() -> float:
    return 0.0
