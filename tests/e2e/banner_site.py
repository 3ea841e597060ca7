"""A loopback shop behind a real tag-gate with its consent banner on, for the browser.

- The site (`BannerSite`) is a plain origin: its page carries its tags as vendors
  publish them (gtag.js and its inline config, the Meta pixel, Crisp chat, a YouTube
  embed), each script with the response's CSP nonce, under a strict nonce-based CSP
  (`script-src 'nonce-…'`; `style-src 'self'` plus `style-src-attr 'unsafe-inline'` for
  tag-gate's iframe placeholders, or `style-src 'self'` alone with `?strict`). It knows
  nothing of the banner.
- tag-gate (`tests/proxytools.running_proxy`, in-process) runs in front with
  `[banner] enabled = true` and `[html] action = "defer"` (social embeds behind
  placeholders), writing proof-of-consent lines to a file. Tests change its config with
  `BannerWorld.configure` (a transactional reload, as SIGHUP does).
- A TLS front (`TlsFront`) passes bytes from an https port to tag-gate, for the pages a
  visitor opens over https.
- The fake internet of world.py answers for every third-party host and records each
  request; Debian's Chromium is driven by Playwright.

Used by tests/e2e/test_banner.py and bench/banner_bench.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import trustme
from aiohttp import hdrs, web

from proxy.core.catalog import make_catalog
from proxy.core.config import parse_config
from tests.e2e.world import CHROMIUM_FLAGS, FakeInternet
from tests.proxytools import Running, make_config_data, running_proxy

SITE_HOST = "www.shop.test"
CATALOG = make_catalog()
COOKIE = "tg_consent"
SALT = "e2e-proof-salt-0123456789"

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


def page_html(nonce: str, lang: str, css: str, *, tags: bool = True) -> str:
    """The shop's page; its tags as vendors publish them, each script with the nonce."""
    head_tags = f"""<!-- Google tag (gtag.js) -->
<script async src="https://www.googletagmanager.com/gtag/js?id=G-ABCDE12345" nonce="{nonce}"></script>
<script nonce="{nonce}">
  window.dataLayer = window.dataLayer || [];
  function gtag(){{dataLayer.push(arguments);}}
  gtag('js', new Date());
  gtag('config', 'G-ABCDE12345');
</script>"""
    body_tags = f"""<script src="https://connect.facebook.net/en_US/fbevents.js" nonce="{nonce}"></script>
<script src="https://client.crisp.chat/l.js" async nonce="{nonce}"></script>
<iframe src="https://www.youtube.com/embed/dQw4w9WgXcQ" width="320" height="180" title="Product video"></iframe>"""
    return f"""<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Green Shop</title>
<link rel="stylesheet" href="/{css}.css">
{head_tags if tags else ""}
<script nonce="{nonce}">
window.loadId = Math.random();
window.consentEvents = [];
window.managedOrder = [];
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
{body_tags if tags else ""}
</main>
<footer>
<p><a href="#tag-gate-preferences" id="footer-link">Cookie settings</a> ·
<button type="button" class="js-cookie-settings" id="site-settings">Privacy settings</button> ·
<a href="/privacy">Privacy policy</a></p>
</footer>
</body>
</html>
"""


class BannerSite:
    """The origin. `pages` counts page requests; `cookie_headers` holds the Cookie header
    each page request arrived with (what tag-gate let through)."""

    def __init__(self) -> None:
        self.pages = 0
        self.cookie_headers: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()

        def text(body: str, content_type: str) -> Any:
            async def handler(request: web.Request) -> web.Response:
                return web.Response(text=body, content_type=content_type)

            return handler

        app.router.add_get("/site.css", text(SITE_CSS, "text/css"))
        app.router.add_get("/hostile.css", text(SITE_CSS + HOSTILE_CSS, "text/css"))
        app.router.add_get("/app.js", text(APP_JS, "text/javascript"))
        app.router.add_get("/favicon.ico", text("", "image/x-icon"))
        app.router.add_get("/privacy", text("<!doctype html><title>Privacy</title><p>Policy", "text/html"))
        app.router.add_get("/{page:.*}", self.page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.create_server(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.port = int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def page(self, request: web.Request) -> web.Response:
        """`/shop` (any path): the page. Query: `lang` (its <html lang>), `hostile`
        (CSS that would wreck an unscoped banner), `strict` (no inline style attributes
        either), `notags` (the page without third-party tags)."""
        self.pages += 1
        self.cookie_headers.append(request.headers.get(hdrs.COOKIE, ""))
        nonce = secrets.token_urlsafe(16)
        q = request.query
        markup = page_html(nonce, q.get("lang", "en"), "hostile" if "hostile" in q else "site", tags="notags" not in q)
        styles = "style-src 'self'" if "strict" in q else "style-src 'self'; style-src-attr 'unsafe-inline'"
        csp = f"script-src 'nonce-{nonce}'; {styles}; object-src 'none'; base-uri 'none'"
        return web.Response(
            text=markup,
            content_type="text/html",
            headers={hdrs.CONTENT_SECURITY_POLICY: csp, hdrs.CACHE_CONTROL: "no-store"},
        )


class TlsFront:
    """An https port whose connections are piped, byte for byte, to tag-gate's port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        ca = trustme.CA()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(SITE_HOST).configure_cert(ctx)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ctx)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


def banner_table(proof: Path, **changes: Any) -> dict[str, Any]:
    """The e2e `[banner]` table (changes replace its keys)."""
    table: dict[str, Any] = {
        "enabled": True,
        "policy_url": "/privacy",
        "reopen_selector": ".js-cookie-settings",
        "vendors": ["google-analytics", "meta-pixel", "crisp", "youtube", "stripe"],
        "retention": {"google-analytics": "13 months", "meta-pixel": "90 days"},
        "proof_salt": SALT,
        "proof_sink": "file",
        "proof_file": str(proof),
    }
    table.update(changes)
    return table


HTML: dict[str, Any] = {"action": "defer", "category": {"social": {"action": "placeholder"}}}


class BannerWorld:
    """Fake internet + site + tag-gate (banner on) + a TLS front + one Chromium."""

    def __init__(self, chromium: str, proof_file: Path) -> None:
        self.chromium = chromium
        self.proof_file = proof_file
        self.internet = FakeInternet()
        self.site = BannerSite()
        self.proxy: Running | None = None
        self.tls: TlsFront | None = None
        self.browser: Any = None
        self._stack = contextlib.AsyncExitStack()

    def sections(self, banner: dict[str, Any] | None = None, tags: list[dict[str, Any]] | None = None) -> Any:
        out: dict[str, Any] = {"html": HTML, "banner": banner_table(self.proof_file, **(banner or {}))}
        if tags:
            out["tag"] = tags
        return out

    async def start(self) -> None:
        from playwright.async_api import async_playwright

        await self.internet.start()
        self._stack.push_async_callback(self.internet.stop)
        await self.site.start()
        self._stack.push_async_callback(self.site.stop)
        self.proxy = await self._stack.enter_async_context(running_proxy(self.site.url, **self.sections()))
        self.tls = TlsFront(self.proxy.port)
        await self.tls.start()
        self._stack.push_async_callback(self.tls.stop)
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

    def configure(self, *, banner: dict[str, Any] | None = None, tags: list[dict[str, Any]] | None = None) -> None:
        """Give the running tag-gate a new config (the e2e defaults with these changes)."""
        assert self.proxy is not None
        config = parse_config(make_config_data(self.site.url, **self.sections(banner, tags)))
        assert self.proxy.service.reload(lambda: config), "the new config was refused"

    def url(self, path: str = "shop", *, https: bool = False, query: str = "") -> str:
        assert self.proxy is not None and self.tls is not None
        scheme, port = ("https", self.tls.port) if https else ("http", self.proxy.port)
        return f"{scheme}://{SITE_HOST}:{port}/{path}" + (f"?{query}" if query else "")

    def origin(self, https: bool = False) -> str:
        return self.url("", https=https).rstrip("/")

    def proof_lines(self) -> list[dict[str, Any]]:
        """Every proof-of-consent line written so far (the sink flushed first)."""
        assert self.proxy is not None
        sink = self.proxy.service.state.proof_sink
        if sink is not None:
            sink.flush(2.0)
        if not self.proof_file.exists():
            return []
        return [json.loads(line) for line in self.proof_file.read_text(encoding="utf-8").splitlines() if line]

    async def quiet(self, seconds: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until the fake internet has been idle for `seconds`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() - self.internet.last_activity < seconds:
            if time.monotonic() > deadline:
                raise AssertionError("the fake internet did not go quiet")
            await asyncio.sleep(0.05)
