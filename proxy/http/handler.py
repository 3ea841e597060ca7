"""The request handler: from a request head to the response, one `Exchange` at a time.

Request path (DESIGN.md): check the request (method, target, framing, Host), build
the upstream request (header hygiene, forwarding headers, the visitor's consent and
the Cookie header the site may see, a streamed body with a size cap and an idle
timeout), send it through the pool, then the headers stage (`stages`) and the body
stage (`relay`).

Failure contract:
- nothing reached the upstream yet → a short plain-text 4xx/5xx and one log line;
- the upstream failed before its headers → 502 (504 for a timeout, 503 with
  Retry-After when no pooled connection became free in time);
- anything failed after the response started → the client connection is aborted
  (no terminating chunk), so neither the browser nor a cache can take a truncated
  body for a complete one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp
from aiohttp import hdrs, web
from yarl import URL

from ..core.consent import stated_consent
from ..core.memo import Memo
from ..core.mime import resolve_content_type
from ..html.handlers import BLOCKED_MODULE
from .connection import BodyError, UpstreamError
from .csp import handle_csp_report
from .exchange import Exchange
from .forwarding import BadForwardRequest, forward_headers, response_headers
from .guard_errors import handle_guard_errors
from .header_filters import TOP_LEVEL_CSP, FetchMetadata, top_level_page
from .pool import UpstreamResponse
from .proof import CONSENT_PATH, handle_consent_post
from .relay import DECISIONS_HEADER, GatedRelay, Relay, decisions_value, error_response
from .response import BODYLESS_STATUSES
from .server import DeadlineRequestHandler
from .stages import Body, ResponsePlan
from .state import ProxyState
from .websocket import relay_websocket

log = logging.getLogger("tag_gate")

RESERVED_PREFIX: Final = "/__tag-gate/"
"""Paths tag-gate answers itself (first-party assets); never forwarded."""
_BLOCKED_BELOW: Final = BLOCKED_MODULE.removeprefix(RESERVED_PREFIX) + "/"
_BLOCKED_JS: Final = BLOCKED_MODULE.removeprefix(RESERVED_PREFIX) + ".js"
"""Where the import maps the gate rewrote point (`proxy.html.handlers.BLOCKED_MODULE`)."""

_SEC_GPC: Final = "Sec-GPC"
_STATED_MAX: Final = 1024
"""Bound of the categories a page states to /__tag-gate/guard-table (characters)."""
SEC_FETCH_DEST: Final = "Sec-Fetch-Dest"
SEC_FETCH_MODE: Final = "Sec-Fetch-Mode"
SEC_FETCH_USER: Final = "Sec-Fetch-User"

RETRY_AFTER: Final = "1"
"""Seconds a visitor refused for a full upstream queue is told to wait: the queue
drains as responses finish, so the condition is short-lived."""

_HOST: Final = re.compile(
    r"(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9._~!$&'()*+,;=:-]+)\]"  # IP-literal
    r"|[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+"  # IPv4 or reg-name (RFC 3986)
    r"(?::([0-9]*))?"
)
"""A Host header value: uri-host [":" port] (RFC 9110 §7.2, RFC 3986 §3.2.2)."""

UPSTREAM_ERROR_TEXT: Final = {
    "connect": "Bad Gateway: cannot connect to the upstream",
    "timeout": "Gateway Timeout: the upstream did not answer in time",
    "header_overflow": "Bad Gateway: the upstream's response headers are too large",
    "invalid_response": "Bad Gateway: the upstream sent an invalid response",
    "disconnect": "Bad Gateway: the upstream closed the connection",
    "queue_timeout": "Service Unavailable: every upstream connection is busy, retry",
    "queue_full": "Service Unavailable: every upstream connection is busy, retry",
}
"""What the client is told; the details (which may quote upstream bytes) go to the log only."""


class BodyTooLarge(Exception):
    """The client's body passed `limits.max_request_body` while streaming."""


class BodyTimeout(Exception):
    """The client's body stopped arriving for `timeouts.client_body` seconds."""


def check_framing(request: web.BaseRequest) -> web.Response | None:
    """Refuse what nginx refuses before forwarding: a Transfer-Encoding other than
    plain `chunked` (501; `gzip, chunked` would lose its gzip), Transfer-Encoding in
    an HTTP/1.0 request (RFC 9112 §6.1: faulty framing; 400 and close, so a pipelined
    request smuggled in the body never runs), and a missing, empty or malformed Host
    (RFC 9112 §3.2; a space, `/`, `@`, `\\` or a port past 65535 would reach the site
    as its own name)."""
    headers = request.headers
    te = headers.getall(hdrs.TRANSFER_ENCODING, ())
    if te:
        if request.version < aiohttp.HttpVersion11:
            return error_response(400, "Bad Request: Transfer-Encoding in an HTTP/1.0 request", close=True)
        if [c.strip().lower() for v in te for c in v.split(",")] != ["chunked"]:
            return error_response(501, "Not Implemented: only the chunked transfer coding is supported", close=True)
    hosts = headers.getall(hdrs.HOST, ())
    if len(hosts) > 1:
        return error_response(400, "Bad Request: more than one Host header", close=True)
    if not hosts:
        if request.version >= aiohttp.HttpVersion11:
            return error_response(400, "Bad Request: no Host header", close=True)
        return None
    m = _HOST.fullmatch(hosts[0])
    if m is None or (m.group(1) and int(m.group(1)) > 65535):
        return error_response(400, "Bad Request: invalid Host header", close=True)
    return None


class ProxyHandler:
    """The public listener's request handler (one instance per process). Every request
    reads the state's current runtime once and keeps it to its end."""

    def __init__(self, state: ProxyState) -> None:
        self.state = state

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        state = self.state
        ex = Exchange(request, state.runtime)
        state.in_flight += 1
        protocol = request.protocol
        if isinstance(protocol, DeadlineRequestHandler):
            protocol.head_received()
        status = 0
        try:
            resp = await self._handle(ex)
            status = resp.status
            return resp
        except asyncio.CancelledError:
            state.metrics.client_disconnects.inc()
            if ex.error is None:
                ex.error = "client_disconnected"
            raise
        finally:
            state.in_flight -= 1
            elapsed = time.monotonic() - ex.started
            m = state.metrics
            if status:
                m.count_status(status)
            m.latency.observe(elapsed)
            if isinstance(protocol, DeadlineRequestHandler):
                protocol.response_done()
            if state.access_log.enabled:
                state.access_log.request(
                    time.time(),
                    request.remote,
                    request.method,
                    request.raw_path[:2048],
                    status,
                    elapsed * 1000,
                    ex.error,
                )

    # ------------------------------------------------------------ request stage

    async def _handle(self, ex: Exchange) -> web.StreamResponse:
        request, runtime, metrics = ex.request, ex.runtime, self.state.metrics
        if ex.method not in runtime.methods:
            metrics.rejected.labels("method").inc()
            resp = error_response(405, "Method Not Allowed")
            resp.headers[hdrs.ALLOW] = runtime.allow
            return resp
        if not ex.target.startswith("/"):
            origin_form = self._origin_form(request, ex.target)
            if isinstance(origin_form, web.Response):
                return origin_form
            ex.target = origin_form
        if ex.target.startswith(RESERVED_PREFIX):
            if ex.path == CONSENT_PATH:
                framing = check_framing(request)
                return framing if framing is not None else await handle_consent_post(ex, self.state)
            name = ex.target[len(RESERVED_PREFIX) :].partition("?")[0]
            if name == "csp":
                framing = check_framing(request)
                if framing is not None:
                    return framing
                return await handle_csp_report(self.state, ex, _hostname(request.headers.get(hdrs.HOST)))
            if name == "guard-errors":
                framing = check_framing(request)
                return framing if framing is not None else await handle_guard_errors(self.state, ex)
            if name == "guard.js":
                return self._serve_guard(ex)
            if name == "guard-table":
                return self._serve_guard_table(ex)
            return self._serve_asset(ex)

        headers = request.headers
        framing = check_framing(request)
        if framing is not None:
            metrics.rejected.labels("framing").inc()
            return framing
        try:
            out_headers, facts = forward_headers(
                headers, peer=request.remote, config=runtime.config, upstream_authority=runtime.upstream.authority
            )
        except BadForwardRequest as exc:
            metrics.rejected.labels("headers").inc()
            return error_response(exc.status, exc.message, close=True)
        ex.facts = facts
        ex.host = _hostname(facts.host)
        ex.upstream_headers = out_headers
        stages = runtime.stages
        ex.visitor = stages.visitor(tuple(headers.getall(hdrs.COOKIE, ())), headers.get(_SEC_GPC))
        ex.conditional_ours = stages.forward_request_headers(out_headers, ex.visitor)

        if hdrs.UPGRADE in headers and ex.method == "GET" and _wants_websocket(headers):
            return await relay_websocket(self.state, request, runtime.upstream.url + ex.target, out_headers)

        length = request.content_length
        if length is not None:
            if length > runtime.config.limits.max_request_body:
                metrics.rejected.labels("body_too_large").inc()
                return error_response(413, "Content Too Large", close=True)
            out_headers[hdrs.CONTENT_LENGTH] = str(length)
        expect = headers.get(hdrs.EXPECT)
        if expect is not None:
            if expect.lower() != "100-continue":
                return error_response(417, "Expectation Failed", close=True)
            if request.version >= aiohttp.HttpVersion11:
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if request.body_exists:
            ex.body = self._request_body(ex)
        return await self._forward(ex)

    def _origin_form(self, request: web.BaseRequest, target: str) -> str | web.Response:
        """Turn an absolute-form target into origin-form, refusing a foreign authority.

        The upstream is fixed by config, so `GET http://other.example/` can never reach
        another host; it is refused outright when its authority differs from Host.
        """
        if target == "*":
            return error_response(400, "Bad Request: asterisk-form targets are not supported")
        try:
            url = URL(target, encoded=True)
        except ValueError:
            url = None
        if url is None or not url.absolute or url.scheme not in ("http", "https"):
            return error_response(400, "Bad Request: unreadable request target", close=True)
        host = request.headers.get(hdrs.HOST, "")
        authority = url.raw_authority
        default = 443 if url.scheme == "https" else 80
        if _normalise_authority(authority, default) != _normalise_authority(host, default):
            self.state.metrics.rejected.labels("absolute_form").inc()
            return error_response(400, "Bad Request: request target does not match Host", close=True)
        path = url.raw_path or "/"
        return f"{path}?{url.raw_query_string}" if url.raw_query_string else path

    def _serve_asset(self, ex: Exchange) -> web.StreamResponse:
        name = ex.target[len(RESERVED_PREFIX) :].partition("?")[0]
        if name.startswith(_BLOCKED_BELOW):  # an import map's refused prefix: the same empty module
            name = _BLOCKED_JS
        asset = ex.runtime.assets.get(name)
        if asset is None or ex.method not in ("GET", "HEAD"):
            return error_response(404, "Not Found")
        body, content_type = asset
        resp = web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})
        resp.headers[hdrs.CACHE_CONTROL] = "public, max-age=300"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    def _serve_guard(self, ex: Exchange) -> web.StreamResponse:
        """`/__tag-gate/guard.js?k=KEY&v=DIGEST`: the runtime guard for pages whose CSP
        blocks inline scripts but allows 'self' (proxy.http.layers). The key in the URL
        names the rules; one this config did not write (an older config, another
        replica) gets the rules of the request's own consent, not kept."""
        layers = ex.runtime.stages.layers
        if layers.guard is None or ex.method not in ("GET", "HEAD"):
            return error_response(404, "Not Found")
        key = ex.request.query.get("k", "")
        body = layers.external_body(key)
        cache = "private, max-age=86400, immutable"  # the URL names the body (v=digest)
        if body is None:
            headers = ex.request.headers
            visitor = ex.runtime.stages.visitor(tuple(headers.getall(hdrs.COOKIE, ())), headers.get(_SEC_GPC))
            body = layers.external(visitor.consent)[1]
            cache = "private, no-store"
        resp = web.Response(body=body, headers={hdrs.CONTENT_TYPE: "text/javascript; charset=utf-8"})
        resp.headers[hdrs.CACHE_CONTROL] = cache
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    def _serve_guard_table(self, ex: Exchange) -> web.StreamResponse:
        """`/__tag-gate/guard-table?g=analytics.functional`: the guard's rule table for
        the categories a page now grants (guard-release.js asks for it when the visitor
        withdraws one that was granted at load, so not in the page's table). Sec-GPC
        applies as for a page; names this config does not know grant nothing. Without
        `g`: the table of the request's own consent, read from its cookies as for a page
        (asked for when a consent manager's cookie changed on the page; the table's
        `granted` is then the page's new consent)."""
        layers = ex.runtime.stages.layers
        if layers.guard is None or ex.method not in ("GET", "HEAD"):
            return error_response(404, "Not Found")
        headers = ex.request.headers
        tables = self.state.metrics.guard_tables
        if "g" in ex.request.query:
            stated = ex.request.query["g"][:_STATED_MAX].split(".")
            consent = stated_consent(stated, headers.get(_SEC_GPC), ex.runtime.config.consent)
            tables["stated"].inc()
        else:
            consent = ex.runtime.stages.visitor(tuple(headers.getall(hdrs.COOKIE, ())), headers.get(_SEC_GPC)).consent
            tables["cookies"].inc()
        body = layers.guard.rules_json(consent, None).encode()
        resp = web.Response(body=body, headers={hdrs.CONTENT_TYPE: "application/json"})
        resp.headers[hdrs.CACHE_CONTROL] = "private, no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    async def _request_body(self, ex: Exchange) -> AsyncIterator[bytes]:
        """The client's body as a stream, refused once it passes the size limit or stops
        arriving for `timeouts.client_body` seconds."""
        total = 0
        config = ex.runtime.config
        limit = config.limits.max_request_body
        timeout = config.timeouts.client_body
        content = ex.request.content
        while True:
            try:
                async with asyncio.timeout(timeout):
                    chunk = await content.readany()
            except TimeoutError:
                raise BodyTimeout from None
            if not chunk:
                return
            total += len(chunk)
            if total > limit:
                raise BodyTooLarge
            yield chunk

    # ------------------------------------------------------------ upstream

    async def _forward(self, ex: Exchange) -> web.StreamResponse:
        metrics = self.state.metrics
        pool = self.state.pool
        assert pool is not None and ex.upstream_headers is not None
        out_headers = ex.upstream_headers
        try:
            up = await pool.request(ex.method, ex.target, out_headers, ex.body)
            if up.status == 206 and ex.body is None and self._must_gate(ex, up):
                # A range of the upstream's HTML cannot be filtered: fetch the whole page.
                up.close()
                out_headers.popall(hdrs.RANGE, None)
                out_headers.popall(hdrs.IF_RANGE, None)
                up = await pool.request(ex.method, ex.target, out_headers)
        except BodyError as exc:
            if isinstance(exc.cause, BodyTooLarge):
                metrics.rejected.labels("body_too_large").inc()
                return error_response(413, "Content Too Large", close=True)
            if isinstance(exc.cause, BodyTimeout):
                metrics.rejected.labels("body_timeout").inc()
                ex.note("client_body_timeout")
                return error_response(408, "Request Timeout: the request body stopped arriving", close=True)
            # The client's own upload broke off; there is nobody left to answer.
            ex.note("client_body_incomplete")
            return error_response(400, "Bad Request: incomplete request body", close=True)
        except UpstreamError as exc:
            metrics.upstream_error[exc.kind].inc()
            log.warning("upstream error %s for %s %s: %s", exc.kind, ex.method, ex.target[:200], exc)
            resp = error_response(exc.status, UPSTREAM_ERROR_TEXT.get(exc.kind, "Bad Gateway"))
            if exc.status == 503:
                resp.headers[hdrs.RETRY_AFTER] = RETRY_AFTER
            return resp
        ex.upstream = up
        try:
            return await self._respond(ex, up)
        finally:
            up.release()

    def _must_gate(self, ex: Exchange, up: UpstreamResponse) -> bool:
        policy = ex.runtime.stages.policy
        assert ex.visitor is not None
        content = resolve_content_type(up.headers.getall(hdrs.CONTENT_TYPE, ()))
        return (
            (content.html or content.xml or content.unknown)
            and policy.gates_page(ex.path)
            and policy.refusable(ex.visitor.consent)
        )

    # ------------------------------------------------------------ response

    async def _respond(self, ex: Exchange, up: UpstreamResponse) -> web.StreamResponse:
        """Headers stage, then body stage, for a response the upstream has started."""
        metrics = self.state.metrics
        status = up.status
        if status == 101:
            up.close()
            metrics.upstream_error["invalid_response"].inc()
            return error_response(502, "Bad Gateway: the upstream switched protocols unasked")
        assert ex.visitor is not None and ex.facts is not None
        runtime = ex.runtime
        upstream_coding = up.headers.get(hdrs.CONTENT_ENCODING)
        resp = web.StreamResponse(status=status)
        plan = ex.plan = runtime.stages.plan_response(
            method=ex.method,
            status=status,
            path=ex.path,
            headers=response_headers(up.headers, resp.headers),
            visitor=ex.visitor,
            client_accept_encoding=ex.request.headers.get(hdrs.ACCEPT_ENCODING),
            host=ex.host,
            secure=ex.facts.scheme == "https",
            conditional_ours=ex.conditional_ours,
            request_headers=ex.request.headers,
            fetch=fetch_metadata(ex.request.headers),
        )
        if plan.refused is not None:
            up.close()
            ex.note("refused_redirect")
            return error_response(403, f"Forbidden: {plan.refused}")
        if plan.top_level_only is not None:
            up.close()
            ex.note("refused_redirect")
            return top_level_response(plan)
        empty = ex.method == "HEAD" or status in BODYLESS_STATUSES or status < 200
        if plan.body in (Body.GATE, Body.REPORT) and not empty:
            return await GatedRelay(ex, metrics, resp, upstream_coding).run()
        if runtime.config.html.decisions_header:
            plan.headers[DECISIONS_HEADER] = decisions_value(plan, None, ex.visitor)
        length = up.content_length
        if length is not None and status not in BODYLESS_STATUSES and plan.keep_length:
            resp.content_length = length
        return await Relay(ex, metrics).raw(resp, up, (), body=not empty)


_FETCH_METADATA: Final[Memo[tuple[str, str, str, str], FetchMetadata]] = Memo(256, 64 << 10)
"""`fetch_metadata` per raw header values: a browser sends the same few combinations."""


def fetch_metadata(headers: Any) -> FetchMetadata:
    """The request's `Sec-Fetch-Dest`, `-Mode` and `-User`, lower-cased and trimmed, and
    whether its `Accept` names HTML."""
    key = (
        headers.get(SEC_FETCH_DEST, ""),
        headers.get(SEC_FETCH_MODE, ""),
        headers.get(SEC_FETCH_USER, ""),
        headers.get(hdrs.ACCEPT, ""),
    )
    hit = _FETCH_METADATA.table.get(key)
    if hit is not None:
        return hit
    dest, mode, user, accept = key
    found = FetchMetadata(
        dest.strip().lower(), mode.strip().lower(), user.strip().lower(), "text/html" in accept.lower()
    )
    return _FETCH_METADATA.put(key, found, sum(map(len, key)))


def top_level_response(plan: ResponsePlan) -> web.Response:
    """The page standing in for a redirect to a refused tracker (`top_level_page`), with
    the cookies the redirect set (a login flow's state) and nothing cacheable."""
    assert plan.top_level_only is not None
    resp = web.Response(status=200, text=top_level_page(plan.top_level_only), content_type="text/html")
    resp.headers[hdrs.CONTENT_SECURITY_POLICY] = TOP_LEVEL_CSP
    resp.headers[hdrs.CACHE_CONTROL] = "no-store"
    for line in plan.headers.getall(hdrs.SET_COOKIE, ()):
        resp.headers.add(hdrs.SET_COOKIE, line)
    return resp


def _hostname(host_header: str | None) -> str | None:
    """The host name of a Host header value: port and IPv6 brackets removed, lower-cased."""
    if not host_header:
        return None
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0] or None
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _wants_websocket(headers: Any) -> bool:
    if headers.get(hdrs.UPGRADE, "").lower() != "websocket":
        return False
    return any(t.strip().lower() == "upgrade" for v in headers.getall(hdrs.CONNECTION, ()) for t in v.split(","))


def _normalise_authority(authority: str, default_port: int) -> str:
    authority = authority.strip().lower()
    if authority.endswith(f":{default_port}"):
        authority = authority[: -len(str(default_port)) - 1]
    return authority.rstrip(".")
