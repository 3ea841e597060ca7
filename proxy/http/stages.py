"""The consent stages of the request path, compiled once per config.

- request stage (`Stages.visitor`): consent from the Cookie header and Sec-GPC, and
  the Cookie header the upstream may see (refused cookies stripped);
- headers stage (`Stages.plan_response`): Set-Cookie filtering, expiring refused
  cookies the browser still holds, client hints, Link header, and the decision
  whether the body goes through the HTML gate, with every header that decision
  implies (framing, validators, caching) fixed before the first body byte;
- body stage (`BodyPipeline`): decode → gate → re-encode, streaming.

Contract: nothing here writes to a socket; `proxy.http.handler` owns the IO.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
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
from ..html.codings import (
    CODINGS,
    DecodeError,
    Encoder,
    client_accepts,
    filter_accept_encoding,
    make_decoder,
    parse_content_encoding,
)
from ..html.gate import GateError, GatePlan, GateStats, HtmlGate
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

WHOLE_DOCUMENT_MAX: Final = 1 << 18
"""Largest document the gate takes in one step when the whole body has arrived (about a
millisecond of gating); larger ones go through in slices."""


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
        self._no_consent = self.visitor((), None)

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
        consent = visitor.consent
        policy = self.policy
        report_only = self.report_only
        dependent = False
        plan = ResponsePlan(headers=headers, body=Body.PASS)

        lines = headers.getall(hdrs.SET_COOKIE, ())
        if lines:
            metrics = self.metrics

            def keep(cookie: SetCookie) -> bool:
                decision = policy.decide_cookie(consent, cookie.key)
                if decision.origin is Origin.UNKNOWN_COOKIE:
                    metrics.unknown_cookies.inc()
                if not decision.keeps:
                    metrics.cookies.labels("drop", decision.category or "unknown").inc()
                return decision.keeps

            result = filter_set_cookies(lines, keep)
            if result.dropped:
                plan.dropped_cookies = result.dropped
                if not report_only:
                    dependent = True
                    headers.popall(hdrs.SET_COOKIE)
                    for line in result.kept:
                        headers.add(hdrs.SET_COOKIE, line)

        html_type = is_html(headers.get(hdrs.CONTENT_TYPE))
        html_body = html_type and status not in BODYLESS_STATUSES and status >= 200
        navigation = html_body and method == "GET"
        cookies_cfg = self.config.cookies
        if (
            visitor.refused
            and cookies_cfg.expire_on_withdrawal
            and not report_only
            and host
            and (navigation or cookies_cfg.withdrawal_on == "all")
        ):
            for line in expire_cookies(visitor.refused, host, secure, cookies_cfg.withdrawal_cap):
                headers.add(hdrs.SET_COOKIE, line)
                plan.expired += 1
            if plan.expired:
                dependent = True
                self.metrics.withdrawal_expiries.inc(plan.expired)

        if cookies_cfg.client_hints and not consent.allows(ADVERTISING) and not report_only:
            for name in (hdrs.ACCEPT_CH, "Critical-CH"):
                for value in headers.getall(name, ()):
                    filtered = filter_accept_ch(value)
                    if filtered != value:
                        headers.popall(name)
                        if filtered:
                            headers[name] = filtered
                        dependent = True
                        break

        refusable = policy.refusable(consent)
        if refusable and hdrs.LINK in headers:
            links = headers.getall(hdrs.LINK)
            new_links: list[str] = []
            changed = False
            for value in links:
                kept, removed = filter_link_header(
                    value, lambda url: policy.decide_url(consent, Kind.HEADER, url, host).keeps
                )
                changed = changed or bool(removed)
                if kept:
                    new_links.append(kept)
            if changed and not report_only:
                dependent = True
                headers.popall(hdrs.LINK)
                for value in new_links:
                    headers.add(hdrs.LINK, value)

        gated_page = (html_type and policy.gates_page(path)) or (conditional_ours and status == 304)
        if gated_page:
            dependent = True
            etag = headers.get(hdrs.ETAG)
            if etag is not None:
                headers[hdrs.ETAG] = consent_etag(etag, consent.key)
            if html_body or method == "HEAD":
                plan.body = self._body_mode(plan, headers, client_accept_encoding, refusable)
        if dependent:
            make_private(headers)
            add_vary(headers)
        return plan

    def _body_mode(
        self,
        plan: ResponsePlan,
        headers: CIMultiDict[str],
        client_accept_encoding: str | None,
        refusable: bool,
    ) -> Body:
        codings = parse_content_encoding(headers.get(hdrs.CONTENT_ENCODING))
        content_type = headers.get(hdrs.CONTENT_TYPE)
        if not refusable:
            # Nothing this visitor refuses can be on the page: no reason to parse it.
            return Body.PASS
        unreadable = None
        if len(codings) > 1 or (codings and codings[0] not in CODINGS):
            unreadable = "unsupported_encoding"
        elif not ascii_compatible(charset_of(content_type)):
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
                self.gate_plan, consent, page_host=host, nonce=plan.nonce, report_only=plan.body is Body.REPORT
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

    def count(self, stats: GateStats) -> None:
        children = self._element_counters
        for key, n in stats.counts.items():
            child = children.get(key)
            if child is None:
                action, category = key
                child = children[key] = self.metrics.elements.labels(action, category or "unknown")
            child.inc(n)


class BodyPipeline:
    """decode → gate → encode for one response body. `feed`/`end` return bytes ready to
    send (possibly empty). Raises `DecodeError` or `rewrite.GateError`; after either the
    pipeline is dead and the caller fails closed.

    In report-only mode the bytes go out exactly as they came and the gate only watches:
    if it cannot follow (a decode or parse failure) it stops watching, `failure` says
    why, and the page is unaffected.
    """

    def __init__(
        self,
        *,
        gate: HtmlGate,
        decode: str | None,
        encode: str | None,
        max_output: int,
        max_ratio: float,
        gzip_level: int,
        brotli_quality: int,
        zstd_level: int,
        report_only: bool,
    ) -> None:
        self.gate = gate
        self.report_only = report_only
        self.failure: str | None = None
        self._fed = False
        self._decoder = make_decoder(decode, max_output=max_output, max_ratio=max_ratio) if decode else None
        self._encoder = (
            Encoder(encode, gzip_level=gzip_level, brotli_quality=brotli_quality, zstd_level=zstd_level)
            if encode and not report_only
            else None
        )

    def _decoded(self, data: bytes) -> Iterator[bytes]:
        if self._decoder is None:
            yield data
        else:
            yield from self._decoder.feed(data)

    def _decoded_to_end(self, data: bytes) -> Iterator[bytes]:
        assert self._decoder is not None
        yield from self._decoder.feed(data)
        yield from self._decoder.end()  # only once `data` is all decoded

    def feed(self, data: bytes) -> bytes:
        gate = self.gate
        self._fed = True
        if self.report_only:
            if self.failure is None:
                try:
                    for piece in self._decoded(data):
                        gate.feed(piece)
                except (DecodeError, GateError) as exc:
                    self.failure = exc.reason
            return data
        out = [gate.feed(piece) for piece in self._decoded(data)]
        text = out[0] if len(out) == 1 else b"".join(out)
        return self._encoder.feed(text) if self._encoder is not None and text else text

    def finish(self, data: bytes) -> bytes:
        """`feed(data) + end()` for the last of the input, in one step (the caller bounds
        `data` as it bounds a `feed`). When `data` is the whole body (nothing fed before)
        and its decoded form is at most `WHOLE_DOCUMENT_MAX`, the gate gets the complete
        document at once (`HtmlGate.feed_whole`)."""
        if self._fed or self.report_only or (self._decoder is None and len(data) > WHOLE_DOCUMENT_MAX):
            return self.feed(data) + self.end()
        self._fed = True
        gate = self.gate
        if self._decoder is None:
            text = gate.feed_whole(data)
        else:
            pieces: list[bytes] = []
            size = 0
            out: list[bytes] | None = None  # set once the document is too large for one pass
            for piece in self._decoded_to_end(data):
                if out is None and size + len(piece) > WHOLE_DOCUMENT_MAX:
                    out = [gate.feed(p) for p in pieces]
                    pieces.clear()
                if out is None:
                    pieces.append(piece)
                    size += len(piece)
                else:
                    out.append(gate.feed(piece))
            if out is None:
                text = gate.feed_whole(b"".join(pieces))
            else:
                out.append(gate.end())
                text = b"".join(out)
        return self._encode_last(text)

    def end(self) -> bytes:
        gate = self.gate
        if self.report_only:
            if self.failure is None:
                try:
                    if self._decoder is not None:
                        for piece in self._decoder.end():
                            gate.feed(piece)
                    gate.end()
                except (DecodeError, GateError) as exc:
                    self.failure = exc.reason
            return b""
        tail: list[bytes] = []
        if self._decoder is not None:
            for piece in self._decoder.end():
                tail.append(gate.feed(piece))
        tail.append(gate.end())
        return self._encode_last(b"".join(tail))

    def _encode_last(self, text: bytes) -> bytes:
        """The last gated bytes, re-encoded and the encoding closed when there is one."""
        if self._encoder is None:
            return text
        return self._encoder.feed(text) + self._encoder.end()
