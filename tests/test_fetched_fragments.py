"""HTML the page's own code fetches (`Sec-Fetch-Dest: empty`: htmx, Turbo, Unpoly,
jQuery's `load`): a whole document (Turbo's page visits) gets tag-gate's additions as a
page does, a fragment gets none (the banner, managed tags, the guard and activate.js
would land inside whatever element the page's code swaps it into), and is still gated.
Through a real tag-gate on loopback, the upstream streaming in small writes."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.html.prologue import whole_document
from proxy.http.header_filters import FRAGMENT_VARY
from tests.conftest import UpstreamFactory
from tests.proxytools import running_proxy

BANNER = {"enabled": True, "proof_salt": "fragments-salt-0123"}
TAG = {"id": "ga", "kind": "script", "category": "analytics", "src": "https://www.googletagmanager.com/gtag/js?id=G-1"}
SECTIONS: dict[str, Any] = {"banner": BANNER, "tag": [TAG]}
FRAGMENT = b'\n<!-- the cart -->\n<div id="cart">3 items<img src="https://bat.bing.com/action/0?ti=cart"></div>\n'
DOCUMENT = (
    b"<!DOCTYPE html>\n<html><head><title>next page</title></head>"
    b'<body><p>next</p><img src="https://bat.bing.com/action/0?ti=page"></body></html>\n'
)
ADDED = (b"tag-gate-banner-config", b"__tagGateGuard", b"/__tag-gate/activate.js", b'data-tg-tag="ga"')


@pytest.fixture
async def site(upstream: UpstreamFactory) -> TestServer:
    async def page(request: web.Request) -> web.StreamResponse:
        data = FRAGMENT if request.match_info["name"] == "fragment" else DOCUMENT
        resp = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
        await resp.prepare(request)
        for i in range(0, len(data), 7):  # a comment and the first tag split across writes
            await resp.write(data[i : i + 7])
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/{name}", page)
    return await upstream(app)


NAVIGATION = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
REQUESTS: dict[str, dict[str, str]] = {
    # with fetch metadata (every current browser, to https origins and localhost)
    "fetch": {"Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "cors", "Accept": "*/*"},
    "navigation": {"Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate", "Accept": NAVIGATION},
    # without (plain http, Safari before 16.4): what the page's code sends tells
    "plain fetch": {"Accept": "*/*"},
    "plain htmx": {"HX-Request": "true", "Accept": "text/html"},
    "plain jquery load": {"X-Requested-With": "XMLHttpRequest", "Accept": "text/html, */*; q=0.01"},
    "plain navigation": {"Accept": NAVIGATION},
}
"""The requests a page's code and a navigation make, by name."""
FROM_PAGE_CODE = frozenset({"fetch", "plain fetch", "plain htmx", "plain jquery load"})


async def get(url: str, request: str) -> tuple[str, bytes]:
    async with aiohttp.ClientSession() as client, client.get(url, headers=REQUESTS[request]) as resp:
        assert resp.status == 200
        return resp.headers.get("Vary", ""), await resp.read()


@pytest.mark.parametrize("request_kind", list(REQUESTS))
@pytest.mark.parametrize("name", ["fragment", "document"])
async def test_a_fetched_fragment_gets_no_additions_and_a_whole_document_does(
    site: TestServer, request_kind: str, name: str
) -> None:
    async with running_proxy(str(site.make_url("")).rstrip("/"), **SECTIONS) as tg:
        vary, body = await get(f"{tg.url}/{name}", request_kind)
    assert b"bat.bing.com" not in body, body  # gated either way
    added = [a for a in ADDED if a in body]
    fragment = name == "fragment" and request_kind in FROM_PAGE_CODE
    if fragment:
        assert not added, body
        assert body == FRAGMENT.replace(b'<img src="https://bat.bing.com/action/0?ti=cart">', b"")
    else:  # a page without `<html>` or `<head>` too: the guard before its first element
        assert added == list(ADDED), (added, body[:300])
        if name == "fragment":
            guard = body.index(b"__tagGateGuard")
            assert body.startswith(b"\n<!-- the cart -->\n<script") and guard < body.index(b"<div"), body[:300]
    # a fragment the page's code got differs from what a navigation gets: caches must
    # know what told them apart; a whole document is the same either way (a prefetch,
    # sent as `empty`, stays usable for the navigation)
    names = {v.strip() for v in vary.split(",")}
    assert names >= set(FRAGMENT_VARY) if fragment else not names & set(FRAGMENT_VARY), vary


@pytest.mark.parametrize(
    ("prefix", "complete", "whole"),
    [
        (b"<!DOCTYPE html><p>", False, True),
        (b"\xef\xbb\xbf\n  <!-- a -->\n<html lang=en>", False, True),
        (b"<HEAD>", False, True),
        (b"<body class=x>", True, True),
        (b"<html\n", False, True),
        (b'<div id="cart">', False, False),
        (b"3 items", False, False),
        (b"<html-widget>hi</html-widget>", True, False),
        (b"<bodyguard>", True, False),
        (b"", True, False),
        (b"", False, None),
        (b"  \n", False, None),
        (b"<!-- a long comment not closed yet", False, None),
        (b"<!-- a comment never closed", True, False),
        (b"<ht", False, None),
        (b"<ht", True, False),
        (b"<!-", False, None),
        (b"<tr><td>1</td></tr>", False, False),
    ],
)
def test_whole_document(prefix: bytes, complete: bool, whole: bool | None) -> None:
    assert whole_document(prefix, complete) is whole


async def test_the_gated_page_cache_keeps_a_fragment_and_its_page_apart(site: TestServer) -> None:
    """The same upstream bytes, fetched by the page's code and navigated to, in turn, twice
    (the second time from tag-gate's gated-page cache): each gets its own output."""
    async with running_proxy(str(site.make_url("")).rstrip("/"), **SECTIONS) as tg:
        got = [await get(f"{tg.url}/fragment", kind) for kind in ("fetch", "navigation", "fetch", "navigation")]
    bodies = [body for _, body in got]
    assert bodies[0] == bodies[2] and bodies[1] == bodies[3], bodies
    assert ["Sec-Fetch-Dest" in vary for vary, _ in got] == [True, False, True, False], got
    assert b"tag-gate-banner-config" not in bodies[0] and b"tag-gate-banner-config" in bodies[1]
