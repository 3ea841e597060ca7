"""Issue 15, classes 2, 3 and 4 in a real browser: markup that made Chromium contact a
refused tracker through tag-gate (non-ASCII hosts, elements and attributes the gate
never looked at, legacy script types, data: documents).

Each case is one small page. The control loads it straight from the site with no
consent and must see Chromium contact the tracker (else the case proves nothing, and
says so by skipping); through tag-gate, with the same (absent) consent, no refused
tracker may be contacted at all. The pages come from a tiny site of their own, so
each can carry its own Content-Type.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from aiohttp import web

from tests.e2e.world import World, category_of_host
from tests.proxytools import running_proxy

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

NONE: frozenset[str] = frozenset({"essential"})
FB = "https://www.facebook.com/tr?id=1&ev=PageView"
BING = "https://bat.bing.com/action/0?ti=1"


@dataclass(frozen=True)
class Case:
    html: str
    tracker: str
    """The refused host the control must contact."""
    content_type: str = "text/html; charset=utf-8"
    encoding: str = "utf-8"


CASES: dict[str, Case] = {
    # ---- class 2: non-ASCII hosts
    "ideographic-full-stops": Case('<img src="https://www\u3002facebook\u3002com/tr?id=2">', "www.facebook.com"),
    "fullwidth-full-stop": Case('<img src="https://bat\uff0ebing\uff0ecom/action/0?ti=2">', "bat.bing.com"),
    "halfwidth-ideographic-stop": Case('<img src="https://bat\uff61bing\uff61com/action/0?ti=3">', "bat.bing.com"),
    "raw-soft-hyphen": Case('<img src="https://bat.bi\u00adng.com/action/0?ti=4">', "bat.bing.com"),
    "fullwidth-letter": Case(
        '<script src="https://\uff43onnect.facebook.net/en_US/fbevents.js"></script>', "connect.facebook.net"
    ),
    "fullwidth-uppercase-host": Case('<img src="https://\uff22\uff21\uff34.bing.com/action/0?ti=5">', "bat.bing.com"),
    "zero-width-space-mapped": Case('<img src="https://bat.bi\u200bng.com/action/0?ti=zw">', "bat.bing.com"),
    "percent-encoded-ideographic-stop": Case('<img src="https://bat%E3%80%82bing.com/action/0?ti=6">', "bat.bing.com"),
    "meta-charset-utf8": Case(
        '<meta charset="utf-8"><img src="https://www\u3002facebook\u3002com/tr?id=7">',
        "www.facebook.com",
        content_type="text/html",
    ),
    "shift-jis-fullwidth": Case(
        '<meta charset="shift_jis"><img src="https://\uff42at.bing.com/action/0?ti=sjis">',
        "bat.bing.com",
        content_type="text/html; charset=shift_jis",
        encoding="shift_jis",
    ),
    "base-href-ideographic": Case(
        '<base href="https://www\u3002facebook\u3002com/"><img src="tr?id=base">', "www.facebook.com"
    ),
    # ---- class 3: elements and attributes never looked at
    "html-image-element": Case(f'<image src="{FB}&x=image">', "www.facebook.com"),
    "svg-image-href": Case(f'<svg><image href="{FB}&x=svg" width="1" height="1"/></svg>', "www.facebook.com"),
    "svg-image-xlink": Case(
        f'<svg xmlns:xlink="http://www.w3.org/1999/xlink"><image xlink:href="{BING}&x=xl" width="1" height="1"/></svg>',
        "bat.bing.com",
    ),
    "svg-feimage": Case(
        f'<svg><filter id="f"><feImage href="{BING}&x=fe"/></filter>'
        '<rect width="9" height="9" filter="url(#f)"/></svg>',
        "bat.bing.com",
    ),
    "smil-set-href": Case(
        f'<svg><image width="9" height="9"><set attributeName="href" to="{BING}&x=set"/></image></svg>',
        "bat.bing.com",
    ),
    "smil-animate-href": Case(
        f'<svg><image width="9" height="9"><animate attributeName="href" values="{BING}&x=anim" dur="1s"/>'
        "</image></svg>",
        "bat.bing.com",
    ),
    "svg-mask-url": Case(
        '<svg><rect width="9" height="9" mask="url(https://bat.bing.com/action/0?ti=mask#m)"/></svg>', "bat.bing.com"
    ),
    "svg-filter-url": Case(
        '<svg><rect width="9" height="9" filter="url(https://bat.bing.com/action/0?ti=filter#f)"/></svg>',
        "bat.bing.com",
    ),
    "svg-clip-path-url": Case(
        '<svg><rect width="9" height="9" clip-path="url(https://bat.bing.com/action/0?ti=clip#c)"/></svg>',
        "bat.bing.com",
    ),
    "svg-fill-url": Case(
        '<svg><rect width="9" height="9" fill="url(https://bat.bing.com/action/0?ti=fill#g)"/></svg>', "bat.bing.com"
    ),
    "svg-marker-url": Case(
        '<svg><path d="M0 0L9 9" stroke="red" marker-end="url(https://bat.bing.com/action/0?ti=marker#m)"/></svg>',
        "bat.bing.com",
    ),
    "track-src": Case(
        f'<video src="/none.mp4" preload="auto"><track default kind="captions" src="{BING}&x=track"></video>',
        "bat.bing.com",
    ),
    "tr-background": Case(f'<table><tr background="{BING}&x=tr"><td>cell</td></tr></table>', "bat.bing.com"),
    "tbody-background": Case(
        f'<table><tbody background="{BING}&x=tbody"><tr><td>cell</td></tr></table>', "bat.bing.com"
    ),
    "thead-background": Case(
        f'<table><thead background="{BING}&x=thead"><tr><td>cell</td></tr></table>', "bat.bing.com"
    ),
    "link-compression-dictionary": Case(f'<link rel="compression-dictionary" href="{BING}&x=dict">', "bat.bing.com"),
    "link-alternate-stylesheet": Case(
        '<link rel="alternate stylesheet" href="https://bat.bing.com/action/0?ti=alt" title="x">', "bat.bing.com"
    ),
    "img-attributionsrc": Case(f'<img src="/img/a.svg" attributionsrc="{BING}&x=attr">', "bat.bing.com"),
    "meta-refresh": Case(f'<meta http-equiv="refresh" content="0; url={FB}&x=refresh">', "www.facebook.com"),
    "meta-refresh-quoted": Case(f"<meta http-equiv=Refresh content=\"0;URL='{FB}&x=refresh2'\">", "www.facebook.com"),
    "style-import": Case('<style>@import "https://bat.bing.com/action/0?ti=import";</style>', "bat.bing.com"),
    "style-url": Case(
        "<style>body{background:url(https://bat.bing.com/action/0?ti=styleurl)}</style><p>x</p>", "bat.bing.com"
    ),
    "style-escaped-url": Case(
        "<style>body{background:u\\72l(https\\3a //bat.bing.com/action/0?ti=esc)}</style><p>x</p>", "bat.bing.com"
    ),
    "style-font-face": Case(
        "<style>@font-face{font-family:t;src:url(https://bat.bing.com/action/0?ti=font)}"
        "body{font-family:t}</style><p>text</p>",
        "bat.bing.com",
    ),
    "style-image-set": Case(
        '<style>body{background-image:image-set("https://bat.bing.com/action/0?ti=set" 1x)}</style><p>x</p>',
        "bat.bing.com",
    ),
    "style-attribute-url": Case(
        '<div style="width:9px;height:9px;background:url(https://bat.bing.com/action/0?ti=attr)">x</div>',
        "bat.bing.com",
    ),
    "style-attribute-entity-paren": Case(
        '<div style="width:9px;height:9px;background:url&#40;https://bat.bing.com/action/0?ti=ent)">x</div>',
        "bat.bing.com",
    ),
    "style-attribute-image-set": Case(
        "<div style=\"width:9px;height:9px;background-image:image-set('https://bat.bing.com/action/0?ti=is' 1x)\">"
        "x</div>",
        "bat.bing.com",
    ),
    "speculation-rules-prefetch": Case(
        '<script type="speculationrules">{"prefetch":[{"source":"list","urls":["https://bat.bing.com/action/0?ti=spec"]}]}'
        "</script>",
        "bat.bing.com",
    ),
    "speculation-rules-document": Case(
        '<a href="https://bat.bing.com/action/0?ti=doc">x</a><script type="speculationrules">'
        '{"prefetch":[{"where":{"href_matches":"*"},"eagerness":"immediate"}]}</script>',
        "bat.bing.com",
    ),
    # ---- class 4: script types and URL schemes
    "script-javascript1-2": Case(
        '<script type="text/javascript1.2" src="https://connect.facebook.net/en_US/fbevents.js"></script>',
        "connect.facebook.net",
    ),
    "script-javascript1-5-upper": Case(
        '<script type=" TEXT/JAVASCRIPT1.5 " src="https://connect.facebook.net/en_US/fbevents.js"></script>',
        "connect.facebook.net",
    ),
    "iframe-data-html": Case(
        f'<iframe src="data:text/html,<img src={FB}%26x=dataframe>"></iframe>', "www.facebook.com"
    ),
    "iframe-data-html-base64": Case(
        '<iframe src="data:text/html;base64,'
        'PGltZyBzcmM9aHR0cHM6Ly9iYXQuYmluZy5jb20vYWN0aW9uLzA/dGk9YjY0Pg=="></iframe>',
        "bat.bing.com",
    ),
    "object-data-html": Case(f'<object data="data:text/html,<img src={FB}%26x=dataobj>"></object>', "www.facebook.com"),
    "embed-data-svg": Case(
        f'<embed type="image/svg+xml" src="data:image/svg+xml,<svg xmlns=%22http://www.w3.org/2000/svg%22>'
        f'<image href=%22{BING}%26x=embed%22 width=%229%22 height=%229%22/></svg>">',
        "bat.bing.com",
    ),
    "link-data-stylesheet": Case(
        '<link rel="stylesheet" href="data:text/css,body{background:url(https://bat.bing.com/action/0?ti=datacss)}">'
        "<p>x</p>",
        "bat.bing.com",
    ),
}


class Pages:
    """The cases' pages, each with its own Content-Type, on a loopback port."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        case = CASES.get(request.match_info["name"])
        if case is None:
            raise web.HTTPNotFound()
        body = f"<!doctype html><html><head><title>case</title></head><body>{case.html}</body></html>"
        return web.Response(body=body.encode(case.encoding), headers={"Content-Type": case.content_type})

    async def image(self, request: web.Request) -> web.Response:
        return web.Response(text='<svg xmlns="http://www.w3.org/2000/svg"/>', content_type="image/svg+xml")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/case/{name}", self.handle)
        app.router.add_get("/img/{name}", self.image)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        sock = socket.create_server(("127.0.0.1", 0))
        await web.SockSite(self.runner, sock).start()
        self.port = int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pages() -> AsyncIterator[Pages]:
    p = Pages()
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gate_port(world: World, pages: Pages) -> AsyncIterator[int]:
    async with running_proxy(f"http://127.0.0.1:{pages.port}") as running:
        yield running.port


async def _contacts(world: World, port: int, name: str) -> list[str]:
    async with world.tab(port=port) as tab:
        try:
            await tab.goto(world.url(port, f"case/{name}"))
        except Exception as exc:  # a refresh to a tracker may interrupt the load
            if "interrupted" not in str(exc) and "ERR_ABORTED" not in str(exc):
                raise
            await tab.settle()
        v = await tab.snapshot()
    return v.refused_contacts(NONE)


@pytest.mark.parametrize("name", CASES)
async def test_markup_reaches_the_tracker_directly_but_not_through_tag_gate(
    world: World, pages: Pages, gate_port: int, name: str
) -> None:
    case = CASES[name]
    assert category_of_host(case.tracker) not in (None, "essential")
    control = await _contacts(world, pages.port, name)
    if not any(case.tracker in c for c in control):
        pytest.skip(f"{name}: this Chromium did not contact {case.tracker} even without tag-gate ({control})")
    through = await _contacts(world, gate_port, name)
    assert through == [], f"{name}: refused contacts through tag-gate: {through}"
