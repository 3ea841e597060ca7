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
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from aiohttp import ClientPayloadError, hdrs
from multidict import CIMultiDict, CIMultiDictProxy

from ..core.config import Config
from ._aiohttp import (
    EMPTY_PAYLOAD,
    HttpProcessingError,
    LineTooLong,
    ProbeProtocol,
    RawResponseMessage,
    StreamReader,
    UpstreamProtocol,
    make_response_parser,
)
from .response import BODYLESS_STATUSES

log = logging.getLogger("tag_gate")

IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
READ_BUFFER: Final = 1 << 16


class UpstreamError(Exception):
    """The upstream failed before its response head (or could not be reached in time);
    `kind` is a metric label and `status` what the client gets: 502, 504 for a timeout,
    503 when no pooled connection became free in time."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = _STATUS_BY_KIND.get(kind, 502)


_STATUS_BY_KIND: Final = {"timeout": 504, "queue_timeout": 503, "queue_full": 503}


class BodyError(Exception):
    """Forwarding the client's body failed; `cause` is what the body iterator raised."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Connection(UpstreamProtocol):
    """One upstream connection and the request on it (at most one at a time)."""

    def __init__(self, pool: UpstreamPool) -> None:
        super().__init__(pool.loop)
        self.pool = pool
        self.parser: Any = None
        """aiohttp's response parser for the request in progress (see `_aiohttp`)."""
        self.waiter: asyncio.Future[tuple[RawResponseMessage, StreamReader]] | None = None
        self.payload: StreamReader | None = None
        self.skip_payload = False
        self.answered = False
        self.should_close = False
        self.closed = False
        self.got_bytes = False
        self.idle_since = 0.0
        self.last_read = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.write_waiter: asyncio.Future[None] | None = None
        self.counted = True
        """Whether this connection holds one of the pool's `limit` slots."""
        self.sending = False
        """The request body is being forwarded: the upstream is not yet expected to answer."""
        self.write_blocked_since: float | None = None
        """When the upstream stopped taking request bytes (transport paused), if it has."""
        self.unanswered: list[bytes] = []
        """What arrived since the request was sent, until its final response head (for `_salvage`)."""

    # ------------------------------------------------------------ protocol

    def data_received(self, data: bytes) -> None:
        self.last_read = self.pool.loop.time()
        parser = self.parser
        if parser is None or (self.answered and self.payload is None):
            if data:
                # Bytes nobody asked for (after a bodiless response, or on an idle
                # connection): the stream is out of step, never reuse it.
                self.should_close = True
                self.close()
            return
        if data:
            self.got_bytes = True
            if not self.answered:
                self.unanswered.append(data)
        try:
            messages, upgraded, _tail = parser.feed_data(data)
        except Exception as exc:  # llhttp refused what followed: salvage, fail or discard
            self.should_close = True
            if self.answered or not self._salvage(exc):
                self._fail(_parse_error(exc))
                if self.payload is not None and not self.payload.is_eof():
                    self.payload.set_exception(ClientPayloadError(f"invalid upstream body: {_parse_error(exc)}"))
            self.close()
            return
        self._take(messages, upgraded)

    def _take(self, messages: Sequence[tuple[RawResponseMessage, StreamReader]], upgraded: bool) -> None:
        """Act on the messages a feed produced: skip 1xx, hand the final response to the
        waiter, refuse what cannot be relayed."""
        for message, payload in messages:
            code = message.code
            if self.answered:
                self.should_close = True
                self.close()
                return
            if 100 <= code < 200 and code != 101:
                continue  # informational (100, 103): the final response follows
            if code == 101 or upgraded:
                self._fail(UpstreamError("invalid_response", "the upstream switched protocols unasked"))
                self.close()
                return
            coding = _transfer_coding(message.headers)
            if coding is not None:
                self._fail(
                    UpstreamError("invalid_response", f"the upstream sent an unsupported Transfer-Encoding: {coding}")
                )
                self.close()
                return
            self.answered = True
            self.unanswered.clear()
            if message.should_close:
                self.should_close = True
            if self.skip_payload or code in BODYLESS_STATUSES:
                payload = EMPTY_PAYLOAD
            else:
                self.payload = payload
                payload.on_eof(self._body_done)
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result((message, payload))

    def _salvage(self, exc: Exception) -> bool:
        """The parser failed before a final response was handed out. When what arrived
        starts with a complete, valid response followed by bytes that are not one
        (body bytes past Content-Length, a body after HEAD/204/304), deliver that
        response as it was framed; the connection is dropped after it. Finds the
        longest prefix a fresh parser accepts (bisection: a prefix that fails keeps
        failing when extended). Returns whether a final response was handed out."""
        data = b"".join(self.unanswered)
        self.unanswered.clear()
        good, bad = 0, len(data)
        while bad - good > 1:
            middle = (good + bad) // 2
            if self._parses(data[:middle]):
                good = middle
            else:
                bad = middle
        if good == 0:
            return False
        parser = self._new_parser()
        try:
            messages, upgraded, _tail = parser.feed_data(data[:good])
        except Exception:
            return False
        self.parser = None  # nothing more is read from this connection
        self._take(messages, upgraded)
        if not self.answered:
            return False
        if self.payload is not None and not self.payload.is_eof():
            # The prefix ends inside the body: the body itself was malformed.
            self.payload.set_exception(ClientPayloadError(f"invalid upstream body: {_parse_error(exc)}"))
        log.info("upstream sent bytes after a complete response; delivered it and dropped the connection")
        return True

    def _parses(self, data: bytes) -> bool:
        try:
            self._new_parser(probe=True).feed_data(data)
        except Exception:
            return False
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self._stop_timer()
        parser, self.parser = self.parser, None
        if parser is not None:
            try:
                parser.feed_eof()
            except Exception as err:
                if self.payload is not None:
                    self.payload.set_exception(ClientPayloadError(f"upstream body incomplete: {err!r}"))
        if not self.answered:
            self._fail(UpstreamError("disconnect", "the upstream closed the connection before answering"))
        elif self.payload is not None and not self.payload.is_eof():
            self.payload.set_exception(ClientPayloadError("the upstream closed the connection mid-body"))
        waiter = self.write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("upstream connection lost"))
        super().connection_lost(exc)
        self.pool._forget(self)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.write_blocked_since = self.pool.loop.time()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.write_blocked_since = None
        waiter, self.write_waiter = self.write_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("upstream connection lost")
        if self.writing_paused:
            self.write_waiter = self.pool.loop.create_future()
            await self.write_waiter

    # ------------------------------------------------------------ request state

    def _new_parser(self, *, probe: bool = False) -> Any:
        pool = self.pool
        return make_response_parser(
            ProbeProtocol(pool.loop) if probe else self,
            pool.loop,
            buffer=READ_BUFFER,
            max_field_size=pool.max_field_size,
            max_headers=pool.max_headers,
            with_body=not self.skip_payload,
            payload_exception=ClientPayloadError,
        )

    def start(self, skip_payload: bool) -> asyncio.Future[tuple[RawResponseMessage, StreamReader]]:
        pool = self.pool
        self.skip_payload = skip_payload
        self.parser = self._new_parser()
        self.answered = False
        self.payload = None
        self.got_bytes = False
        self.unanswered.clear()
        self.waiter = waiter = pool.loop.create_future()
        # Whoever ends up not awaiting it (a request given up on), its exception is seen.
        waiter.add_done_callback(_retrieve)
        self.last_read = pool.loop.time()
        self._arm(pool.read_timeout)
        return waiter

    def _body_done(self) -> None:
        self._stop_timer()

    def _fail(self, exc: Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.should_close = True
        transport = self.transport
        if transport is not None and not self.closed:
            transport.close()

    def abort(self) -> None:
        self.should_close = True
        transport = self.transport
        if transport is not None and not self.closed:
            transport.abort()

    # ------------------------------------------------------------ read timeout

    def _arm(self, timeout: float) -> None:
        self._stop_timer()
        self.timer = self.pool.loop.call_at(self.last_read + timeout, self._check_timeout)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check_timeout(self) -> None:
        """Fires at most once per timeout period; activity since then just re-arms it
        (no timer churn per received chunk)."""
        self.timer = None
        pool = self.pool
        if self.closed:
            return
        now = pool.loop.time()
        if self.sending and not self.answered:
            blocked = self.write_blocked_since
            if blocked is None or now - blocked < pool.read_timeout:
                # Still forwarding the client's body (however slowly it comes): the
                # read timeout starts once the request is sent.
                self.last_read = now if blocked is None else blocked
                self._arm(pool.read_timeout)
                return
            self._fail(UpstreamError("timeout", "the upstream stopped reading the request body"))
            self.abort()
            return
        if self.reading_paused:
            # Our own consumer is slow (flow control): the upstream is not silent.
            self.last_read = now
            self._arm(pool.read_timeout)
            return
        if now - self.last_read < pool.read_timeout:
            self._arm(pool.read_timeout)
            return
        if not self.answered:
            self._fail(UpstreamError("timeout", "the upstream did not answer in time"))
        elif self.payload is not None and not self.payload.is_eof():
            self.payload.set_exception(TimeoutError("the upstream stopped sending the body"))
        self.abort()


def _parse_error(exc: Exception) -> UpstreamError:
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            break
        if isinstance(seen, LineTooLong) or "Too many headers" in str(seen):
            return UpstreamError("header_overflow", "the upstream's response headers are too large")
        seen = seen.__cause__
    detail = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
    return UpstreamError("invalid_response", f"the upstream sent an invalid response: {str(detail)[:200]}")


class UpstreamResponse:
    """A response whose head has arrived. Read `content`, then `release()` (or `close()`)."""

    __slots__ = ("_conn", "_pool", "_sender", "content", "headers", "status", "content_length")

    def __init__(
        self,
        pool: UpstreamPool,
        conn: _Connection,
        message: RawResponseMessage,
        payload: StreamReader,
        sender: asyncio.Task[None] | None,
    ) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
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
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
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
        conn: _Connection,
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
                sender.add_done_callback(_retrieve)
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

    async def _send_body(self, conn: _Connection, body: AsyncIterator[bytes], chunked: bool) -> None:
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

    async def _acquire(self, fresh: bool) -> tuple[_Connection, bool]:
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

    async def _queue(self) -> _Connection | None:
        """Wait in line. Returns a released connection handed over, or None for a
        freed slot (already counted in `_open` on the caller's behalf)."""
        if len(self._waiters) >= self.queue_limit:
            raise UpstreamError("queue_full", "every upstream connection is busy and the queue is full")
        waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
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

    def _handback(self, granted: _Connection | None) -> None:
        if granted is None:
            self._open -= 1
            self._grant_slot()
        else:
            self._release(granted, not granted.closed)

    async def _connect(self) -> _Connection:
        """Open a connection for a slot already counted in `_open`."""
        loop = self.loop
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
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

    def _release(self, conn: _Connection, reusable: bool) -> None:
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

    def _forget(self, conn: _Connection) -> None:
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

    def _next_waiter(self) -> asyncio.Future[_Connection | None] | None:
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


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Done callback: mark a future's exception as seen (its owner may have moved on)."""
    if not future.cancelled():
        future.exception()


def _transfer_coding(headers: CIMultiDictProxy[str]) -> str | None:
    """The response's Transfer-Encoding when it is anything but plain `chunked`, else None."""
    values = headers.getall(hdrs.TRANSFER_ENCODING, ())
    if not values:
        return None
    codings = [c.strip().lower() for v in values for c in v.split(",")]
    return None if codings == ["chunked"] else ", ".join(codings)[:100]
