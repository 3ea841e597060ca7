"""A small world for end-to-end tests: a fake internet, a site, tag-gate and a real browser.

- The fake internet is ONE TLS server on 127.0.0.1 (certificate from `trustme`) that
  answers for every third-party host: Chromium's `--host-resolver-rules` maps every
  host name except the site's to it, and `--ignore-certificate-errors` accepts its
  certificate. It records the host and path of every request and the SNI name of
  every TLS handshake (a `<link rel=preconnect>` contacts a host without a request).
  Its tracker scripts behave like the real ones in one respect: when they run, they
  fire a beacon to their collection host and set their cookie with `document.cookie`,
  so a tag that slips through is caught twice.
- The site is a plain-http aiohttp server for `www.shop.test` (mapped to 127.0.0.1)
  serving the pages in tests/e2e/pages/ in small, oddly sized chunks, so tags arrive at
  tag-gate split across reads.
- tag-gate runs in-process in front of the site (tests/proxytools.py), one instance per
  configuration.
- Chromium is Debian's, driven by Playwright for Python (`executable_path`, never a
  downloaded browser): one browser for the session, a fresh context per visit.

Nothing here leaves the loopback interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import re
import secrets
import shutil
import socket
import ssl
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import brotli
import trustme
import zstandard
from aiohttp import web

from proxy.core.catalog import Catalog, make_catalog
from proxy.core.consent import read_consent
from proxy.core.policy import Policy
from proxy.html.guard import make_guard
from proxy.service import load_assets
from tests.proxytools import Running, running_proxy


def _compress(coding: str, data: bytes) -> bytes:
    """`data` in a content coding, as a site's server sends it."""
    if coding == "gzip":
        return gzip.compress(data)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "br":
        out: bytes = brotli.compress(data)
        return out
    return zstandard.ZstdCompressor().compress(data)


PAGES_DIR = Path(__file__).parent / "pages"
PARTYTOWN_DIR = Path(__file__).parent / "vendor" / "partytown"
FRAMEWORKS_DIR = Path(__file__).parent / "vendor" / "frameworks"
SITE_HOST = "www.shop.test"
REGISTRABLE = "shop.test"
CATALOG: Catalog = make_catalog()
ALL_CATEGORIES = frozenset({"essential", "functional", "analytics", "advertising", "social"})

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--ignore-certificate-errors",
)


def find_chromium() -> str | None:
    """Debian's chromium (apt-get install chromium), or None."""
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def category_of_host(host: str) -> str | None:
    """The catalogue's category for a host (None: not a known vendor)."""
    vendor = CATALOG.vendor_for_host(host.lower().rstrip("."))
    return vendor.category if vendor else None


def category_of_cookie(name: str) -> str | None:
    vendor = CATALOG.vendor_for_cookie(name)
    return vendor.category if vendor else None


# --------------------------------------------------------------------- fake internet


@dataclass(frozen=True)
class Tracker:
    """How a fake vendor script behaves when it runs: one beacon, cookies, a marker."""

    name: str
    host: str
    path: str  # prefix
    beacon: str | None
    cookies: tuple[str, ...] = ()
    registrable_cookie: bool = False  # set on the registrable domain, like GA's cookie_domain 'auto'
    extra_js: str = ""


TRACKERS: tuple[Tracker, ...] = (
    Tracker(
        "gtag",
        "www.googletagmanager.com",
        "/gtag/js",
        "https://region1.google-analytics.com/g/collect?v=2&tid=G-ABCDE12345&en=page_view",
        ("_ga", "_ga_ABCDE12345"),
        registrable_cookie=True,
    ),
    Tracker(
        "gtm", "www.googletagmanager.com", "/gtm.js", "https://www.google-analytics.com/g/collect?v=2&gtm=45", ("_gid",)
    ),
    Tracker(
        "meta-pixel",
        "connect.facebook.net",
        "/en_US/fbevents.js",
        "https://www.facebook.com/tr/?id=123456789012345&ev=PageView",
        ("_fbp",),
    ),
    Tracker(
        "linkedin-insight",
        "snap.licdn.com",
        "/li.lms-analytics/insight.min.js",
        "https://px.ads.linkedin.com/collect?pid=1234567&fmt=js",
        ("li_sugr",),
    ),
    Tracker(
        "hotjar",
        "static.hotjar.com",
        "/c/hotjar-",
        "https://in.hotjar.com/api/v2/client/sites/1234567/visit-data",
        ("_hjSessionUser_1234567",),
    ),
    Tracker(
        "tiktok-pixel",
        "analytics.tiktok.com",
        "/i18n/pixel/events.js",
        "https://analytics.tiktok.com/api/v2/pixel?event=Pageview",
        ("_ttp",),
    ),
    Tracker(
        "intercom",
        "widget.intercom.io",
        "/widget/",
        "https://api-iam.intercom.io/messenger/web/ping",
        ("intercom-id-abc123",),
        extra_js='var l=document.createElement("div");l.className="intercom-launcher";document.body.appendChild(l);',
    ),
    Tracker(
        "crisp", "client.crisp.chat", "/l.js", "https://client.relay.crisp.chat/visitor/ping", ("crisp-client-session",)
    ),
    Tracker(
        "stripe",
        "js.stripe.com",
        "/v3",
        "https://m.stripe.com/6",
        ("__stripe_mid",),
        extra_js="window.Stripe=function(){};",
    ),
    Tracker("vimeo-api", "player.vimeo.com", "/api/player.js", None, extra_js="window.Vimeo={Player:function(){}};"),
)

TRACKER_JS = """/* stand-in for https://{host}{path}: behaves like the real tag in one respect */
(function () {{
  var beacon = {beacon!r};
  if (beacon) {{
    var img = new Image(1, 1);
    img.src = beacon + (beacon.indexOf("?") < 0 ? "?" : "&") + "cb=" + Date.now();
  }}
  var domain = {registrable} ? "; domain=" + location.hostname.split(".").slice(-2).join(".") : "";
  {cookies!r}.forEach(function (name) {{
    document.cookie = name + "=1." + Date.now() + "; path=/; max-age=7776000" + domain;
  }});
  (window.trackersRan = window.trackersRan || []).push({name!r});
  {extra}
}})();
"""

FRAME_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>{host}</title></head>
<body style="margin:0;background:#222;color:#eee;font:14px sans-serif">
<p>Embedded content from {host}</p>{extra}</body></html>"""

YOUTUBE_EXTRA = '<img src="https://i.ytimg.com/vi/dQw4w9WgXcQ/hqdefault.jpg" width="120" height="90" alt="">'

GIF = bytes.fromhex("47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b")


@dataclass(frozen=True)
class Hit:
    """One HTTP request that reached the fake internet."""

    scheme: str
    host: str
    path: str  # with the query
    fetch_site: str
    fetch_dest: str
    at: float

    @property
    def from_page(self) -> bool:
        # Chromium's own traffic (component updates, account checks) carries
        # Sec-Fetch-Site: none and no page caused it; everything a page (or a frame
        # in it) requests is same-site, same-origin or cross-site.
        return self.fetch_site != "none"

    @property
    def category(self) -> str | None:
        return category_of_host(self.host)


class _LoopbackServer:
    """An aiohttp application served on loopback ports the system picks."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None

    async def _serve(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()

    async def _listen(self, ssl_context: ssl.SSLContext | None = None) -> int:
        """One more listening socket for the application; returns its port."""
        assert self._runner is not None
        sock = socket.create_server(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock, ssl_context=ssl_context).start()
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class FakeInternet(_LoopbackServer):
    """One TLS server answering for every third-party host."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: dict[str, str] = {}
        """Scenario scripts by "host/path" (query ignored), served before the TRACKERS."""
        self.pages: dict[str, str] = {}
        """Scenario documents by "host/path" (query ignored): what a frame there shows."""
        self.hits: list[Hit] = []
        self.handshakes: list[tuple[str, float]] = []
        self.last_activity = time.monotonic()
        self.port = 0  # TLS (https://any-host/)
        self.plain_port = 0  # plain http (http://any-host/, e.g. a `//host/x.js` URL on an http page)

    def _ssl_context(self) -> ssl.SSLContext:
        ca = trustme.CA()
        hosts = sorted({t.host for t in TRACKERS} | {"*.google-analytics.com", "*.youtube.com", "localhost"})
        cert = ca.issue_cert(*hosts)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)

        def on_sni(sslobj: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
            if name:
                self.handshakes.append((name.lower(), time.monotonic()))
                self.last_activity = time.monotonic()

        ctx.sni_callback = on_sni
        return ctx

    async def start(self) -> None:
        app = web.Application()
        app.on_response_prepare.append(self._cors)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        await self._serve(app)
        self.port = await self._listen(self._ssl_context())
        self.plain_port = await self._listen()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        host = request.host.rsplit(":", 1)[0].lower() if not request.host.startswith("[") else request.host
        now = time.monotonic()
        self.hits.append(
            Hit(
                request.scheme,
                host,
                request.path_qs,
                request.headers.get("Sec-Fetch-Site", ""),
                request.headers.get("Sec-Fetch-Dest", ""),
                now,
            )
        )
        self.last_activity = now
        path = request.path
        custom = self.scripts.get(host + path)
        if custom is not None:
            return web.Response(text=custom, content_type="text/javascript")
        page = self.pages.get(host + path)
        if page is not None:
            return web.Response(text=page, content_type="text/html")
        for t in TRACKERS:
            if host == t.host and path.startswith(t.path):
                js = TRACKER_JS.format(
                    host=t.host,
                    path=t.path,
                    beacon=t.beacon or "",
                    registrable="true" if t.registrable_cookie else "false",
                    cookies=list(t.cookies),
                    name=t.name,
                    extra=t.extra_js,
                )
                return web.Response(text=js, content_type="text/javascript")
        if request.headers.get("Sec-Fetch-Dest") in ("iframe", "frame", "document", "embed", "object"):
            extra = YOUTUBE_EXTRA if category_of_host(host) == "social" and "youtube" in host else ""
            return web.Response(text=FRAME_HTML.format(host=host, extra=extra), content_type="text/html")
        if request.headers.get("Sec-Fetch-Dest") == "script":
            return web.Response(text=f"/* {host}{path} */", content_type="text/javascript")
        if request.headers.get("Sec-Fetch-Dest") == "style":
            return web.Response(text="/* stylesheet */", content_type="text/css")
        return web.Response(body=GIF, content_type="image/gif")

    @staticmethod
    async def _cors(request: web.Request, response: web.StreamResponse) -> None:
        # Collectors answer cross-origin XHR/fetch the way real ones do.
        response.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin", "*")
        response.headers["Access-Control-Allow-Credentials"] = "true"

    def mark(self) -> tuple[int, int]:
        return len(self.hits), len(self.handshakes)

    def since(self, mark: tuple[int, int]) -> tuple[list[Hit], list[str]]:
        return self.hits[mark[0] :], [name for name, _ in self.handshakes[mark[1] :]]


# ----------------------------------------------------------------------------- site

SITE_COOKIES = (
    "session=0f3a9c; Path=/; HttpOnly; SameSite=Lax",
    "_ga=GA1.1.1234.5678; Path=/; Max-Age=63072000",
    "_fbp=fb.1.1234.5678; Path=/; Max-Age=7776000",
)

APP_JS = """/* the site's own script: it must keep working behind tag-gate */
window.firstPartyRan = true;
(window.firstParty = window.firstParty || []).push("app");
document.addEventListener("DOMContentLoaded", function () {
  var p = document.createElement("p");
  p.id = "app-ran";
  p.textContent = "The site's own script ran.";
  document.body.appendChild(p);
});
"""

UPPER_JS = '(window.firstParty = window.firstParty || []).push("upper-external");\n'

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="120">'
    '<rect width="120" height="120" fill="#4a8"/></svg>'
)

FIRST_PARTY_SCRIPTS: Final = """<meta name="e2e-first-party" content="app,inline">
<script nonce="__NONCE__" src="/js/app.js"></script>
<script nonce="__NONCE__">
  window.e2e = { log: [] };
  (window.firstParty = window.firstParty || []).push("inline");
</script>"""
"""What `<!-- e2e: first-party scripts -->` in a guard page stands for: the site's own two
scripts (an external and an inline one), which must run under every consent state, and
the log the page's checks write to."""
_BUNDLE = re.compile(r"<script([^>]*?) data-e2e-bundle>(.*?)</script>", re.DOTALL)

CHUNK_SIZES = (1, 7, 13, 2, 64, 3, 250, 5, 31)
"""The site sends its pages in writes of these sizes, in turn: tags arrive split."""


class Site(_LoopbackServer):
    """The origin: pages from tests/e2e/pages, sent in small odd-sized writes."""

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self.cookie_headers: list[str] = []
        self.guard_policies: dict[str, Policy] = {}
        """Policies the guarded pages (/guard/NAME.html?policy=...) can be served under."""
        self.scripts: dict[str, str] = {}
        """First-party scripts a test adds, served at /js/e2e/NAME.js (and the guard
        pages' `data-e2e-bundle` scripts, moved out of the markup)."""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/guard/{name}.html", self.guarded_page)
        app.router.add_get("/__tag-gate/{name}", self.asset)
        app.router.add_get("/js/app.js", self._text(APP_JS, "text/javascript"))
        app.router.add_get("/js/upper.js", self._text(UPPER_JS, "text/javascript"))
        app.router.add_get("/js/e2e/{name}.js", self.script)
        app.router.add_get("/css/site.css", self._text("body{font-family:sans-serif}", "text/css"))
        app.router.add_get("/img/{name}", self._text(SVG, "image/svg+xml"))
        app.router.add_get("/favicon.ico", self._text(SVG, "image/svg+xml"))
        app.router.add_get("/~partytown/{name}", self.partytown)
        app.router.add_get("/~vendor/{name}", self.framework)
        app.router.add_get("/{name}.html", self.page)
        await self._serve(app)
        self.port = await self._listen()

    @staticmethod
    def _text(body: str, content_type: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=body, content_type=content_type)

        return handler

    async def partytown(self, request: web.Request) -> web.Response:
        """Partytown's library (tests/e2e/vendor/partytown), at its default `lib`."""
        name = request.match_info["name"]
        path = PARTYTOWN_DIR / name
        if name not in ("partytown.js", "partytown-sw.js") or not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=path.read_bytes(), content_type="text/javascript")

    async def framework(self, request: web.Request) -> web.Response:
        """A front-end library sites load as their own (tests/e2e/vendor/frameworks)."""
        name = request.match_info["name"]
        path = FRAMEWORKS_DIR / name
        if not name.endswith(".js") or "/" in name or not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=path.read_bytes(), content_type="text/javascript")

    async def script(self, request: web.Request) -> web.Response:
        body = self.scripts.get(request.match_info["name"])
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(text=body, content_type="text/javascript")

    async def page(self, request: web.Request) -> web.StreamResponse:
        self.cookie_headers.append(request.headers.get("Cookie", ""))
        path = PAGES_DIR / f"{request.match_info['name']}.html"
        if not path.is_file():
            raise web.HTTPNotFound()
        data = path.read_bytes()
        resp = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
        for line in SITE_COOKIES:
            resp.headers.add("Set-Cookie", line)
        await resp.prepare(request)
        i = n = 0
        while i < len(data):
            size = CHUNK_SIZES[n % len(CHUNK_SIZES)] * (1 if n % 4 else 16)
            await resp.write(data[i : i + size])
            i += size
            n += 1
        await resp.write_eof()
        return resp

    async def guarded_page(self, request: web.Request) -> web.StreamResponse:
        """A page from tests/e2e/pages/guard/ with the runtime guard inserted as tag-gate
        inserts it: `<script nonce=...>` as the first child of `<head>`, holding the
        guard's code and its rule table for the visitor's consent and this page's host.

        Query: `policy` (a name in `guard_policies`, default "default"), `consent` (a
        tg_consent value to use instead of the request's cookies), `page` (the page host
        the table is built for), `guard=0` (the same page without the guard: the
        control), `csp=1` (a strict nonce-based Content-Security-Policy; `csp=self`:
        `script-src 'self'`, which blocks every inline script), `marks=1`
        (performance marks around the guard), `coding` (the body compressed in that
        content coding). `<!-- e2e: first-party scripts -->` becomes
        `FIRST_PARTY_SCRIPTS`; `__NONCE__` in the page becomes the response's nonce;
        `<script data-e2e-bundle>` elements are served as external first-party scripts."""
        self.cookie_headers.append(request.headers.get("Cookie", ""))
        path = PAGES_DIR / "guard" / f"{request.match_info['name']}.html"
        if not path.is_file():
            raise web.HTTPNotFound()
        q = request.query
        nonce = secrets.token_urlsafe(12)
        html = path.read_text(encoding="utf-8").replace("<!-- e2e: first-party scripts -->", FIRST_PARTY_SCRIPTS, 1)
        count = iter(range(100))
        html = _BUNDLE.sub(lambda m: self._bundle(f"{request.match_info['name']}-{next(count)}", m), html)
        html = html.replace("__NONCE__", nonce)
        if q.get("guard") != "0":
            cookie = f"tg_consent={q['consent']}" if "consent" in q else request.headers.get("Cookie")
            consent = read_consent(cookie, request.headers.get("Sec-GPC"))
            policy = self.guard_policies[q.get("policy", "default")]
            host = q.get("page") or request.host.rsplit(":", 1)[0].lower()
            body = make_guard(policy).script(consent, host)
            if q.get("marks") == "1":
                # install time: one mark before the script (parse and compile included),
                # one as its first statement, one after the guard
                body = f'performance.mark("tg-guard-run");{body};performance.mark("tg-guard-end");'
                body = f'performance.mark("tg-guard-0")</script><script nonce="{nonce}">{body}'
            html = html.replace("<head>", f'<head><script nonce="{nonce}">{body}</script>', 1)
        headers = {"Cache-Control": "no-store"}
        if q.get("csp") == "1":
            headers["Content-Security-Policy"] = f"script-src 'nonce-{nonce}' 'strict-dynamic'; object-src 'none'"
        elif q.get("csp") == "self":
            headers["Content-Security-Policy"] = "script-src 'self'; object-src 'none'"
        coding = q.get("coding")
        if coding:  # the page compressed, as a site's server compresses it
            headers["Content-Encoding"] = coding
            return web.Response(body=_compress(coding, html.encode()), content_type="text/html", headers=headers)
        return web.Response(text=html, content_type="text/html", headers=headers)

    def _bundle(self, name: str, m: re.Match[str]) -> str:
        """A page's `<script data-e2e-bundle>` as an external first-party script: the
        site's own bundle code, which the HTML gate cannot read (real sites inject
        tags from bundles and tag managers, not from inline code in the markup)."""
        self.scripts[name] = m.group(2)
        return f'<script{m.group(1)} src="/js/e2e/{name}.js"></script>'

    async def asset(self, request: web.Request) -> web.Response:
        """tag-gate's own first-party assets, as /__tag-gate/ serves them."""
        found = load_assets().get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, content_type = found
        return web.Response(body=body, content_type=content_type.split(";")[0])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# ---------------------------------------------------------------------------- browser


@dataclass
class Visit:
    """What the browser did during one visit (a fresh context)."""

    hits: list[Hit]
    handshakes: list[str]
    console_errors: list[str]
    cookies: list[dict[str, Any]]
    first_party: set[str]
    expected_first_party: set[str]
    trackers_ran: list[str]

    @property
    def page_hits(self) -> list[Hit]:
        return [h for h in self.hits if h.from_page]

    def refused_contacts(self, granted: frozenset[str]) -> list[str]:
        out = [f"{h.scheme}://{h.host}{h.path}" for h in self.page_hits if not _allowed(h.category, granted)]
        out += [
            f"TLS handshake with {name}" for name in self.handshakes if not _allowed(category_of_host(name), granted)
        ]
        return out

    def refused_cookies(self, granted: frozenset[str]) -> list[str]:
        return [
            f"{c['name']} ({c['domain']})" for c in self.cookies if not _allowed(category_of_cookie(c["name"]), granted)
        ]

    def requested(self, host: str, path: str) -> bool:
        return any(h.host == host and h.path.startswith(path) for h in self.page_hits)


def _allowed(category: str | None, granted: frozenset[str]) -> bool:
    return category is None or category in granted


_PORT = re.compile(r":\d{2,5}\b")


def normalise_console(text: str) -> str:
    return _PORT.sub(":PORT", text)


REPORT_ONLY_NOTICE: Final = "violates the following report-only Content Security Policy directive"


def is_console_error(message: Any) -> bool:
    """A console message that says something went wrong. Chromium logs each violation of
    a report-only policy (tag-gate's CSP layer, on a sampled page) at error level, but
    nothing was blocked: that is the layer measuring, not the page breaking."""
    return bool(message.type == "error" and REPORT_ONLY_NOTICE not in message.text)


@dataclass
class Tab:
    """A page in a fresh browser context, with its traffic watched."""

    world: World
    context: Any
    page: Any
    inflight: set[Any] = field(default_factory=set)
    last_event: float = field(default_factory=time.monotonic)
    console_errors: list[str] = field(default_factory=list)
    mark: tuple[int, int] = (0, 0)

    def _on_request(self, request: Any) -> None:
        self.inflight.add(request)
        self.last_event = time.monotonic()

    def _on_done(self, request: Any) -> None:
        self.inflight.discard(request)
        self.last_event = time.monotonic()

    def _on_console(self, message: Any) -> None:
        if is_console_error(message):
            self.console_errors.append(normalise_console(f"console: {message.text}"))

    def _on_page_error(self, error: Any) -> None:
        self.console_errors.append(normalise_console(f"exception: {error}"))

    async def goto(self, url: str) -> None:
        await self.page.goto(url, wait_until="load", timeout=15_000)
        await self.settle()

    async def settle(self, quiet: float = 0.2, timeout: float = 10.0) -> None:
        """Wait until no request is in flight and neither the browser nor the fake
        internet has seen traffic for `quiet` seconds (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            last = max(self.last_event, self.world.internet.last_activity)
            if not self.inflight and now - last >= quiet:
                return
            if now > deadline:
                pending = sorted(r.url for r in self.inflight)
                raise AssertionError(f"the page did not settle within {timeout}s; in flight: {pending}")
            await asyncio.sleep(0.05)

    async def wait_for(self, predicate: Any, what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(0.05)

    def hits(self) -> list[Hit]:
        return self.world.internet.since(self.mark)[0]

    async def snapshot(self) -> Visit:
        hits, handshakes = self.world.internet.since(self.mark)
        state = await self.page.evaluate(
            """() => ({
                firstParty: window.firstParty || [],
                expected: (document.querySelector('meta[name="e2e-first-party"]') || {content: ""}).content,
                trackers: window.trackersRan || [],
            })"""
        )
        return Visit(
            hits=list(hits),
            handshakes=list(handshakes),
            console_errors=list(self.console_errors),
            cookies=await self.context.cookies(),
            first_party=set(state["firstParty"]),
            expected_first_party={s for s in state["expected"].split(",") if s},
            trackers_ran=list(state["trackers"]),
        )


@dataclass
class Stats:
    pages: set[str] = field(default_factory=set)
    states: set[str] = field(default_factory=set)
    tracker_requests: int = 0
    refused: int = 0
    control_refused: int = 0

    def summary(self) -> str:
        line = (
            f"e2e: {len(self.pages)} pages, {len(self.states)} consent states, "
            f"{self.tracker_requests} tracker requests seen, {self.refused} to refused categories"
        )
        notes = []
        if self.control_refused:
            notes.append(f"without tag-gate: {self.control_refused}")
        if notes:
            line += f" ({'; '.join(notes)})"
        return line


STATS = Stats()


class World:
    """Fake internet + site + tag-gate instances + one Chromium, for the whole session."""

    def __init__(self, chromium: str) -> None:
        self.chromium = chromium
        self.internet = FakeInternet()
        self.site = Site()
        self._proxies: dict[str, Running] = {}
        self._stack = contextlib.AsyncExitStack()
        self.browser: Any = None
        self._playwright: Any = None
        self._rules = ""

    async def start(self) -> None:
        from playwright.async_api import async_playwright

        await self.internet.start()
        self._stack.push_async_callback(self.internet.stop)
        await self.site.start()
        self._stack.push_async_callback(self.site.stop)
        self._playwright = await self._stack.enter_async_context(async_playwright())
        # First match wins; a pattern matches "host" or "host:port", so port 80 (plain
        # http, e.g. a protocol-relative URL on the http site) gets the plain listener.
        rules = ", ".join(
            (
                f"MAP {SITE_HOST} 127.0.0.1",
                f"MAP {REGISTRABLE} 127.0.0.1",
                f"MAP *:80 127.0.0.1:{self.internet.plain_port}",
                f"MAP * 127.0.0.1:{self.internet.port}",
            )
        )
        self._rules = rules
        self.browser = await self.launch()

    async def launch(self, *extra: str) -> Any:
        """Another Chromium of this world (closed with it), e.g. with
        `--unsafely-treat-insecure-origin-as-secure=` for an origin known only now."""
        # Playwright makes a fresh temporary --user-data-dir for every launch.
        browser = await self._playwright.chromium.launch(
            executable_path=self.chromium,
            headless=True,
            args=[*CHROMIUM_FLAGS, f"--host-resolver-rules={self._rules}", *extra],
            timeout=30_000,
        )
        self._stack.push_async_callback(browser.close)
        return browser

    async def stop(self) -> None:
        await self._stack.aclose()

    async def proxy(self, name: str, **sections: dict[str, Any]) -> Running:
        """tag-gate in front of the site, one per configuration name."""
        if name not in self._proxies:
            self._proxies[name] = await self._stack.enter_async_context(running_proxy(self.site.url, **sections))
        return self._proxies[name]

    def url(self, port: int, page: str) -> str:
        return f"http://{SITE_HOST}:{port}/{page}"

    @contextlib.asynccontextmanager
    async def tab(
        self,
        cookies: dict[str, str] | None = None,
        *,
        gpc: bool = False,
        port: int | None = None,
        browser: Any = None,
    ) -> AsyncIterator[Tab]:
        """A fresh context holding `cookies` (host-only, on the site's host)."""
        headers = {"Sec-GPC": "1"} if gpc else None
        context = await (browser or self.browser).new_context(extra_http_headers=headers)
        try:
            if cookies:
                assert port is not None
                await context.add_cookies(
                    [{"name": k, "value": v, "url": f"http://{SITE_HOST}:{port}/"} for k, v in cookies.items()]
                )
            page = await context.new_page()
            tab = Tab(self, context, page)
            context.on("request", tab._on_request)
            context.on("requestfinished", tab._on_done)
            context.on("requestfailed", tab._on_done)
            page.on("console", tab._on_console)
            page.on("pageerror", tab._on_page_error)
            tab.mark = self.internet.mark()
            yield tab
            # Nothing the context still does may leak into the next visit's counts.
            await tab.settle()
        finally:
            await context.close()
