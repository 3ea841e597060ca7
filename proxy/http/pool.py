"""The upstream client: a keep-alive connection pool speaking HTTP/1.1 to the one origin.

Why not aiohttp's ClientSession: it is built for a browser-like client and most of its
per-request work (cookie jar, redirects, auth, tracing, URL building, a ClientRequest
and ClientResponse object graph) is dead weight for a proxy that forwards to one fixed
origin (bench/README.md has the CPU cost of each). What matters about the protocol is
kept from aiohttp: responses are parsed by aiohttp's C parser (llhttp, with aiohttp's
limits and its payload StreamReader), through `_aiohttp`, with flow control owned
there. ClientSession is still used for WebSocket relays
(`proxy.http.forwarding.make_session`).

Contract:
- nothing is added to the request: the caller's headers go out as given (values are
  written back to their original bytes), with `Transfer-Encoding: chunked` only when a
  body of unknown length is streamed;
- no redirects, no decompression, no cookie jar; connect and per-read idle timeouts,
  no total;
- a connection is reused only after its response ended cleanly and neither side asked
  to close; idle connections are closed after `timeouts.upstream_idle`;
- a request that failed on a reused connection before any response byte arrived is
  retried once on a fresh connection when it is idempotent and has no body
  (RFC 9112 §9.3.1); nothing else is ever retried;
- the read timeout (`timeouts.read`) is the upstream's silence once the whole request
  has been sent, as nginx's `proxy_read_timeout`: time spent forwarding a slow client's
  body never counts; an upstream that stops reading the request body for that long
  times out the same way (nginx's `proxy_send_timeout`);
- at most `limits.upstream_pool_size` connections are open; further requests wait in
  one FIFO queue (a released connection or a freed slot goes to the oldest waiter, so
  nobody is overtaken), at most `limits.upstream_queue` of them and each for at most
  `timeouts.upstream_queue` seconds, after which `UpstreamError("queue_timeout")`
  (answered 503 with Retry-After);
- only `Transfer-Encoding: chunked` (or none) is accepted from the upstream: any other
  transfer coding cannot be relayed faithfully and is a 502;
- a response followed by bytes nobody asked for (past its Content-Length, or a body
  after HEAD/204/304) is delivered as it was framed and the connection is dropped;
- failures before the response head raise `UpstreamError` with a metric kind and the
  status to answer; failures while reading the body surface from `content` as
  `aiohttp.ClientPayloadError` or `TimeoutError`. No task or future of the pool ever
  ends with an exception nobody retrieves.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy

from ..core.config import Config
from ._aiohttp import EMPTY_PAYLOAD, RawResponseMessage, StreamReader
from .connection import BodyError, Connection, UpstreamError, retrieve

log = logging.getLogger("tag_gate")

IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class UpstreamResponse:
    """A response whose head has arrived. Read `content`, then `release()` (or `close()`)."""

    __slots__ = ("_conn", "_pool", "_sender", "content", "headers", "status", "content_length")

    def __init__(
        self,
        pool: UpstreamPool,
        conn: Connection,
        message: RawResponseMessage,
        payload: StreamReader,
        sender: asyncio.Task[None] | None,
    ) -> None:
        self._pool = pool
        self._conn: Connection | None = conn
        self._sender = sender
        self.status: int = message.code
        self.headers: CIMultiDictProxy[str] = message.headers
        self.content = payload
        length = message.headers.get("Content-Length")
        self.content_length: int | None = int(length) if length is not None and length.isdigit() else None

    def release(self) -> None:
        """Give the connection back to the pool if the exchange ended cleanly."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        sender = self._sender
        if sender is not None and not sender.done():
            sender.cancel()
            conn.should_close = True
        reusable = (
            not conn.closed
            and not conn.should_close
            and (self.content is EMPTY_PAYLOAD or self.content.is_eof())
            and self.content.exception() is None
        )
        self._pool._release(conn, reusable)

    def close(self) -> None:
        """Drop the connection (the body was not read to its end, or must not be)."""
        conn, self._conn = self._conn, None
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
        if conn is not None:
            conn.abort()
            self._pool._release(conn, False)


class UpstreamPool:
    """Keep-alive connections to the configured upstream (see the module docstring)."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop | None = None) -> None:
        upstream = config.server.upstream
        assert upstream is not None
        t, lim = config.timeouts, config.limits
        self.loop = loop or asyncio.get_running_loop()
        self.host = upstream.host
        self.port = upstream.port
        self.connect_timeout = t.connect
        self.read_timeout = t.read
        self.idle_timeout = t.upstream_idle
        self.limit = lim.upstream_pool_size
        self.max_field_size = lim.upstream_max_header_size
        self.max_headers = lim.upstream_max_headers
        self.queue_limit = lim.upstream_queue
        self.queue_timeout = t.upstream_queue
        self._idle: list[Connection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[Connection | None]] = collections.deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self._schedule_sweep()

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def queued_requests(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    async def request(
        self,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: AsyncIterator[bytes] | None = None,
    ) -> UpstreamResponse:
        """Send one request; return when the response head has arrived.

        `headers` must already be what the upstream may see (Host included). With a
        `body` and no Content-Length header, the body is sent chunked.
        """
        chunked = body is not None and "Content-Length" not in headers
        head = _serialise(method, target, headers, chunked)
        skip_payload = method == "HEAD"
        retry = body is None and method in IDEMPOTENT
        conn, reused = await self._acquire(fresh=False)
        try:
            return await self._exchange(conn, head, body, chunked, skip_payload)
        except UpstreamError as exc:
            if not (retry and reused and exc.kind == "disconnect" and not conn.got_bytes):
                raise
        # The pooled connection was closed under us before any answer: one retry.
        conn, _ = await self._acquire(fresh=True)
        return await self._exchange(conn, head, None, False, skip_payload)

    async def _exchange(
        self,
        conn: Connection,
        head: bytes,
        body: AsyncIterator[bytes] | None,
        chunked: bool,
        skip_payload: bool,
    ) -> UpstreamResponse:
        waiter = conn.start(skip_payload)
        transport = conn.transport
        if transport is None or conn.closed:
            self._release(conn, False)
            raise UpstreamError("disconnect", "the upstream closed the connection before answering")
        transport.write(head)
        sender: asyncio.Task[None] | None = None
        try:
            if body is None:
                message, payload = await waiter
            else:
                conn.sending = True
                sender = asyncio.ensure_future(self._send_body(conn, body, chunked))
                sender.add_done_callback(retrieve)
                await asyncio.wait((waiter, sender), return_when=asyncio.FIRST_COMPLETED)
                sent = sender.exception() if sender.done() else None
                if isinstance(sent, BodyError) or (sent is not None and not waiter.done()):
                    # The client's own body failed (its fault first), or sending failed
                    # before any answer.
                    raise sent
                message, payload = await waiter
        except BaseException:
            if sender is not None and not sender.done():
                sender.cancel()
            conn.abort()
            self._release(conn, False)
            raise
        return UpstreamResponse(self, conn, message, payload, sender)

    async def _send_body(self, conn: Connection, body: AsyncIterator[bytes], chunked: bool) -> None:
        try:
            async for chunk in body:
                transport = conn.transport
                if transport is None or conn.closed:
                    raise ConnectionResetError("upstream connection lost")
                if chunked:
                    if chunk:
                        transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    transport.write(chunk)
                await conn.drain()
            if chunked and conn.transport is not None:
                conn.transport.write(b"0\r\n\r\n")
            # The request is sent: from now on the upstream's silence counts.
            conn.sending = False
            if not conn.closed and not conn.answered:
                conn.last_read = self.loop.time()
                conn._arm(self.read_timeout)
        except (ConnectionError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            if not conn.answered:
                raise UpstreamError("disconnect", f"the upstream stopped reading the request body: {exc}") from None
        except Exception as exc:
            raise BodyError(exc) from exc
        finally:
            conn.sending = False

    # ------------------------------------------------------------ pool

    async def _acquire(self, fresh: bool) -> tuple[Connection, bool]:
        """A connection for one request: an idle one (unless `fresh`), a new one while
        under the limit, or the next one released, in arrival order."""
        loop = self.loop
        if not self._waiters:  # nobody queued ahead: no overtaking
            if not fresh:
                now = loop.time()
                while self._idle:
                    conn = self._idle.pop()
                    if conn.closed or now - conn.idle_since >= self.idle_timeout:
                        conn.close()
                        continue
                    return conn, True
            if self._open < self.limit:
                self._open += 1
                return await self._connect(), False
        granted = await self._queue()
        if granted is not None:
            if fresh:
                # A retry must not reuse a kept-alive connection: keep its slot, drop it.
                granted.counted = False
                granted.close()
            else:
                return granted, True
        return await self._connect(), False

    async def _queue(self) -> Connection | None:
        """Wait in line. Returns a released connection handed over, or None for a
        freed slot (already counted in `_open` on the caller's behalf)."""
        if len(self._waiters) >= self.queue_limit:
            raise UpstreamError("queue_full", "every upstream connection is busy and the queue is full")
        waiter: asyncio.Future[Connection | None] = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.queue_timeout):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # Granted just as we gave up: hand it back to the next in line.
                self._handback(waiter.result())
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise UpstreamError(
                    "queue_timeout", f"no upstream connection became free within {self.queue_timeout:g} s"
                ) from None
            raise

    def _handback(self, granted: Connection | None) -> None:
        if granted is None:
            self._open -= 1
            self._grant_slot()
        else:
            self._release(granted, not granted.closed)

    async def _connect(self) -> Connection:
        """Open a connection for a slot already counted in `_open`."""
        loop = self.loop
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(lambda: Connection(self), self.host, self.port)
        except TimeoutError:
            self._open -= 1
            self._grant_slot()
            raise UpstreamError("timeout", "connecting to the upstream timed out") from None
        except OSError as exc:
            self._open -= 1
            self._grant_slot()
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise UpstreamError("connect", f"cannot connect to the upstream: {reason}") from None
        except BaseException:
            self._open -= 1
            self._grant_slot()
            raise
        return conn

    def _release(self, conn: Connection, reusable: bool) -> None:
        if reusable and not self._closed and not conn.closed:
            conn.parser = None
            conn.waiter = None
            conn.payload = None
            conn.idle_since = self.loop.time()
            waiter = self._next_waiter()
            if waiter is not None:
                waiter.set_result(conn)  # straight to the oldest waiter
            else:
                self._idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: Connection) -> None:
        """connection_lost: the connection no longer counts against the limit."""
        if conn in self._idle:
            self._idle.remove(conn)
        if conn.counted:
            conn.counted = False
            self._open -= 1
            self._grant_slot()

    def _grant_slot(self) -> None:
        """A slot is free: give it to the oldest waiter, if any (counted for it now)."""
        if self._open < self.limit:
            waiter = self._next_waiter()
            if waiter is not None:
                self._open += 1
                waiter.set_result(None)

    def _next_waiter(self) -> asyncio.Future[Connection | None] | None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    def _schedule_sweep(self) -> None:
        if not self._closed:
            self._sweeper = self.loop.call_later(max(self.idle_timeout / 2, 0.5), self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in [c for c in self._idle if now - c.idle_since >= self.idle_timeout]:
            conn.close()
        self._schedule_sweep()

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        await asyncio.sleep(0)


def _serialise(method: str, target: str, headers: CIMultiDict[str], chunked: bool) -> bytes:
    """The request head. Header values go back to the bytes the client sent (aiohttp
    decodes them as UTF-8 with surrogateescape); aiohttp's request parser has already
    refused CR, LF and NUL in them, and tag-gate's own values contain none."""
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
    if chunked:
        lines.append("Transfer-Encoding: chunked\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8", "surrogateescape")
