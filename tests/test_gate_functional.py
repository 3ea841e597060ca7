"""The HTML gate and the cookie firewall through the running proxy, against real
loopback upstreams: codings, charsets, validators, caching headers, failure modes."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import brotli
import pytest
import zstandard
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.proxytools import (
    ScriptedUpstream,
    raw_exchange,
    read_request_head,
    replies,
    running_proxy,
    scripted_upstream,
    split_response,
    strip_guard,
)

FIXTURES = Path(__file__).parent / "fixtures"
TAGS = (FIXTURES / "tags.html").read_bytes()
TRACKER_HOSTS = (
    b"googletagmanager.com",
    b"connect.facebook.net",
    b"static.hotjar.com",
    b"youtube.com/embed",
    b"bat.bing.com",
    b"analytics.tiktok.com",
)
NO_CONSENT: dict[str, str] = {}
ALL = {"Cookie": "tg_consent=functional.analytics.advertising.social"}


def encode(coding: str, data: bytes) -> bytes:
    codecs: dict[str, Callable[[bytes], bytes]] = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "br": brotli.compress,
        "zstd": zstandard.ZstdCompressor().compress,
        "identity": lambda d: d,
    }
    return codecs[coding](data)


def decode(coding: str | None, data: bytes) -> bytes:
    if not coding:
        return data
    codecs: dict[str, Callable[[bytes], bytes]] = {
        "gzip": gzip.decompress,
        "deflate": zlib.decompress,
        "br": brotli.decompress,
        # every frame, as browsers read a zstd body (a page that gets the runtime guard
        # carries it in a frame of its own)
        "zstd": lambda d: zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(d),
    }
    return codecs[coding](data)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(handler: Handler) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def page(
    body: bytes, *, coding: str = "identity", content_type: str = "text/html; charset=utf-8", **headers: str
) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        resp = web.Response(body=encode(coding, body), headers={"Content-Type": content_type})
        if coding != "identity":
            resp.headers["Content-Encoding"] = coding
        for name, value in headers.items():
            resp.headers[name.replace("_", "-")] = value
        return resp

    return handler


async def fetch(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, Any, bytes]:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as client,
        client.request(method, url, headers=headers or {}) as resp,
    ):
        body = await resp.read()
        # What the HTML gate did; the runtime guard's table names refused hosts (test_runtime_layers.py).
        return resp.status, resp.headers, body if "Content-Encoding" in resp.headers else strip_guard(body)


@pytest.fixture
async def tags_site() -> AsyncIterator[TestServer]:
    server = await serve(
        page(
            TAGS,
            ETag='"v1"',
            Cache_Control="public, max-age=60, s-maxage=600",
            Vary="Accept-Encoding",
            Content_MD5="abc",
            Digest="sha-256=x",
            Accept_Ranges="bytes",
            Link="</s.css>; rel=preload; as=style, <https://www.google-analytics.com>; rel=preconnect",
        )
    )
    yield server
    await server.close()


async def test_html_is_gated_and_headers_say_it_depends_on_consent(tags_site: TestServer) -> None:
    async with running_proxy(f"http://127.0.0.1:{tags_site.port}") as tg:
        status, headers, body = await fetch(tg.url + "/product")
        assert status == 200
        for host in TRACKER_HOSTS:
            assert host not in body, host
        assert b"js.stripe.com" in body
        assert "Content-Length" not in headers and headers["Transfer-Encoding"] == "chunked"
        assert headers["Cache-Control"] == "private, max-age=60"
        assert headers["Vary"] == "Accept-Encoding, Cookie, Sec-GPC"
        assert headers["ETag"].startswith('W/"v1-tgf0a0d0s0g0')
        for gone in ("Content-MD5", "Digest", "Accept-Ranges"):
            assert gone not in headers
        assert headers.getall("Link") == ["</s.css>; rel=preload; as=style"]
        # everything granted: the page is not even parsed, but it still says it depends on consent
        status, headers, body = await fetch(tg.url + "/product", ALL)
        assert body == TAGS
        assert headers["Content-Length"] == str(len(TAGS))
        assert headers["ETag"] != 'W/"v1-tgf0a0d0s0g0"' and "-tgf1a1d1s1" in headers["ETag"]
        assert headers["Cache-Control"].startswith("private")


async def test_head_gets_the_same_headers_as_get(tags_site: TestServer) -> None:
    async with running_proxy(f"http://127.0.0.1:{tags_site.port}") as tg:
        _, get_headers, _ = await fetch(tg.url + "/p")
        status, head_headers, body = await fetch(tg.url + "/p", method="HEAD")
        assert status == 200 and body == b""
        for name in ("Cache-Control", "Vary", "ETag", "Content-Type"):
            assert head_headers[name] == get_headers[name], name
        assert "Content-Length" not in head_headers


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
async def test_encoded_pages_are_decoded_gated_and_re_encoded(coding: str) -> None:
    server = await serve(page(TAGS, coding=coding))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        status, headers, body = await fetch(tg.url + "/", {"Accept-Encoding": f"{coding}, identity"})
        assert status == 200 and headers["Content-Encoding"] == coding
        plain = strip_guard(decode(coding, body))
        assert b"connect.facebook.net" not in plain and b"js.stripe.com" in plain
        # a client that does not accept the coding gets identity
        status, headers, body = await fetch(tg.url + "/", {"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in headers and b"js.stripe.com" in body and b"fbevents" not in body
    await server.close()


async def test_plain_html_is_never_compressed_by_tag_gate() -> None:
    server = await serve(page(TAGS))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        _, headers, body = await fetch(tg.url + "/", {"Accept-Encoding": "gzip, br"})
        assert "Content-Encoding" not in headers and body.startswith(b"<!DOCTYPE html>")
    await server.close()


async def test_only_decodable_codings_are_asked_of_the_upstream() -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Accept-Encoding"))
        return web.Response(text="x")

    server = await serve(handler)
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        await fetch(tg.url + "/", {"Accept-Encoding": "gzip, compress, dcb, br;q=0.8"})
        await fetch(tg.url + "/", {"Accept-Encoding": "compress"})
    assert seen == ["gzip, br;q=0.8", None]
    await server.close()


async def test_non_html_assets_pass_byte_identical() -> None:
    js = gzip.compress(b"console.log('https://connect.facebook.net/x.js')")
    server = await serve(page(js, content_type="application/javascript", Content_Encoding="gzip", ETag='"js1"'))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        status, headers, body = await fetch(tg.url + "/app.js", {"Accept-Encoding": "gzip"})
        assert body == js and headers["Content-Length"] == str(len(js)) and headers["Content-Encoding"] == "gzip"
        assert headers["ETag"] == '"js1"' and "Cache-Control" not in headers
    await server.close()


async def test_windows_1252_page_keeps_its_bytes() -> None:
    data = (FIXTURES / "windows1252.html").read_bytes()
    server = await serve(page(data, content_type="text/html; charset=windows-1252"))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        _, headers, body = await fetch(tg.url + "/")
        assert b"<title>Caf\xe9 cr\xe8me</title>" in body and b"Na\xefve \x93quotes\x94" in body
        assert b"bat.bing.com" not in body and b"googletagmanager" not in body
        assert headers["Content-Type"] == "text/html; charset=windows-1252"
    await server.close()


@pytest.mark.parametrize(
    ("encoding", "content_type"),
    [
        ("utf-16", "text/html; charset=utf-16"),
        # a byte order mark wins over any label in the browser
        ("utf-16", "text/html; charset=utf-8"),
        ("utf-16", "text/html"),
        ("utf-16-be", "text/html; charset=windows-1252"),
        # labels the Encoding Standard maps to UTF-16, without a mark
        ("utf-16-le", "text/html; charset=unicode"),
        ("utf-16-le", "text/html; charset=ucs-2"),
        ("utf-16-be", "text/html; charset=unicodeFFFE"),
        ("iso2022_jp", "text/html; charset=csISO2022JP"),
    ],
    ids=["labelled", "bom-labelled-utf8", "bom-unlabelled", "bom-big-endian", "unicode", "ucs-2", "unicodefffe", "jis"],
)
async def test_ascii_incompatible_page_is_gated_as_utf8(encoding: str, content_type: str) -> None:
    """UTF-16 (by label or mark) and ISO-2022-JP pages reach the gate as UTF-8 and leave
    as UTF-8, declared in Content-Type: the gate and the browser read the same text."""
    markup = "<html><title>日本</title><script src='https://connect.facebook.net/x.js'></script></html>"
    data = (("\ufeff" if encoding == "utf-16-be" and "windows" in content_type else "") + markup).encode(encoding)
    server = await serve(page(data, content_type=content_type))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        _, headers, body = await fetch(tg.url + "/")
        assert body == "<html><title>日本</title></html>".encode()
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert "Content-Security-Policy" not in headers
    await server.close()


async def test_stacked_or_unknown_coding_fails_safe_with_its_label() -> None:
    data = b"opaque bytes"
    server = await serve(page(data, Content_Encoding="gzip, br"))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        _, headers, body = await fetch(tg.url + "/")
        assert body == data and headers["Content-Encoding"] == "gzip, br" and "Content-Security-Policy" in headers
    await server.close()


async def test_corrupt_gzip_gets_502_never_the_raw_body() -> None:
    server = await serve(
        page(b"<html><script src='https://connect.facebook.net/x.js'></script>" * 10, Content_Encoding="gzip")
    )
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        status, _, body = await fetch(tg.url + "/", {"Accept-Encoding": "gzip"})
        assert status == 502 and b"facebook" not in body
    await server.close()


async def test_decompression_bomb_is_cut_off() -> None:
    bomb = gzip.compress(b"<html>" + b"\0" * (80 << 20))
    server = await serve(page(bomb, Content_Encoding="gzip"))
    async with running_proxy(f"http://127.0.0.1:{server.port}", html={"max_decoded_size": "8MiB"}) as tg:
        try:
            status, _, body = await fetch(tg.url + "/", {"Accept-Encoding": "gzip"})
        except aiohttp.ClientPayloadError:
            status, body = 0, b""
        assert status in (0, 502) or len(body) < (9 << 20)
        async with aiohttp.ClientSession() as c, c.get(tg.admin_url + "/metrics") as r:
            assert 'tag_gate_fail_safe_total{reason="decode_bomb"} 1.0' in await r.text()
    await server.close()


async def test_parse_ambiguity_before_the_first_byte_fails_safe() -> None:
    data = b"<select><plaintext><script src='https://connect.facebook.net/x.js'></script>"
    server = await serve(page(data))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        status, headers, body = await fetch(tg.url + "/")
        assert status == 200 and body == data
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    await server.close()


async def test_if_none_match_across_consent_states() -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        inm = request.headers.get("If-None-Match")
        seen.append(inm)
        if inm and '"v7"' in inm:
            return web.Response(status=304, headers={"ETag": '"v7"', "Cache-Control": "public, max-age=60"})
        return web.Response(
            body=TAGS, content_type="text/html", headers={"ETag": '"v7"', "Cache-Control": "public, max-age=60"}
        )

    server = await serve(handler)
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        _, headers, first = await fetch(tg.url + "/")
        etag = headers["ETag"]
        status, headers, body = await fetch(tg.url + "/", {"If-None-Match": etag})
        assert status == 304 and body == b""
        assert headers["ETag"] == etag and headers["Cache-Control"] == "private, max-age=60"
        assert "Cookie" in headers["Vary"]
        # the same tag under another consent never yields a 304
        status, headers, body = await fetch(tg.url + "/", {"If-None-Match": etag, **ALL})
        assert status == 200 and body == TAGS and headers["ETag"] != etag
        assert seen[1] == '"v7"' and seen[2] is None
    await server.close()


async def test_range_on_html_gets_the_full_rewritten_page() -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("Range") == "bytes=0-99":
            return web.Response(
                status=206,
                body=TAGS[:100],
                content_type="text/html",
                headers={"Content-Range": f"bytes 0-99/{len(TAGS)}"},
            )
        return web.Response(body=TAGS, content_type="text/html")

    server = await serve(handler)
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        status, headers, body = await fetch(tg.url + "/", {"Range": "bytes=0-99"})
        assert status == 200 and "Content-Range" not in headers and body.endswith(b"</html>\n")
        assert b"fbevents" not in body
    await server.close()


async def test_each_upstream_chunk_is_forwarded_before_the_next_arrives() -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        await resp.prepare(request)
        await resp.write(
            b"<html><head><script src='https://connect.facebook.net/x.js'></script></head><body>"
            + b"<p>first part</p>" * 200
        )
        await asyncio.wait_for(release.wait(), 10)
        await resp.write(b"<p>second part</p></body></html>")
        await resp.write_eof()
        return resp

    server = await serve(handler)
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        async with aiohttp.ClientSession() as client, client.get(tg.url + "/") as resp:
            first = strip_guard(await asyncio.wait_for(resp.content.readany(), 5))
            assert b"first part" in first and b"facebook" not in first
            release.set()
            rest = await resp.read()
            assert rest.endswith(b"second part</p></body></html>")
    await server.close()


async def test_a_page_that_arrives_whole_is_gated_as_if_streamed() -> None:
    """A page the upstream has sent completely is gated in one step (and scanned for
    `ping` first); the same page trickling in is gated piece by piece. Same bytes out."""
    links = b"".join(b'<a href="/a/%d">shopping %d</a>' % (i, i) for i in range(300))
    body = TAGS.replace(b"</body>", links + b"<A HREF=/x PING = 'https://analytics.tiktok.com/p'>x</A></body>")
    assert body != TAGS

    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        await resp.prepare(request)
        for i in range(0, len(body), 3000):
            await resp.write(body[i : i + 3000])
            await asyncio.sleep(0.01)
        await resp.write_eof()
        return resp

    whole_site, trickle_site = await serve(page(body)), await serve(trickle)
    try:
        async with (
            running_proxy(f"http://127.0.0.1:{whole_site.port}") as whole,
            running_proxy(f"http://127.0.0.1:{trickle_site.port}") as streamed,
        ):
            for consent in (NO_CONSENT, ALL):
                _, _, at_once = await fetch(whole.url + "/", consent)
                _, _, in_parts = await fetch(streamed.url + "/", consent)
                assert at_once == in_parts
            _, headers, gated = await fetch(whole.url + "/")
            assert b"tiktok" not in gated and b"shopping 299" in gated
            assert headers["Transfer-Encoding"] == "chunked"  # as any gated page (and its HEAD)
    finally:
        await whole_site.close()
        await trickle_site.close()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_page_cut_short_by_the_upstream_never_looks_complete(framing: str) -> None:
    """The upstream closes before the body it announced is complete: the gated page is
    not mistaken for one that has fully arrived (no one-pass finish, no terminating
    chunk), and the client sees a broken response: a clean 502 when nothing had gone
    out yet (a small page of declared length is read whole before it is gated), a
    response cut short otherwise."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
    if framing == "content-length":
        response = head + b"Content-Length: 100\r\n\r\n<p>" + b"q" * 47
    else:
        response = head + b"Transfer-Encoding: chunked\r\n\r\n32\r\n<p>" + b"q" * 47 + b"\r\n"

    async with scripted_upstream(replies(response)) as up, running_proxy(up.url) as tg:
        raw = await raw_exchange(tg.port, b"GET / HTTP/1.1\r\nHost: s\r\n\r\n")
        if framing == "content-length":
            assert raw.startswith(b"HTTP/1.1 502") and b"<p>" not in raw
            return
        # The page declares no charset, so its head is held until its start is known;
        # cut short before that, the client gets a 502 (or nothing). Either way, no end.
        assert raw == b"" or raw.startswith((b"HTTP/1.1 200", b"HTTP/1.1 502"))
        assert not raw.endswith(b"0\r\n\r\n") and b"<p>" not in raw
        async with aiohttp.ClientSession() as client:
            try:
                async with client.get(tg.url + "/") as resp:
                    body = await resp.read()
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
                return
            assert resp.status == 502 and b"<p>" not in body


async def test_report_only_changes_nothing_and_counts() -> None:
    server = await serve(page(TAGS, Set_Cookie="_ga=GA1.1.1; Path=/"))
    async with running_proxy(f"http://127.0.0.1:{server.port}", server={"mode": "report-only"}) as tg:
        _, headers, body = await fetch(tg.url + "/")
        assert body == TAGS and headers["Set-Cookie"] == "_ga=GA1.1.1; Path=/"
        async with aiohttp.ClientSession() as c, c.get(tg.admin_url + "/metrics") as r:
            text = await r.text()
        assert 'tag_gate_elements_total{action="remove",category="advertising"}' in text
        assert 'tag_gate_cookies_total{action="drop",category="analytics"} 1.0' in text
    await server.close()


async def test_activation_script_and_bridge_are_served() -> None:
    server = await serve(page(b"x"))
    async with running_proxy(f"http://127.0.0.1:{server.port}", consent={"cookie_name": "site_consent"}) as tg:
        for name in ("activate.js", "bridge.js"):
            status, headers, body = await fetch(tg.url + f"/__tag-gate/{name}")
            assert status == 200 and headers["Content-Type"].startswith("text/javascript")
            assert b"site_consent" in body and b"__TG_COOKIE__" not in body
    await server.close()


async def test_decisions_header_when_enabled(tags_site: TestServer) -> None:
    async with running_proxy(f"http://127.0.0.1:{tags_site.port}", html={"decisions_header": True}) as tg:
        async with aiohttp.ClientSession() as client, client.get(tg.url + "/") as resp:
            headers, body = resp.headers, await resp.read()
        value = headers["Tag-Gate-Decisions"]
        assert "remove=" in value and "consent=f0a0d0s0g0" in value and "source=none" in value
        assert int(value.split("remove=")[1].split(";")[0]) >= 10
        assert headers["Content-Length"] == str(len(body))


# --------------------------------------------------------------------------- cookie firewall


SITE_COOKIES = [
    "sessionid=s3cr3t; Path=/; HttpOnly",
    "csrftoken=abc; Path=/",
    "__Host-session=1; Path=/; Secure",
    "_ga=GA1.1.111.222; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
    "_gid=GA1.1.333; Path=/",
    "_fbp=fb.1.1.1; Path=/",
    "IDE=xyz; Path=/; Domain=.doubleclick.net",
]


async def test_set_cookie_lines_are_filtered_by_consent() -> None:
    received: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        received.append(request.headers.get("Cookie"))
        resp = web.Response(text="<html>ok</html>", content_type="text/html")
        for line in SITE_COOKIES:
            resp.headers.add("Set-Cookie", line)
        return resp

    server = await serve(handler)
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        _, headers, _ = await fetch(tg.url + "/")
        assert headers.getall("Set-Cookie") == SITE_COOKIES[:3]
        assert "Cookie" in headers["Vary"] and headers["Cache-Control"].startswith("private")
        _, headers, _ = await fetch(tg.url + "/", {"Cookie": "tg_consent=analytics"})
        assert headers.getall("Set-Cookie") == SITE_COOKIES[:5]
        _, headers, _ = await fetch(tg.url + "/", ALL)
        assert headers.getall("Set-Cookie") == SITE_COOKIES
    await server.close()


async def test_withdrawal_strips_and_expires_refused_cookies() -> None:
    received: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        received.append(request.headers.get("Cookie"))
        return web.Response(text="<html>ok</html>", content_type="text/html")

    server = await serve(handler)
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        cookie = "sessionid=s3cr3t; _ga=GA1.1.111.222; tg_consent=; _fbp=fb.1; theme=dark"
        _, headers, _ = await fetch(tg.url + "/", {"Cookie": cookie, "Host": "www.shop.example.co.uk"})
        assert received[-1] == "sessionid=s3cr3t; tg_consent=; theme=dark"
        lines = headers.getall("Set-Cookie")
        ga = [line for line in lines if line.startswith("_ga=")]
        assert any("Domain" not in line for line in ga), "host-only deletion"
        assert any("Domain=example.co.uk" in line for line in ga), "registrable-domain deletion"
        assert all("Max-Age=0" in line and "Path=/" in line for line in lines)
        assert not any("Domain=co.uk" in line for line in lines)
        assert any(line.startswith("_fbp=") for line in lines)
        # over HTTPS (said by a trusted proxy) the deletions are Secure
    async with running_proxy(f"http://127.0.0.1:{server.port}", server={"trusted_proxies": ["127.0.0.1"]}) as tg:
        _, headers, _ = await fetch(tg.url + "/", {"Cookie": "_ga=1", "X-Forwarded-Proto": "https"})
        assert all("Secure" in line for line in headers.getall("Set-Cookie"))
        # not on sub-resources by default
        async with aiohttp.ClientSession() as c, c.get(tg.url + "/", headers={"Cookie": "_ga=1"}) as r:
            assert r.headers.getall("Set-Cookie")
    await server.close()


async def test_withdrawal_not_on_assets_by_default() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="body{}", content_type="text/css")

    server = await serve(handler)
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        _, headers, _ = await fetch(tg.url + "/site.css", {"Cookie": "_ga=1"})
        assert "Set-Cookie" not in headers
    async with running_proxy(f"http://127.0.0.1:{server.port}", cookies={"withdrawal_on": "all"}) as tg:
        _, headers, _ = await fetch(tg.url + "/site.css", {"Cookie": "_ga=1"})
        assert headers.getall("Set-Cookie")
    await server.close()


async def test_consent_cookies_and_unknown_cookies_reach_the_upstream() -> None:
    received: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        received.append(request.headers.get("Cookie"))
        return web.Response(text="ok")

    server = await serve(handler)
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        cookie = 'a=1; OptanonConsent=groups%3DC0001%3A1; "quoted"=x; b="q v"'
        await fetch(tg.url + "/", {"Cookie": cookie})
        assert received[-1] == cookie
        await raw_exchange(
            tg.port, b"GET / HTTP/1.1\r\nHost: s\r\nCookie: a=1\r\nCookie: _ga=2; c=3\r\nConnection: close\r\n\r\n"
        )
        assert received[-1] == "a=1; c=3"
    async with running_proxy(f"http://127.0.0.1:{server.port}", cookies={"strip_request": False}) as tg:
        await fetch(tg.url + "/", {"Cookie": "a=1; _ga=2"})
        assert received[-1] == "a=1; _ga=2"
    await server.close()


async def test_high_entropy_client_hints_are_not_requested_without_advertising_consent() -> None:
    server = await serve(page(b"<html></html>", Accept_CH="Sec-CH-UA-Full-Version-List, Sec-CH-UA-Model, Sec-CH-UA"))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        _, headers, _ = await fetch(tg.url + "/")
        assert headers["Accept-CH"] == "Sec-CH-UA"
        _, headers, _ = await fetch(tg.url + "/", ALL)
        assert headers["Accept-CH"] == "Sec-CH-UA-Full-Version-List, Sec-CH-UA-Model, Sec-CH-UA"
    await server.close()


async def test_gpc_refuses_advertising_whatever_the_cookie_says() -> None:
    server = await serve(page(TAGS))
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        _, _, body = await fetch(tg.url + "/", {**ALL, "Sec-GPC": "1"})
        assert b"connect.facebook.net" not in body and b"googletagmanager" in body
    await server.close()


async def test_nothing_cached_by_a_shared_cache_would_leak_between_visitors() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: ScriptedUpstream) -> None:
        await read_request_head(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nCache-Control: public, s-maxage=600\r\n"
            b"Content-Length: " + str(len(TAGS)).encode() + b"\r\n\r\n" + TAGS
        )
        await writer.drain()

    async with scripted_upstream(script) as up, running_proxy(up.url) as tg:
        raw = await raw_exchange(tg.port, b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        _, headers, _ = split_response(raw)
        cc = [v for k, v in headers if k.lower() == "cache-control"]
        assert cc == ["private"]


async def test_report_only_never_breaks_the_page_even_when_the_gate_cannot_follow() -> None:
    broken = b"\x1f\x8b not really gzip <script src='https://connect.facebook.net/x.js'></script>" * 50
    server = await serve(page(broken, Content_Encoding="gzip"))
    async with running_proxy(f"http://127.0.0.1:{server.port}", server={"mode": "report-only"}) as tg:
        status, headers, body = await fetch(tg.url + "/", {"Accept-Encoding": "gzip"})
        assert status == 200 and body == broken and headers["Content-Encoding"] == "gzip"
        async with aiohttp.ClientSession() as c, c.get(tg.admin_url + "/metrics") as r:
            assert 'tag_gate_fail_safe_total{reason="report_only_corrupt"} 1.0' in await r.text()
    await server.close()
