"""Faults a production proxy must survive (issue 12): slow uploads, a busy pool, odd
framing from either side, HTTP/1.0 clients. Real loopback servers and raw sockets only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import UpstreamFactory
from tests.proxytools import (
    ScriptedUpstream,
    raw_exchange,
    read_request_head,
    replies,
    running_proxy,
    scripted_upstream,
    split_response,
)
from tests.test_app_functional import echo_app, upstream_app

PAGE = b'<!doctype html><html><head><script src="https://connect.facebook.net/en_US/fbevents.js"></script></head><body>hi</body></html>'


async def metric(tg: Any, name: str) -> float:
    async with aiohttp.ClientSession() as client, client.get(tg.admin_url + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{") and line.split(" ")[0] == name:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


# --------------------------------------------------------------------------- slow uploads


@pytest.mark.slow
async def test_a_slow_upload_is_not_upstream_silence(upstream: UpstreamFactory) -> None:
    """300 KB at about 100 KB/s with `timeouts.read = 1`: the read timeout starts once
    the request is sent, so the upload takes 3 s and still gets its answer."""
    server = await upstream(echo_app())
    async with running_proxy(f"http://127.0.0.1:{server.port}", timeouts={"read": 1.0}) as tg:

        async def body() -> Any:
            for _ in range(30):
                yield b"u" * 10_000
                await asyncio.sleep(0.1)

        async with aiohttp.ClientSession() as client:
            started = time.monotonic()
            async with client.post(tg.url + "/up", data=body()) as resp:
                assert resp.status == 200
                assert (await resp.json())["body_len"] == 300_000
            assert time.monotonic() - started > 2.5


async def test_an_upstream_that_stops_reading_the_body_times_out() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        await asyncio.sleep(30)  # never reads the body, never answers

    async with scripted_upstream(script) as up, running_proxy(up.url, timeouts={"read": 1.0}) as tg:
        reader, writer = await asyncio.open_connection("127.0.0.1", tg.port)
        size = 64 << 20
        writer.write(b"POST /up HTTP/1.1\r\nHost: s\r\nContent-Length: %d\r\n\r\n" % size)

        async def send() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(size >> 16):
                    writer.write(b"b" * 65536)
                    await writer.drain()

        sender = asyncio.ensure_future(send())
        started = time.monotonic()
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
        finally:
            sender.cancel()
            writer.transport.abort()
        assert head.startswith(b"HTTP/1.1 504"), head
        assert time.monotonic() - started < 5


async def test_a_stalled_upload_gets_408_and_the_upstream_request_is_dropped() -> None:
    upstream_saw: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        upstream_saw.append(await reader.read())  # until the proxy drops the connection

    async with scripted_upstream(script) as up, running_proxy(up.url, timeouts={"client_body": 0.5}) as tg:
        started = time.monotonic()
        raw = await raw_exchange(
            tg.port, b"POST /up HTTP/1.1\r\nHost: s\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10, timeout=5
        )
        assert raw.startswith(b"HTTP/1.1 408"), raw[:100]
        assert time.monotonic() - started < 3
        await asyncio.sleep(0.2)
        assert upstream_saw == [b"x" * 10]


# --------------------------------------------------------------------------- the pool


def slow_download_app(seconds: float, log: list[str] | None = None) -> web.Application:
    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(int(seconds / 0.05)):
            await resp.write(b"d" * 1000)
            await asyncio.sleep(0.05)
        return resp

    async def quick(request: web.Request) -> web.Response:
        if log is not None:
            log.append(request.query.get("n", ""))
        await asyncio.sleep(0.05)
        return web.Response(text=request.query.get("n", ""))

    app = upstream_app()
    app.router.add_get("/slow", slow)
    app.router.add_get("/quick", quick)
    return app


async def test_a_full_pool_queues_then_answers_503_with_retry_after(upstream: UpstreamFactory) -> None:
    server = await upstream(slow_download_app(3))
    config: dict[str, dict[str, Any]] = {"limits": {"upstream_pool_size": 1}, "timeouts": {"upstream_queue": 0.5}}
    async with running_proxy(f"http://127.0.0.1:{server.port}", **config) as tg:
        async with aiohttp.ClientSession() as client:
            download = await client.get(tg.url + "/slow")
            started = time.monotonic()
            async with client.get(tg.url + "/quick") as resp:
                assert resp.status == 503
                assert resp.headers["Retry-After"] == "1"
            assert 0.4 < time.monotonic() - started < 2
            download.close()
        assert await metric(tg, 'tag_gate_upstream_errors_total{kind="queue_timeout"}') == 1


async def test_a_full_queue_answers_503_at_once(upstream: UpstreamFactory) -> None:
    server = await upstream(slow_download_app(3))
    config: dict[str, dict[str, Any]] = {
        "limits": {"upstream_pool_size": 1, "upstream_queue": 1},
        "timeouts": {"upstream_queue": 5},
    }
    async with running_proxy(f"http://127.0.0.1:{server.port}", **config) as tg:
        async with aiohttp.ClientSession() as client:
            download = await client.get(tg.url + "/slow")
            queued = asyncio.ensure_future(client.get(tg.url + "/quick"))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            async with client.get(tg.url + "/quick") as resp:
                assert resp.status == 503
            assert time.monotonic() - started < 1
            download.close()
            second = await queued
            assert second.status == 200
            second.release()


async def test_queued_requests_are_served_in_arrival_order(upstream: UpstreamFactory) -> None:
    order: list[str] = []
    server = await upstream(slow_download_app(0.5, order))
    config: dict[str, dict[str, Any]] = {"limits": {"upstream_pool_size": 1}, "timeouts": {"upstream_queue": 10}}
    async with running_proxy(f"http://127.0.0.1:{server.port}", **config) as tg:
        async with aiohttp.ClientSession() as client:
            download = asyncio.ensure_future(client.get(tg.url + "/slow"))
            await asyncio.sleep(0.1)
            pending = []
            for n in range(8):
                pending.append(asyncio.ensure_future(client.get(tg.url + f"/quick?n={n}")))
                await asyncio.sleep(0.02)
            (await download).close()
            for task in pending:
                resp = await task
                assert resp.status == 200
                resp.release()
        assert order == [str(n) for n in range(8)]


# --------------------------------------------------------------------------- upstream framing


@pytest.mark.parametrize("coding", [b"chunked, identity", b"gzip, chunked", b"identity"])
async def test_an_upstream_transfer_coding_other_than_chunked_gives_502(coding: bytes) -> None:
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    async with scripted_upstream(replies(response)) as up, running_proxy(up.url) as tg:
        raw = await raw_exchange(tg.port, b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        status, _, body = split_response(raw)
        assert status == 502
        assert b"5\r\nhello" not in body


@pytest.mark.parametrize(
    ("method", "response", "status", "body"),
    [
        ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA BYTES", 200, b"hello"),
        ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n\r\n", 200, b"hello"),
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, b""),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\nbody after 204", 204, b""),
        ("GET", b"HTTP/1.1 304 Not Modified\r\n\r\nbody after 304", 304, b""),
    ],
    ids=["past-content-length", "smuggled-response", "head-with-body", "204-with-body", "304-with-body"],
)
async def test_bytes_after_a_complete_response_deliver_it_and_drop_the_connection(
    method: str, response: bytes, status: int, body: bytes
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        while True:
            await read_request_head(reader)
            writer.write(response)
            await writer.drain()

    async with scripted_upstream(script) as up, running_proxy(up.url) as tg:
        async with aiohttp.ClientSession() as client:
            for _ in range(2):
                async with client.request(method, tg.url + "/") as resp:
                    assert resp.status == status
                    assert await resp.read() == body
        assert up.connections == 2, "a connection that sent stray bytes must not be reused"


# --------------------------------------------------------------------------- client framing


@pytest.mark.parametrize("coding", [b"gzip, chunked", b",chunked", b"chunked, chunked", b"identity"])
async def test_a_request_transfer_coding_other_than_chunked_gets_501(coding: bytes, upstream: UpstreamFactory) -> None:
    seen: list[dict[str, Any]] = []
    server = await upstream(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        raw = await raw_exchange(
            tg.port, b"POST / HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: " + coding + b"\r\n\r\n0\r\n\r\n"
        )
        # 501 as nginx answers; aiohttp's own parser already refuses a few (400).
        assert raw.split(b" ", 2)[1] in (b"501", b"400"), raw[:60]
        assert seen == []


@pytest.mark.parametrize("keep_alive", [b"", b"Connection: keep-alive\r\n"], ids=["close", "keep-alive"])
async def test_http10_with_transfer_encoding_is_refused_and_the_pipelined_request_never_runs(
    keep_alive: bytes, upstream: UpstreamFactory
) -> None:
    seen: list[dict[str, Any]] = []
    server = await upstream(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        smuggled = b"GET /smuggled HTTP/1.1\r\nHost: s\r\n\r\n"
        raw = await raw_exchange(
            tg.port,
            b"POST / HTTP/1.0\r\nHost: s\r\n" + keep_alive + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
        )
        status, _, body = split_response(raw)
        assert status == 400, raw[:60]
        assert b"\r\n\r\nHTTP/1." not in body, "a second response was sent"
        assert seen == []


@pytest.mark.parametrize(
    "host",
    [b"a b", b"a/b", b"user@site", b"site:99999", b"a\\b", b"", b"site:80:80", b"[::1", b"si<te"],
    ids=["space", "slash", "at", "port-too-big", "backslash", "empty", "two-ports", "open-bracket", "angle"],
)
async def test_an_invalid_host_gets_400(host: bytes, upstream: UpstreamFactory) -> None:
    seen: list[dict[str, Any]] = []
    server = await upstream(echo_app(seen))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        raw = await raw_exchange(tg.port, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert split_response(raw)[0] == 400, raw[:60]
        assert seen == []


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET / HTTP/1.1\r\nHost: shop.example\r\n",
        b"GET / HTTP/1.1\r\nHost: shop.example:8080\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        b"GET / HTTP/1.1\r\nHost: xn--bcher-kva.example\r\n",
        b"GET / HTTP/1.0\r\n",
    ],
)
async def test_valid_hosts_pass(request_head: bytes, upstream: UpstreamFactory) -> None:
    server = await upstream(echo_app())
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        raw = await raw_exchange(tg.port, request_head + b"Connection: close\r\n\r\n")
        assert raw.split(b" ", 2)[1] == b"200", raw[:60]


async def test_http11_without_host_gets_400(upstream: UpstreamFactory) -> None:
    server = await upstream(echo_app())
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        raw = await raw_exchange(tg.port, b"GET / HTTP/1.1\r\n\r\n")
        assert split_response(raw)[0] == 400, raw[:60]


@pytest.mark.parametrize("consent", [b"", b"Cookie: tg_consent=advertising\r\n"], ids=["gated", "pass-through"])
async def test_http10_keep_alive_page_of_unknown_length_ends_with_the_connection(
    consent: bytes, upstream: UpstreamFactory
) -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(PAGE)
        return resp

    app = upstream_app()
    app.router.add_get("/", page)
    server = await upstream(app)
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        started = time.monotonic()
        raw = await raw_exchange(
            tg.port, b"GET / HTTP/1.0\r\nHost: s\r\nConnection: keep-alive\r\n" + consent + b"\r\n", timeout=5
        )
        assert time.monotonic() - started < 3, "the client waited for a close that never came"
        status, headers, body = split_response(raw)
        assert status == 200
        assert body.endswith(b"</html>")
        assert not any(k.lower() == "transfer-encoding" for k, _ in headers)


# --------------------------------------------------------------------------- memory


@pytest.mark.slow
async def test_distinct_huge_cookie_headers_do_not_pile_up_in_memory(upstream: UpstreamFactory) -> None:
    """9,000 requests with distinct 15 KB Cookie headers (every cookie name new): the
    memo tables keyed by them are bounded by bytes, so tag-gate's RSS stays flat."""
    from tests.test_cli_functional import rss_kib, serve_process

    server = await upstream(echo_app())
    with serve_process("--upstream", f"http://127.0.0.1:{server.port}") as (proc, port, _admin):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8)) as client:

            async def one(i: int) -> None:
                cookie = "; ".join(f"c{i}x{j}{'n' * 180}=v" for j in range(80))  # ~15 KB, all names new
                async with client.get(f"http://127.0.0.1:{port}/", headers={"Cookie": cookie}) as resp:
                    assert resp.status == 200
                    await resp.read()

            for i in range(0, 200, 8):
                await asyncio.gather(*(one(i + k) for k in range(8)))
            baseline = rss_kib(proc.pid)
            for i in range(200, 9000, 8):
                await asyncio.gather(*(one(i + k) for k in range(8)))
            growth_mib = (rss_kib(proc.pid) - baseline) / 1024
    assert growth_mib < 48, f"RSS grew by {growth_mib:.0f} MiB over 8,800 distinct 15 KB Cookie headers"


async def test_request_heads_the_parser_refuses_are_counted(upstream: UpstreamFactory) -> None:
    server = await upstream(echo_app())
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        for bad in (b"GET /a%s%d\x01 HTTP/1.1\r\nHost: s\r\n\r\n", b"GET / HTTP/1.1\r\nBad%s Header: x\r\n\r\n"):
            raw = await raw_exchange(tg.port, bad)
            assert split_response(raw)[0] == 400
        assert await metric(tg, 'tag_gate_rejected_requests_total{reason="bad_request"}') == 2
        assert await metric(tg, 'tag_gate_requests_total{status_class="4xx"}') == 2


@pytest.mark.parametrize("method", [b"GET", b"POST"])
async def test_a_stalled_upload_to_the_guard_table_is_answered_and_let_go(method: bytes) -> None:
    """/__tag-gate/guard-table never reads a body: a client announcing 5 MB and sending a
    trickle gets its answer (the table for GET, 404 for POST) at once, the connection is
    let go once the body stops arriving, and the proxy keeps serving meanwhile."""
    async with (
        scripted_upstream(replies(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as up,
        running_proxy(up.url, timeouts={"client_body": 0.5}) as tg,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", tg.port)
        try:
            started = time.monotonic()
            writer.write(method + b" /__tag-gate/guard-table?g=analytics HTTP/1.1\r\nHost: s\r\n")
            writer.write(b"Content-Length: 5000000\r\n\r\n" + b"x" * 1000)
            await writer.drain()
            async with asyncio.timeout(3):
                head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200" if method == b"GET" else b"HTTP/1.1 404"), head
            assert time.monotonic() - started < 2
            async with aiohttp.ClientSession() as client, client.get(tg.url + "/__tag-gate/guard-table") as resp:
                assert resp.status == 200 and (await resp.json())["granted"] == {"essential": 1}
            for _ in range(20):  # keep trickling: the proxy must not wait for all 5 MB
                writer.write(b"x" * 100)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                await asyncio.sleep(0.05)
            async with asyncio.timeout(5):
                while await reader.read(65536):
                    pass  # the proxy closes the connection rather than read 5 MB it ignores
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
