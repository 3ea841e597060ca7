"""WebSocket pass-through: a two-way message relay between the client and the upstream.

The upstream handshake runs first, with the same filtered and forwarded headers as any
request; only when the upstream accepts does tag-gate accept the client's upgrade, with
the sub-protocol the upstream chose. A refused upgrade is answered with the upstream's
status. Nothing inside the tunnel is inspected or rewritten.

Contract of a running relay:

- Messages are relayed whole and bounded: a message (one frame, or the sum of its
  fragments) of more than `limits.websocket_max_message` bytes from either side closes
  that side with 1009 (Message Too Big) and the other side with 1001 (Going Away). 1001,
  not 1009, for the other side: 1009 says "you sent me something too big", which that
  side did not; from where it stands, its peer is going away. Memory per relay is
  bounded by the limit (a few copies of one message while it is in flight), never by
  what a peer announces: aiohttp's reader (`_websocket/reader_py.py`, compiled as
  `reader_c`; read in 3.14.3 and 3.14.5) refuses a data frame from the length in its
  header, before buffering any of its payload, counting the fragments already held;
  the rest of a refused frame is discarded unread (the parser is dropped and the
  connection closed). A
  permessage-deflate message is refused from its compressed length the same way, and
  its decompression stops just past the limit.
- Why bound rather than stream fragments through: aiohttp delivers whole messages only,
  so streaming would mean parsing and re-framing frames ourselves, and each hop
  negotiates its own extensions (a compressed frame cannot go as is to a hop that did
  not agree to compression). Origins bound messages themselves (aiohttp 4 MiB,
  Python websockets 1 MiB, Tornado 10 MiB by default), so a message over a generous
  limit is most likely one the site would refuse anyway.
- Idle relays end: with no message in either direction (data, ping or pong all count)
  for `timeouts.websocket_idle` seconds, both sides are closed with 1001. Apps that keep
  a quiet connection open ping (Socket.IO every 25 s, for instance), which resets it.
  A message counts when it arrives and again when its write ends, so a write stuck
  that long (a peer that stopped reading) ends the relay too.
- A close from one side is forwarded to the other with its code and reason, and echoed
  to the side that sent it. A side that vanishes without a close frame, or cannot be
  written to, gets the other side closed with 1001. A relay cut at shutdown closes both
  sides with 1001.
- Every relay that ends is counted once in `tag_gate_websocket_closes_total` by reason
  (`proxy.metrics.WEBSOCKET_CLOSE_REASONS`): too_big, idle, client or upstream (that
  side closed or went away), error (a protocol error such as invalid UTF-8, or an
  unexpected failure), shutdown (the relay was cut while tag-gate drains: the grace
  deadline).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import aiohttp
from aiohttp import WebSocketError, WSCloseCode, WSMsgType, hdrs, web
from multidict import CIMultiDict
from yarl import URL

if TYPE_CHECKING:
    from .state import ProxyState

log = logging.getLogger("tag_gate")

HANDSHAKE_HEADERS: Final = (
    hdrs.SEC_WEBSOCKET_KEY,
    hdrs.SEC_WEBSOCKET_VERSION,
    hdrs.SEC_WEBSOCKET_EXTENSIONS,
    hdrs.SEC_WEBSOCKET_PROTOCOL,
    hdrs.SEC_WEBSOCKET_ACCEPT,
)
"""Per-hop handshake headers: each side of the relay negotiates its own."""

CLOSE_TIMEOUT: Final = 5.0
"""Longest wait for a peer's answer to our close frame."""

WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


@dataclass(frozen=True, slots=True)
class _Close:
    """The close frame one side of the relay is sent when it ends."""

    code: int = WSCloseCode.GOING_AWAY
    message: bytes = b""


GOING_AWAY: Final = _Close()


@dataclass(slots=True)
class _Outcome:
    """Why the relay ended (None while it runs) and the close frame each side gets."""

    reason: str | None = None
    client: _Close = GOING_AWAY
    upstream: _Close = GOING_AWAY


@dataclass(slots=True)
class _Activity:
    """When a message last went through the relay, either way (event-loop time)."""

    last: float


@dataclass(frozen=True, slots=True)
class _End:
    """How one direction ended: the reason counted, and the close frames for its sink
    (the side it was writing to) and its source (the side it was reading)."""

    reason: str
    sink: _Close = GOING_AWAY
    source: _Close = GOING_AWAY


async def relay_websocket(
    state: ProxyState, request: web.BaseRequest, url: str, headers: CIMultiDict[str]
) -> web.StreamResponse:
    """Open the upstream WebSocket, accept the client's, relay until either side closes,
    a message is over the limit, or the relay idles (see the module docstring)."""
    session = state.session
    assert session is not None
    protocols = tuple(
        p.strip() for v in request.headers.getall(hdrs.SEC_WEBSOCKET_PROTOCOL, ()) for p in v.split(",") if p.strip()
    )
    for name in HANDSHAKE_HEADERS:
        headers.popall(name, None)
    try:
        upstream = await session.ws_connect(
            URL(url, encoded=True),
            headers=headers,
            protocols=protocols,
            autoclose=False,
            autoping=False,
            max_msg_size=_max_msg_size(state.config.limits.websocket_max_message),
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT),
        )
    except aiohttp.WSServerHandshakeError as exc:
        status = exc.status if 400 <= exc.status < 600 else 502
        resp = web.Response(status=status, text=f"{status} the upstream refused the WebSocket upgrade\n")
        resp.force_close()
        return resp
    except (TimeoutError, aiohttp.ClientError) as exc:
        state.metrics.upstream_error["connect"].inc()
        log.warning("upstream WebSocket connect failed for %s: %s", request.raw_path[:200], exc)
        resp = web.Response(status=502, text="502 Bad Gateway: cannot open the upstream WebSocket\n")
        resp.force_close()
        return resp

    limits, timeouts = state.config.limits, state.config.timeouts
    client = web.WebSocketResponse(
        protocols=(upstream.protocol,) if upstream.protocol else (),
        autoclose=False,
        autoping=False,
        max_msg_size=_max_msg_size(limits.websocket_max_message),
        timeout=CLOSE_TIMEOUT,
    )
    metrics = state.metrics
    metrics.websockets.inc()
    outcome = _Outcome()
    try:
        await client.prepare(request)
        await _relay(client, upstream, timeouts.websocket_idle, outcome)
    except asyncio.CancelledError:
        # aiohttp cancels the handler when its client's connection is lost (which also
        # happens just after aiohttp refused a message and closed it: an ending the relay
        # already saw wins), and at the drain deadline, when readiness is already off.
        if outcome.reason is None:
            outcome.reason = "client" if state.ready else "shutdown"
        raise
    finally:
        metrics.websockets.dec()
        metrics.websocket_close[outcome.reason or "error"].inc()
        await asyncio.gather(_close(upstream, outcome.upstream), _close(client, outcome.client), return_exceptions=True)
    return client


def _max_msg_size(limit: int) -> int:
    """aiohttp's `max_msg_size` for a limit on message bytes. aiohttp refuses an
    uncompressed message of `max_msg_size` bytes or more, so `limit` bytes pass and one
    more does not; a compressed one only when it inflates past `max_msg_size` (one byte
    of slack, harmless)."""
    return limit + 1


async def _relay(
    client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse, idle: float, outcome: _Outcome
) -> None:
    """Pump both ways until one direction ends or the relay idles; record how in `outcome`
    (also when cancelled, if a direction had already ended)."""
    activity = _Activity(asyncio.get_running_loop().time())
    client_to_upstream = asyncio.ensure_future(_pump(client, upstream, activity, "client", "upstream"))
    upstream_to_client = asyncio.ensure_future(_pump(upstream, client, activity, "upstream", "client"))
    watch = asyncio.ensure_future(_idle(activity, idle))
    tasks = (client_to_upstream, upstream_to_client, watch)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task, from_client in ((client_to_upstream, True), (upstream_to_client, False)):
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is not None:
                log.warning("WebSocket relay failed: %r", exc)
                outcome.reason = "error"
            else:
                end = task.result()
                outcome.reason = end.reason
                outcome.client, outcome.upstream = (end.source, end.sink) if from_client else (end.sink, end.source)
            break
        else:
            if not watch.cancelled():
                outcome.reason = "idle"
                outcome.client = outcome.upstream = _Close(WSCloseCode.GOING_AWAY, b"idle")


async def _idle(activity: _Activity, idle: float) -> None:
    """Return once `idle` seconds pass with no message either way."""
    loop = asyncio.get_running_loop()
    while (left := activity.last + idle - loop.time()) > 0:
        await asyncio.sleep(left)


async def _pump(source: WebSocket, sink: WebSocket, activity: _Activity, source_name: str, sink_name: str) -> _End:
    """Copy messages from `source` to `sink` until something ends the relay.

    A message over the limit never reaches this loop: aiohttp's `receive()` has already
    sent the source its 1009 and closed it, and returns an ERROR carrying that code.
    """
    loop = asyncio.get_running_loop()
    while True:
        msg = await source.receive()
        activity.last = loop.time()
        kind = msg.type
        try:
            if kind is WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif kind is WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            elif kind is WSMsgType.PING:
                await sink.ping(msg.data)
            elif kind is WSMsgType.PONG:
                await sink.pong(msg.data)
            elif kind is WSMsgType.CLOSE:
                code = msg.data or WSCloseCode.OK
                return _End(source_name, _Close(code, (msg.extra or "").encode()), _Close(code))
            elif kind is WSMsgType.ERROR:
                exc = msg.data
                if isinstance(exc, WebSocketError) and exc.code == WSCloseCode.MESSAGE_TOO_BIG:
                    return _End("too_big", _Close(WSCloseCode.GOING_AWAY, b"message too big"))
                return _End("error")
            else:  # CLOSED, CLOSING: the source's connection is gone
                return _End(source_name)
        except ConnectionError:  # aiohttp's "cannot write to closing transport" is one
            return _End(sink_name)
        activity.last = loop.time()


async def _close(ws: WebSocket, close: _Close) -> None:
    if isinstance(ws, web.WebSocketResponse) and not ws.prepared:
        return
    if not ws.closed:
        await ws.close(code=close.code, message=close.message)
