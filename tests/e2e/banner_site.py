"""A loopback site that serves pages the way tag-gate will once the banner is wired in.

Each page carries refused tags in tag-gate's native deferral markup (built with
`proxy.core.defer`, exactly as the HTML gate writes it), `/__tag-gate/activate.js`, and at
the end of the document the banner snippet from `proxy.core.banner` (the JSON blob for the
visitor's language, opened when `decide_reask` says so, and the deferred script with
the page's CSP nonce). `/__tag-gate/*` assets come from `proxy.service.load_assets`, and
`POST /__tag-gate/consent` records each proof-of-consent body.

Pages are served under a strict nonce-based CSP (`script-src 'nonce-…'`,
`style-src 'self'`): the banner must work without inline styles or scripts.

`BannerWorld` adds the fake internet of world.py (every third-party host, recorded)
and Debian's Chromium. Used by tests/e2e/test_banner.py and bench/banner_bench.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import trustme
from aiohttp import hdrs, web

from proxy.core.banner import BannerSettings, decide_reask, make_banner_config, make_banner_snippet, negotiate_language
from proxy.core.catalog import make_catalog
from proxy.core.consent import DEFAULT_SETTINGS
from proxy.core.defer import apply_edit, defer_edit, make_cmp_names, start_tag
from proxy.core.policy import Kind
from proxy.service import load_assets
from tests.e2e.world import CHROMIUM_FLAGS, FakeInternet

SITE_HOST = "www.shop.test"
CATALOG = make_catalog()
COOKIE = "tg_consent"
NAMES = make_cmp_names(DEFAULT_SETTINGS)

SITE_CSS = """body{font:16px/1.5 Georgia,serif;margin:0;color:#222;background:#fff}
header,main,footer{padding:1rem 2rem}header{background:#0b3d2e;color:#fff}
footer{border-top:1px solid #ccc;margin-top:2rem}a{color:#0645ad}
.products{display:grid;grid-template-columns:repeat(auto-fill,minmax(12rem,1fr));gap:1rem}
.card{border:1px solid #ccc;border-radius:6px;padding:1rem}
iframe{max-width:100%;border:0;background:#eee}
"""

HOSTILE_CSS = """/* a site whose CSS would wreck an unscoped banner */
*{font-family:"Comic Sans MS",cursive!important;letter-spacing:3px!important;color:#a00000!important}
button{background:#ff0!important;font-size:40px!important;padding:30px!important;border-radius:0!important}
dialog{display:block!important;position:static!important;background:#f0f!important}
h2{font-size:64px!important}p{margin:80px!important}input{display:none!important}
"""

APP_JS = "window.appRan = true;\n"


def deferred(tag: str, kind: Kind, attrs: dict[str, str], vendor_id: str, body: str = "") -> str:
    """An element as the HTML gate writes it when its category is refused and
    `html.action = "defer"` in the native `tag-gate` style."""
    vendor = CATALOG.vendor(vendor_id)
    assert vendor is not None, vendor_id
    edit = defer_edit("tag-gate", kind, attrs, vendor.category, vendor, NAMES)
    return edit.before + start_tag(tag, apply_edit(list(attrs.items()), edit)) + body + f"</{tag}>" + edit.after


def page_html(nonce: str, lang: str, css: str) -> str:
    n = {"nonce": nonce}
    tags_head = "\n".join(
        (
            deferred(
                "script",
                Kind.SCRIPT,
                {"async": "", "src": "https://www.googletagmanager.com/gtag/js?id=G-ABCDE12345", **n},
                "google-analytics",
            ),
            deferred(
                "script",
                Kind.INLINE,
                n,
                "google-analytics",
                "window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments);}"
                "gtag('js',new Date());gtag('config','G-ABCDE12345');",
            ),
        )
    )
    tags_body = "\n".join(
        (
            deferred(
                "script", Kind.SCRIPT, {"src": "https://connect.facebook.net/en_US/fbevents.js", **n}, "meta-pixel"
            ),
            deferred("script", Kind.SCRIPT, {"src": "https://client.crisp.chat/l.js", "async": "", **n}, "crisp"),
            deferred(
                "iframe",
                Kind.FRAME,
                {
                    "src": "https://www.youtube.com/embed/dQw4w9WgXcQ",
                    "width": "320",
                    "height": "180",
                    "title": "Product video",
                },
                "youtube",
            ),
        )
    )
    return f"""<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Green Shop</title>
<link rel="stylesheet" href="/{css}.css">
{tags_head}
<script nonce="{nonce}">
window.loadId = Math.random();
window.consentEvents = [];
document.addEventListener("tag-gate:consent", function (e) {{ window.consentEvents.push(e.detail); }});
</script>
<script src="/app.js" defer nonce="{nonce}"></script>
</head>
<body>
<header><h1>Green Shop</h1></header>
<main>
<p>Plants, pots and everything for a green home. Free delivery from 50 euros.</p>
<div class="products">
<div class="card"><h2>Monstera</h2><p>A large, easy plant for bright rooms.</p>
<button type="button" id="buy">Add to basket</button></div>
<div class="card"><h2>Clay pot</h2><p>Hand-made, 20 cm.</p></div>
<div class="card"><h2>Watering can</h2><p>Brass spout, 1.5 litres.</p></div>
</div>
<h2>How to repot</h2>
{tags_body}
</main>
<footer>
<p><a href="#tag-gate-preferences" id="footer-link">Cookie settings</a> ·
<button type="button" class="js-cookie-settings" id="site-settings">Privacy settings</button> ·
<a href="/privacy">Privacy policy</a></p>
</footer>
</body>
</html>
"""


@dataclass
class Record:
    """One POST to /__tag-gate/consent."""

    body: bytes
    content_type: str
    at: float


@dataclass
class BannerSite:
    """The site; its banner settings and endpoint behaviour are changed by the tests."""

    settings: BannerSettings
    force_open: bool | None = None
    """Override `decide_reask` (None: ask it, as the server will)."""
    consent_status: int = 204
    records: list[Record] = field(default_factory=list)
    pages: int = 0
    with_banner: bool = True
    port: int = 0
    tls_port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        assets = load_assets(COOKIE)
        app = web.Application()

        async def asset(request: web.Request) -> web.Response:
            item = assets.get(request.match_info["name"])
            if item is None:
                raise web.HTTPNotFound()
            return web.Response(body=item[0], headers={hdrs.CONTENT_TYPE: item[1]})

        async def consent(request: web.Request) -> web.Response:
            self.records.append(Record(await request.read(), request.headers.get(hdrs.CONTENT_TYPE, ""), time.time()))
            return web.Response(status=self.consent_status)

        def text(body: str, content_type: str) -> Any:
            async def handler(request: web.Request) -> web.Response:
                return web.Response(text=body, content_type=content_type)

            return handler

        app.router.add_get("/__tag-gate/{name}", asset)
        app.router.add_post("/__tag-gate/consent", consent)
        app.router.add_get("/site.css", text(SITE_CSS, "text/css"))
        app.router.add_get("/hostile.css", text(SITE_CSS + HOSTILE_CSS, "text/css"))
        app.router.add_get("/app.js", text(APP_JS, "text/javascript"))
        app.router.add_get("/favicon.ico", text("", "image/x-icon"))
        app.router.add_get("/privacy", text("<!doctype html><title>Privacy</title><p>Policy", "text/html"))
        app.router.add_get("/{page:.*}", self.page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = await self._listen(None)
        ca = trustme.CA()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(SITE_HOST).configure_cert(ctx)
        self.tls_port = await self._listen(ctx)

    async def _listen(self, ctx: ssl.SSLContext | None) -> int:
        assert self._runner is not None
        sock = socket.create_server(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock, ssl_context=ctx).start()
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def page(self, request: web.Request) -> web.Response:
        """A gated page: the banner snippet goes at the end of the document, where the
        HTML gate appends activate.js (after `</html>`, which browsers put in body)."""
        self.pages += 1
        nonce = secrets.token_urlsafe(16)
        page_lang = request.query.get("lang", "en")
        css = "hostile" if "hostile" in request.query else "site"
        markup = page_html(nonce, page_lang, css)
        markup += f'<script src="/__tag-gate/activate.js" defer nonce="{nonce}"></script>'
        if self.with_banner:
            lang = negotiate_language(request.headers.get(hdrs.ACCEPT_LANGUAGE), page_lang, self.settings)
            reask = decide_reask(request.cookies.get(COOKIE), self.settings, time.time())
            blob = make_banner_config(
                self.settings,
                CATALOG,
                lang,
                open_now=reask if self.force_open is None else self.force_open,
                cookie_name=COOKIE,
            )
            markup += make_banner_snippet(blob, nonce)
        csp = f"script-src 'nonce-{nonce}'; style-src 'self'; object-src 'none'; base-uri 'none'"
        return web.Response(
            text=markup,
            content_type="text/html",
            headers={hdrs.CONTENT_SECURITY_POLICY: csp, hdrs.CACHE_CONTROL: "no-store"},
        )


class BannerWorld:
    """Fake internet + banner site + one Chromium (Debian's, via Playwright)."""

    def __init__(self, chromium: str, settings: BannerSettings) -> None:
        self.chromium = chromium
        self.internet = FakeInternet()
        self.site = BannerSite(settings)
        self.browser: Any = None
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        from playwright.async_api import async_playwright

        await self.internet.start()
        self._stack.push_async_callback(self.internet.stop)
        await self.site.start()
        self._stack.push_async_callback(self.site.stop)
        pw = await self._stack.enter_async_context(async_playwright())
        rules = ", ".join(
            (
                f"MAP {SITE_HOST} 127.0.0.1",
                f"MAP *:80 127.0.0.1:{self.internet.plain_port}",
                f"MAP * 127.0.0.1:{self.internet.port}",
            )
        )
        self.browser = await pw.chromium.launch(
            executable_path=self.chromium,
            headless=True,
            args=[*CHROMIUM_FLAGS, f"--host-resolver-rules={rules}"],
            timeout=30_000,
        )
        self._stack.push_async_callback(self.browser.close)

    async def stop(self) -> None:
        await self._stack.aclose()

    def url(self, path: str = "shop", *, https: bool = False, query: str = "") -> str:
        scheme, port = ("https", self.site.tls_port) if https else ("http", self.site.port)
        return f"{scheme}://{SITE_HOST}:{port}/{path}" + (f"?{query}" if query else "")

    async def quiet(self, seconds: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until the fake internet has been idle for `seconds`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() - self.internet.last_activity < seconds:
            if time.monotonic() > deadline:
                raise AssertionError("the fake internet did not go quiet")
            await asyncio.sleep(0.05)
