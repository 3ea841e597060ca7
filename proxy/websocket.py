"""WebSocket pass-through: a two-way message relay between the client and the upstream.

The upstream handshake runs first, with the same filtered and forwarded headers as any
request; only when the upstream accepts does tag-gate accept the client's upgrade, with
the sub-protocol the upstream chose. A refused upgrade is answered with the upstream's
status. Nothing inside the tunnel is inspected or rewritten.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

import aiohttp
from aiohttp import WSMsgType, hdrs, web
from multidict import CIMultiDict
from yarl import URL

if TYPE_CHECKING:
    from .app import ProxyState

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


async def relay_websocket(
    state: ProxyState, request: web.BaseRequest, url: str, headers: CIMultiDict[str]
) -> web.StreamResponse:
    """Open the upstream WebSocket, accept the client's, relay until either side closes."""
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
            max_msg_size=0,
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

    client = web.WebSocketResponse(
        protocols=(upstream.protocol,) if upstream.protocol else (),
        autoclose=False,
        autoping=False,
        max_msg_size=0,
    )
    state.metrics.websockets.inc()
    try:
        await client.prepare(request)
        to_upstream = asyncio.ensure_future(_pump(client, upstream))
        to_client = asyncio.ensure_future(_pump(upstream, client))
        try:
            await asyncio.wait((to_upstream, to_client), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (to_upstream, to_client):
                task.cancel()
            await asyncio.gather(to_upstream, to_client, return_exceptions=True)
    finally:
        state.metrics.websockets.dec()
        if not upstream.closed:
            await upstream.close()
        if not client.closed:
            await client.close()
    return client


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    """Copy messages one way until a close arrives; forward the close with its code."""
    while True:
        msg = await source.receive()
        kind = msg.type
        if kind is WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif kind is WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        elif kind is WSMsgType.PING:
            await sink.ping(msg.data)
        elif kind is WSMsgType.PONG:
            await sink.pong(msg.data)
        elif kind is WSMsgType.CLOSE:
            await sink.close(code=msg.data or 1000, message=(msg.extra or "").encode()[:123])
            return
        else:
            return
