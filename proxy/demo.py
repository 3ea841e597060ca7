"""`tag-gate demo`: a shop page with real-world tags, behind tag-gate, on this machine only.

Three local servers: a stand-in for every vendor (any `*.localhost` host name resolves to
the loopback in browsers, so `www.googletagmanager.com.localhost` is served here and
nothing leaves the machine), the demo site, and tag-gate in front of it. The catalogue
is the built-in one with each vendor host also known under `<host>.localhost`.

tag-gate runs with its consent banner on (`[banner]`) and two tags of the tag manager
(`[[tag]]`): the newcomer who opens the printed URL is asked, and sees on the page
itself, live, every request the vendor stand-in receives (it logs them; the page polls
the demo-only `/demo/vendor-requests`). Proof-of-consent lines go to stdout.
The report shows, per consent state, what tag-gate removed, deferred and kept, and
which cookies it let through.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from .core.addresses import Address
from .core.catalog import Catalog, load_builtin_vendors
from .core.config import Config, make_policy, parse_config
from .html.gate import HtmlGate
from .http.stages import Body, Stages
from .metrics import Metrics
from .service import Service

DEMO_ID = "DemoVisitor0123456789_"
"""The consent id of the report's visitors (banner.js makes a random one)."""


def _states() -> tuple[tuple[str, str | None], ...]:
    """The report's visitors, with the banner's record as banner.js writes it."""
    now = int(time.time())
    return (
        ("no consent yet", None),
        ("analytics only", f"tg_consent=analytics~1~{now}~{DEMO_ID}"),
        ("everything", f"tg_consent=functional.analytics.advertising.social~1~{now}~{DEMO_ID}"),
    )


STAND_IN_JS = """/* stand-in for {host}: behaves like the real tag in one respect */
console.log("[tag-gate demo] a script from {host} ran");
{cookies}"""

PANEL_JS = """/* the demo page's panel: the consent cookie, the cookies, and the vendor stand-in's log */
(function () {
  "use strict";
  var since = document.querySelector('meta[name="demo-page-time"]').content;
  var list = document.getElementById("demo-requests");
  var none = document.getElementById("demo-none");
  var after = -1;
  function cookie(name) {
    var m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : null;
  }
  function show() {
    var c = cookie("tg_consent");
    document.getElementById("demo-consent").textContent =
      c === null ? "none yet" : (c.split("~")[0] || "essential only") + " (" + c + ")";
    var names = document.cookie.split("; ").filter(Boolean).map(function (kv) { return kv.split("=")[0]; });
    document.getElementById("demo-cookies").textContent = names.length ? names.join(", ") : "none";
  }
  function poll() {
    show();
    fetch("/demo/vendor-requests?since=" + since + "&after=" + after, { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        data.requests.forEach(function (q) {
          var li = document.createElement("li");
          li.textContent = q.time + "  " + q.category + "  " + q.vendor + "  " + q.host + q.path;
          li.setAttribute("data-category", q.category);
          list.insertBefore(li, list.firstChild);
          after = q.n;
        });
        none.hidden = list.children.length > 0;
      })
      .catch(function () {});
  }
  poll();
  setInterval(poll, 1000);
  document.addEventListener("tag-gate:consent", show);
})();
"""


@dataclass(frozen=True, slots=True)
class VendorRequest:
    """One request the vendor stand-in received."""

    n: int
    at: float
    host: str
    path: str
    vendor: str
    category: str

    def as_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "time": time.strftime("%H:%M:%S", time.localtime(self.at)),
            "host": self.host,
            "path": self.path,
            "vendor": self.vendor,
            "category": self.category,
        }


class VendorLog:
    """What the vendor stand-in received, newest last (bounded)."""

    def __init__(self, size: int = 500) -> None:
        self.entries: deque[VendorRequest] = deque(maxlen=size)
        self.count = 0

    def add(self, host: str, path: str, vendor: str, category: str) -> None:
        self.entries.append(VendorRequest(self.count, time.time(), host, path[:120], vendor, category))
        self.count += 1

    def since(self, when: float, after: int) -> list[VendorRequest]:
        return [e for e in self.entries if e.at >= when and e.n > after]


PIXEL = bytes.fromhex("47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b")

SITE_COOKIES = (
    "session=0f3a9c; Path=/; HttpOnly; SameSite=Lax",
    "csrftoken=4b1d; Path=/; SameSite=Lax",
    "_ga=GA1.1.1234.5678; Path=/; Max-Age=63072000",
    "_fbp=fb.1.1234.5678; Path=/; Max-Age=7776000",
)


def _stand_in_app(vendor_log: VendorLog, catalog: Catalog) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        host = request.host.partition(":")[0].removesuffix(".localhost")
        path = request.path
        vendor = catalog.vendor_for_host(host)
        vendor_log.add(host, request.path_qs, vendor.name if vendor else "?", vendor.category if vendor else "?")
        if path.endswith((".gif", "/tr", "/collect/", "/action")) or "collect" in path:
            return web.Response(body=PIXEL, content_type="image/gif")
        if "/embed/" in path or "/video/" in path:
            return web.Response(text=f"<!doctype html><p>Embedded content from {host}</p>", content_type="text/html")
        # The real tag's first-party cookie (a name pattern's * becomes 1), so withdrawing
        # consent has something to expire.
        names = [c.replace("*", "1") for c in (vendor.cookies if vendor else ())][:1]
        cookies = "".join(f'document.cookie = "{name}=demo; path=/; max-age=86400";\n' for name in names)
        return web.Response(text=STAND_IN_JS.format(host=host, cookies=cookies), content_type="text/javascript")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def _site_app(vendor_port: int, vendor_log: VendorLog) -> web.Application:
    page = (resources.files("proxy") / "data" / "demo" / "index.html").read_text(encoding="utf-8")
    page = page.replace("{vendor_port}", str(vendor_port))

    async def index(request: web.Request) -> web.Response:
        resp = web.Response(text=page.replace("{page_time}", f"{time.time() - 1:.3f}"), content_type="text/html")
        resp.headers["Cache-Control"] = "no-store"
        for line in SITE_COOKIES:
            resp.headers.add("Set-Cookie", line)
        return resp

    async def requests(request: web.Request) -> web.Response:
        try:
            since, after = float(request.query.get("since", "0")), int(request.query.get("after", "-1"))
        except ValueError:
            since, after = 0.0, -1
        found = [e.as_json() for e in vendor_log.since(since, after)]
        return web.json_response({"requests": found}, headers={"Cache-Control": "no-store"})

    async def static(request: web.Request) -> web.Response:
        name = request.match_info.get("name", "favicon.svg")
        if name == "demo-panel.js":
            return web.Response(text=PANEL_JS, content_type="text/javascript")
        if name.endswith(".js"):
            return web.Response(
                text="console.log('[tag-gate demo] the site\\'s own script ran');", content_type="text/javascript"
            )
        if name.endswith(".css"):
            return web.Response(text=SITE_CSS, content_type="text/css")
        return web.Response(
            text='<svg xmlns="http://www.w3.org/2000/svg" width="120" height="120"><rect width="120" height="120" '
            'fill="#4a8"/></svg>',
            content_type="image/svg+xml",
        )

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/demo/vendor-requests", requests)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/favicon.ico", static)
    return app


SITE_CSS = """body{font-family:system-ui,sans-serif;max-width:48em;margin:2em auto;padding:0 1em;line-height:1.5}
#demo-panel{border:2px solid #4a8;border-radius:8px;padding:.5em 1em;margin:1em 0;background:#f4faf6}
#demo-panel h2{margin:.3em 0}#demo-requests{font:13px/1.5 ui-monospace,monospace;max-height:16em;overflow:auto}
#demo-requests li[data-category=essential]{color:#555}
iframe{max-width:100%}
"""


def demo_config(listen: Address, origin_port: int, vendor_port: int = 0) -> Config:
    stand_in = f"localhost:{vendor_port}"
    data = {
        "server": {
            "listen": str(listen),
            "upstream": f"http://127.0.0.1:{origin_port}",
            "admin_listen": "off",
            "access_log": False,
        },
        "html": {
            "action": "defer",
            "category": {"social": {"action": "placeholder"}},
        },
        "banner": {
            "enabled": True,
            "proof_salt": secrets.token_hex(16),
            "vendors": ["google-analytics", "hotjar", "meta-pixel", "linkedin-insight", "intercom", "youtube"],
            "retention": {"google-analytics": "13 months", "meta-pixel": "90 days"},
        },
        "tag": [
            {
                "id": "linkedin-insight",
                "kind": "script",
                "category": "advertising",
                "src": f"http://snap.licdn.com.{stand_in}/li.lms-analytics/insight.min.js",
            },
            {
                "id": "clarity",
                "kind": "inline",
                "category": "analytics",
                "placement": "head-end",
                "code": "(function(){var s=document.createElement('script');s.async=true;"
                f"s.src='http://www.clarity.ms.{stand_in}/tag/demo';document.head.appendChild(s);}})();",
            },
        ],
    }
    config = parse_config(data, source="<demo>")
    vendors = [replace(v, hosts=(*v.hosts, *(f"{h}.localhost" for h in v.hosts))) for v in load_builtin_vendors()]
    return replace(config, policy=make_policy(config, Catalog(vendors)))


async def _start(app: web.Application) -> tuple[web.AppRunner, int]:
    sock = socket.create_server(("127.0.0.1", 0))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner, int(sock.getsockname()[1])


def _expected(stages: Stages, cookie: str | None, original: bytes) -> tuple[bytes, Any]:
    """What the proxy should send for the demo page: the headers stage's plan (banner,
    managed tags) and the gate run offline with it."""
    visitor = stages.visitor((cookie,) if cookie else (), None)
    plan = stages.plan_response(
        method="GET",
        status=200,
        path="/",
        headers=CIMultiDict({"Content-Type": "text/html; charset=utf-8"}),
        visitor=visitor,
        client_accept_encoding=None,
        host="127.0.0.1",
        secure=False,
        conditional_ours=False,
    )
    consent, adds = visitor.consent, plan.additions
    gate = HtmlGate(stages.gate_plan, consent, page_host="127.0.0.1", nonce=plan.nonce, record=True, additions=adds)
    out = gate.feed(original) + gate.end()
    return (out if plan.body is Body.GATE else original), gate.stats


def _timeless(page: bytes) -> bytes:
    """The page without the time the site wrote into it (it differs per request)."""
    return re.sub(rb'(name="demo-page-time" content=")[0-9.]+', rb"\1", page)


async def report(config: Config, tag_gate_url: str, origin_url: str, out: TextIO) -> None:
    """Fetch the page through tag-gate for each consent state and say what happened."""
    stages = Stages(config, Metrics())
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        async with client.get(origin_url) as resp:
            original = await resp.read()
        for label, cookie in _states():
            headers = {"Cookie": cookie} if cookie else {}
            async with client.get(tag_gate_url, headers=headers) as resp:
                body = await resp.read()
                set_cookies = resp.headers.getall("Set-Cookie", [])
            visitor = stages.visitor((cookie,) if cookie else (), None)
            consent = visitor.consent
            expected, stats = _expected(stages, cookie, original)
            out.write(f"\nConsent: {label}  ({cookie or 'no consent cookie'}; key {consent.key})\n")
            rows = sorted(
                {
                    (
                        r.decision.action.value,
                        r.decision.category or "",
                        r.decision.vendor.name if r.decision.vendor else "?",
                        r.tag,
                    )
                    for r in stats.records or []
                },
                key=lambda row: (["remove", "defer", "placeholder", "keep"].index(row[0]), row[1], row[2]),
            )
            for action, category, vendor, tag in rows:
                shown = {"remove": "removed", "defer": "deferred", "placeholder": "placeholder", "keep": "kept"}
                out.write(f"  {shown[action]:<12} {category:<12} {vendor:<24} <{tag}>\n")
            live = sum(consent.allows(t.category) for t in config.tags)
            inert = len(config.tags) - live
            out.write(f"  [[tag]] entries: {live} live, {inert} inert (activated once granted)\n")
            banner = "opens at once" if visitor.banner_open else "closed (a 'Cookie preferences' button)"
            out.write(f"  banner: {banner}\n")
            names = [line.split("=", 1)[0] for line in set_cookies]
            dropped = [line.split("=", 1)[0] for line in SITE_COOKIES if line.split("=", 1)[0] not in names]
            out.write(f"  cookies let through: {', '.join(names) or 'none'}; dropped: {', '.join(dropped) or 'none'}\n")
            same = "identical to" if _timeless(body) == _timeless(expected) else "DIFFERENT from"
            out.write(
                f"  page through the proxy: {len(body)} bytes ({len(original)} sent by the site), "
                f"{same} the offline gate's output\n"
            )


async def run(listen: Address, once: bool, out: TextIO = sys.stdout) -> int:
    vendor_log = VendorLog()
    config = demo_config(listen, 0)
    vendors_runner, vendor_port = await _start(_stand_in_app(vendor_log, config.policy.catalog))
    site_runner, origin_port = await _start(_site_app(vendor_port, vendor_log))
    config = demo_config(listen, origin_port, vendor_port)
    service = Service(config)
    try:
        await service.start()
        assert service.public_address is not None
        url = f"http://127.0.0.1:{service.public_address.port}/"
        out.write(
            "tag-gate demo: a shop page with real-world tags, behind tag-gate; nothing leaves this machine.\n"
            f"  open this:        {url}\n"
            f"  the site itself:  http://127.0.0.1:{origin_port}/\n"
            f"  vendor stand-in:  http://<vendor host>.localhost:{vendor_port}/\n"
            "  tag-gate's banner asks you; refused tags are deferred (they run without a reload once granted),\n"
            "  social embeds wait behind a click-to-load placeholder; the page lists, live, every request the\n"
            "  vendor stand-in receives. Proof-of-consent lines appear below as you decide.\n"
        )
        await report(config, url, f"http://127.0.0.1:{origin_port}/", out)
        out.flush()
        if once:
            return 0
        out.write("\nRunning; press Ctrl-C to stop.\n")
        out.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        return 0
    finally:
        await service.stop(grace=1)
        await site_runner.cleanup()
        await vendors_runner.cleanup()
