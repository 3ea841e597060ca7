"""The public listener: aiohttp's low-level server with tag-gate's connection rules.

- a deadline for the request head (aiohttp has none): 408 and close;
- a lingering close after a refused request head, as nginx does;
- the pipelining workaround (docs/upstream/aiohttp-pipelining-stall.md);
- a cap on open connections (503 and close past `limits.max_connections`);
- refused heads counted; aiohttp's own error log reduced to one line.

Everything private of aiohttp goes through `_aiohttp`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from ..core.config import Config
from ..logs import OneLineLogger
from ..metrics import Metrics
from . import _aiohttp
from .forwarding import raw_head_serializer

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class DeadlineRequestHandler(_aiohttp.RequestHandler):
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
        _aiohttp.lower_pipeline_cap(self)
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
        if isinstance(exc, _aiohttp.HttpProcessingError):
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

    def __init__(self, handler: Handler, config: Config, metrics: Metrics, **kwargs: Any) -> None:
        # obs-text in upstream header values reaches the client unchanged (installed
        # here, when a server starts, so merely importing tag-gate patches nothing).
        _aiohttp.install_head_serializer(raw_head_serializer)
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
        _aiohttp.write_pieces_unjoined(_aiohttp.server_loop(self))

    def connection_made(self, handler: _aiohttp.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if _aiohttp.connection_count(self) > self._tg_max_connections:
            # Over the cap: answer 503 and close rather than let one peer exhaust descriptors.
            self._tg_metrics.rejected.labels("max_connections").inc()
            transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                b"Content-Length: 33\r\n\r\n503 too many connections, retry\r\n"
            )
            handler.force_close()
            transport.close()

    def __call__(self) -> _aiohttp.RequestHandler:
        return DeadlineRequestHandler(self, loop=_aiohttp.server_loop(self), **self._tg_kwargs)

    def _tg_make_request(
        self,
        message: _aiohttp.RawRequestMessage,
        payload: aiohttp.StreamReader,
        protocol: _aiohttp.RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        # aiohttp answers an unparseable head as if it were an HTTP/1.0 request (its
        # placeholder message), so the 400 would read "HTTP/1.0 400" without
        # "Connection: close"; answer as the HTTP/1.1 server this is, as nginx does.
        if _aiohttp.is_unparseable_head(message):
            message = _aiohttp.with_http11(message)
        return web.BaseRequest(message, payload, protocol, writer, task, _aiohttp.server_loop(self))
