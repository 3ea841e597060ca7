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

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import hdrs
from multidict import CIMultiDict

from ..core.categories import ADVERTISING, ESSENTIAL
from ..core.config import Config
from ..core.consent import ConsentState, read_consent
from ..core.cookies import SetCookie, expire_cookies, filter_accept_ch, filter_set_cookies, strip_cookie_header
from ..core.defer import make_cmp_names
from ..core.memo import Memo
from ..core.policy import Kind, Origin, Policy, filter_link_header
from ..html.body import BodyPipeline
from ..html.codings import CODINGS, client_accepts, filter_accept_encoding, parse_content_encoding
from ..html.gate import NO_ADDITIONS, Additions, GatePlan, HtmlGate
from ..metrics import Metrics
from .response import (
    BODYLESS_STATUSES,
    REPRESENTATION_HEADERS,
    add_vary,
    ascii_compatible,
    charset_of,
    consent_etag,
    csp_nonce,
    fail_safe_csp,
    is_html,
    make_private,
    upstream_if_none_match,
)

_CACHE_LIMIT: Final = 4096
_CACHE_BYTES: Final = 8 << 20


@dataclass(frozen=True, slots=True)
class Visitor:
    """What the request stage learned about the visitor."""

    consent: ConsentState
    cookie: str | None
    """The Cookie header to forward (None: send none)."""
    refused: tuple[str, ...]
    """Names of cookies the browser sent in refused categories (withdrawal candidates)."""
    changed: bool
    """Whether `cookie` differs from what the browser sent."""


class Body(enum.Enum):
    PASS = "pass"
    """Relay the bytes as they are."""
    GATE = "gate"
    """Through the HTML gate (decode and re-encode around it when encoded)."""
    REPORT = "report"
    """Report-only: the gate decides and counts, the bytes go out unchanged."""
    FAIL_SAFE = "fail-safe"
    """Relay unchanged under a strict Content-Security-Policy (the gate cannot read it)."""


@dataclass
class ResponsePlan:
    headers: CIMultiDict[str]
    body: Body
    decode: str | None = None
    encode: str | None = None
    nonce: str | None = None
    keep_length: bool = True
    dropped_cookies: tuple[SetCookie, ...] = ()
    expired: int = 0
    fail_safe_reason: str | None = None
    additions: Additions = NO_ADDITIONS
    """Markup the gate adds to this page (the runtime guard, the banner, managed tags)."""


@dataclass
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

    @property
    def html_type(self) -> bool:
        return is_html(self.headers.get(hdrs.CONTENT_TYPE))

    @property
    def html_body(self) -> bool:
        return self.html_type and self.status not in BODYLESS_STATUSES and self.status >= 200


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
    """Remove Link header entries (preconnect, preload, ...) to refused hosts."""
    policy, consent = h.stages.policy, h.visitor.consent
    if not (policy.refusable(consent) and hdrs.LINK in h.headers):
        return
    new_links: list[str] = []
    changed = False
    for value in h.headers.getall(hdrs.LINK):
        kept, removed = filter_link_header(
            value, lambda url: policy.decide_url(consent, Kind.HEADER, url, h.host).keeps
        )
        changed = changed or bool(removed)
        if kept:
            new_links.append(kept)
    if changed and not h.stages.report_only:
        h.dependent = True
        h.headers.popall(hdrs.LINK)
        for value in new_links:
            h.headers.add(hdrs.LINK, value)


def gated_page_marks(h: HeaderStep) -> None:
    """A page the gate covers (or a 304 for one): a consent-specific ETag, and the body
    mode (gate, report, fail-safe, or pass when nothing can be refused) with the
    framing and coding headers that mode implies."""
    stages = h.stages
    gated = (h.html_type and stages.policy.gates_page(h.path)) or (h.conditional_ours and h.status == 304)
    if not gated:
        return
    h.dependent = True
    etag = h.headers.get(hdrs.ETAG)
    if etag is not None:
        h.headers[hdrs.ETAG] = consent_etag(etag, h.visitor.consent.key)
    if h.html_body or h.method == "HEAD":
        h.plan.body = stages.body_mode(h.plan, h.headers, h.client_accept_encoding, h.visitor.consent)


def consent_marks(h: HeaderStep) -> None:
    """A response that depends on consent says so: `private` (shared caches must not
    store it) and `Vary: Cookie, Sec-GPC`."""
    if h.dependent:
        make_private(h.headers)
        add_vary(h.headers)


HEADER_STEPS: Final[tuple[Callable[[HeaderStep], None], ...]] = (
    set_cookie_filter,
    withdrawal,
    client_hints,
    link_header,
    gated_page_marks,
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
        self._visitors: Memo[tuple[tuple[str, ...], str | None], Visitor] = Memo(_CACHE_LIMIT, _CACHE_BYTES)
        self._element_counters: dict[tuple[str, str], Any] = {}
        essential_hosts = [h for v in self.policy.catalog.vendors if v.category == ESSENTIAL for h in v.hosts]
        self.fail_safe_policy = fail_safe_csp([*html.first_party_hosts, *essential_hosts])
        # The commonest visitor (no cookie) is read once now: its memo entry is warm and
        # its consent-read series exists from the start, so /metrics does not grow later.
        self.visitor((), None)

    # ------------------------------------------------------------ request stage

    def visitor(self, cookies: tuple[str, ...], sec_gpc: str | None) -> Visitor:
        """Consent and the Cookie header to forward. Memoised per (Cookie, Sec-GPC):
        the same visitor sends the same header on every asset of a page."""
        key = (cookies, sec_gpc)
        cached = self._visitors.table.get(key)
        if cached is not None:
            return cached
        consent = read_consent("; ".join(cookies) if cookies else None, sec_gpc, self.config.consent)
        self.metrics.consent_reads.labels(consent.source, consent.reason).inc()
        if cookies:
            policy = self.policy
            result = strip_cookie_header(list(cookies), lambda name: policy.decide_cookie(consent, name).keeps)
            refused = tuple(n for n in result.stripped if n)
            if self.config.cookies.strip_request and not self.report_only:
                changed = result.stripped != () or len(cookies) > 1
                visitor = Visitor(consent, result.value, refused, changed)
            else:
                visitor = Visitor(consent, "; ".join(cookies), refused, len(cookies) > 1)
        else:
            visitor = Visitor(consent, None, (), False)
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
            value, ours = upstream_if_none_match(inm, visitor.consent.key)
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
        if not self.policy.refusable(consent):
            # Nothing this visitor refuses can be on the page: no reason to parse it.
            return Body.PASS
        codings = parse_content_encoding(headers.get(hdrs.CONTENT_ENCODING))
        unreadable = None
        if len(codings) > 1 or (codings and codings[0] not in CODINGS):
            unreadable = "unsupported_encoding"
        elif not ascii_compatible(charset_of(headers.get(hdrs.CONTENT_TYPE))):
            unreadable = "unsupported_charset"
        if unreadable is not None:
            return self._fail_safe(plan, headers, unreadable)
        if self.report_only:
            plan.decode = codings[0] if codings else None
            return Body.REPORT
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
        return BodyPipeline(
            gate=HtmlGate(
                self.gate_plan,
                consent,
                page_host=host,
                nonce=plan.nonce,
                report_only=plan.body is Body.REPORT,
                additions=plan.additions,
                charset=charset_of(plan.headers.get(hdrs.CONTENT_TYPE)),
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
