"""The consent stages of the request path, compiled once per config.

- request stage (`Stages.visitor`, `Stages.forward_request_headers`): consent from the
  Cookie header and Sec-GPC, the Cookie header the upstream may see (refused cookies
  stripped), and the request headers that depend on it;
- headers stage (`Stages.plan_response`): the named steps of `HEADER_STEPS`, in order,
  each a function of the stage's `HeaderStep` context, fixing every header before the
  first body byte and deciding whether the body goes through the HTML gate;
- body stage: `proxy.html.body.BodyPipeline`, built by `Stages.body_pipeline`.

Contract: nothing here writes to a socket; `proxy.http.relay` owns the IO.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from aiohttp import hdrs
from multidict import CIMultiDict

from ..core.categories import ADVERTISING, ESSENTIAL
from ..core.config import Config
from ..core.consent import ConsentState, read_consent
from ..core.cookies import SetCookie, expire_cookies, filter_accept_ch, filter_set_cookies, strip_cookie_header
from ..core.csp import decide_guard_delivery
from ..core.defer import make_cmp_names
from ..core.memo import Memo
from ..core.mime import DOCUMENT_DESTINATIONS, NO_CONTENT_TYPE, ContentType, nosniff, resolve_content_type
from ..core.policy import Kind, Origin, Policy, filter_link_header
from ..html.body import BodyPipeline
from ..html.codings import CODINGS, client_accepts, filter_accept_encoding, parse_content_encoding, splice_coding
from ..html.gate import NO_ADDITIONS, GatePlan, HtmlGate
from ..html.start import DocumentStart
from ..html.xmlgate import XmlGate
from ..metrics import Metrics
from .additions import PageAdditions, not_modified_vary
from .header_filters import (
    NO_FETCH_METADATA,
    FetchMetadata,
    alt_svc,
    from_page_code,
    refresh_header,
    refused_redirect,
    reporting_headers,
    speculation_rules,
)
from .layers import RuntimeLayers
from .plan import Body as Body
from .plan import ResponsePlan as ResponsePlan
from .plan import Visitor as Visitor
from .response import (
    BODYLESS_STATUSES,
    REPRESENTATION_HEADERS,
    add_vary,
    consent_etag,
    csp_nonce,
    fail_safe_csp,
    make_private,
    upstream_if_none_match,
)

X_CONTENT_TYPE_OPTIONS: Final = "X-Content-Type-Options"

_CACHE_LIMIT: Final = 4096
_CACHE_BYTES: Final = 8 << 20


@dataclass(slots=True)
class HeaderStep:
    """What every header step reads and may change: one response's head."""

    stages: Stages
    method: str
    status: int
    path: str
    headers: CIMultiDict[str]
    visitor: Visitor
    client_accept_encoding: str | None
    host: str | None
    secure: bool
    conditional_ours: bool
    plan: ResponsePlan
    dependent: bool = False
    """The response now depends on the visitor's consent (set by any step that changed
    something because of it; `consent_marks` then says so to caches)."""
    request_headers: Mapping[str, str] = field(default_factory=dict)
    """The client's request headers (Accept-Language, Sec-Fetch-Dest, ...)."""
    fetch: FetchMetadata = NO_FETCH_METADATA
    """The request's fetch metadata (what kind of request this response answers)."""
    content: ContentType = NO_CONTENT_TYPE
    """`Content-Type` as the browser reads it (set by `content_type`, an early step)."""
    document: str | None = None
    """What the browser renders the body as, when the gate must read it: "html", "xml"
    (XHTML, SVG, ... loaded as a document) or "sniff" (an unknown type it will sniff);
    None otherwise (set by `content_type`)."""
    _refusable: bool | None = field(default=None, init=False, repr=False)

    def keep_url(self, url: str) -> bool:
        """Whether the visitor's consent lets the browser contact `url` (relative URLs
        are this host's) when a header of this response names it."""
        return self.stages.policy.decide_url(self.visitor.consent, Kind.HEADER, url, self.host).keeps

    def refusable(self) -> bool:
        """Whether the visitor refuses anything the policy acts on (asked by several
        steps of every response: worked out once per head)."""
        known = self._refusable
        if known is None:
            known = self._refusable = self.stages.policy.refusable(self.visitor.consent)
        return known

    def count_header(self, name: str) -> None:
        """Count a header removed or trimmed (or that would be, in report-only mode)."""
        self.stages.metrics.response_headers.labels(name).inc()

    def refuse(self, reason: str) -> None:
        """Answer 403 instead of this response (nothing in report-only mode)."""
        if not self.stages.report_only:
            self.plan.refused = reason

    def top_level_only(self, url: str) -> None:
        """Answer a page linking to `url` instead (nothing in report-only mode)."""
        if not self.stages.report_only:
            self.plan.top_level_only = url

    def replace_all(self, name: str, values: list[str]) -> None:
        """Put `values` in place of every `name` line (nothing in report-only mode)."""
        if self.stages.report_only:
            return
        self.dependent = True
        self.headers.popall(name, None)
        for value in values:
            self.headers.add(name, value)

    @property
    def html_type(self) -> bool:
        return self.document == "html"

    @property
    def html_body(self) -> bool:
        """A body the browser may render as a document the gate must read."""
        return self.document is not None and self.status not in BODYLESS_STATUSES and self.status >= 200

    @property
    def head_of_html(self) -> bool:
        """A HEAD for what its GET would serve as an HTML page: it gets the same head
        (ETag, additions, body mode), though no body is read (`content_type` leaves
        `document` unset for a HEAD)."""
        return self.method == "HEAD" and self.content.html and self.status >= 200


# --------------------------------------------------------------------------- header steps


def set_cookie_filter(h: HeaderStep) -> None:
    """Drop the Set-Cookie lines of refused categories (counted); kept lines stay as
    they were, in order. Report-only counts and changes nothing."""
    lines = h.headers.getall(hdrs.SET_COOKIE, ())
    if not lines:
        return
    policy, metrics, consent = h.stages.policy, h.stages.metrics, h.visitor.consent

    def keep(cookie: SetCookie) -> bool:
        decision = policy.decide_cookie(consent, cookie.key)
        if decision.origin is Origin.UNKNOWN_COOKIE:
            metrics.unknown_cookies.inc()
        if not decision.keeps:
            metrics.cookies.labels("drop", decision.category or "unknown").inc()
        return decision.keeps

    result = filter_set_cookies(lines, keep)
    if result.dropped:
        h.plan.dropped_cookies = result.dropped
        if not h.stages.report_only:
            h.dependent = True
            h.headers.popall(hdrs.SET_COOKIE)
            for line in result.kept:
                h.headers.add(hdrs.SET_COOKIE, line)


def withdrawal(h: HeaderStep) -> None:
    """Expire the refused cookies the browser still sent, on the host and its parent
    domains (capped), on HTML navigations (or every response, by config)."""
    cookies_cfg = h.stages.config.cookies
    navigation = h.html_body and h.method == "GET"
    if not (
        h.visitor.refused
        and cookies_cfg.expire_on_withdrawal
        and not h.stages.report_only
        and h.host
        and (navigation or cookies_cfg.withdrawal_on == "all")
    ):
        return
    for line in expire_cookies(h.visitor.refused, h.host, h.secure, cookies_cfg.withdrawal_cap):
        h.headers.add(hdrs.SET_COOKIE, line)
        h.plan.expired += 1
    if h.plan.expired:
        h.dependent = True
        h.stages.metrics.withdrawal_expiries.inc(h.plan.expired)


def client_hints(h: HeaderStep) -> None:
    """Without advertising consent, high-entropy client hints are not asked for."""
    headers = h.headers
    if hdrs.ACCEPT_CH not in headers and "Critical-CH" not in headers:
        return
    stages = h.stages
    if not stages.config.cookies.client_hints or h.visitor.consent.allows(ADVERTISING) or stages.report_only:
        return
    for name in (hdrs.ACCEPT_CH, "Critical-CH"):
        for value in h.headers.getall(name, ()):
            filtered = filter_accept_ch(value)
            if filtered != value:
                h.headers.popall(name)
                if filtered:
                    h.headers[name] = filtered
                h.dependent = True
                break


def link_header(h: HeaderStep) -> None:
    """Remove the Link header's link-values (preconnect, preload with its `imagesrcset`,
    ...) that reach a refused host, reading every Link line as the one list the browser
    reads (RFC 8288, `proxy.core.link_header`); malformed link-values go too."""
    if hdrs.LINK not in h.headers or not h.refusable():
        return
    policy, consent = h.stages.policy, h.visitor.consent
    kept, removed = filter_link_header(
        h.headers.getall(hdrs.LINK), lambda url: policy.decide_url(consent, Kind.HEADER, url, h.host).keeps
    )
    if removed and not h.stages.report_only:
        h.dependent = True
        h.headers.popall(hdrs.LINK)
        if kept:
            h.headers[hdrs.LINK] = kept


def content_type(h: HeaderStep) -> None:
    """Read `Content-Type` as the browser does (every line, comma lists, the last valid
    type, quoted parameters; `proxy.core.mime`) and decide what document the body is:
    HTML, an XML document (by type, when the request is for a document: `Sec-Fetch-Dest`
    document, iframe, object, ..., or not sent at all), or a body of unknown type the
    browser will sniff (unless `X-Content-Type-Options: nosniff`). Several values are
    replaced by the one the browser settles on, so nothing downstream can read another."""
    lines = h.headers.getall(hdrs.CONTENT_TYPE, ())
    content = h.content = resolve_content_type(lines) if lines else NO_CONTENT_TYPE
    if content.values > 1 and not h.stages.report_only:
        value = content.serialise()
        h.headers.popall(hdrs.CONTENT_TYPE)
        if value is not None:
            h.headers[hdrs.CONTENT_TYPE] = value
    if h.status in BODYLESS_STATUSES or h.status < 200 or h.method == "HEAD":
        return
    dest = h.fetch.dest
    if content.html:
        h.document = "html"
    elif content.xml and (dest in DOCUMENT_DESTINATIONS or not h.fetch.sent):
        h.document = "xml"
    elif (
        content.unknown
        and (dest in DOCUMENT_DESTINATIONS or not h.fetch.sent)
        and not nosniff(h.headers.getall(X_CONTENT_TYPE_OPTIONS, ()))
    ):
        h.document = "sniff"


def page_additions(h: HeaderStep) -> None:
    """tag-gate's consent banner and the site's `[[tag]]` entries for a gated HTML page
    (never in report-only mode): appended to `plan.additions` after what earlier steps
    put there, so the page goes through the gate even for a visitor who refuses nothing
    (`Stages.body_mode`). The banner's language may follow Accept-Language: said in Vary."""
    stages = h.stages
    html = (h.html_body and h.html_type) or h.head_of_html
    adds = stages.additions
    if not html or not adds or stages.report_only or not stages.policy.gates_page(h.path):
        return
    found = adds.for_page(
        path=h.path,
        consent=h.visitor.consent,
        banner_open=h.visitor.banner_open,
        nonce=csp_nonce(h.headers),
        request_headers=h.request_headers,
    )
    if found is None:
        return
    extra, by_language = found
    old = h.plan.additions
    h.plan.additions = replace(
        old,
        head_end=old.head_end + extra.head_end,
        body_end=old.body_end + extra.body_end,
        localised=extra.localised or old.localised,
        activation=old.activation or extra.activation,
    )
    h.dependent = True
    if by_language:
        add_vary(h.headers, (hdrs.ACCEPT_LANGUAGE,))


def gated_page_marks(h: HeaderStep) -> None:
    """A page the gate covers (or a 304 for one): a consent-specific ETag, and the body
    mode (gate, report, fail-safe, or pass when nothing can be refused) with the
    framing and coding headers that mode implies."""
    stages = h.stages
    page = h.document is not None or h.head_of_html
    gated = (page and stages.policy.gates_page(h.path)) or (h.conditional_ours and h.status == 304)
    if not gated:
        return
    h.dependent = True
    if h.status == 304 and not stages.report_only:
        add_vary(h.headers, not_modified_vary(stages.additions, h.request_headers, h.fetch))
    etag = h.headers.get(hdrs.ETAG)
    if etag is not None:
        h.headers[hdrs.ETAG] = consent_etag(etag, h.visitor.etag_key)
    if h.html_body or h.head_of_html:
        plan = h.plan
        plan.document = h.document or "html"
        plan.essence = h.content.essence
        plan.charset_label = h.content.charset
        plan.body = stages.body_mode(plan, h.headers, h.client_accept_encoding, h.visitor.consent)


def runtime_guard(h: HeaderStep) -> None:
    """A gated page whose visitor refuses something gets the runtime guard as the first
    thing in `<head>` (`additions.head_start`, before anything other steps add there):
    inline with the nonce the site's CSP needs; from `/__tag-gate/guard.js` when that
    policy blocks inline scripts but allows `'self'`; else not at all. Not on pages the
    gate passes (nothing refusable, report-only, fail-safe) or with `[html.guard]` off."""
    layers = h.stages.layers
    if layers.guard is None or h.plan.body is not Body.GATE:
        return
    values = h.headers.getall(hdrs.CONTENT_SECURITY_POLICY, ())
    delivery = decide_guard_delivery(values, "https" if h.secure else "http", external=layers.external_first)
    h.plan.additions = layers.add_guard(h.plan.additions, h.visitor.consent, h.host, delivery, h.path)
    if delivery.how != "none" and h.plan.encode == "br":  # brotli has no seam for the guard's compressed form
        h.plan.encode = h.headers[hdrs.CONTENT_ENCODING] = splice_coding(h.client_accept_encoding)


_WORKER_DESTS: Final = frozenset({"worker", "sharedworker"})


def csp_layer(h: HeaderStep) -> None:
    """On the pages that get the guard (and on worker scripts for such visitors, whose
    own requests no page code can see), tag-gate's CSP (`[html.csp]`, sampled): report-
    only by default, or enforcing as a second policy, which browsers intersect with the
    site's own, so the site's policy is never weakened. Reports go to /__tag-gate/csp."""
    layers = h.stages.layers
    csp = layers.csp
    if csp is None:
        return
    if h.plan.body is Body.GATE:
        worker = False
    elif h.fetch.dest in _WORKER_DESTS and h.status in (200, 304) and not h.stages.report_only and h.refusable():
        worker = True
        add_vary(h.headers, ("Sec-Fetch-Dest",))
        if h.status == 304:  # the Vary its 200 says, sampled or not (RFC 9110 15.4.5)
            h.dependent = True
            return
    else:
        return
    if not layers.sampled():
        return
    consent = h.visitor.consent
    h.headers.add(csp.header, csp.value(consent, worker, h.secure))
    if h.secure:
        h.headers.add("Reporting-Endpoints", csp.endpoints(consent))
    h.dependent = True
    h.stages.metrics.csp_headers.labels(csp.layer.mode, "worker" if worker else "page").inc()


def fetched_by_the_page(h: HeaderStep) -> None:
    """A gated page's additions, for the page's own code (`from_page_code`: htmx, Turbo),
    go in only if the body is a whole document (`Additions.documents_only`); a fragment
    answered so says `FRAGMENT_VARY` in `Vary` (the relay, from `DocumentStart`; a whole
    document is the same either way: a prefetch serves the navigation)."""
    additions = h.plan.additions
    if h.plan.body is Body.GATE and additions is not NO_ADDITIONS and from_page_code(h.fetch, h.request_headers):
        h.plan.additions = replace(additions, documents_only=True)


def consent_marks(h: HeaderStep) -> None:
    """A response that depends on consent says so: `private` (shared caches must not
    store it) and `Vary: Cookie, Sec-GPC`."""
    if h.dependent:
        make_private(h.headers)
        add_vary(h.headers)


HEADER_STEPS: Final[tuple[Callable[[HeaderStep], None], ...]] = (
    refused_redirect,
    content_type,
    set_cookie_filter,
    withdrawal,
    client_hints,
    link_header,
    refresh_header,
    reporting_headers,
    speculation_rules,
    alt_svc,
    page_additions,
    gated_page_marks,
    runtime_guard,
    csp_layer,
    fetched_by_the_page,
    consent_marks,
)
"""The headers stage, in order: the last marks what any earlier step made consent-dependent."""


# --------------------------------------------------------------------------- the stages


@dataclass
class Stages:
    """The consent stages for one config."""

    config: Config
    metrics: Metrics
    policy: Policy = field(init=False)
    gate_plan: GatePlan = field(init=False)

    def __post_init__(self) -> None:
        cfg = self.config
        self.policy = cfg.policy
        html = cfg.html
        self.gate_plan = GatePlan(
            policy=self.policy,
            defer_style=html.defer_style,
            cmp_names=make_cmp_names(cfg.consent),
            consent_mode=html.consent_mode,
            max_inline_script=html.max_inline_script,
            gpc_refuses=cfg.consent.gpc_refuses,
            inline_styles=html.inline_styles,
        )
        self.report_only = cfg.server.mode == "report-only"
        self.additions = PageAdditions(cfg)
        self._visitors: Memo[tuple[tuple[str, ...], str | None], Visitor] = Memo(_CACHE_LIMIT, _CACHE_BYTES)
        self._element_counters: dict[tuple[str, str], Any] = {}
        essential_hosts = [h for v in self.policy.catalog.vendors if v.category == ESSENTIAL for h in v.hosts]
        self.fail_safe_policy = fail_safe_csp([*html.first_party_hosts, *essential_hosts])
        self.layers = RuntimeLayers(cfg, self.metrics)
        # The commonest visitor (no cookie) is read once now: its memo entry is warm and
        # its consent-read series exists from the start, so /metrics does not grow later.
        nobody = self.visitor((), None)
        # Their guard too (minified, 35 ms once per process): not while a first page waits.
        if self.layers.guard is not None:
            self.layers.guard.script(nobody.consent, None)

    # ------------------------------------------------------------ request stage

    def visitor(self, cookies: tuple[str, ...], sec_gpc: str | None) -> Visitor:
        """Consent and the Cookie header to forward. Memoised per (Cookie, Sec-GPC):
        the same visitor sends the same header on every asset of a page."""
        key = (cookies, sec_gpc)
        cached = self._visitors.table.get(key)
        banner = self.additions.banner is not None
        now = time.time() if banner else 0.0
        if cached is not None and (not banner or now < cached.valid_until):
            return cached
        consent = read_consent("; ".join(cookies) if cookies else None, sec_gpc, self.config.consent)
        banner_open, until = False, math.inf
        if banner:
            consent, banner_open, until = self.additions.read_choice(cookies, sec_gpc, consent, now)
        self.metrics.consent_reads.labels(consent.source, consent.reason).inc()
        if cookies:
            policy = self.policy
            result = strip_cookie_header(list(cookies), lambda name: policy.decide_cookie(consent, name).keeps)
            refused = tuple(n for n in result.stripped if n)
            if self.config.cookies.strip_request and not self.report_only:
                changed = result.stripped != () or len(cookies) > 1
                visitor = Visitor(consent, result.value, refused, changed, banner_open, until)
            else:
                visitor = Visitor(consent, "; ".join(cookies), refused, len(cookies) > 1, banner_open, until)
        else:
            visitor = Visitor(consent, None, (), False, banner_open, until)
        # The forwarded Cookie header is about as long as the one received: twice the key.
        size = 2 * sum(map(len, cookies)) + (len(sec_gpc) if sec_gpc else 0)
        return self._visitors.put(key, visitor, size)

    def forward_request_headers(self, headers: CIMultiDict[str], visitor: Visitor) -> bool:
        """Apply the visitor to the upstream request headers. Returns whether a tag-gate
        ETag was in If-None-Match (the response is then a consent-dependent page)."""
        if visitor.changed:
            headers.popall(hdrs.COOKIE, None)
            if visitor.cookie is not None:
                headers[hdrs.COOKIE] = visitor.cookie
        ours = False
        inm = headers.get(hdrs.IF_NONE_MATCH)
        if inm is not None:
            value, ours = upstream_if_none_match(inm, visitor.etag_key)
            if value is None:
                del headers[hdrs.IF_NONE_MATCH]
            else:
                headers[hdrs.IF_NONE_MATCH] = value
        ae = headers.get(hdrs.ACCEPT_ENCODING)
        if ae is not None:
            filtered = filter_accept_encoding(ae)
            if filtered is None:
                del headers[hdrs.ACCEPT_ENCODING]
            else:
                headers[hdrs.ACCEPT_ENCODING] = filtered
        return ours

    # ------------------------------------------------------------ headers stage

    def plan_response(
        self,
        *,
        method: str,
        status: int,
        path: str,
        headers: CIMultiDict[str],
        visitor: Visitor,
        client_accept_encoding: str | None,
        host: str | None,
        secure: bool,
        conditional_ours: bool,
        request_headers: Mapping[str, str] | None = None,
        fetch: FetchMetadata = NO_FETCH_METADATA,
    ) -> ResponsePlan:
        """Run `HEADER_STEPS` over one response head; return the plan for its body."""
        step = HeaderStep(
            stages=self,
            method=method,
            status=status,
            path=path,
            headers=headers,
            visitor=visitor,
            client_accept_encoding=client_accept_encoding,
            host=host,
            secure=secure,
            conditional_ours=conditional_ours,
            plan=ResponsePlan(headers=headers, body=Body.PASS),
            request_headers=request_headers if request_headers is not None else {},
            fetch=fetch,
        )
        for run in HEADER_STEPS:
            run(step)
        return step.plan

    def body_mode(
        self,
        plan: ResponsePlan,
        headers: CIMultiDict[str],
        client_accept_encoding: str | None,
        consent: ConsentState,
    ) -> Body:
        """How a gated page's body goes out, with the headers that implies."""
        refusable = self.policy.refusable(consent)
        if not refusable and plan.additions == NO_ADDITIONS:
            # Nothing this visitor refuses can be on the page: no reason to parse it.
            return Body.PASS
        if plan.document != "html" and (self.report_only or not refusable):
            return Body.PASS  # additions are for HTML pages; an XML document needs none
        codings = parse_content_encoding(headers.get(hdrs.CONTENT_ENCODING))
        if len(codings) > 1 or (codings and codings[0] not in CODINGS):
            if not refusable:
                return Body.PASS  # only additions were wanted: the page goes out as it came
            return self._fail_safe(plan, headers, "unsupported_encoding")
        if self.report_only:
            plan.decode = codings[0] if codings else None
            return Body.REPORT
        if plan.document == "xml":
            # The strict CSP keeps an XML document's fetches on the site; its own gate
            # (`proxy.html.xmlgate`) handles what a CSP does not cover.
            self._fail_safe(plan, headers, "xml_document")
        plan.nonce = csp_nonce(headers)
        for name in REPRESENTATION_HEADERS:
            headers.popall(name, None)
        plan.keep_length = False
        if codings:
            plan.decode = codings[0]
            if client_accepts(client_accept_encoding, codings[0]):
                plan.encode = codings[0]
            else:
                headers.popall(hdrs.CONTENT_ENCODING, None)
        return Body.GATE

    def _fail_safe(self, plan: ResponsePlan, headers: CIMultiDict[str], reason: str) -> Body:
        headers.add(hdrs.CONTENT_SECURITY_POLICY, self.fail_safe_policy)
        # Link headers are hints (preconnect, dns-prefetch, preload): CSP does not cover
        # the first two, and a page that works without them loses nothing.
        headers.popall(hdrs.LINK, None)
        plan.fail_safe_reason = reason
        self.metrics.fail_safe.labels(reason).inc()
        # Fail closed on cookies too: only what is known to be essential survives.
        lines = headers.getall(hdrs.SET_COOKIE, ())
        if lines:
            policy = self.policy
            result = filter_set_cookies(lines, lambda c: policy.known_essential_cookie(c.key))
            headers.popall(hdrs.SET_COOKIE)
            for line in result.kept:
                headers.add(hdrs.SET_COOKIE, line)
        return Body.FAIL_SAFE

    def fail_safe_headers(self, headers: CIMultiDict[str], reason: str) -> None:
        """Turn a planned gated response into a fail-safe one (before its first byte)."""
        plan = ResponsePlan(headers=headers, body=Body.FAIL_SAFE)
        self._fail_safe(plan, headers, reason)

    # ------------------------------------------------------------ body stage

    def body_pipeline(self, plan: ResponsePlan, consent: ConsentState, host: str | None) -> BodyPipeline:
        html = self.config.html
        gate = HtmlGate(
            self.gate_plan,
            consent,
            page_host=host,
            nonce=plan.nonce,
            report_only=plan.body is Body.REPORT,
            additions=plan.additions,
        )
        policy = self.policy

        def xml_gate() -> XmlGate:
            return XmlGate(lambda url: policy.decide_url(consent, Kind.HEADER, url, host).keeps)

        return BodyPipeline(
            gate=DocumentStart(
                gate,
                xml_gate,
                kind=plan.document,
                essence=plan.essence,
                header_charset=plan.charset_label,
                default_encoding=html.default_charset,
            ),
            decode=plan.decode,
            encode=plan.encode,
            max_output=html.max_decoded_size,
            max_ratio=html.max_ratio,
            gzip_level=html.gzip_level,
            brotli_quality=html.brotli_quality,
            zstd_level=html.zstd_level,
            report_only=plan.body is Body.REPORT,
        )

    def count(self, counts: Iterable[tuple[tuple[str, str], int]]) -> None:
        """Add one page's gate counts ((action, category) → n) to the element metrics."""
        children = self._element_counters
        for key, n in counts:
            child = children.get(key)
            if child is None:
                action, category = key
                child = children[key] = self.metrics.elements.labels(action, category or "unknown")
            child.inc(n)
