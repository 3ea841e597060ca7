"""The gated-page cache (proxy/html/cache.py, issue 17): a hit gives exactly what gating
gives, and a cached page never reaches a visitor whose consent, host or nonce differ,
nor survives a reload."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.html.cache import CachedPage, GateCache
from proxy.html.gate import Additions
from tests.conftest import ScriptedFactory, TagGateFactory, UpstreamFactory
from tests.proxytools import replies, strip_guard

PAGE = (
    b"<!doctype html><html><head>"
    b'<script async src="https://www.googletagmanager.com/gtag/js?id=G-1"></script>'
    b"<script>window.dataLayer=[];function gtag(){dataLayer.push(arguments)}gtag('config','G-1')</script>"
    b"</head><body><img src=https://shop.example/a.png><p>hello</p></body></html>"
)
ALL = "tg_consent=functional.analytics.advertising.social"


def key(body: bytes = b"page", **changes: Any) -> Any:
    args: dict[str, Any] = dict(
        coding=None, encode=None, consent_key="k", host="h", nonce=None, generation=1, additions=Additions()
    )
    args.update(changes)
    return GateCache.key(body, **args)


def test_every_input_of_the_gated_output_is_in_the_key() -> None:
    base = key()
    assert key() == base
    for change in (
        {"body": b"page!"},
        {"coding": "gzip"},
        {"encode": "br"},
        {"consent_key": "k2"},
        {"host": "other"},
        {"nonce": "n"},
        {"generation": 2},
        {"additions": Additions(head_start="<script></script>")},
        {"charset": "utf-8"},
        {"document": "xml"},
        {"essence": "application/xhtml+xml"},
    ):
        assert key(**change) != base, change


def test_least_recently_used_pages_go_first_and_the_bound_holds() -> None:
    cache = GateCache(max_bytes=10_000)
    pages = [CachedPage(bytes([i]), bytes([i]) * 1000, (), False) for i in range(20)]
    for i, page in enumerate(pages):
        cache.put(key(bytes([i])), page)
        assert cache.get(key(bytes([0])), bytes([0])) is pages[0]  # used on every turn: stays
        assert cache.bytes <= cache.max_bytes
    assert cache.get(key(bytes([0])), bytes([0])) is pages[0]
    assert cache.get(key(bytes([1])), bytes([1])) is None and cache.evictions > 0
    cache.put(key(b"huge"), CachedPage(b"huge", b"x" * 5000, (), False))  # over a quarter: not kept
    assert cache.get(key(b"huge"), b"huge") is None


def test_a_digest_collision_is_a_miss_never_another_pages_output() -> None:
    cache = GateCache(max_bytes=1 << 20)
    k = key(b"page one")
    cache.put(k, CachedPage(b"page one", b"gated one", (), False))
    # Another body under the same key (as a crafted XXH3 collision would give): a miss.
    assert cache.get(k, b"page two") is None
    assert cache.get(k, b"page one") is not None


async def metrics_of(admin_url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as client, client.get(admin_url + "/metrics") as resp:
        out = {}
        for line in (await resp.text()).splitlines():
            if line.startswith("tag_gate_gate_cache"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


def page_app(csp_nonces: itertools.count[int] | None = None) -> web.Application:
    async def page(request: web.Request) -> web.Response:
        resp = web.Response(body=PAGE, content_type="text/html")
        if csp_nonces is not None:
            resp.headers["Content-Security-Policy"] = f"script-src 'nonce-n{next(csp_nonces)}'"
        return resp

    app = web.Application()
    app.router.add_get("/", page)
    return app


async def get(url: str, cookie: str | None = None, host: str | None = None) -> bytes:
    headers = {"Cookie": cookie} if cookie else {}
    if host:
        headers["Host"] = host
    async with aiohttp.ClientSession() as client, client.get(url, headers=headers) as resp:
        assert resp.status == 200
        return await resp.read()


async def test_a_hit_is_byte_identical_to_gating(upstream: UpstreamFactory, tag_gate: TagGateFactory) -> None:
    site = await upstream(page_app())
    tg = await tag_gate(f"http://127.0.0.1:{site.port}")
    first = await get(tg.url + "/")
    second = await get(tg.url + "/")
    assert first == second and b"googletagmanager" not in strip_guard(first)
    m = await metrics_of(tg.admin_url)
    assert m['tag_gate_gate_cache_total{event="hit"}'] == 1
    assert m['tag_gate_gate_cache_total{event="miss"}'] == 1
    assert m["tag_gate_gate_cache_bytes"] > len(first)


async def get_head(url: str) -> tuple[dict[str, str], bytes]:
    async with aiohttp.ClientSession() as client, client.get(url) as resp:
        assert resp.status == 200
        body = await resp.read()
        return {k: v for k, v in resp.headers.items() if k.lower() != "date"}, body


async def test_a_hit_sends_the_head_gating_sends(upstream: UpstreamFactory, tag_gate: TagGateFactory) -> None:
    """PAGE declares no charset: the gated response names the one the browser would
    only have guessed, on a hit as on the miss."""
    site = await upstream(page_app())
    tg = await tag_gate(f"http://127.0.0.1:{site.port}", html={"csp": {"sample": 0}})
    miss, hit = await get_head(tg.url + "/"), await get_head(tg.url + "/")
    assert miss[0]["Content-Type"] == "text/html; charset=windows-1252"
    assert hit == miss
    m = await metrics_of(tg.admin_url)
    assert m['tag_gate_gate_cache_total{event="hit"}'] == 1


XML = (
    b'<?xml version="1.0"?><page xmlns:h="http://www.w3.org/1999/xhtml">'
    b'<h:img src="https://bat.bing.com/action/0?ti=1"/></page>'
)


async def test_a_sniffed_xml_document_is_relayed_under_the_strict_csp_on_a_hit_too(
    scripted: ScriptedFactory, tag_gate: TagGateFactory
) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(XML)}\r\nConnection: close\r\n\r\n".encode()
    up = await scripted(replies(head + XML))
    tg = await tag_gate(up.url, html={"csp": {"sample": 0}})
    miss, hit = await get_head(tg.url + "/"), await get_head(tg.url + "/")
    assert "default-src" in miss[0]["Content-Security-Policy"]
    assert hit == miss
    m = await metrics_of(tg.admin_url)
    assert m['tag_gate_gate_cache_total{event="hit"}'] == 1


async def test_another_consent_never_gets_the_cached_page(upstream: UpstreamFactory, tag_gate: TagGateFactory) -> None:
    site = await upstream(page_app())
    tg = await tag_gate(f"http://127.0.0.1:{site.port}")
    refused = await get(tg.url + "/")
    granted = await get(tg.url + "/", cookie=ALL)
    assert b"googletagmanager" not in strip_guard(refused)
    assert granted == PAGE  # everything granted: the page as the site sent it
    analytics = await get(tg.url + "/", cookie="tg_consent=analytics")
    assert b"googletagmanager" in analytics and analytics != refused


async def test_another_host_never_gets_the_cached_page(upstream: UpstreamFactory, tag_gate: TagGateFactory) -> None:
    site = await upstream(page_app())
    # Unknown hosts count as analytics: shop.example is first-party only on its own pages.
    tg = await tag_gate(f"http://127.0.0.1:{site.port}", html={"unknown_hosts": "analytics"})
    own = await get(tg.url + "/", host="shop.example")
    other = await get(tg.url + "/", host="other.example")
    assert b"https://shop.example/a.png" in own
    assert b"https://shop.example/a.png" not in other


async def test_another_nonce_never_gets_the_cached_page(upstream: UpstreamFactory, tag_gate: TagGateFactory) -> None:
    site = await upstream(page_app(itertools.count()))
    tg = await tag_gate(f"http://127.0.0.1:{site.port}")
    first = await get(tg.url + "/", cookie="tg_consent=analytics")
    second = await get(tg.url + "/", cookie="tg_consent=analytics")
    # The Consent Mode block tag-gate inserts carries each response's own nonce.
    assert b'nonce="n0"' in first and b'nonce="n0"' not in second and b'nonce="n1"' in second
    m = await metrics_of(tg.admin_url)
    assert m.get('tag_gate_gate_cache_total{event="hit"}', 0) == 0
    # A nonce is new for every response: such a page is not kept (it only pushed out
    # pages that recur), nor looked up.
    assert m['tag_gate_gate_cache_total{event="uncacheable"}'] == 2
    assert m.get('tag_gate_gate_cache_total{event="miss"}', 0) == 0
    cache = tg.service.state.runtime.gate_cache
    assert cache is not None and len(cache) == 0


async def test_a_reload_empties_the_cache(upstream: UpstreamFactory, tag_gate: TagGateFactory, tmp_path: Path) -> None:
    site = await upstream(page_app())
    tg = await tag_gate(f"http://127.0.0.1:{site.port}")
    await get(tg.url + "/")
    runtime = tg.service.state.runtime
    assert runtime.gate_cache is not None and len(runtime.gate_cache) == 1
    assert tg.service.reload(lambda: tg.service.config)
    new = tg.service.state.runtime
    assert new is not runtime and new.gate_cache is not None and len(new.gate_cache) == 0
    await get(tg.url + "/")
    m = await metrics_of(tg.admin_url)
    assert m.get('tag_gate_gate_cache_total{event="hit"}', 0) == 0


@pytest.mark.parametrize("size", [0, "0"])
async def test_cache_size_zero_turns_it_off(upstream: UpstreamFactory, tag_gate: TagGateFactory, size: Any) -> None:
    site = await upstream(page_app())
    tg = await tag_gate(f"http://127.0.0.1:{site.port}", html={"cache_size": size})
    assert tg.service.state.runtime.gate_cache is None
    assert await get(tg.url + "/") == await get(tg.url + "/")


@pytest.mark.slow
async def test_the_bound_holds_over_ten_thousand_distinct_pages(upstream: UpstreamFactory, tmp_path: Path) -> None:
    """10,000 distinct 20 KB pages through tag-gate (its own process, an 8 MiB cache):
    the cache never holds more than its bound, and the process's memory stays flat."""
    from tests.test_cli_functional import rss_kib, serve_process

    async def page(request: web.Request) -> web.Response:
        n = request.match_info["n"]
        body = PAGE.replace(b"<p>hello</p>", f"<p>page {n}</p>".encode() + b"<p>" + b"x" * 20_000 + b"</p>")
        return web.Response(body=body, content_type="text/html")

    app = web.Application()
    app.router.add_get("/p/{n}", page)
    site = await upstream(app)
    config = tmp_path / "c.toml"
    config.write_text('[html]\ncache_size = "8MiB"\n[server]\naccess_log = false\n')
    with serve_process("--config", str(config), "--upstream", f"http://127.0.0.1:{site.port}") as (proc, port, admin):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as client:

            async def one(i: int) -> None:
                async with client.get(f"http://127.0.0.1:{port}/p/{i}") as resp:
                    assert resp.status == 200
                    assert f"page {i}".encode() in await resp.read()

            for i in range(0, 1000, 16):
                await asyncio.gather(*(one(i + k) for k in range(16)))
            baseline = rss_kib(proc.pid)
            for i in range(1000, 10_000, 16):
                await asyncio.gather(*(one(i + k) for k in range(16)))
            growth_mib = (rss_kib(proc.pid) - baseline) / 1024
        m = await metrics_of(f"http://127.0.0.1:{admin}")
    assert m["tag_gate_gate_cache_bytes"] <= 8 << 20
    assert m['tag_gate_gate_cache_total{event="eviction"}'] > 8000
    assert growth_mib < 24, f"RSS grew by {growth_mib:.0f} MiB over 9,000 distinct pages with an 8 MiB cache"
