"""HTTP/1.1 connection handling on the public listener: pipelining and error closes.

Raw sockets against a tag-gate started in-process; upstreams are aiohttp test servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.proxytools import running_proxy


async def small_upstream() -> TestServer:
    """Answers every request with its path, after reading any body."""

    async def handler(request: web.Request) -> web.Response:
        async for _ in request.content.iter_any():
            pass
        return web.Response(text=request.path)

    app = web.Application(client_max_size=1024**3)
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def parse_responses(raw: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each complete Content-Length-framed response at the start of `raw`."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while (end := raw.find(b"\r\n\r\n", pos)) != -1:
        head = raw[pos:end]
        length = re.search(rb"\r\nContent-Length: *(\d+)", head, re.IGNORECASE)
        assert length is not None, head
        pos = end + 4 + int(length.group(1))
        if pos > len(raw):
            break
        out.append((int(head[9:12]), raw[end + 4 : pos]))
    return out


async def pipeline(port: int, data: bytes, want: int, *, timeout: float) -> tuple[list[tuple[int, bytes]], float]:
    """Write `data` in one go while reading concurrently; return the responses read (until
    `want` of them, EOF or `timeout`) and the seconds taken."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    async def send() -> None:
        writer.write(data)
        await writer.drain()

    sender = asyncio.create_task(send())
    raw = b""
    responses: list[tuple[int, bytes]] = []
    try:
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(timeout):
                while len(responses) < want:
                    chunk = await reader.read(65536)
                    if not chunk:
                        break
                    raw += chunk
                    responses = parse_responses(raw)
        return responses, time.monotonic() - started
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def chunked(body: bytes, size: int = 16384) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size))


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_pipelined_gets_around_a_large_post_all_answered_promptly(framing: str) -> None:
    """aiohttp 3.14's C parser stalled this pipeline after ~250 responses until the
    keep-alive timeout (docs/upstream/aiohttp-pipelining-stall.md)."""
    body = b"a" * (5 * 1024 * 1024)
    post = b"POST /up HTTP/1.1\r\nHost: s\r\n"
    if framing == "chunked":
        post += b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body) + b"0\r\n\r\n"
    else:
        post += b"Content-Length: %d\r\n\r\n" % len(body) + body
    paths = [b"/g%d" % i for i in range(200)] + [b"/up"] + [b"/g%d" % i for i in range(200, 400)]
    data = b"".join(post if p == b"/up" else b"GET %s HTTP/1.1\r\nHost: s\r\n\r\n" % p for p in paths)
    server = await small_upstream()
    async with running_proxy(f"http://127.0.0.1:{server.port}", timeouts={"keepalive": 20.0}) as tg:
        responses, took = await pipeline(tg.port, data, len(paths), timeout=15.0)
    await server.close()
    assert len(responses) == len(paths), f"{len(responses)} of {len(paths)} responses after {took:.1f} s"
    assert responses == [(200, p) for p in paths]
    assert took < 10.0
