"""The banner and the managed tags through a real tag-gate on loopback: pages of a site
whose banner is off are byte-identical to those of a config without `[banner]`; with
it on, every gated page carries it (also for a visitor who refuses nothing, also when
the upstream compresses), HEAD and GET agree on the headers."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.http.header_filters import FRAGMENT_VARY
from tests.proxytools import running_proxy

FIXTURES = Path(__file__).parent / "fixtures"
PAGES = {
    "tags": (FIXTURES / "tags.html").read_bytes(),
    "awkward": (FIXTURES / "awkward.html").read_bytes(),
    "windows1252": (FIXTURES / "windows1252.html").read_bytes(),
    "shop": (Path(__file__).parent / "e2e" / "pages" / "shop.html").read_bytes(),
}
SALT = "functional-salt-0123"
COOKIES = [
    None,
    "tg_consent=analytics",
    "tg_consent=functional.analytics.advertising.social",
    "_ga=GA1.1.1.1; _fbp=fb.1; tg_consent=",
    "OptanonConsent=isGpcEnabled=0&groups=C0001%3A1%2CC0002%3A1",
]


@pytest.fixture
async def site() -> AsyncIterator[TestServer]:
    async def page(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        data = PAGES[name]
        headers = {
            "Content-Type": "text/html; charset=windows-1252" if name == "windows1252" else "text/html",
            "ETag": '"v1"',
            "Cache-Control": "max-age=60",
            "Content-Security-Policy": "script-src 'nonce-SiteN0nce' 'strict-dynamic'",
        }
        headers["Set-Cookie"] = "_ga=GA1.2.3; Path=/"
        if "gzip" in request.query:
            return web.Response(body=gzip.compress(data), headers={**headers, "Content-Encoding": "gzip"})
        return web.Response(body=data, headers=headers)

    app = web.Application()
    app.router.add_get("/{name}", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def fetch(
    url: str, cookie: str | None, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    sent = {"Accept-Encoding": "gzip", **(headers or {})}
    if cookie:
        sent["Cookie"] = cookie
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False) as client,
        client.request(method, url, headers=sent) as resp,
    ):
        body = await resp.read()
        if resp.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return resp.status, [(k, v) for k, v in resp.headers.items() if k not in ("Date",)], body


async def test_pages_are_byte_identical_with_the_banner_off(site: TestServer) -> None:
    upstream = str(site.make_url(""))
    off: dict[str, Any] = {
        "enabled": False,
        "policy_version": 4,
        "position": "none",
        "vendors": ["google-analytics"],
        "proof_sink": "file",
        "proof_file": "/nonexistent/never-opened.jsonl",
    }
    html = {"category": {"analytics": {"action": "defer"}}}
    async with running_proxy(upstream, html=html) as today, running_proxy(upstream, html=html, banner=off) as with_off:
        compared = 0
        for name in PAGES:
            for query in ("", "?gzip"):
                for cookie in COOKIES:
                    for method in ("GET", "HEAD"):
                        a = await fetch(f"{today.url}/{name}{query}", cookie, method)
                        b = await fetch(f"{with_off.url}/{name}{query}", cookie, method)
                        assert a == b, (name, query, cookie, method)
                        compared += 1
        assert compared == 80
        assert with_off.service.state.proof_sink is None


async def test_every_gated_page_gets_the_banner(site: TestServer) -> None:
    banner = {"enabled": True, "proof_salt": SALT, "policy_version": 2}
    granted = f"tg_consent=functional.analytics.advertising.social~2~{int(time.time())}~Abcdefghij0123456789_-"
    # The CSP layer samples pages (one in ten by default): off, so a HEAD and its GET match.
    async with running_proxy(str(site.make_url("")), banner=banner, html={"csp": {"mode": "off"}}) as proxy:
        for cookie, opened in ((None, True), (granted, False), ("tg_consent=analytics", True)):
            for query in ("", "?gzip"):
                url = f"{proxy.url}/shop{query}"
                status, headers, body = await fetch(url, cookie, headers={"Accept-Language": "fr"})
                assert status == 200
                m = re.search(rb'<script type="application/json" id="tag-gate-banner-config">(.*?)</script>', body)
                assert m is not None, (cookie, query)
                blob = json.loads(m.group(1))
                assert blob["open"] is opened and blob["lang"] == "en", "the page's <html lang=en> wins"
                assert body.endswith(b'<script src="/__tag-gate/banner.js" async nonce="SiteN0nce"></script>')
                h = {k.lower(): v for k, v in headers}
                assert "Accept-Language" in h["vary"] and h["cache-control"].startswith("private")
                assert h["etag"] == ('W/"v1-tgf0a0d0s0g0r"' if opened else 'W/"v1-tgf1a1d1s1g0"')
                _, head_headers, head_body = await fetch(
                    f"{proxy.url}/shop{query}", cookie, "HEAD", headers={"Accept-Language": "fr"}
                )
                # A HEAD has no body to read the encoding from: its Content-Type stays as
                # the site sent it, where the GET's names the encoding the gate found.
                framing = ("Transfer-Encoding", "chunked")
                same = [x if x[0] != "Content-Type" else (x[0], x[1].split(";")[0]) for x in headers if x != framing]
                assert head_body == b"" and head_headers == same
        async with aiohttp.ClientSession() as client, client.get(f"{proxy.url}/__tag-gate/banner.js") as resp:
            assert resp.status == 200 and "tagGateBanner" in await resp.text()


async def test_managed_tags_through_the_proxy(site: TestServer) -> None:
    tags = [
        {"id": "ga", "kind": "script", "category": "analytics", "src": "https://www.googletagmanager.com/gtag/js"},
        {"id": "init", "kind": "inline", "category": "analytics", "code": "window.x=1", "placement": "head-end"},
    ]
    sections: dict[str, Any] = {"tag": tags}
    async with running_proxy(str(site.make_url("")), **sections) as proxy:
        _, _, refused = await fetch(f"{proxy.url}/shop", None)
        _, _, granted = await fetch(f"{proxy.url}/shop", "tg_consent=analytics")
    assert b'<script data-tg-tag="init" nonce="SiteN0nce" data-tg-category="analytics" type="text/plain">' in refused
    assert refused.count(b"/__tag-gate/activate.js") == 1
    assert b'<script data-tg-tag="init" nonce="SiteN0nce">window.x=1</script><body' in granted.replace(b"\n", b"")
    assert granted.endswith(
        b'<script data-tg-tag="ga" src="https://www.googletagmanager.com/gtag/js" async nonce="SiteN0nce"></script>'
    )


async def test_a_304_says_the_vary_its_200_says() -> None:
    """A cache replaces the stored response's header fields with a 304's, `Vary` among
    them (RFC 9110 15.4.5: a 304 carries the `Vary` its 200 would): revalidating a page
    whose banner follows `Accept-Language`, or a fragment the page's code fetched, keeps
    those names; a 304 that said only `Cookie, Sec-GPC` would let a cache serve the
    French banner to an English visitor, or the fragment to a navigation."""

    async def page(request: web.Request) -> web.Response:
        if '"v1"' in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers={"ETag": '"v1"'})
        body = b'<div id="cart"><img src="https://bat.bing.com/action/0"></div>'
        if request.match_info["name"] == "page":
            body = b"<!doctype html><html><head><title>t</title></head><body>" + body
        return web.Response(body=body, content_type="text/html", headers={"ETag": '"v1"'})

    app = web.Application()
    app.router.add_get("/{name}", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    banner = {"enabled": True, "proof_salt": SALT}
    try:
        async with running_proxy(str(server.make_url("")), banner=banner) as proxy:
            for name, dest in (("page", "document"), ("page", "empty"), ("fragment", "empty"), ("page", "iframe")):
                sent = {"Accept-Language": "fr", "Sec-Fetch-Dest": dest}
                status, headers, _ = await fetch(f"{proxy.url}/{name}", None, headers=sent)
                h = {k.lower(): v for k, v in headers}
                assert status == 200
                vary = {v.strip() for v in h["vary"].split(",")}
                assert ("Accept-Language" in vary) == (dest != "iframe"), (name, dest, vary)
                assert (vary >= set(FRAGMENT_VARY)) == (name == "fragment"), (name, dest, vary)
                status, headers, body = await fetch(
                    f"{proxy.url}/{name}", None, headers={**sent, "If-None-Match": h["etag"]}
                )
                again = {v.strip() for v in {k.lower(): v for k, v in headers}["vary"].split(",")}
                assert status == 304 and body == b""
                # the same names; a whole document fetched by the page's code says what
                # tells a fetch from a navigation too (a 304 does not show what the body is)
                assert again == vary | (set(FRAGMENT_VARY) if dest == "empty" else set()), (name, dest, again)
    finally:
        await server.close()
