"""One upstream connection: aiohttp's C response parser on a transport, the request's
read and send timeouts, and the salvage of a response followed by stray bytes.

The pool (`proxy.http.pool`) owns connections; a connection knows its owner only
through `Owner` (its loop, limits and timeouts, and `forget` when it closes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final, Protocol

from aiohttp import ClientPayloadError, hdrs
from multidict import CIMultiDictProxy

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

READ_BUFFER: Final = 1 << 16


class Owner(Protocol):
    """What a connection needs from the pool that opened it."""

    loop: asyncio.AbstractEventLoop
    read_timeout: float
    max_field_size: int
    max_headers: int

    def forget(self, conn: Connection) -> None:
        """The connection closed: it no longer counts against the pool's limit."""


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


class Connection(UpstreamProtocol):
    """One upstream connection and the request on it (at most one at a time)."""

    def __init__(self, pool: Owner) -> None:
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
        self.pool.forget(self)

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
        waiter.add_done_callback(retrieve)
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


def retrieve(future: asyncio.Future[Any]) -> None:
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
