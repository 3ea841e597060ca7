"""The origin for `soak.py`: a site with every kind of response a proxy meets in a day.

  GET  /page/small         2 KB HTML page with trackers, two Set-Cookie lines (one a tracker's)
  GET  /page/100k          100 KB HTML page with trackers
  GET  /page/gzip          the 100 KB page gzip-encoded (Content-Encoding: gzip)
  GET  /page/stream        300 KB HTML page, chunked, 16 KiB pieces with short pauses
  GET  /download/{size}    binary download of `size` bytes (at most 8 MiB), Content-Length
  GET  /chunked/{n}        binary stream of n x 32 KiB chunks (no Content-Length), 10 ms apart
  GET  /slow?ms=N          waits N ms (at most 3000) before the head, then drips 8 x 4 KiB over 0.4 s
  GET  /reset?html=1       announces 1 MiB, sends 256 KiB, then resets the connection (RST)
  GET  /error?status=N     a 5xx (500-599; default 503 with Retry-After)
  POST /upload             reads the whole body, answers its length and sha256 as JSON
  GET  /ws                 WebSocket echo
HEAD works on every GET route. Everything else answers 404.

Usage: python bench/soak_origin.py PORT
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import random
import socket
import struct
import sys
from pathlib import Path

import uvloop
from aiohttp import WSMsgType, hdrs, web

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages

MAX_DOWNLOAD = 8 * 1024 * 1024
SMALL = pages.make_small_page()
PAGE_100K = pages.make_page(100 * 1024)
PAGE_GZIP = gzip.compress(pages.make_page(100 * 1024, 3), 6)
PAGE_STREAM = pages.make_page(300 * 1024, 4)
# Random (incompressible) bytes, so downloads look like images and archives.
BLOB = random.Random(11).randbytes(MAX_DOWNLOAD)
HTML = "text/html; charset=utf-8"


def blob_digest(size: int) -> str:
    """The sha256 of the first `size` bytes of what /download/{size} serves (for the client)."""
    return hashlib.sha256(BLOB[:size]).hexdigest()


async def handle_page(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    if kind == "small":
        resp = web.Response(body=SMALL, headers={hdrs.CONTENT_TYPE: HTML})
        resp.headers.add(hdrs.SET_COOKIE, "sid=abc123; Path=/; HttpOnly")
        resp.headers.add(hdrs.SET_COOKIE, "_ga=GA1.1.1234.5678; Path=/; Max-Age=3600")
        return resp
    if kind == "100k":
        return web.Response(body=PAGE_100K, headers={hdrs.CONTENT_TYPE: HTML})
    if kind == "gzip":
        return web.Response(
            body=PAGE_GZIP,
            headers={hdrs.CONTENT_TYPE: HTML, hdrs.CONTENT_ENCODING: "gzip", hdrs.VARY: "Accept-Encoding"},
        )
    raise web.HTTPNotFound()


async def handle_page_stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={hdrs.CONTENT_TYPE: HTML})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for n, i in enumerate(range(0, len(PAGE_STREAM), 16384)):
        if n % 4 == 3:
            await asyncio.sleep(0.005)
        await resp.write(PAGE_STREAM[i : i + 16384])
    await resp.write_eof()
    return resp


async def handle_download(request: web.Request) -> web.StreamResponse:
    size = min(int(request.match_info["size"]), MAX_DOWNLOAD)
    resp = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "application/octet-stream"})
    resp.content_length = size
    await resp.prepare(request)
    if request.method != hdrs.METH_HEAD:
        view = memoryview(BLOB)
        for i in range(0, size, 262144):
            await resp.write(view[i : min(size, i + 262144)])
    await resp.write_eof()
    return resp


async def handle_chunked(request: web.Request) -> web.StreamResponse:
    n = min(int(request.match_info["n"]), 256)
    resp = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "application/octet-stream"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(n):
        if i:
            await asyncio.sleep(0.01)
        await resp.write(BLOB[i * 32768 : (i + 1) * 32768])
    await resp.write_eof()
    return resp


async def handle_slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(min(int(request.query.get("ms", "1000")), 3000) / 1000)
    resp = web.StreamResponse(headers={hdrs.CONTENT_TYPE: "text/plain"})
    resp.content_length = 8 * 4096
    await resp.prepare(request)
    for i in range(8):
        if i:
            await asyncio.sleep(0.05)
        await resp.write(b"s" * 4096)
    await resp.write_eof()
    return resp


async def handle_reset(request: web.Request) -> web.StreamResponse:
    html = request.query.get("html") == "1"
    resp = web.StreamResponse(headers={hdrs.CONTENT_TYPE: HTML if html else "application/octet-stream"})
    resp.content_length = 1024 * 1024
    await resp.prepare(request)
    await resp.write((PAGE_STREAM if html else BLOB)[: 256 * 1024])
    await asyncio.sleep(0.01)
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: close() sends RST, not FIN: the connection dies mid-body.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return resp


async def handle_error(request: web.Request) -> web.Response:
    status = int(request.query.get("status", "503"))
    if not 500 <= status <= 599:
        status = 503
    headers = {hdrs.RETRY_AFTER: "1"} if status == 503 else {}
    return web.Response(status=status, text=f"origin error {status}\n", headers=headers)


async def handle_upload(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        digest.update(chunk)
        size += len(chunk)
    return web.Response(text=json.dumps({"bytes": size, "sha256": digest.hexdigest()}), content_type="application/json")


async def handle_ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=1 << 20)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


def make_origin_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/page/stream", handle_page_stream)
    app.router.add_get("/page/{kind}", handle_page)
    app.router.add_get("/download/{size:\\d+}", handle_download)
    app.router.add_get("/chunked/{n:\\d+}", handle_chunked)
    app.router.add_get("/slow", handle_slow)
    app.router.add_get("/reset", handle_reset)
    app.router.add_get("/error", handle_error)
    app.router.add_post("/upload", handle_upload)
    app.router.add_get("/ws", handle_ws)
    return app


async def main() -> None:
    runner = web.AppRunner(make_origin_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1]), backlog=1024).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main())
