"""HTTP/1.1 connection handling on the public listener: pipelining and error closes.

Raw sockets against a tag-gate started in-process; upstreams are aiohttp test servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import socket
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.http.server import DeadlineRequestHandler
from tests.proxytools import running_proxy

STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")


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


async def dribble_head(
    port: int, head: bytes, *, concurrent: bool, keep_sending: float = 0.0, timeout: float = 15.0
) -> tuple[bytes, bool]:
    """Send all of `head` one byte per write (TCP_NODELAY, so about one byte per segment),
    reading the answer afterwards or, if `concurrent`, all along; with `keep_sending`, go
    on sending more header bytes until that many seconds after the response arrived.
    Return the bytes read and whether reading ended in a reset rather than an orderly close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    answered_at: float | None = None
    got = bytearray()
    reset = False
    sent = asyncio.Event()

    def more() -> bool:
        return keep_sending > 0 and (answered_at is None or time.monotonic() < answered_at + keep_sending)

    async def send() -> None:
        with contextlib.suppress(ConnectionError):
            for i in itertools.count():
                if i >= len(head) and not more():
                    break
                writer.write(head[i : i + 1] if i < len(head) else b"a")
                await writer.drain()
                await asyncio.sleep(0.001 if i % 64 == 63 else 0)
        sent.set()

    async def receive() -> None:
        nonlocal answered_at, reset
        if not concurrent:
            await sent.wait()
        try:
            while chunk := await reader.read(65536):
                got.extend(chunk)
                if answered_at is None and complete_response(bytes(got)):
                    answered_at = time.monotonic()
        except ConnectionError:
            reset = True
        if answered_at is None:
            answered_at = time.monotonic()

    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(send(), receive())
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return bytes(got), reset


def complete_response(raw: bytes) -> bool:
    """Whether `raw` starts with a whole response: head and Content-Length bytes of body."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = re.search(rb"\r\nContent-Length: *(\d+)", head, re.IGNORECASE)
    return length is not None and len(body) >= int(length.group(1))


@pytest.mark.parametrize(
    ("concurrent", "keep_sending"),
    [(False, 0.0), (True, 0.0), (True, 1.0)],
    ids=["reads-after-sending", "reads-while-sending", "keeps-sending-after-the-answer"],
)
async def test_oversized_head_sent_byte_by_byte_gets_its_error_response_not_a_reset(
    concurrent: bool, keep_sending: float
) -> None:
    head = b"GET / HTTP/1.1\r\nHost: s\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    server = await small_upstream()
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        started = time.monotonic()
        raw, reset = await dribble_head(tg.port, head, concurrent=concurrent, keep_sending=keep_sending)
        took = time.monotonic() - started
    await server.close()
    assert not reset, f"reset after {len(raw)} bytes of response"
    assert complete_response(raw), raw[:200]
    status = STATUS_LINE.match(raw)
    assert status is not None and status.group(1) in (b"400", b"431"), raw[:200]
    assert took < 10


async def refused_then_trickling(port: int) -> tuple[bytes, asyncio.Task[float], asyncio.StreamWriter]:
    """Send an oversized head, then one more byte every 50 ms; return the start of the
    answer, the trickling task (its result: seconds from answer to the server closing)
    and the writer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: s\r\nX-Big: " + b"a" * 20000)
    answer = await asyncio.wait_for(reader.read(12), 5)
    answered = time.monotonic()

    async def trickle() -> float:
        with contextlib.suppress(ConnectionError):
            for _ in range(400):
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(0.05)
        return time.monotonic() - answered

    return answer, asyncio.create_task(trickle()), writer


@pytest.mark.slow
async def test_lingering_close_is_bounded() -> None:
    server = await small_upstream()
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        answer, trickling, writer = await refused_then_trickling(tg.port)
        closed_after = await asyncio.wait_for(trickling, 15)
        writer.close()
    await server.close()
    assert answer == b"HTTP/1.1 400"
    assert DeadlineRequestHandler.LINGER_TIME - 0.5 < closed_after < DeadlineRequestHandler.LINGER_TIME + 2


async def test_lingering_close_does_not_hold_shutdown() -> None:
    server = await small_upstream()
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        answer, trickling, writer = await refused_then_trickling(tg.port)
        await asyncio.sleep(0.2)
        stopping = time.monotonic()
    stopped_after = time.monotonic() - stopping
    trickling.cancel()
    writer.close()
    await server.close()
    assert answer == b"HTTP/1.1 400"
    assert stopped_after < 1.0


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: s\r\nX-A: a\r\n b\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: s\r\n\r\n",
    ],
    ids=["cl+te", "obs-fold", "control-byte-in-target"],
)
async def test_malformed_head_with_a_body_behind_it_gets_its_400(head: bytes) -> None:
    """The client sends its whole request, a megabyte of body included, before reading."""
    server = await small_upstream()
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        reader, writer = await asyncio.open_connection("127.0.0.1", tg.port)
        with contextlib.suppress(ConnectionError):
            writer.write(head + b"x" * 1_000_000)
            await asyncio.wait_for(writer.drain(), 5)
        raw, reset = b"", False
        try:
            async with asyncio.timeout(5):
                while chunk := await reader.read(65536):
                    raw += chunk
        except ConnectionError:
            reset = True
        writer.close()
    await server.close()
    assert not reset, f"reset after {len(raw)} bytes of response"
    assert complete_response(raw), raw[:200]
    status = STATUS_LINE.match(raw)
    assert status is not None and status.group(1) == b"400", raw[:200]
