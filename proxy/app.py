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
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import IO, Any, Final

import aiohttp
from aiohttp import hdrs, web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict
from yarl import URL

from .config import Config
from .metrics import Metrics
from .upstream import BadForwardRequest, ForwardFacts, forward_headers, make_session, response_headers
from .websocket import relay_websocket

log = logging.getLogger("tag_gate")

RESERVED_PREFIX: Final = "/__tag-gate/"
"""Paths tag-gate answers itself (first-party assets); never forwarded."""

ERROR_KEY: Final = "tag_gate.error"
"""Request-scoped note of what went wrong after the response started, for the access log."""

BODYLESS_STATUSES: Final = frozenset({204, 304})
CHUNK_SIZE: Final = 2**16


class AccessLog:
    """One JSON object per line, buffered and flushed a few times a second.

    Writing each line straight to a pipe costs a system call per request; batching keeps
    the log off the hot path. `flush()` runs at shutdown so no line is lost.
    """

    def __init__(self, out: IO[str] | None) -> None:
        self._out = out
        self._buffer: list[str] = []
        self._handle: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return self._out is not None

    def write(self, record: dict[str, Any]) -> None:
        if self._out is None:
            return
        self._buffer.append(json.dumps(record, separators=(",", ":")) + "\n")
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(0.25, self.flush)

    def flush(self) -> None:
        self._handle = None
        if self._buffer and self._out is not None:
            data, self._buffer = "".join(self._buffer), []
            try:
                self._out.write(data)
                self._out.flush()
            except (OSError, ValueError):
                pass


@dataclass
class ProxyState:
    """What the handler needs, built once per process (or per reload)."""

    config: Config
    metrics: Metrics
    access_log: AccessLog
    session: aiohttp.ClientSession | None = None
    ready: bool = False
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    assets: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    """`/__tag-gate/<name>` → (body, content type)."""


class BodyTooLarge(Exception):
    pass


def _error_response(status: int, message: str, *, close: bool = False) -> web.Response:
    resp = web.Response(status=status, text=f"{status} {message}\n", content_type="text/plain")
    if close:
        resp.force_close()
    return resp


def _classify_upstream_error(exc: BaseException) -> tuple[str, int, str]:
    """(metric kind, status, message) for a failure before the upstream's headers."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect", 502, "Bad Gateway: cannot connect to the upstream"
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout", 504, "Gateway Timeout: the upstream did not answer in time"
    if isinstance(exc, aiohttp.ClientResponseError):
        if _header_overflow(exc):
            return "header_overflow", 502, "Bad Gateway: the upstream's response headers are too large"
        return "invalid_response", 502, "Bad Gateway: the upstream sent an invalid response"
    return "disconnect", 502, "Bad Gateway: the upstream closed the connection"


def _header_overflow(exc: BaseException) -> bool:
    """Whether a response-parse failure was a header line or count over the limits."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            break
        if isinstance(seen, LineTooLong) or "Too many headers" in str(seen):
            return True
        seen = seen.__cause__
    return False


class ProxyHandler:
    """The public listener's request handler (one instance per process)."""

    def __init__(self, state: ProxyState) -> None:
        self.state = state
        cfg = state.config
        assert cfg.server.upstream is not None, "config.check_runnable() guards this"
        self._upstream = cfg.server.upstream
        self._base = cfg.server.upstream.url
        self._methods = cfg.server.methods
        self._allow = ", ".join(sorted(cfg.server.methods))
        self._max_body = cfg.limits.max_request_body

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        state = self.state
        start = time.monotonic()
        state.in_flight += 1
        state.idle.clear()
        protocol = request.protocol
        if isinstance(protocol, DeadlineRequestHandler):
            protocol.head_received()
        status = 0
        error: str | None = None
        try:
            resp = await self._handle(request)
            status = resp.status
            error = request.get(ERROR_KEY)
            return resp
        except asyncio.CancelledError:
            state.metrics.client_disconnects.inc()
            error = "client_disconnected"
            raise
        finally:
            state.in_flight -= 1
            if state.in_flight == 0:
                state.idle.set()
            elapsed = time.monotonic() - start
            m = state.metrics
            if status:
                m.count_status(status)
            m.latency.observe(elapsed)
            if isinstance(protocol, DeadlineRequestHandler):
                protocol.response_done()
            if state.access_log.enabled:
                record: dict[str, Any] = {
                    "ts": round(time.time(), 3),
                    "remote": request.remote,
                    "method": request.method,
                    "path": request.raw_path[:2048],
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                }
                if error:
                    record["error"] = error
                state.access_log.write(record)

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

        return await self._forward(request, method, target, out_headers, body, facts)

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
        resp = web.Response(body=body, content_type=content_type)
        resp.headers[hdrs.CACHE_CONTROL] = "public, max-age=300"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    async def _request_body(self, request: web.BaseRequest) -> AsyncIterator[bytes]:
        """The client's body as a stream, refused once it passes the size limit."""
        total = 0
        limit = self._max_body
        content = request.content
        while True:
            chunk = await content.readany()
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
    ) -> web.StreamResponse:
        state = self.state
        session = state.session
        assert session is not None
        try:
            up = await session.request(
                method,
                URL(self._base + target, encoded=True),
                headers=out_headers,
                data=body,
                allow_redirects=False,
                compress=None,
            )
        except BodyTooLarge:
            state.metrics.rejected.labels("body_too_large").inc()
            return _error_response(413, "Content Too Large", close=True)
        except aiohttp.ClientPayloadError:
            # The client's own upload broke off; there is nobody to answer.
            request[ERROR_KEY] = "client_body_incomplete"
            return _error_response(400, "Bad Request: incomplete request body", close=True)
        except (TimeoutError, aiohttp.ClientError) as exc:
            if isinstance(exc.__cause__, BodyTooLarge) or isinstance(exc.__context__, BodyTooLarge):
                state.metrics.rejected.labels("body_too_large").inc()
                return _error_response(413, "Content Too Large", close=True)
            kind, status, message = _classify_upstream_error(exc)
            state.metrics.upstream_error[kind].inc()
            log.warning("upstream error %s for %s %s: %s", kind, method, target[:200], exc)
            return _error_response(status, message)

        try:
            return await self._relay(request, method, up)
        finally:
            up.release()

    async def _relay(self, request: web.BaseRequest, method: str, up: aiohttp.ClientResponse) -> web.StreamResponse:
        """Headers stage, then body stage, for a response the upstream has started."""
        status = up.status
        if status == 101:
            up.close()
            self.state.metrics.upstream_error["invalid_response"].inc()
            return _error_response(502, "Bad Gateway: the upstream switched protocols unasked")

        resp = web.StreamResponse(status=status, headers=response_headers(up.headers))
        empty = method == "HEAD" or status in BODYLESS_STATUSES or status < 200
        length = up.content_length
        if length is not None and status not in BODYLESS_STATUSES:
            resp.content_length = length
        try:
            await resp.prepare(request)
            if empty:
                await resp.write_eof()
                return resp
            content = up.content
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

    def _client_gone(self, request: web.BaseRequest, up: aiohttp.ClientResponse) -> None:
        self.state.metrics.client_disconnects.inc()
        request[ERROR_KEY] = "client_disconnected"
        up.close()

    def _abort(self, request: web.BaseRequest, up: aiohttp.ClientResponse, exc: BaseException) -> None:
        """The upstream failed mid-body: drop both connections so nobody sees a clean end.

        The caller returns the response without `write_eof()`; aiohttp's attempt to finish
        it then fails on the aborted transport and the connection is discarded.
        """
        kind = "timeout" if isinstance(exc, asyncio.TimeoutError) else "body_aborted"
        self.state.metrics.upstream_error[kind].inc()
        log.warning("upstream body failed (%s) for %s %s: %s", kind, request.method, request.raw_path[:200], exc)
        request[ERROR_KEY] = f"upstream_{kind}"
        up.close()
        transport = request.transport
        if transport is not None:
            transport.abort()


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
    """

    __slots__ = ("_tg_deadline", "_tg_timeout", "_tg_idle", "_tg_on_timeout")

    def __init__(self, *args: Any, header_timeout: float, on_timeout: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tg_timeout = header_timeout
        self._tg_deadline: asyncio.TimerHandle | None = None
        self._tg_idle = False
        self._tg_on_timeout = on_timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._tg_idle and self._tg_deadline is None:
            self._tg_idle = False
            self._arm()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

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


class _OneLineLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp logs a traceback for every malformed request; one line is enough."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        exc = sys.exc_info()[1] if exc_info is True else exc_info
        detail = f": {type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else ""
        self.logger.warning(f"{msg}{detail}", *args)


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
            logger=_OneLineLogger(logging.getLogger("tag_gate.http"), {}),
            header_timeout=t.header,
            on_timeout=metrics.header_timeouts.inc,
        )
        self._tg_max_connections = lim.max_connections
        self._tg_metrics = metrics
        super().__init__(handler, handler_cancellation=True, **kwargs)

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


async def start_session(state: ProxyState) -> None:
    state.session = make_session(state.config)


async def close_session(state: ProxyState) -> None:
    if state.session is not None:
        await state.session.close()
        state.session = None
