"""Large bodies to clients slower than the upstream: every byte arrives, memory stays flat.

A real visitor reads more slowly than a loopback origin writes, so the upstream side of
the proxy must wait for the client (flow control end to end) rather than fail or buffer.
Each case here failed before the pool owned its flow control (the response was cut off
after a few hundred KB with `body_aborted`).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import itertools
import os
import time

import aiohttp
import pytest
import zstandard
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.core.config import parse_config
from proxy.core.consent import read_consent
from proxy.html.gate import HtmlGate
from proxy.html.guard_code import frames_code
from proxy.http.stages import Stages
from proxy.metrics import Metrics
from tests.proxytools import GUARD_ELEMENT, running_proxy, strip_guard
from tests.test_cli_functional import rss_kib, serve_process

TRACKER = b'<script src="https://www.googletagmanager.com/gtag/js?id=G-X"></script>'


def html_page(size: int) -> bytes:
    """An HTML page of about `size` bytes with a tracker at the start, middle and end."""
    # Rows differ (a digest per row) so the page compresses like a real one, not 1000:1.
    rows = b"".join(
        b"<li><a href='/p/%d'><img src='/i/%s.jpg' alt='item'></a> %s</li>\n"
        % (i, hashlib.md5(b"%d" % i).hexdigest().encode(), hashlib.sha1(b"%d" % i).hexdigest().encode())
        for i in range(max(1, size // 2 // 140))
    )
    head = b"<!doctype html><html><head>" + TRACKER + b"</head><body><ul>"
    return head + rows + TRACKER + rows + b"</ul></body></html>"


def octets(size: int) -> bytes:
    block = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB, not compressible to nothing
    return (block * (size // len(block) + 1))[:size]


async def slow_read(resp: aiohttp.ClientResponse, *, rate: float) -> bytes:
    """Read the whole body at about `rate` bytes per second, in 16 KiB steps."""
    parts: list[bytes] = []
    started = time.monotonic()
    got = 0
    async for chunk in resp.content.iter_chunked(16384):
        parts.append(chunk)
        got += len(chunk)
        ahead = got / rate - (time.monotonic() - started)
        if ahead > 0:
            await asyncio.sleep(ahead)
    return b"".join(parts)


async def start_origin(body: bytes, content_type: str, coding: str | None, *, nonce: bool = False) -> TestServer:
    """An origin serving `body` at `/f` in `coding`; `nonce`: with a strict CSP whose nonce
    is new for every response (n0, n1, ...), as a strict-CSP site sends it."""
    payload = gzip.compress(body, 6) if coding == "gzip" else body
    if coding == "zstd":
        payload = zstandard.ZstdCompressor(level=3).compress(body)
    count = itertools.count()

    async def handler(request: web.Request) -> web.Response:
        resp = web.Response(body=payload, headers={"Content-Type": content_type})
        if coding:
            resp.headers["Content-Encoding"] = coding
        if nonce:
            resp.headers["Content-Security-Policy"] = f"script-src 'nonce-n{next(count)}' 'strict-dynamic'"
        return resp

    app = web.Application()
    app.router.add_get("/f", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def read_slowly_through_proxy(origin: TestServer, coding: str | None) -> tuple[str | None, bytes]:
    """GET `/f` through tag-gate at 8 MB/s (the upstream writes at loopback speed): the
    response's Content-Type and body as sent; no access record may carry an error."""
    async with running_proxy(f"http://127.0.0.1:{origin.port}") as tg:
        async with aiohttp.ClientSession(auto_decompress=False, read_bufsize=16384) as client:
            headers = {"Accept-Encoding": coding or "identity"}
            async with client.get(tg.url + "/f", headers=headers) as resp:
                assert resp.status == 200
                if coding in ("gzip", "zstd"):
                    assert resp.headers.get("Content-Encoding") == coding
                got = await slow_read(resp, rate=8_000_000)
        errors = [r for r in tg.access_records() if r.get("error")]
        assert not errors, errors
    return resp.headers.get("Content-Type"), got


async def served_slowly(body: bytes, content_type: str, coding: str | None) -> bytes:
    """`body` from an origin through tag-gate to a client reading at 8 MB/s, decoded."""
    origin = await start_origin(body, content_type, coding)
    try:
        _, got = await read_slowly_through_proxy(origin, coding)
    finally:
        await origin.close()
    return gzip.decompress(got) if coding == "gzip" else got


CASES = [
    pytest.param("application/octet-stream", None, id="pass-through"),
    pytest.param("application/octet-stream", "gzip", id="pass-through-gzip"),
    pytest.param("text/html", None, id="gated"),
    pytest.param("text/html", "gzip", id="gated-gzip"),
]


@pytest.mark.slow
@pytest.mark.parametrize("size", [150_000, 1_000_000, 8_000_000], ids=["150KB", "1MB", "8MB"])
@pytest.mark.parametrize(("content_type", "coding"), CASES)
async def test_slow_client_gets_every_byte(content_type: str, coding: str | None, size: int) -> None:
    html = content_type == "text/html"
    body = html_page(size) if html else octets(size)
    got = await served_slowly(body, content_type, coding)
    if html:
        assert got.count(b"<li>") == body.count(b"<li>"), "the gated page lost rows"
        assert b"googletagmanager" not in strip_guard(got)
        assert got.endswith(b"</ul></body></html>")
        # the runtime guard once, first in the head: spliced into a page that arrived whole
        # (150 KB), inserted by lol-html into a streamed one (1 MB, 8 MB)
        guards = list(GUARD_ELEMENT.finditer(got))
        assert len(guards) == 1 and guards[0].start() == len(b"<!doctype html><html><head>")
    else:
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(body).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("minified", [False, True], ids=["head", "minified"])
@pytest.mark.parametrize("coding", [None, "gzip", "zstd"])
async def test_slow_client_gets_every_byte_of_a_strict_csp_page_with_the_guard(
    coding: str | None, minified: bool
) -> None:
    """An 8 MB page that streams, from a strict-CSP site (a nonce new for every
    response), to a client reading at 8 MB/s: every row arrives, and the guard once,
    first in the head (`minified`: a page without `<html>`, `<head>` and `<body>` tags,
    right before its first element), its tag carrying this response's nonce (in a
    compressed page the tag goes in with the page, the rest from its compressed form; a
    zstd body is then several frames)."""
    body = html_page(8_000_000)
    start = b"<!doctype html><html><head>"
    if minified:
        body = body.replace(start, b"<!doctype html><meta charset=utf-8>", 1).replace(b"</head><body>", b"", 1)
        start = b"<!doctype html>"
    origin = await start_origin(body, "text/html", coding, nonce=True)
    try:
        _, sent = await read_slowly_through_proxy(origin, coding)
    finally:
        await origin.close()
    if coding == "gzip":
        got = gzip.decompress(sent)
    elif coding == "zstd":
        got = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(sent)
    else:
        got = sent
    assert got.count(b"<li>") == body.count(b"<li>"), "the gated page lost rows"
    assert got.endswith(b"</ul></body></html>")
    assert b"googletagmanager" not in strip_guard(got)
    guards = list(GUARD_ELEMENT.finditer(got))
    assert len(guards) == 1 and guards[0].start() == len(start)
    assert guards[0].group().startswith(b'<script nonce="n0">')


@pytest.mark.slow
@pytest.mark.parametrize("coding", [None, "gzip"])
async def test_slow_client_gets_every_byte_of_a_page_whose_tail_is_copied(coding: str | None) -> None:
    """A 150 KB page whose only tracker is in its head: the gate copies its tail past
    lol-html (`selection.tail_start`); a client reading at 8 MB/s still gets every byte of
    it, and the guard once, first in the head."""
    page = html_page(150_000)
    middle = page.index(TRACKER, 100)  # the one between the rows
    body = page[:middle] + page[middle + len(TRACKER) :]
    gate = HtmlGate(
        Stages(parse_config({"server": {"upstream": "http://127.0.0.1:9"}}), Metrics()).gate_plan,
        read_consent(None, None),
        page_host="127.0.0.1",
    )
    gate.feed_whole(body)
    assert gate.tail_copied > 100_000  # the page takes that path
    got = await served_slowly(body, "text/html", coding)
    tail = body[body.index(b"<ul>") :]
    assert got.endswith(tail), "the copied tail lost bytes"
    assert b"googletagmanager" not in strip_guard(got)
    guards = list(GUARD_ELEMENT.finditer(got))
    assert len(guards) == 1 and guards[0].start() == len(b"<!doctype html><html><head>")


@pytest.mark.slow
@pytest.mark.parametrize("coding", [None, "gzip"])
async def test_slow_client_gets_every_byte_of_a_page_with_frames_an_import_map_and_partytown(
    coding: str | None,
) -> None:
    """An 8 MB page with an import map naming a refused vendor, a Partytown script of one,
    and an `<iframe>` without `src` every 1,000 rows, to a client reading at 8 MB/s: every
    row arrives, each frame once with guard-frames.js after it, the map rewritten, the
    Partytown script gone, the guard once."""
    import_map = b'<script type="importmap">{"imports":{"hj":"https://static.hotjar.com/c/hotjar-1.js"}}</script>'
    partytown = b'<script type="text/partytown" src="https://connect.facebook.net/en_US/fbevents.js"></script>'
    page = html_page(8_000_000)
    head, _, rest = page.partition(b"<ul>")
    rows = rest.split(b"</li>\n")
    framed = b"".join(
        row + b"</li>\n" + (b'<li><iframe name="f%d" hidden></iframe></li>\n' % i if i % 1000 == 0 else b"")
        for i, row in enumerate(rows[:-1])
    )
    body = head.replace(b"<head>", b"<head>" + import_map + partytown) + b"<ul>" + framed + rows[-1]
    frames = body.count(b"<iframe")
    got = await served_slowly(body, "text/html", coding)
    assert got.count(b"<li>") == body.count(b"<li>"), "the gated page lost rows"
    assert got.endswith(b"</ul></body></html>")
    after = b"</iframe><script>" + frames_code().encode() + b"</script>"
    assert frames > 50 and got.count(b"<iframe") == frames and got.count(after) == frames
    assert b'"hj": "/__tag-gate/blocked.js"' in got and b"hotjar" not in strip_guard(got)
    assert b"text/partytown" not in strip_guard(got) and b"fbevents" not in strip_guard(got)
    assert len(list(GUARD_ELEMENT.finditer(got))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("coding", [None, "gzip"])
@pytest.mark.parametrize("whole", [False, True], ids=["fragment", "document"])
async def test_slow_client_gets_every_byte_of_html_its_own_code_fetched(coding: str | None, whole: bool) -> None:
    """8 MB of HTML answering the page's own code (`Sec-Fetch-Dest: empty`) to a client
    reading at 8 MB/s: a fragment (the list alone) is decided on its first bytes and
    streams without additions, saying `Vary: Sec-Fetch-Dest`; a whole document gets the
    guard once, first in the head. Every row arrives, the trackers do not."""
    page = html_page(8_000_000)
    body = page if whole else page[page.index(b"<ul>") : page.rindex(b"</ul>") + 5]
    origin = await start_origin(body, "text/html", coding)
    try:
        async with running_proxy(f"http://127.0.0.1:{origin.port}") as tg:
            async with aiohttp.ClientSession(auto_decompress=False, read_bufsize=16384) as client:
                headers = {"Accept-Encoding": coding or "identity", "Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "cors"}
                async with client.get(tg.url + "/f", headers=headers) as resp:
                    assert resp.status == 200
                    vary = resp.headers.get("Vary", "")
                    sent = await slow_read(resp, rate=8_000_000)
            errors = [r for r in tg.access_records() if r.get("error")]
            assert not errors, errors
    finally:
        await origin.close()
    got = gzip.decompress(sent) if coding == "gzip" else sent
    assert got.count(b"<li>") == body.count(b"<li>"), "rows lost"
    assert b"googletagmanager" not in strip_guard(got)
    guards = list(GUARD_ELEMENT.finditer(got))
    if whole:
        assert len(guards) == 1 and guards[0].start() == len(b"<!doctype html><html><head>")
        assert "Sec-Fetch-Dest" not in vary, vary
    else:
        assert not guards and got.startswith(b"<ul>") and got.endswith(b"</ul>"), got[:200]
        assert "Sec-Fetch-Dest" in vary, vary


@pytest.mark.slow
@pytest.mark.parametrize(("content_type", "coding"), [CASES[0], CASES[3]])
async def test_slow_client_on_a_50mb_body_keeps_memory_flat(content_type: str, coding: str | None) -> None:
    """tag-gate as its own process: its RSS while a client reads 50 MB at 25 MB/s."""
    html = content_type == "text/html"
    size = 50_000_000
    body = html_page(size) if html else os.urandom(size)
    origin = await start_origin(body, content_type, coding)
    try:
        with serve_process("--upstream", f"http://127.0.0.1:{origin.port}") as (proc, port, admin):
            baseline = rss_kib(proc.pid)
            peak = baseline
            total = 0
            digest = hashlib.sha256()

            async def sample() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, rss_kib(proc.pid))
                    await asyncio.sleep(0.05)

            sampler = asyncio.ensure_future(sample())
            try:
                async with aiohttp.ClientSession(read_bufsize=65536) as client:
                    async with client.get(f"http://127.0.0.1:{port}/f") as resp:
                        assert resp.status == 200
                        started = time.monotonic()
                        async for chunk in resp.content.iter_chunked(65536):
                            digest.update(chunk)
                            total += len(chunk)
                            ahead = total / 25_000_000 - (time.monotonic() - started)
                            if ahead > 0:
                                await asyncio.sleep(ahead)
            finally:
                sampler.cancel()
            growth_mib = (peak - baseline) / 1024
    finally:
        await origin.close()
    if html:
        assert total > size * 0.9
    else:
        assert total == size and digest.hexdigest() == hashlib.sha256(body).hexdigest()
    # The body is 50 MB; what may stay resident is the flow-control windows (a few
    # 64 KiB buffers on each side), the gate's state and the allocator's kept heap.
    assert growth_mib < 40, f"RSS grew by {growth_mib:.1f} MiB while a slow client read 50 MB"


@pytest.mark.slow
@pytest.mark.parametrize("coding", [None, "gzip"], ids=["plain", "gzip"])
async def test_slow_client_gets_every_byte_of_a_transcoded_utf16_page(coding: str | None) -> None:
    """A UTF-16 page goes through the document start's transcoder before the gate: the
    same backpressure holds on that path (8 MB of page, a client reading at 8 MB/s)."""
    body = html_page(4_000_000)
    sent = body.decode("ascii").encode("utf-16")  # with a byte order mark, as sites send it
    origin = await start_origin(sent, "text/html; charset=utf-16", coding)
    try:
        content_type, got = await read_slowly_through_proxy(origin, coding)
    finally:
        await origin.close()
    assert content_type == "text/html; charset=utf-8"
    if coding:
        got = gzip.decompress(got)
    assert got.count(b"<li>") == body.count(b"<li>"), "the transcoded page lost rows"
    assert b"googletagmanager" not in strip_guard(got)
    assert got.endswith(b"</ul></body></html>")


XHTML_HINT = b'<link rel="preconnect" href="https://connect.facebook.net"/>'


@pytest.mark.slow
@pytest.mark.parametrize("coding", [None, "gzip"], ids=["plain", "gzip"])
async def test_slow_client_gets_every_byte_of_an_xhtml_document(coding: str | None) -> None:
    """An 8 MB XHTML document goes through the streaming XML gate (expat), not lol-html:
    a client reading at 8 MB/s gets every element, and the hints to a refused host in the
    head and in the middle are renamed."""
    rows = html_page(4_000_000).split(b"<ul>", 1)[1].rsplit(b"</ul>", 1)[0].replace(b"'item'>", b"'item'/>")
    half = rows[: rows.rindex(b"<li>", 0, len(rows) // 2)]
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><html xmlns="http://www.w3.org/1999/xhtml"><head>'
        + XHTML_HINT
        + b"<title>list</title></head><body><ul>"
        + half
        + b"</ul>"
        + XHTML_HINT
        + b"<ul>"
        + rows[len(half) :]
        + b"</ul></body></html>"
    )
    got = await served_slowly(body, "application/xhtml+xml", coding)
    assert got.count(b"<li>") == body.count(b"<li>"), "the XML gate lost rows"
    assert got.count(b'<link data-tg-rel="preconnect"') == 2 and b"<link rel=" not in got
    assert got.endswith(b"</ul></body></html>")


@pytest.mark.slow
async def test_slow_client_of_a_page_whose_gate_fails_mid_body() -> None:
    """A streamed 4 MB page turns ambiguous to lol-html near its end (`<select><plaintext>`):
    the response, already under way to a client reading at 8 MB/s, is cut (fail closed:
    nothing after the failure is sent), counted as a fail-safe, and tag-gate serves the
    next request."""
    page = html_page(4_000_000)
    cut = page.rindex(b"</ul>")
    body = page[:cut] + b"<select><plaintext>" + TRACKER + page[cut:]
    origin = await start_origin(body, "text/html", None)
    try:
        async with running_proxy(f"http://127.0.0.1:{origin.port}") as tg:
            async with aiohttp.ClientSession(read_bufsize=16384) as client:
                async with client.get(tg.url + "/f") as resp:
                    assert resp.status == 200
                    with pytest.raises(aiohttp.ClientPayloadError):
                        await slow_read(resp, rate=8_000_000)
                async with client.get(tg.admin_url + "/metrics") as m:
                    assert 'tag_gate_fail_safe_total{reason="parse_ambiguity"} 1.0' in await m.text()
                async with client.get(tg.url + "/f") as again:
                    assert again.status == 200
    finally:
        await origin.close()
