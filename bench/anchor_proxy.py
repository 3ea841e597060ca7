"""The anchor's bare proxy: aiohttp + python-lolhtml, four element types, no consent.

A re-run of ../shared/docs/perf-anchors.md §2 (d) ("aiohttp + lol-html", 0.13x nginx
on the 100 KB page there), so that `proxy_bench.py --html` measures it in the same run
as tag-gate's full gate. As in the anchor: an aiohttp server with a keep-alive
ClientSession, text/html bodies streamed through lol-html in 16 KiB reads, and
`script[src]`, `iframe[src]`, `img[src]`, `link[href]` removed when their host (or a
parent domain) is a tracker; `<noscript>` content goes through a regex filter. The
tracker set is the built-in catalogue's hosts outside "essential" (the anchor used 200
domains). Nothing else: no consent, no `<a ping>`, `<source>`, `<object>`, `<base>`,
inline snippets, codings or header work.

Usage: python bench/anchor_proxy.py PORT UPSTREAM_BASE
"""

from __future__ import annotations

import asyncio
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import lolhtml
import uvloop
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from proxy.core.catalog import load_builtin_vendors

TRACKERS = frozenset(host for v in load_builtin_vendors() if v.category != "essential" for host in v.hosts)
HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers"}
HOP |= {"transfer-encoding", "upgrade", "host", "content-length"}
CHUNK = 16384
SELECTOR = "script[src], iframe[src], img[src], link[href]"


@lru_cache(maxsize=4096)
def host_is_tracker(host: str) -> bool:
    while True:
        if host in TRACKERS:
            return True
        dot = host.find(".")
        if dot < 0:
            return False
        host = host[dot + 1 :]


def url_is_tracker(url: str) -> bool:
    """The anchor's test: relative URLs are first-party."""
    if url.startswith("//"):
        rest = url[2:]
    else:
        i = url.find("://")
        if i < 0 or i > 8:
            return False
        rest = url[i + 3 :]
    end = len(rest)
    for ch in "/?#":
        j = rest.find(ch, 0, end)
        if j >= 0:
            end = j
    host = rest[:end].rsplit("@", 1)[-1].split(":", 1)[0]
    return host_is_tracker(host.lower())


TAG_RE = re.compile(r"<(script|iframe|img|link)\b([^>]*)>", re.I)
ATTR_RE = re.compile(r"""\b(?:src|href)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)
CLOSE = {"script": re.compile(r"</script\s*>", re.I), "iframe": re.compile(r"</iframe\s*>", re.I)}


def filter_fragment(text: str) -> str:
    """The anchor's regex scanner on a whole <noscript> fragment."""
    out, pos = [], 0
    while m := TAG_RE.search(text, pos):
        tag = m.group(1).lower()
        a = ATTR_RE.search(m.group(2))
        end = m.end()
        if tag in CLOSE:
            c = CLOSE[tag].search(text, end)
            end = c.end() if c else len(text)
        bad = bool(a) and url_is_tracker(a.group(1) or a.group(2) or a.group(3) or "")  # type: ignore[union-attr]
        out.append(text[pos : m.start()] if bad else text[pos:end])
        pos = end
    out.append(text[pos:])
    return "".join(out)


class ElementHandler:
    __slots__ = ()

    def element(self, e: lolhtml.Element) -> None:
        v = e.get_attribute("href" if e.tag_name == "link" else "src")
        if v and url_is_tracker(v):
            e.remove()


class NoscriptHandler:
    def __init__(self) -> None:
        self.buf: list[str] = []

    def text(self, t: lolhtml.TextChunk) -> None:
        self.buf.append(t.text)
        if t.last_in_text_node:
            content, self.buf = "".join(self.buf), []
            t.replace(filter_fragment(content), lolhtml.ContentType.HTML)
        else:
            t.remove()


async def handle(request: web.Request) -> web.StreamResponse:
    session: ClientSession = request.app["session"]
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
    data = request.content if request.body_exists else None
    url = request.app["upstream"] + request.rel_url.path_qs
    async with session.request(request.method, url, headers=headers, data=data, allow_redirects=False) as up:
        resp = web.StreamResponse(status=up.status, reason=up.reason)
        for k, v in up.headers.items():
            if k.lower() not in HOP:
                resp.headers.add(k, v)
        rewrite = up.headers.get("Content-Type", "").startswith("text/html") and "Content-Encoding" not in up.headers
        if not rewrite and up.content_length is not None:
            resp.content_length = up.content_length
        await resp.prepare(request)
        if rewrite:
            out: list[bytes] = []
            sink: Any = out.append
            rw = lolhtml.HTMLRewriter(sink)
            rw.on(SELECTOR, ElementHandler())
            rw.on("noscript", NoscriptHandler())
            async for chunk in up.content.iter_chunked(CHUNK):
                rw.write(chunk)
                if out:
                    buf = b"".join(out)
                    out.clear()
                    await resp.write(buf)
            rw.end()
            if out:
                await resp.write(b"".join(out))
        else:
            async for chunk in up.content.iter_chunked(CHUNK):
                await resp.write(chunk)
        await resp.write_eof()
        return resp


async def main(port: int, upstream: str) -> None:
    app = web.Application()
    app["upstream"] = upstream.rstrip("/")
    app.router.add_route("*", "/{tail:.*}", handle)
    app["session"] = ClientSession(
        connector=TCPConnector(limit=0, keepalive_timeout=60),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
        timeout=ClientTimeout(total=None, sock_connect=5),
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    try:
        await asyncio.Event().wait()
    finally:
        await app["session"].close()
        await runner.cleanup()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2]))
