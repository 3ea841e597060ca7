"""The one place tag-gate touches aiohttp's private or undocumented surface.

aiohttp is pinned to the minor line `tests/test_aiohttp_contract.py` was run against
(pyproject: `aiohttp>=3.14.3,<3.15`); that test asserts every name below still exists
with the shape relied on, so a new aiohttp fails one named test instead of silently
undoing obs-text pass-through, framing guarantees or the pipelining workaround. ruff's
banned-API rule keeps aiohttp's internal modules out of every other file.

What is used, and why:
- `http_writer._serialize_headers`: replaced (once, by the server at start, never at
  import) so header bytes outside UTF-8 reach the client unchanged
  (`forwarding.serialize_head`).
- `StreamResponse._send_headers_immediately`: cleared so a response head leaves in the
  same socket write as its first body bytes.
- `http_writer.SKIP_WRITELINES`: cleared under uvloop, so a response's pieces (head,
  chunk framing, body) go to the transport's `writelines` instead of being joined into
  a new bytes object first (`write_pieces_unjoined`).
- `web.Server._connections`, `BaseRunner._shutdown_timeout`: the connection cap and the
  bounded shutdown.
- `base_protocol.BaseProtocol` with its `_paused`/`_reading_paused` slots,
  `http_parser.HttpResponseParser`, `streams.StreamReader`/`EMPTY_PAYLOAD`: the upstream
  pool runs aiohttp's C response parser on its own connections.
- `web_protocol.RequestHandler` (subclassed), its `_max_msg_queue_size` slot, its
  `handle_error`/`finish_response`/`shutdown` hooks, `web_protocol.ERROR` and
  `web.Server._loop`: the request-head deadline, the lingering close and the pipelining
  workaround (`server.py`).
- `http_parser.HttpRequestParser.__module__`: refusing the pure-Python parser.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Final

from aiohttp import http_parser, http_writer, web, web_protocol
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11, RawRequestMessage
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.http_parser import HttpResponseParser, RawResponseMessage
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from multidict import CIMultiDict

__all__ = [
    "EMPTY_PAYLOAD",
    "SERVER_SOFTWARE",
    "HttpProcessingError",
    "LineTooLong",
    "RawRequestMessage",
    "RawResponseMessage",
    "RequestHandler",
    "StreamReader",
    "UpstreamProtocol",
    "c_parser_in_use",
    "connection_count",
    "current_head_serializer",
    "head_serializer_installed",
    "install_head_serializer",
    "is_unparseable_head",
    "lower_pipeline_cap",
    "make_response_parser",
    "send_head_with_body",
    "server_loop",
    "set_cleanup_timeout",
    "with_http11",
    "write_pieces_unjoined",
]

RequestHandler = web_protocol.RequestHandler
"""aiohttp's per-connection protocol, subclassed by `server.DeadlineRequestHandler`."""

_PAUSE_ERRORS: Final = (AttributeError, NotImplementedError, RuntimeError)

HeadSerializer = Callable[[str, "CIMultiDict[str]"], bytes]


# --------------------------------------------------------------------------- response heads


def install_head_serializer(make: Callable[[HeadSerializer], HeadSerializer]) -> None:
    """Route aiohttp's response-head serialization through `make(aiohttp's own)`.
    Idempotent: a second call keeps the first installation."""
    current = http_writer._serialize_headers
    if getattr(current, "_tag_gate", False):
        return
    serialize = make(current)
    serialize._tag_gate = True  # type: ignore[attr-defined]
    http_writer._serialize_headers = serialize  # type: ignore[assignment]  # same call shape, positional names


def current_head_serializer() -> HeadSerializer:
    """What aiohttp calls to serialize a response head right now."""
    return http_writer._serialize_headers


def head_serializer_installed() -> bool:
    return bool(getattr(http_writer._serialize_headers, "_tag_gate", False))


def send_head_with_body(resp: web.StreamResponse) -> None:
    """Hold the head of `resp` until its first body write (one socket write for both).
    web.Response sets the same switch; were it ever gone, the head is sent alone."""
    resp._send_headers_immediately = False


def write_pieces_unjoined(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether aiohttp now hands a response's pieces (its head, the chunk framing, the
    body, 2 KB or more in all) to the transport's `writelines` unjoined; it does so
    under uvloop from this call on.

    Before Python 3.12.9 aiohttp joins them into one new bytes object for every write
    (`SKIP_WRITELINES`): CPython's selector transport gained a `writelines` in 3.12 that
    skipped flow control until 3.12.9 (CVE-2024-12254). uvloop's transport has its own,
    the same buffered, flow-controlled path as its `write`, sent with one `writev`: there
    the join only copies every body once more (a gated page with the runtime guard, 27
    KB, is most of the per-response copying). tag-gate always serves under uvloop; any
    other loop keeps aiohttp's choice."""
    if not http_writer.SKIP_WRITELINES:
        return True
    if type(loop).__module__.partition(".")[0] != "uvloop":
        return False
    http_writer.SKIP_WRITELINES = False  # a module constant aiohttp reads at each write
    return True


# --------------------------------------------------------------------------- server


def connection_count(server: web.Server) -> int:
    """Open connections of `server`, without copying them (the public `connections` does)."""
    return len(server._connections)


def set_cleanup_timeout(runner: web.BaseRunner, seconds: float) -> None:
    """What `runner.cleanup()` may still wait for handlers (tag-gate cuts them itself first)."""
    runner._shutdown_timeout = seconds


def server_loop(server: web.Server) -> asyncio.AbstractEventLoop:
    return server._loop


def lower_pipeline_cap(handler: web_protocol.RequestHandler) -> None:
    """Pause the transport one queued request before the C parser stops (see
    docs/upstream/aiohttp-pipelining-stall.md and `server.DeadlineRequestHandler`)."""
    handler._max_msg_queue_size -= 1


def is_unparseable_head(message: RawRequestMessage) -> bool:
    """Whether aiohttp hands its placeholder message for a head its parser refused."""
    return message is web_protocol.ERROR


def with_http11(message: RawRequestMessage) -> RawRequestMessage:
    return message._replace(version=HttpVersion11)


def c_parser_in_use() -> bool:
    """Whether aiohttp parses requests with its C extension (llhttp), not the pure-Python
    parser where most of its historical request-smuggling bugs lived."""
    return http_parser.HttpRequestParser.__module__ == "aiohttp._http_parser"


# --------------------------------------------------------------------------- upstream side


class UpstreamProtocol(BaseProtocol):
    """Base of the pool's connections: aiohttp's protocol base (what its parser and
    payload StreamReader expect), with flow control owned here.

    The payload StreamReader calls `pause_reading` when its buffer passes its high-water
    mark and `resume_reading` when it drains. Only the transport is paused: the parser
    never is, so every byte received is in the StreamReader (at most one read past the
    mark) and nothing is held inside the parser when the upstream closes. aiohttp's own
    versions pause the parser through `BaseProtocol._parser`, which this class never
    sets (they asserted on it, cutting every large body off: issue 12)."""

    @property
    def reading_paused(self) -> bool:
        return self._reading_paused

    @property
    def writing_paused(self) -> bool:
        return self._paused

    def pause_reading(self) -> None:
        if self._reading_paused:
            return
        self._reading_paused = True
        transport = self.transport
        if transport is not None:
            with contextlib.suppress(*_PAUSE_ERRORS):
                transport.pause_reading()

    def resume_reading(self, resume_parser: bool = True) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        transport = self.transport
        if transport is not None:
            with contextlib.suppress(*_PAUSE_ERRORS):
                transport.resume_reading()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False


class ProbeProtocol(UpstreamProtocol):
    """The protocol of a throwaway parser that only checks whether bytes parse."""

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


def make_response_parser(
    protocol: BaseProtocol,
    loop: asyncio.AbstractEventLoop,
    *,
    buffer: int,
    max_field_size: int,
    max_headers: int,
    with_body: bool,
    payload_exception: type[BaseException],
) -> Any:
    """aiohttp's C response parser, reading bodies until EOF when unframed, never
    decompressing. `feed_data(bytes) -> (messages, upgraded, tail)`; `feed_eof()`."""
    return HttpResponseParser(
        protocol,
        loop,
        buffer,
        max_line_size=max_field_size,
        max_field_size=max_field_size,
        max_headers=max_headers,
        payload_exception=payload_exception,
        response_with_body=with_body,
        read_until_eof=True,
        auto_decompress=False,
    )
