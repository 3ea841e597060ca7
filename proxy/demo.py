"""`tag-gate demo`: a shop page with real-world tags, behind tag-gate, on this machine only.

Three local servers: a stand-in for every vendor (any `*.localhost` host name resolves to
the loopback in browsers, so `www.googletagmanager.com.localhost` is served here and
nothing leaves the machine), the demo site, and tag-gate in front of it. The catalogue
is the built-in one with each vendor host also known under `<host>.localhost`.
The report shows, per consent state, what tag-gate removed, deferred and kept, and
which cookies it let through.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from dataclasses import replace
from importlib import resources
from typing import TextIO

import aiohttp
from aiohttp import web

from .core.addresses import Address
from .core.catalog import Catalog, load_builtin_vendors
from .core.config import Config, make_policy, parse_config
from .html.gate import gate_document
from .http.stages import Stages
from .metrics import Metrics
from .service import Service

STATES = (
    ("no consent yet", None),
    ("analytics only", "tg_consent=analytics"),
    ("everything", "tg_consent=functional.analytics.advertising.social"),
)

STAND_IN_JS = """/* stand-in for {host}: behaves like the real tag in one respect */
console.log("[tag-gate demo] a script from {host} ran");
document.cookie = "demo_{cookie}=1; path=/";
"""
PIXEL = bytes.fromhex("47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b")

SITE_COOKIES = (
    "session=0f3a9c; Path=/; HttpOnly; SameSite=Lax",
    "csrftoken=4b1d; Path=/; SameSite=Lax",
    "_ga=GA1.1.1234.5678; Path=/; Max-Age=63072000",
    "_fbp=fb.1.1234.5678; Path=/; Max-Age=7776000",
)


def _stand_in_app() -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        host = request.host.partition(":")[0].removesuffix(".localhost")
        path = request.path
        if path.endswith((".gif", "/tr", "/collect/", "/action")) or "collect" in path:
            return web.Response(body=PIXEL, content_type="image/gif")
        if "/embed/" in path or "/video/" in path:
            return web.Response(text=f"<!doctype html><p>Embedded content from {host}</p>", content_type="text/html")
        cookie = host.split(".")[-2] if host.count(".") else host
        return web.Response(text=STAND_IN_JS.format(host=host, cookie=cookie), content_type="text/javascript")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def _site_app(vendor_port: int) -> web.Application:
    page = (resources.files("proxy") / "data" / "demo" / "index.html").read_text(encoding="utf-8")
    page = page.replace("{vendor_port}", str(vendor_port))

    async def index(request: web.Request) -> web.Response:
        resp = web.Response(text=page, content_type="text/html")
        for line in SITE_COOKIES:
            resp.headers.add("Set-Cookie", line)
        return resp

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name.endswith(".js"):
            return web.Response(
                text="console.log('[tag-gate demo] the site\\'s own script ran');", content_type="text/javascript"
            )
        if name.endswith(".css"):
            return web.Response(
                text="body{font-family:system-ui,sans-serif;max-width:48em;margin:2em auto}", content_type="text/css"
            )
        return web.Response(
            text='<svg xmlns="http://www.w3.org/2000/svg" width="120" height="120"><rect width="120" height="120" '
            'fill="#4a8"/></svg>',
            content_type="image/svg+xml",
        )

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    return app


def demo_config(listen: Address, origin_port: int) -> Config:
    data = {
        "server": {
            "listen": str(listen),
            "upstream": f"http://127.0.0.1:{origin_port}",
            "admin_listen": "off",
            "access_log": False,
        },
        "html": {
            "action": "remove",
            "category": {"analytics": {"action": "defer"}, "social": {"action": "placeholder"}},
        },
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


async def report(config: Config, tag_gate_url: str, origin_url: str, out: TextIO) -> None:
    """Fetch the page through tag-gate for each consent state and say what happened."""
    stages = Stages(config, Metrics())
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        async with client.get(origin_url) as resp:
            original = await resp.read()
        for label, cookie in STATES:
            headers = {"Cookie": cookie} if cookie else {}
            async with client.get(tag_gate_url, headers=headers) as resp:
                body = await resp.read()
                set_cookies = resp.headers.getall("Set-Cookie", [])
            consent = stages.visitor((cookie,) if cookie else (), None).consent
            expected, stats = gate_document(stages.gate_plan, consent, original, page_host="127.0.0.1", record=True)
            if not stages.policy.refusable(consent):
                expected = original  # nothing this visitor refuses: the proxy does not even parse the page
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
            names = [line.split("=", 1)[0] for line in set_cookies]
            dropped = [line.split("=", 1)[0] for line in SITE_COOKIES if line.split("=", 1)[0] not in names]
            out.write(f"  cookies let through: {', '.join(names) or 'none'}; dropped: {', '.join(dropped) or 'none'}\n")
            same = "identical to" if body == expected else "DIFFERENT from"
            out.write(
                f"  page through the proxy: {len(body)} bytes ({len(original)} sent by the site), "
                f"{same} the offline gate's output\n"
            )


async def run(listen: Address, once: bool, out: TextIO = sys.stdout) -> int:
    vendors_runner, vendor_port = await _start(_stand_in_app())
    site_runner, origin_port = await _start(_site_app(vendor_port))
    config = demo_config(listen, origin_port)
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
            "  policy: advertising removed, analytics deferred (activated without reload once granted),\n"
            "          social embeds behind a click-to-load placeholder; set tg_consent to change consent.\n"
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
