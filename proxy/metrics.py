"""Prometheus metrics, one registry per running proxy.

Label values come from small fixed sets (status class, error kind, category, action),
never from paths, hosts or cookie values, so the series count stays bounded whatever
the traffic. Children for every known label value are resolved once here so the
request path only calls `.inc()` / `.observe()`.

With worker processes (`server.workers` > 1) each worker's `Metrics(worker=True)` writes
its values to prometheus-client's multiprocess files (the worker's environment names a
private directory in PROMETHEUS_MULTIPROC_DIR), and the supervisor's `SupervisorMetrics`
adds them up for `/metrics`. Counters and the histogram are summed over every worker
that ever ran, so a restart loses no count. A gauge must say how workers combine
(`multiprocess_mode`): the ones here are `livesum` (a total over the running workers)
or `livemax` (the worst running worker), and a live gauge's file goes when its worker
exits (`mark_process_dead`). `set_function` cannot work across processes (the
function lives in the worker, the scrape in the supervisor), so a gauge that reads
state is registered with `observe()`: one process sets the function as before, a worker
sets the value from it on `sample()`, every half second. A new gauge needs both: a
deliberate mode, and `observe()` rather than `set_function` (tests/test_workers.py
checks the first). Readiness, build information and reload counts are the supervisor's
own, so a worker has none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from . import __version__
from .html.needles import ENGINE as PRESCAN_ENGINE

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
RESPONSE_HEADER_LABELS: Final = (
    "location",
    "refresh",
    "content-security-policy",
    "content-security-policy-report-only",
    "reporting-endpoints",
    "report-to",
    "expect-ct",
    "speculation-rules",
    "alt-svc",
)
"""`tag_gate_response_headers_total{header}` labels (created at start, so the series exist)."""
"""Why a WebSocket relay ended (proxy.http.websocket documents each)."""
LOG_STREAMS: Final = ("access", "error", "proof")
"""`access`: the JSON access log on stdout; `error`: the event log on stderr; `proof`:
the proof-of-consent lines when they have a writer of their own (a file, or stdout
without the access log)."""
CONSENT_RECORD_OUTCOMES: Final = ("written", "not_kept", "invalid", "too_large", "rate_limited", "cross_site")
"""What became of a POST to /__tag-gate/consent (proxy.http.proof)."""
GUARD_DELIVERIES: Final = ("inline", "external", "none")
"""How the runtime guard went into a gated page (proxy.http.layers)."""
GUARD_ERROR_NAMES: Final = (
    "TypeError",
    "RangeError",
    "ReferenceError",
    "SyntaxError",
    "SecurityError",
    "InvalidStateError",
    "NotFoundError",
    "HierarchyRequestError",
    "NotSupportedError",
    "InvalidCharacterError",
    "Error",
    "other",
)
"""`tag_gate_guard_errors{error}`: the error names a page reports as they are, anything
else as "other" (proxy.http.guard_errors)."""
GUARD_ERROR_REPORTS: Final = ("accepted", "invalid", "too_large", "rate_limited")
"""What became of a POST to /__tag-gate/guard-errors."""
GUARD_TABLE_ASKS: Final = ("stated", "cookies")
"""Why a page asked /__tag-gate/guard-table for a new rule table: `stated`, the visitor
withdrew on the page a category granted at load; `cookies`, a consent manager's cookie
changed on the page (proxy.http.handler)."""
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
    """Every metric tag-gate exports, registered in its own registry; with `worker`, the
    share of one worker process (see the module docstring)."""

    def __init__(self, *, worker: bool = False) -> None:
        self.worker = worker
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._observed: list[tuple[Gauge, Callable[[], float]]] = []
        self._drop_sources: dict[str, Callable[[], float]] = {stream: _zero for stream in LOG_STREAMS}
        self._drops_sampled: dict[str, float] = dict.fromkeys(LOG_STREAMS, 0.0)
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
        self.in_flight = Gauge(
            "tag_gate_in_flight_requests", "Requests being handled.", registry=r, multiprocess_mode="livesum"
        )
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
            multiprocess_mode="livesum",
        )
        self.upstream_queued = Gauge(
            "tag_gate_upstream_queued_requests",
            "Requests waiting for a free upstream connection (limits.upstream_pool_size).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.websockets = Gauge(
            "tag_gate_websockets_open", "WebSocket relays open.", registry=r, multiprocess_mode="livesum"
        )
        self.gate_cache = Counter(
            "tag_gate_gate_cache",
            "Gated-page cache lookups and evictions (html.cache_size), by event (uncacheable: a page"
            " whose CSP nonce is new for every response, not looked up).",
            ["event"],
            registry=r,
        )
        self.gate_cache_event = {e: self.gate_cache.labels(e) for e in ("hit", "miss", "eviction", "uncacheable")}
        self.gate_cache_bytes = Gauge(
            "tag_gate_gate_cache_bytes",
            "Bytes of gated pages held in the cache.",
            registry=r,
            multiprocess_mode="livesum",
        )
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
            "tag_gate_event_loop_lag_seconds",
            "How late the last periodic event-loop tick ran (with workers: the most of the running workers).",
            registry=r,
            multiprocess_mode="livemax",
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
        self.guard_errors_total = Counter(
            "tag_gate_guard_errors",
            "The runtime guard's own errors in pages, as they report them: each let a call of the page's through"
            " unchecked. By the first error's name on the page (others: other).",
            ["error"],
            registry=r,
        )
        self.guard_errors = {k: self.guard_errors_total.labels(k) for k in GUARD_ERROR_NAMES}
        self.guard_error_reports_total = Counter(
            "tag_gate_guard_error_reports",
            "POSTs to /__tag-gate/guard-errors, by result: accepted, invalid, too_large, rate_limited.",
            ["result"],
            registry=r,
        )
        self.guard_error_reports = {k: self.guard_error_reports_total.labels(k) for k in GUARD_ERROR_REPORTS}
        self.guard_tables_total = Counter(
            "tag_gate_guard_tables",
            "Rule tables pages asked for after a consent change on the page, by why: stated (a category"
            " granted at load withdrawn), cookies (a consent manager's cookie changed).",
            ["asked"],
            registry=r,
        )
        self.guard_tables = {k: self.guard_tables_total.labels(k) for k in GUARD_TABLE_ASKS}
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
            "tag_gate_catalogue_gap_hosts",
            "Hosts in the catalogue-gap listing (admin /csp-gaps; with workers, the largest listing of one worker).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.response_headers = Counter(
            "tag_gate_response_headers",
            "Upstream response headers removed or trimmed because they reach a refused host "
            "(location: a redirect answered 403 instead), by header.",
            ["header"],
            registry=r,
        )
        for name in RESPONSE_HEADER_LABELS:
            self.response_headers.labels(name)
        self.consent_records = Counter(
            "tag_gate_consent_records",
            "Proof-of-consent POSTs from the banner, by outcome: written (handed to the sink), not_kept "
            '(proof_sink = "off"), invalid, too_large, rate_limited, cross_site.',
            ["outcome"],
            registry=r,
        )
        for outcome in CONSENT_RECORD_OUTCOMES:
            self.consent_records.labels(outcome)
        if worker:
            # Counted per worker (from the logs' own counts, on `sample()`) and added up
            # by the supervisor with its own drops.
            self.log_dropped = Counter(LOG_DROPPED[0], LOG_DROPPED[1], ["stream"], registry=r)
            self._drop_counters = {stream: self.log_dropped.labels(stream) for stream in LOG_STREAMS}
        else:  # the supervisor's own when there are workers
            self.reloads = make_reloads(r)
            self.log_drops = _LogDrops(self._drop_sources)
            r.register(self.log_drops)
            self.ready = make_ready(r)
            make_info(r)

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
        self._drop_sources[stream] = read

    def observe(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """Let `gauge` show `read()`: at scrape time in one process, from `sample()` in a
        worker (where `set_function` would never reach the supervisor's scrape)."""
        if self.worker:
            self._observed.append((gauge, read))
        else:
            gauge.set_function(read)

    def sample(self) -> None:
        """A worker's periodic update of what `observe()` and `count_log_drops()` read
        (nothing to do in one process, where a scrape reads them itself)."""
        if not self.worker:
            return
        for gauge, read in self._observed:
            gauge.set(read())
        for stream, read in self._drop_sources.items():
            now = read()
            if now > self._drops_sampled[stream]:
                self._drop_counters[stream].inc(now - self._drops_sampled[stream])
                self._drops_sampled[stream] = now

    def set_ready(self, ready: bool) -> None:
        """`tag_gate_ready`; a worker reports readiness to its supervisor instead."""
        if not self.worker:
            self.ready.set(1 if ready else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


LOG_DROPPED: Final = (
    "tag_gate_log_dropped",
    "Log lines dropped because their stream did not keep up (stdout or stderr blocked), by stream.",
)


def make_reloads(registry: CollectorRegistry) -> Counter:
    return Counter(
        "tag_gate_config_reloads",
        "SIGHUP config reloads, applied or refused (the running config kept).",
        ["result"],
        registry=registry,
    )


def make_ready(registry: CollectorRegistry) -> Gauge:
    return Gauge("tag_gate_ready", "1 when ready to serve, 0 while starting or draining.", registry=registry)


def make_info(registry: CollectorRegistry) -> None:
    """`version`, and `prescan`: the engine of the gate's pre-scan of whole pages
    ("hyperscan X.Y.Z", or "python" where the package is missing: slower on large pages)."""
    info = Gauge("tag_gate_info", "Build information.", ["version", "prescan"], registry=registry)
    info.labels(__version__, PRESCAN_ENGINE or "python").set(1)


class _LogDrops(Collector):
    """`tag_gate_log_dropped_total{stream}`, read at scrape time from the logs' own
    counts: lines are dropped on the logging thread (or the writer thread) without
    touching the registry."""

    def __init__(self, sources: dict[str, Callable[[], float]]) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(*LOG_DROPPED, labels=["stream"])
        for stream, read in self.sources.items():
            family.add_metric([stream], read())
        yield family


class SupervisorMetrics:
    """The supervisor's `/metrics`: every worker's values from the multiprocess files in
    `directory`, and the supervisor's own (readiness, reloads, worker restarts and
    states, build information, the lines its own logs dropped, which are added to the
    workers' `tag_gate_log_dropped_total`). The supervisor never writes those files:
    its own metrics live in this process's memory."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.registry = CollectorRegistry()
        r = self.registry
        self._drop_sources: dict[str, Callable[[], float]] = {stream: _zero for stream in LOG_STREAMS}
        r.register(_WorkersCollector(directory, self._drop_sources))
        self.ready = make_ready(r)
        self.reloads = make_reloads(r)
        self.restarts = Counter(
            "tag_gate_worker_restarts",
            "Worker processes started again after one exited without being asked to.",
            registry=r,
        )
        self.workers = Gauge(
            "tag_gate_workers",
            "Worker processes: configured (server.workers), running (started and not exited), "
            "ready (serving and reported ready).",
            ["state"],
            registry=r,
        )
        make_info(r)

    def count_log_drops(self, stream: str, read: Callable[[], float]) -> None:
        """Add `read()` (lines the supervisor's own log writer dropped) to `stream`'s count."""
        assert stream in LOG_STREAMS
        self._drop_sources[stream] = read

    def render(self) -> bytes:
        """The exposition text; reads the workers' files (call it off the event loop)."""
        return generate_latest(self.registry)


class _WorkersCollector(Collector):
    """What `MultiProcessCollector` reads from the workers' files, with the supervisor's
    own dropped log lines added to `tag_gate_log_dropped_total` (one family, one
    series per stream, whoever dropped the line)."""

    def __init__(self, directory: str, drops: dict[str, Callable[[], float]]) -> None:
        self._files = MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]
        self._drops = drops

    def collect(self) -> Iterable[Metric]:
        own = {stream: read() for stream, read in self._drops.items()}
        for metric in self._files.collect():  # type: ignore[no-untyped-call]
            if metric.name == LOG_DROPPED[0]:
                samples = []
                for sample in metric.samples:
                    extra = own.pop(sample.labels.get("stream", ""), 0.0)
                    samples.append(Sample(sample.name, sample.labels, sample.value + extra))
                samples.extend(Sample(LOG_DROPPED[0] + "_total", {"stream": s}, v) for s, v in own.items())
                metric.samples = samples
                own = {}
            yield metric
        if own:
            family = CounterMetricFamily(*LOG_DROPPED, labels=["stream"])
            for stream, value in own.items():
                family.add_metric([stream], value)
            yield family


def _zero() -> float:
    return 0.0
