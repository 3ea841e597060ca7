"""Issue 15, classes 1, 5 and 8 in Chromium: each page contacts a refused tracker when
loaded straight from its origin, and not through tag-gate (default config, no consent).

Class 1: foreign-content breakouts that hide a real `<img>` in what lol-html reads as
CDATA or text (the gate fails safe: strict CSP). Class 5: a `<base href>` after the
element whose URL it resolves. Class 8: a fail-safe page's `preconnect` hints (CSP does
not cover them). The pages are served by an origin of this module (a tag-gate instance
in front of it); the browser, the fake internet and the tracker catalogue are world's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from tests.e2e.world import World
from tests.proxytools import running_proxy
from tests.test_foreign import ISSUE_EXAMPLES, VARIANTS

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

NONE = frozenset({"essential"})
FB = "https://www.facebook.com/tr"

PAGES: dict[str, str] = {f"breakout-{i}": body for i, body in enumerate(ISSUE_EXAMPLES + VARIANTS)}
PAGES.update(
    {
        # Class 8: the breakout makes the page fail safe; the hint must not survive it.
        "hint-preconnect": '<link rel="preconnect" href="https://connect.facebook.net"><!--body-->'
        "<div><svg></div><![CDATA[><p>x</p>]]>",
        "hint-preconnect-entity": '<link rel="&#112;reconnect" href="https://bat.bing.com" crossorigin><!--body-->'
        "<math><svg><foreignObject><textarea></textarea>",
        # Class 5: the base comes after the element that resolves against it.
        "base-after-object": '<object data="tr?id=1&ev=PageView" type="image/gif" width=1 height=1></object>'
        '<base href="https://www.facebook.com/">',
        "base-after-embed": '<embed src="tr?id=2&ev=PageView" type="image/gif" width=1 height=1>'
        '<base href="https://www.facebook.com/">',
        "base-after-poster": '<video poster="tr?id=3&ev=PageView" width=10 height=10></video>'
        '<base href="https://www.facebook.com/">',
        "base-late-in-body": '<p>text</p><video poster="tr?id=4"></video><div><base href="//www.facebook.com/"></div>',
    }
)


def document(body: str) -> bytes:
    """A whole page; what comes before `<!--body-->` in `body` goes into the head."""
    head, _, body = body.rpartition("<!--body-->")
    return f"<!doctype html><html><head><title>t</title>{head}</head><body><p>page</p>{body}</body></html>".encode()


class Origin:
    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        async def handler(request: web.Request) -> web.Response:
            body = PAGES.get(request.match_info["name"])
            if body is None:
                raise web.HTTPNotFound()
            return web.Response(body=document(body), content_type="text/html", charset="utf-8")

        app = web.Application()
        app.router.add_get("/{name}.html", handler)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ports(world: World) -> AsyncIterator[tuple[int, int]]:
    """(origin port, tag-gate port)."""
    origin = Origin()
    await origin.start()
    try:
        async with running_proxy(f"http://127.0.0.1:{origin.port}") as tg:
            yield origin.port, tg.port
    finally:
        assert origin.runner is not None
        await origin.runner.cleanup()


async def refused(world: World, port: int, name: str) -> list[str]:
    async with world.tab(port=port) as tab:
        await tab.goto(world.url(port, f"{name}.html"))
        v = await tab.snapshot()
    return v.refused_contacts(NONE)


@pytest.mark.parametrize("name", PAGES)
async def test_tracker_contacted_directly_not_through_tag_gate(world: World, ports: tuple[int, int], name: str) -> None:
    origin, proxy = ports
    direct = await refused(world, origin, name)
    for _ in range(2):
        # A few controls race the browser (a <base> late in the body against an earlier
        # element's fetch): on a loaded machine one visit may miss; the control only has
        # to show that the page can reach the tracker.
        if direct:
            break
        direct = await refused(world, origin, name)
    if name.startswith("hint-"):
        # This harness's Chromium opens no connection for a markup preconnect (no TLS
        # handshake reaches the fake internet, checked by hand); the relayed page's
        # hints are checked byte for byte in tests/test_fail_safe_hints.py. Here: the
        # page still fails safe in a browser and contacts nothing refused.
        pass
    else:
        assert direct, f"{name}: the page must reach a refused tracker without tag-gate"
    through = await refused(world, proxy, name)
    assert through == [], f"{name}: {through}"
