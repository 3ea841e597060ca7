"""The public listener: aiohttp's low-level server and the proxy handler.

Request path (see DESIGN.md): validate the request line and headers, build the
upstream request (header hygiene, forwarding headers, streamed body with a size cap),
send it, then relay the response: headers stage (before the first body byte), body
stage (streamed chunk by chunk with backpressure).

Failure contract:
- nothing reached the upstream yet → a short plain-text 4xx/5xx and one log line;
- the upstream failed before its headers → 502 (or 504 for a timeout);
- anything failed after the response started → the client connection is aborted
  (no terminating chunk), so neither the browser nor a cache can take a truncated
  body for a complete one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
from aiohttp import hdrs, web, web_protocol
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import HttpProcessingError, HttpVersion11, RawRequestMessage
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict
from yarl import URL

from ..core.actions import ELEMENT_ACTIONS
from ..core.config import Config
from ..html.codings import DecodeError
from ..html.gate import GateError, GateStats
from ..logs import AccessLog, OneLineLogger
from ..metrics import Metrics
from .forwarding import (
    BadForwardRequest,
    ForwardFacts,
    forward_headers,
    keep_raw_header_bytes,
    make_session,
    response_headers,
)
from .pool import BodyError, UpstreamError, UpstreamPool, UpstreamResponse
from .response import BODYLESS_STATUSES, is_html
from .stages import WHOLE_DOCUMENT_MAX, Body, ResponsePlan, Stages, Visitor
from .websocket import relay_websocket

log = logging.getLogger("tag_gate")

keep_raw_header_bytes()  # obs-text in upstream header values reaches the client unchanged

RESERVED_PREFIX: Final = "/__tag-gate/"
"""Paths tag-gate answers itself (first-party assets); never forwarded."""

FIRST_SLICE: Final = 4096
"""Before the first byte goes out the gate takes small steps, so the page starts early."""

GATE_SLICE: Final = 65536
"""Later, most upstream bytes the gate takes in one step (fewer, larger writes; a step
stays well under a millisecond)."""

COALESCE_PEEK: Final = 65536
"""Most already-received body bytes a pass-through response sends with its head."""

REPLAY_LIMIT: Final = 1 << 20
"""Upstream bytes kept while the gate has produced nothing yet, to replay them if it
fails before the first byte goes out; past this the headers are sent anyway."""

_SEC_GPC: Final = "Sec-GPC"

RETRY_AFTER: Final = "1"
"""Seconds a visitor refused for a full upstream queue is told to wait: the queue
drains as responses finish, so the condition is short-lived."""

_HOST: Final = re.compile(
    r"(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9._~!$&'()*+,;=:-]+)\]"  # IP-literal
    r"|[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})+"  # IPv4 or reg-name (RFC 3986)
    r"(?::([0-9]*))?"
)
"""A Host header value: uri-host [":" port] (RFC 9110 §7.2, RFC 3986 §3.2.2)."""


def _check_framing(request: web.BaseRequest) -> web.Response | None:
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
            return _error_response(400, "Bad Request: Transfer-Encoding in an HTTP/1.0 request", close=True)
        if [c.strip().lower() for v in te for c in v.split(",")] != ["chunked"]:
            return _error_response(501, "Not Implemented: only the chunked transfer coding is supported", close=True)
    hosts = headers.getall(hdrs.HOST, ())
    if len(hosts) > 1:
        return _error_response(400, "Bad Request: more than one Host header", close=True)
    if not hosts:
        if request.version >= aiohttp.HttpVersion11:
            return _error_response(400, "Bad Request: no Host header", close=True)
        return None
    m = _HOST.fullmatch(hosts[0])
    if m is None or (m.group(1) and int(m.group(1)) > 65535):
        return _error_response(400, "Bad Request: invalid Host header", close=True)
    return None


@dataclass
class ProxyState:
    """What the handler needs, built once per process (or per reload)."""

    config: Config
    metrics: Metrics
    access_log: AccessLog
    stages: Stages
    pool: UpstreamPool | None = None
    session: aiohttp.ClientSession | None = None
    """Used for WebSocket relays only; HTTP goes through `pool`."""
    ready: bool = False
    in_flight: int = 0
    assets: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    """`/__tag-gate/<name>` → (body, content type)."""


class BodyTooLarge(Exception):
    """The client's body passed `limits.max_request_body` while streaming."""


class BodyTimeout(Exception):
    """The client's body stopped arriving for `timeouts.client_body` seconds."""


async def _start(request: web.BaseRequest, resp: web.StreamResponse, *, coalesce: bool) -> None:
    """Prepare `resp`. With `coalesce` (a body write follows at once) the head goes out
    in the same socket write as the first body bytes instead of one write of its own.
    `_send_headers_immediately` is aiohttp's switch for that (web.Response sets it);
    were it ever gone, the head would simply be sent on its own as before.

    An HTTP/1.0 client cannot be sent chunks: a body of unknown length ends when the
    connection closes, so the connection is closed after it (aiohttp would omit the
    length and keep the connection open, leaving the client waiting forever)."""
    if request.version < aiohttp.HttpVersion11 and resp.content_length is None:
        resp.force_close()
    if coalesce:
        resp._send_headers_immediately = False
    await resp.prepare(request)


def _error_response(status: int, message: str, *, close: bool = False) -> web.Response:
    resp = web.Response(status=status, text=f"{status} {message}\n", content_type="text/plain")
    if close:
        resp.force_close()
    return resp


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


class ProxyHandler:
    """The public listener's request handler (one instance per process)."""

    def __init__(self, state: ProxyState) -> None:
        self.state = state
        self._errors: dict[int, str] = {}
        """What went wrong after a response started, by request, for the access log."""
        self.configure(state.config)

    def configure(self, cfg: Config) -> None:
        """Take the settings the handler reads on every request (at start and on reload)."""
        assert cfg.server.upstream is not None, "config.check_runnable() guards this"
        self._upstream = cfg.server.upstream
        self._base = cfg.server.upstream.url
        self._methods = cfg.server.methods
        self._allow = ", ".join(sorted(cfg.server.methods))
        self._max_body = cfg.limits.max_request_body
        self._body_timeout = cfg.timeouts.client_body
        self._decisions_header = cfg.html.decisions_header
        self._max_held = cfg.html.max_decoded_size

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        state = self.state
        start = time.monotonic()
        state.in_flight += 1
        protocol = request.protocol
        if isinstance(protocol, DeadlineRequestHandler):
            protocol.head_received()
        status = 0
        error: str | None = None
        try:
            resp = await self._handle(request)
            status = resp.status
            return resp
        except asyncio.CancelledError:
            state.metrics.client_disconnects.inc()
            error = "client_disconnected"
            raise
        finally:
            if self._errors:
                error = self._errors.pop(id(request), None) or error
            state.in_flight -= 1
            elapsed = time.monotonic() - start
            m = state.metrics
            if status:
                m.count_status(status)
            m.latency.observe(elapsed)
            if isinstance(protocol, DeadlineRequestHandler):
                protocol.response_done()
            if state.access_log.enabled:
                state.access_log.request(
                    time.time(), request.remote, request.method, request.raw_path[:2048], status, elapsed * 1000, error
                )

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        method = request.method
        if method not in self._methods:
            self.state.metrics.rejected.labels("method").inc()
            resp = _error_response(405, "Method Not Allowed")
            resp.headers[hdrs.ALLOW] = self._allow
            return resp
        target = request.raw_path
        if not target.startswith("/"):
            origin_form = self._origin_form(request, target)
            if isinstance(origin_form, web.Response):
                return origin_form
            target = origin_form
        if target.startswith(RESERVED_PREFIX):
            return self._serve_asset(request, target)

        headers = request.headers
        framing = _check_framing(request)
        if framing is not None:
            self.state.metrics.rejected.labels("framing").inc()
            return framing
        try:
            out_headers, facts = forward_headers(
                headers,
                peer=request.remote,
                config=self.state.config,
                upstream_authority=self._upstream.authority,
            )
        except BadForwardRequest as exc:
            self.state.metrics.rejected.labels("headers").inc()
            return _error_response(exc.status, exc.message, close=True)
        stages = self.state.stages
        visitor = stages.visitor(tuple(headers.getall(hdrs.COOKIE, ())), headers.get(_SEC_GPC))
        ours = stages.forward_request_headers(out_headers, visitor)

        if hdrs.UPGRADE in headers and method == "GET" and _wants_websocket(headers):
            return await relay_websocket(self.state, request, self._base + target, out_headers)

        body: AsyncIterator[bytes] | None = None
        length = request.content_length
        if length is not None:
            if length > self._max_body:
                self.state.metrics.rejected.labels("body_too_large").inc()
                return _error_response(413, "Content Too Large", close=True)
            out_headers[hdrs.CONTENT_LENGTH] = str(length)
        expect = headers.get(hdrs.EXPECT)
        if expect is not None:
            if expect.lower() != "100-continue":
                return _error_response(417, "Expectation Failed", close=True)
            if request.version >= aiohttp.HttpVersion11:
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if request.body_exists:
            body = self._request_body(request)

        return await self._forward(request, method, target, out_headers, body, facts, visitor, ours)

    def _origin_form(self, request: web.BaseRequest, target: str) -> str | web.Response:
        """Turn an absolute-form target into origin-form, refusing a foreign authority.

        The upstream is fixed by config, so `GET http://other.example/` can never reach
        another host; it is refused outright when its authority differs from Host.
        """
        if target == "*":
            return _error_response(400, "Bad Request: asterisk-form targets are not supported")
        try:
            url = URL(target, encoded=True)
        except ValueError:
            url = None
        if url is None or not url.absolute or url.scheme not in ("http", "https"):
            return _error_response(400, "Bad Request: unreadable request target", close=True)
        host = request.headers.get(hdrs.HOST, "")
        authority = url.raw_authority
        default = 443 if url.scheme == "https" else 80
        if _normalise_authority(authority, default) != _normalise_authority(host, default):
            self.state.metrics.rejected.labels("absolute_form").inc()
            return _error_response(400, "Bad Request: request target does not match Host", close=True)
        path = url.raw_path or "/"
        return f"{path}?{url.raw_query_string}" if url.raw_query_string else path

    def _serve_asset(self, request: web.BaseRequest, target: str) -> web.StreamResponse:
        name = target[len(RESERVED_PREFIX) :].partition("?")[0]
        asset = self.state.assets.get(name)
        if asset is None or request.method not in ("GET", "HEAD"):
            return _error_response(404, "Not Found")
        body, content_type = asset
        resp = web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})
        resp.headers[hdrs.CACHE_CONTROL] = "public, max-age=300"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    async def _request_body(self, request: web.BaseRequest) -> AsyncIterator[bytes]:
        """The client's body as a stream, refused once it passes the size limit."""
        total = 0
        limit = self._max_body
        content = request.content
        timeout = self._body_timeout
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

    async def _forward(
        self,
        request: web.BaseRequest,
        method: str,
        target: str,
        out_headers: CIMultiDict[str],
        body: AsyncIterator[bytes] | None,
        facts: ForwardFacts,
        visitor: Visitor,
        conditional_ours: bool,
    ) -> web.StreamResponse:
        state = self.state
        pool = state.pool
        assert pool is not None
        try:
            up = await pool.request(method, target, out_headers, body)
            if up.status == 206 and body is None and self._must_gate(up, target, visitor):
                # A range of the upstream's HTML cannot be filtered: fetch the whole page.
                up.close()
                out_headers.popall(hdrs.RANGE, None)
                out_headers.popall(hdrs.IF_RANGE, None)
                up = await pool.request(method, target, out_headers)
        except BodyError as exc:
            if isinstance(exc.cause, BodyTooLarge):
                state.metrics.rejected.labels("body_too_large").inc()
                return _error_response(413, "Content Too Large", close=True)
            if isinstance(exc.cause, BodyTimeout):
                state.metrics.rejected.labels("body_timeout").inc()
                self._note(request, "client_body_timeout")
                return _error_response(408, "Request Timeout: the request body stopped arriving", close=True)
            # The client's own upload broke off; there is nobody left to answer.
            self._note(request, "client_body_incomplete")
            return _error_response(400, "Bad Request: incomplete request body", close=True)
        except UpstreamError as exc:
            state.metrics.upstream_error[exc.kind].inc()
            log.warning("upstream error %s for %s %s: %s", exc.kind, method, target[:200], exc)
            resp = _error_response(exc.status, UPSTREAM_ERROR_TEXT.get(exc.kind, "Bad Gateway"))
            if exc.status == 503:
                resp.headers[hdrs.RETRY_AFTER] = RETRY_AFTER
            return resp

        try:
            return await self._relay(request, method, target, up, facts, visitor, conditional_ours)
        finally:
            up.release()

    def _must_gate(self, up: UpstreamResponse, target: str, visitor: Visitor) -> bool:
        policy = self.state.stages.policy
        return (
            is_html(up.headers.get(hdrs.CONTENT_TYPE))
            and policy.gates_page(_path_of(target))
            and policy.refusable(visitor.consent)
        )

    async def _relay(
        self,
        request: web.BaseRequest,
        method: str,
        target: str,
        up: UpstreamResponse,
        facts: ForwardFacts,
        visitor: Visitor,
        conditional_ours: bool,
    ) -> web.StreamResponse:
        """Headers stage, then body stage, for a response the upstream has started."""
        status = up.status
        if status == 101:
            up.close()
            self.state.metrics.upstream_error["invalid_response"].inc()
            return _error_response(502, "Bad Gateway: the upstream switched protocols unasked")

        stages = self.state.stages
        host = _hostname(facts.host)
        upstream_coding = up.headers.get(hdrs.CONTENT_ENCODING)
        resp = web.StreamResponse(status=status)
        plan = stages.plan_response(
            method=method,
            status=status,
            path=_path_of(target),
            headers=response_headers(up.headers, resp.headers),
            visitor=visitor,
            client_accept_encoding=request.headers.get(hdrs.ACCEPT_ENCODING),
            host=host,
            secure=facts.scheme == "https",
            conditional_ours=conditional_ours,
        )
        empty = method == "HEAD" or status in BODYLESS_STATUSES or status < 200
        if plan.body in (Body.GATE, Body.REPORT) and not empty:
            return await self._relay_gated(request, resp, up, plan, visitor, host, upstream_coding)
        if self._decisions_header:
            plan.headers["Tag-Gate-Decisions"] = _decisions_value(plan, None, visitor)
        length = up.content_length
        if length is not None and status not in BODYLESS_STATUSES and plan.keep_length:
            resp.content_length = length
        return await self._relay_raw(request, resp, up, (), body=not empty)

    async def _relay_raw(
        self,
        request: web.BaseRequest,
        resp: web.StreamResponse,
        up: UpstreamResponse,
        replay: Sequence[bytes],
        *,
        body: bool = True,
    ) -> web.StreamResponse:
        """Send the headers, then the upstream's bytes unchanged (after `replay`, bytes
        already read from it). A client that goes away stops the upstream read; an
        upstream that fails mid-body aborts the client connection."""
        content = up.content
        # Body bytes that came in with the head (a small page, all of it) leave in the
        # head's socket write; a body still on its way never holds the head back.
        ready = content.read_nowait(COALESCE_PEEK) if body and content.exception() is None else b""
        try:
            await _start(request, resp, coalesce=bool(ready) or (body and any(replay)))
            if body:
                for chunk in replay:
                    await resp.write(chunk)
                if ready:
                    await resp.write(ready)
                while True:
                    chunk = await content.readany()
                    if not chunk:
                        break
                    await resp.write(chunk)
            await resp.write_eof()
        except ConnectionResetError:
            # The client went away mid-response: stop reading the upstream and drop it.
            self._client_gone(request, up)
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._abort(request, up, exc)
        return resp

    async def _relay_gated(
        self,
        request: web.BaseRequest,
        resp: web.StreamResponse,
        up: UpstreamResponse,
        plan: ResponsePlan,
        visitor: Visitor,
        host: str | None,
        upstream_coding: str | None,
    ) -> web.StreamResponse:
        """Body stage through the HTML gate, streaming: each upstream chunk's output is
        sent before the next chunk is read. Headers go out with the first output, so a
        failure on the first chunk can still be answered cleanly (fail-safe or 502);
        after that, a failure aborts the connection."""
        stages = self.state.stages
        pipeline = stages.body_pipeline(plan, visitor.consent, host)
        hold = self._decisions_header and plan.body is Body.GATE
        held: list[bytes] = []
        held_size = 0
        replay: list[bytes] | None = []
        replay_size = 0
        started = False
        finished = False
        whole_limit = WHOLE_DOCUMENT_MAX if plan.decode is None else GATE_SLICE
        content = up.content
        try:
            try:
                while True:
                    chunk = await content.readany()
                    if not chunk:
                        break
                    if content.is_eof() and len(chunk) <= whole_limit:
                        # The upstream has sent everything: if the rest is small, gate it
                        # in one step and send it in one write (a whole page: one gate pass
                        # over the complete document, see `BodyPipeline.finish`).
                        rest = content.read_nowait(whole_limit - len(chunk) + 1)
                        if rest:
                            chunk += rest
                        finished = content.at_eof() and len(chunk) <= whole_limit
                    if replay is not None:
                        replay.append(chunk)
                        replay_size += len(chunk)
                    if finished:
                        out = pipeline.finish(chunk)
                        if hold and held_size + len(out) > self._max_held:
                            raise GateError("too_large_to_hold", "page larger than the decisions-header buffer")
                        break
                    # Large reads are gated in slices so the first bytes leave early and
                    # no single step holds the event loop for long.
                    pos, size = 0, len(chunk)
                    while pos < size:
                        step = GATE_SLICE if started else FIRST_SLICE
                        out = pipeline.feed(chunk[pos : pos + step] if pos or size > step else chunk)
                        pos += step
                        if hold:
                            held.append(out)
                            held_size += len(out)
                            if held_size > self._max_held:
                                raise GateError("too_large_to_hold", "page larger than the decisions-header buffer")
                            continue
                        if not started and (out or replay_size > REPLAY_LIMIT):
                            await _start(request, resp, coalesce=bool(out))
                            started, replay = True, None
                        if out:
                            await resp.write(out)
                if not finished:
                    out = pipeline.end()
            except (GateError, DecodeError) as exc:
                reason = exc.reason if isinstance(exc, GateError) else f"decode_{exc.reason}"
                if started:
                    stages.metrics.fail_safe.labels(reason).inc()
                    self._abort(request, up, exc)
                    return resp
                return await self._fail_safe(request, up, plan, replay or [], reason, exc, upstream_coding)
            if hold:
                held.append(out)
                body = b"".join(held)
                resp.headers["Tag-Gate-Decisions"] = _decisions_value(plan, pipeline.gate.stats, visitor)
                resp.content_length = len(body)
                await resp.prepare(request)
                await resp.write(body)
                await resp.write_eof()
                return resp
            if not started:
                await _start(request, resp, coalesce=bool(out))
            await resp.write_eof(out)  # the last piece and the chunked terminator in one write
        except ConnectionResetError:
            self._client_gone(request, up)
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._abort(request, up, exc)
        finally:
            stages.count(pipeline.gate.stats)
            if pipeline.failure is not None:
                stages.metrics.fail_safe.labels(f"report_only_{pipeline.failure}").inc()
        return resp

    async def _fail_safe(
        self,
        request: web.BaseRequest,
        up: UpstreamResponse,
        plan: ResponsePlan,
        replay: list[bytes],
        reason: str,
        exc: Exception,
        upstream_coding: str | None,
    ) -> web.StreamResponse:
        """The gate failed before the first byte went out. A page the gate cannot parse is
        relayed unchanged under a strict CSP; a body that cannot be decoded (corrupt, or
        over the size/ratio caps) gets 502. Refused cookies stay dropped either way."""
        log.warning("gate failed before the response started (%s) for %s: %s", reason, request.raw_path[:200], exc)
        self._note(request, f"fail_safe_{reason}")
        if isinstance(exc, DecodeError):
            self.state.metrics.fail_safe.labels(reason).inc()
            up.close()
            return _error_response(502, "Bad Gateway: the upstream's page could not be decoded")
        headers = plan.headers
        self.state.stages.fail_safe_headers(headers, reason)
        headers.popall(hdrs.CONTENT_ENCODING, None)
        if upstream_coding:
            headers[hdrs.CONTENT_ENCODING] = upstream_coding
        return await self._relay_raw(request, web.StreamResponse(status=up.status, headers=headers), up, replay)

    def _note(self, request: web.BaseRequest, error: str) -> None:
        self._errors[id(request)] = error

    def _client_gone(self, request: web.BaseRequest, up: UpstreamResponse) -> None:
        self.state.metrics.client_disconnects.inc()
        self._note(request, "client_disconnected")
        up.close()

    def _abort(self, request: web.BaseRequest, up: UpstreamResponse, exc: BaseException) -> None:
        """The upstream failed mid-body: drop both connections so nobody sees a clean end.

        The caller returns the response without `write_eof()`; aiohttp's attempt to finish
        it then fails on the aborted transport and the connection is discarded.
        """
        kind = "timeout" if isinstance(exc, asyncio.TimeoutError) else "body_aborted"
        self.state.metrics.upstream_error[kind].inc()
        log.warning("upstream body failed (%s) for %s %s: %s", kind, request.method, request.raw_path[:200], exc)
        self._note(request, f"upstream_{kind}")
        up.close()
        transport = request.transport
        if transport is not None:
            transport.abort()


def _path_of(target: str) -> str:
    return target.partition("?")[0]


def _hostname(host_header: str | None) -> str | None:
    """The host name of a Host header value: port and IPv6 brackets removed, lower-cased."""
    if not host_header:
        return None
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0] or None
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _decisions_value(plan: ResponsePlan, stats: GateStats | None, visitor: Visitor) -> str:
    """`Tag-Gate-Decisions`: what was done to this response, as counts."""
    parts = []
    if stats is not None:
        for action in ELEMENT_ACTIONS:
            parts.append(f"{action.value}={stats.total(action)}")
    parts.append(f"cookies-dropped={len(plan.dropped_cookies)}")
    parts.append(f"cookies-expired={plan.expired}")
    parts.append(f"consent={visitor.consent.key}")
    parts.append(f"source={visitor.consent.source}")
    return "; ".join(parts)


def _wants_websocket(headers: Any) -> bool:
    if headers.get(hdrs.UPGRADE, "").lower() != "websocket":
        return False
    return any(t.strip().lower() == "upgrade" for v in headers.getall(hdrs.CONNECTION, ()) for t in v.split(","))


def _normalise_authority(authority: str, default_port: int) -> str:
    authority = authority.strip().lower()
    if authority.endswith(f":{default_port}"):
        authority = authority[: -len(str(default_port)) - 1]
    return authority.rstrip(".")


class DeadlineRequestHandler(RequestHandler):
    """aiohttp's connection handler plus a deadline for the request head.

    aiohttp has no header-read timeout of its own, so a client could hold a connection
    by dribbling header bytes. The deadline runs from accept, and on a kept-alive
    connection from the first byte after the previous response; it ends when the
    handler is called for the request. A connection still inside its head at the
    deadline gets `408` and is closed.

    A request head aiohttp cannot parse (malformed, oversized) gets its `400` followed by
    a lingering close, as nginx does: the write side is shut down after the response,
    and whatever the client still sends is read and discarded until it closes, goes
    quiet for `LINGER_TIMEOUT` seconds, or `LINGER_TIME` seconds have passed. Closing
    straight away with unread bytes in the receive buffer (or more arriving) makes the
    kernel send a reset, which can destroy the response before the client reads it.
    """

    __slots__ = (
        "_tg_deadline",
        "_tg_timeout",
        "_tg_idle",
        "_tg_on_timeout",
        "_tg_on_refused",
        "_tg_head_refused",
        "_tg_lingering",
        "_tg_linger_heard",
        "_tg_stopping",
    )

    LINGER_TIME: Final = 5.0
    LINGER_TIMEOUT: Final = 1.0

    def __init__(
        self,
        *args: Any,
        header_timeout: float,
        on_timeout: Callable[[], None],
        on_refused: Callable[[int], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Pipelining stall workaround (docs/upstream/aiohttp-pipelining-stall.md). aiohttp's
        # C parser stops emitting requests when its in-flight count reaches the queue cap
        # (32) and keeps the rest of the pipeline in its own buffer; RequestHandler pauses
        # the transport at the same cap and re-feeds the parser only if it paused. The
        # parser counts a request when its body completes but the handler frees a slot when
        # it dequeues it, so a request dequeued mid-body (any large POST) frees nothing and
        # leaves the count one high for good. From then on the parser stops at 31 queued,
        # the transport is never paused, and the buffered requests wait for more bytes or
        # the keep-alive timeout. The drift is at most one slot, so pausing the transport
        # one request earlier than the parser restores "parser stopped => re-fed on drain".
        self._max_msg_queue_size -= 1
        self._tg_timeout = header_timeout
        self._tg_deadline: asyncio.TimerHandle | None = None
        self._tg_idle = False
        self._tg_on_timeout = on_timeout
        self._tg_on_refused = on_refused
        self._tg_head_refused = False
        self._tg_lingering: asyncio.Future[None] | None = None
        self._tg_linger_heard = False
        self._tg_stopping = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._tg_lingering is not None:
            self._tg_linger_heard = True
            return
        if self._tg_idle and self._tg_deadline is None:
            self._tg_idle = False
            self._arm()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        if self._tg_lingering is not None and not self._tg_lingering.done():
            self._tg_lingering.set_result(None)
        super().connection_lost(exc)

    async def shutdown(self, timeout: float | None = 15.0) -> None:
        # A lingering close is no request in flight: end it rather than hold the exit.
        self._tg_stopping = True
        if self._tg_lingering is not None and not self._tg_lingering.done():
            self._tg_lingering.set_result(None)
        await super().shutdown(timeout)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp answers a head its parser refused through here, with the parser's error.
        if isinstance(exc, HttpProcessingError):
            self._tg_head_refused = True
            self._tg_on_refused(exc.code if 400 <= exc.code < 600 else status)
        return super().handle_error(request, status, exc, message)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        result = await super().finish_response(request, resp, start_time)
        if self._tg_head_refused and not result[1]:
            await self._linger()
        return result

    async def _linger(self) -> None:
        """Shut the write side, then read and discard until the client closes, goes quiet
        or the time is up; aiohttp closes the transport when this returns."""
        transport = self.transport
        if transport is None or transport.is_closing() or self._tg_stopping:
            return
        self._disarm()
        self.close()  # aiohttp takes no further request from this connection
        loop = asyncio.get_running_loop()
        lingering = self._tg_lingering = loop.create_future()
        try:
            if transport.can_write_eof():
                transport.write_eof()  # FIN once the response has been flushed
            # aiohttp may have paused reading for the queue of parse errors built up since.
            transport.resume_reading()
        except (AttributeError, NotImplementedError, RuntimeError, OSError):
            return
        end = loop.time() + self.LINGER_TIME
        while not lingering.done() and (left := end - loop.time()) > 0:
            self._tg_linger_heard = False
            await asyncio.wait((lingering,), timeout=min(self.LINGER_TIMEOUT, left))
            if not self._tg_linger_heard:
                return

    def head_received(self) -> None:
        self._tg_idle = False
        self._disarm()

    def response_done(self) -> None:
        self._tg_idle = True

    def _arm(self) -> None:
        self._disarm()
        self._tg_deadline = asyncio.get_running_loop().call_later(self._tg_timeout, self._expired)

    def _disarm(self) -> None:
        if self._tg_deadline is not None:
            self._tg_deadline.cancel()
            self._tg_deadline = None

    def _expired(self) -> None:
        self._tg_deadline = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._tg_on_timeout()
        body = b"408 Request Timeout: the request head did not arrive in time\n"
        transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.force_close()
        transport.close()


class ProxyServer(web.Server):
    """`web.Server` whose connections carry the request-head deadline."""

    def __init__(self, handler: ProxyHandler, config: Config, metrics: Metrics, **kwargs: Any) -> None:
        lim, t = config.limits, config.timeouts
        self._tg_kwargs: dict[str, Any] = dict(
            keepalive_timeout=t.keepalive,
            max_line_size=lim.max_request_line,
            max_field_size=lim.max_header_size,
            max_headers=lim.max_headers,
            access_log=None,
            auto_decompress=False,
            lingering_time=2.0,
            read_bufsize=2**16,
            logger=OneLineLogger(logging.getLogger("tag_gate.http"), {}),
            header_timeout=t.header,
            on_timeout=metrics.header_timeouts.inc,
            on_refused=metrics.count_refused_head,
        )
        self._tg_max_connections = lim.max_connections
        self._tg_metrics = metrics
        super().__init__(handler, handler_cancellation=True, request_factory=self._tg_make_request, **kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if len(self._connections) > self._tg_max_connections:
            # Over the cap: answer 503 and close rather than let one peer exhaust descriptors.
            self._tg_metrics.rejected.labels("max_connections").inc()
            transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                b"Content-Length: 33\r\n\r\n503 too many connections, retry\r\n"
            )
            handler.force_close()
            transport.close()

    def __call__(self) -> RequestHandler:
        return DeadlineRequestHandler(self, loop=self._loop, **self._tg_kwargs)

    def _tg_make_request(
        self,
        message: RawRequestMessage,
        payload: aiohttp.StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        # aiohttp answers an unparseable head as if it were an HTTP/1.0 request (its
        # placeholder message), so the 400 would read "HTTP/1.0 400" without
        # "Connection: close"; answer as the HTTP/1.1 server this is, as nginx does.
        if message is web_protocol.ERROR:
            message = message._replace(version=HttpVersion11)
        return web.BaseRequest(message, payload, protocol, writer, task, self._loop)


async def start_session(state: ProxyState) -> None:
    state.pool = UpstreamPool(state.config)
    state.session = make_session(state.config)


async def close_session(state: ProxyState) -> None:
    if state.pool is not None:
        await state.pool.close()
        state.pool = None
    if state.session is not None:
        await state.session.close()
        state.session = None
