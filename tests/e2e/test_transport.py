"""Issue 15, classes 6, 7 and 9 in Chromium: transport, response headers, consent.

Every case is one response (or a page and the responses it leads to) from a scripted
origin that writes its bytes exactly as given: two `Content-Type` lines, none at all,
a body in ISO-2022-JP or UTF-16, a redirect. Each case is loaded twice in a fresh
context with no consent (or the case's consent cookies):

- straight from the origin (the control): Chromium must contact the case's tracker,
  so the case is a real way to reach it;
- through tag-gate: no host of a refused category may be contacted (requests and TLS
  handshakes seen by the fake internet, world.py).

The origin is plain http on `www.shop.test`, as in the rest of the browser suite, so
Chromium sends no `Sec-Fetch-*` headers (they go only to potentially trustworthy
origins): tag-gate must decide without them here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.world import SITE_HOST, Tab, World, category_of_host
from tests.proxytools import Running, running_proxy
from tests.test_consent_combine import FRESH, OLD, OT_ALL, OT_NONE, cookiebot, onetrust, tg

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

FB = "www.facebook.com"
XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'
XHTML_SQ = "xmlns='http://www.w3.org/1999/xhtml'"
ESSENTIAL = frozenset({"essential"})

Reply = tuple[int, tuple[tuple[str, str], ...], bytes]
"""Status, header lines (in order, repeats allowed), body."""


@dataclass(frozen=True)
class Case:
    name: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    path: str = ""
    """The tracker path prefix the control must request on `host` (default: /tr?id=NAME)."""
    host: str = FB
    more: dict[str, Reply] = field(default_factory=dict)
    """Further responses, at /c/NAME/KEY."""
    cookies: str = ""
    """A Cookie header's worth of consent cookies for the visit through tag-gate."""
    status: int = 200

    @property
    def tracker_path(self) -> str:
        return self.path or f"/tr?id={self.name}"


def pixel(name: str) -> str:
    return f"https://{FB}/tr?id={name}"


def img(name: str) -> str:
    return f'<img src="{pixel(name)}" width="1" height="1">'


def page(name: str) -> str:
    return f"<!doctype html><html><head><title>{name}</title></head><body><p>{name}</p>{img(name)}</body></html>"


def html_case(name: str, *headers: tuple[str, str], body: bytes | None = None, **kw: Any) -> Case:
    return Case(name, headers, page(name).encode() if body is None else body, **kw)


CT = "Content-Type"

# ----------------------------------------------------------------- class 6: charsets

JIS_ON, JIS_OFF = b"\x1b$B", b"\x1b(B"


def jis_comment(name: str) -> bytes:
    """`<!--` and `-->` written in JIS X 0208 mode: two kanji each to the browser, a
    comment to anything that reads the bytes as ASCII."""
    return b"<p>" + JIS_ON + b"<!--" + JIS_OFF + img(name).encode() + JIS_ON + b"-->" + JIS_OFF + b"</p>"


def jis_textarea(name: str) -> bytes:
    """`<textarea>` in JIS mode: kanji to the browser, raw text to a byte-wise reader."""
    return JIS_ON + b"<textarea>" + JIS_OFF + img(name).encode() + b"</textarea>"


def utf16(name: str, codec: str, prefix: str = "") -> bytes:
    return (prefix + page(name)).encode(codec)


UTF16_LABELS = {
    "unicode": "utf-16-le",
    "unicodefeff": "utf-16-le",
    "csunicode": "utf-16-le",
    "iso-10646-ucs-2": "utf-16-le",
    "ucs-2": "utf-16-le",
    "utf-16": "utf-16-le",
    "utf-16le": "utf-16-le",
    "unicodefffe": "utf-16-be",
    "utf-16be": "utf-16-be",
}

CHARSET_CASES = [
    html_case("jis-header", (CT, "text/html; charset=iso-2022-jp"), body=jis_comment("jis-header")),
    html_case("jis-label", (CT, "text/html; charset=csISO2022JP"), body=jis_comment("jis-label")),
    html_case("jis-meta", (CT, "text/html"), body=b"<meta charset=iso-2022-jp>" + jis_comment("jis-meta")),
    html_case(
        "jis-meta-pragma",
        (CT, "text/html"),
        body=b'<meta http-equiv="Content-Type" content="text/html; charset=ISO-2022-JP">'
        + jis_comment("jis-meta-pragma"),
    ),
    html_case("jis-textarea", (CT, "text/html; charset=iso-2022-jp"), body=jis_textarea("jis-textarea")),
    html_case(
        "jis-xml-declaration",
        (CT, "text/html"),
        body=b'<?xml version="1.0" encoding="ISO-2022-JP"?>' + jis_comment("jis-xml-declaration"),
    ),
    html_case(
        "jis-second-content-type",
        (CT, "text/html"),
        (CT, "text/html; charset=iso-2022-jp"),
        body=jis_comment("jis-second-content-type"),
    ),
    *(
        html_case(f"utf16-{label}", (CT, f"text/html; charset={label}"), body=utf16(f"utf16-{label}", codec))
        for label, codec in UTF16_LABELS.items()
    ),
    html_case("utf16-bom", (CT, "text/html; charset=utf-8"), body=utf16("utf16-bom", "utf-16-be", "\ufeff")),
    html_case("utf16-bom-undeclared", (CT, "text/html"), body=utf16("utf16-bom-undeclared", "utf-16-le", "\ufeff")),
    html_case(
        "utf16-xml-spelling", (CT, "text/html"), body=utf16("utf16-xml-spelling", "utf-16-le", "<?xml version='1.0'?>")
    ),
    # a charset inside another parameter's quotes is not the charset
    html_case(
        "quoted-charset-decoy",
        (CT, 'text/html; foo="charset=utf-8"; charset=utf-16le'),
        body=utf16("quoted-charset-decoy", "utf-16-le"),
    ),
    html_case(
        "quoted-charset-decoy-semicolon",
        (CT, 'text/html; foo="x; charset=utf-8"; charset=unicode'),
        body=utf16("quoted-charset-decoy-semicolon", "utf-16-le"),
    ),
    html_case("quoted-charset", (CT, 'text/html; charset="utf-16le"'), body=utf16("quoted-charset", "utf-16-le")),
]

# ------------------------------------------------------- class 6: which type it is

TYPE_CASES = [
    # two lines or a list: Chromium takes the last valid type
    html_case("two-lines", (CT, "text/plain"), (CT, "text/html")),
    html_case("list-value", (CT, "text/plain, text/html")),
    html_case("list-then-garbage", (CT, "text/plain"), (CT, "text/html, garbage")),
    html_case(
        "two-lines-charset",
        (CT, "text/html; charset=utf-8"),
        (CT, "text/html; charset=utf-16le"),
        body=utf16("two-lines-charset", "utf-16-le"),
    ),
    # types Chromium sniffs: HTML when the body starts like it
    html_case("unknown-unknown", (CT, "unknown/unknown")),
    html_case("application-unknown", (CT, "application/unknown")),
    html_case("star-star", (CT, "*/*")),
    html_case("no-content-type"),
    html_case("no-slash", (CT, "html")),
    html_case("sniffed-whitespace", (CT, "unknown/unknown"), body=b"\r\n\t  " + page("sniffed-whitespace").encode()),
    html_case("sniffed-script", (CT, "unknown/unknown"), body=f"<script></script>{img('sniffed-script')}".encode()),
]

# -------------------------------------------------------- class 6: XML documents


def xhtml(name: str, inner: str = "", prolog: str = "") -> bytes:
    body = inner or f'<img src="{pixel(name)}" width="1" height="1"/>'
    head = f"<head><title>{name}</title></head>"
    return f'<?xml version="1.0"?>{prolog}<html {XHTML}>{head}<body>{body}</body></html>'.encode()


XML_CASES = [
    html_case("xml-text", (CT, "text/xml"), body=xhtml("xml-text")),
    html_case("xml-application", (CT, "application/xml"), body=xhtml("xml-application")),
    html_case("xml-xhtml", (CT, "application/xhtml+xml"), body=xhtml("xml-xhtml")),
    html_case(
        "xml-svg",
        (CT, "image/svg+xml"),
        body=(
            '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            f'<image href="{pixel("xml-svg")}" width="1" height="1"/></svg>'
        ).encode(),
    ),
    html_case(
        "xml-entity",
        (CT, "text/xml"),
        body=xhtml(
            "xml-entity",
            "&t;",
            f"<!DOCTYPE html [<!ENTITY t \"<img {XHTML_SQ} src='{pixel('xml-entity')}'/>\">]>",
        ),
    ),
    html_case(
        "xml-textarea",
        (CT, "text/xml"),
        body=xhtml("xml-textarea", f'<textarea><img src="{pixel("xml-textarea")}"/></textarea>'),
    ),
    html_case(
        "xml-prefixed",
        (CT, "application/xml"),
        body=(
            f'<h:html xmlns:h="http://www.w3.org/1999/xhtml"><h:body><h:img src="{pixel("xml-prefixed")}"/>'
            "</h:body></h:html>"
        ).encode(),
    ),
    html_case(
        "xml-stylesheet-pi",
        (CT, "text/xml"),
        body=xhtml(
            "xml-stylesheet-pi", "<p>x</p>", f'<?xml-stylesheet type="text/css" href="{pixel("xml-stylesheet-pi")}"?>'
        ),
    ),
    html_case(
        "xml-meta-refresh",
        (CT, "application/xhtml+xml"),
        body=xhtml("xml-meta-refresh", f'<meta http-equiv="refresh" content="0;url={pixel("xml-meta-refresh")}"/>'),
    ),
    html_case("xml-sniffed", (CT, "unknown/unknown"), body=xhtml("xml-sniffed")),
    html_case(
        "svg-foreign-object",
        (CT, "image/svg+xml"),
        body=(
            '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><foreignObject width="5" height="5">'
            f'<img {XHTML} src="{pixel("svg-foreign-object")}"/></foreignObject></svg>'
        ).encode(),
    ),
    html_case(
        "svg-foreign-refresh",
        (CT, "image/svg+xml"),
        body=(
            '<svg xmlns="http://www.w3.org/2000/svg"><foreignObject width="5" height="5">'
            f'<meta {XHTML} http-equiv="refresh" content="0;url={pixel("svg-foreign-refresh")}"/></foreignObject></svg>'
        ).encode(),
    ),
    html_case(
        "xml-object",
        (CT, "text/xml"),
        body=xhtml("xml-object", f'<object data="{pixel("xml-object")}" type="image/gif"></object>'),
    ),
    html_case(
        "xml-latin1",
        (CT, "text/xml; charset=iso-8859-1"),
        body=xhtml("xml-latin1").replace(b"<body>", "<body><p>\xe9</p>".encode("latin-1")),
    ),
    html_case(
        "xml-in-frame",
        (CT, "text/html"),
        body=b'<iframe src="/c/xml-in-frame/doc"></iframe>',
        more={"doc": (200, ((CT, "image/svg+xml"),), xhtml("xml-in-frame"))},
    ),
]

# --------------------------------------------------------- class 7: response headers


def redirect_case(
    name: str, markup: str, location: str, status: int = 302, more_first: dict[str, Reply] | None = None, **kw: Any
) -> Case:
    return html_case(
        name,
        (CT, "text/html; charset=utf-8"),
        body=f"<!doctype html><title>{name}</title>{markup}".encode(),
        more={"r": (status, (("Location", location),), b""), **(more_first or {})},
        **kw,
    )


HEADER_CASES = [
    html_case("refresh", (CT, "text/html"), ("Refresh", f"0; url={pixel('refresh')}"), body=b"<p>refresh</p>"),
    html_case("refresh-quoted", (CT, "text/html"), ("Refresh", f"0;URL='{pixel('refresh-quoted')}'"), body=b"<p>x</p>"),
    html_case("refresh-comma", (CT, "text/html"), ("Refresh", f"0, url={pixel('refresh-comma')}"), body=b"<p>x</p>"),
    html_case(
        "refresh-relative-scheme",
        (CT, "text/html"),
        ("Refresh", f"0;url=//{FB}/tr?id=refresh-relative-scheme"),
        body=b"<p>x</p>",
    ),
    html_case(
        "csp-report-uri",
        (CT, "text/html"),
        ("Content-Security-Policy", f"img-src 'none'; report-uri {pixel('csp-report-uri')}"),
        body=b'<p>x</p><img src="/blocked.gif">',
    ),
    html_case(
        "csp-report-only",
        (CT, "text/html"),
        ("Content-Security-Policy-Report-Only", f"img-src 'none'; report-uri {pixel('csp-report-only')}"),
        body=b'<p>x</p><img src="/blocked.gif">',
    ),
    html_case(
        "link-imagesrcset",
        (CT, "text/html"),
        ("Link", f'</pixel.gif>; rel=preload; as=image; imagesrcset="{pixel("link-imagesrcset")} 1x"'),
        body=b"<p>x</p>",
    ),
    html_case(
        "link-quote-in-uri",
        (CT, "text/html"),
        ("Link", f'</a".gif>; rel=preload; as=image, <{pixel("link-quote-in-uri")}>; rel=preload; as=image'),
        body=b"<p>x</p>",
    ),
    redirect_case("redirect-img", '<img src="/c/redirect-img/r">', pixel("redirect-img")),
    redirect_case("redirect-301", '<img src="/c/redirect-301/r">', pixel("redirect-301"), 301),
    redirect_case("redirect-307", '<img src="/c/redirect-307/r">', pixel("redirect-307"), 307),
    redirect_case("redirect-308", '<img src="/c/redirect-308/r">', pixel("redirect-308"), 308),
    redirect_case(
        "redirect-script",
        '<script src="/c/redirect-script/r"></script>',
        "https://connect.facebook.net/en_US/fbevents.js",
        host="connect.facebook.net",
        path="/en_US/fbevents.js",
    ),
    redirect_case(
        "redirect-style",
        '<link rel="stylesheet" href="/c/redirect-style/r">',
        pixel("redirect-style"),
    ),
    redirect_case("redirect-iframe", '<iframe src="/c/redirect-iframe/r"></iframe>', pixel("redirect-iframe")),
    redirect_case(
        "redirect-meta-refresh",
        '<meta http-equiv="refresh" content="0;url=/c/redirect-meta-refresh/r">',
        pixel("redirect-meta-refresh"),
    ),
    redirect_case("redirect-poster", '<video poster="/c/redirect-poster/r"></video>', pixel("redirect-poster")),
    redirect_case(
        "redirect-preload", '<link rel="preload" as="image" href="/c/redirect-preload/r">', pixel("redirect-preload")
    ),
    redirect_case(
        "redirect-chain",
        '<img src="/c/redirect-chain/r0">',
        pixel("redirect-chain"),
        more_first={"r0": (302, (("Location", "/c/redirect-chain/r"),), b"")},
    ),
    redirect_case(
        "redirect-relative-scheme",
        '<img src="/c/redirect-relative-scheme/r">',
        f"//{FB}/tr?id=redirect-relative-scheme",
    ),
]

# ------------------------------------------------------------------- class 9: consent

CONSENT_PAGE = (
    b'<!doctype html><title>consent</title><script src="https://connect.facebook.net/en_US/fbevents.js"></script>'
)


def consent_case(name: str, cookies: str) -> Case:
    return html_case(
        name,
        (CT, "text/html; charset=utf-8"),
        body=CONSENT_PAGE,
        host="connect.facebook.net",
        path="/en_US/fbevents.js",
        cookies=cookies,
    )


CONSENT_CASES = [
    # the example: a stale accept-all in one manager, a fresher refusal in another
    consent_case(
        "stale-onetrust-all-fresh-cookiebot-none",
        f"{onetrust(OT_ALL, closed=OLD)}; {cookiebot(False, False, False, FRESH * 1000)}",
    ),
    consent_case(
        "stale-cookiebot-all-fresh-onetrust-none",
        f"{cookiebot(True, True, True, OLD * 1000)}; {onetrust(OT_NONE, closed=FRESH)}",
    ),
    consent_case(
        "stale-tg-all-fresh-onetrust-none",
        f"{tg('functional.analytics.advertising.social', OLD)}; {onetrust(OT_NONE, datestamp=FRESH)}",
    ),
    consent_case(
        "stale-onetrust-all-fresh-tg-none",
        f"{onetrust(OT_ALL, datestamp=OLD, closed=OLD)}; {tg('analytics', FRESH)}",
    ),
    consent_case(
        "undated-onetrust-all-undated-cookiebot-none", f"{onetrust(OT_ALL)}; {cookiebot(False, False, False)}"
    ),
    consent_case("fresh-grant-undated-refusal", f"{cookiebot(True, True, True, FRESH * 1000)}; {onetrust(OT_NONE)}"),
]

CASES = {c.name: c for c in (*CHARSET_CASES, *TYPE_CASES, *XML_CASES, *HEADER_CASES, *CONSENT_CASES)}


def cookie_dict(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split("; "):
        name, _, value = part.partition("=")
        if name:
            out[name] = value
    return out


# ------------------------------------------------------------------------- origin


class Origin:
    """An HTTP/1.1 origin that writes each case's bytes exactly (one request per
    connection): repeated or absent headers, any status, any body."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def reply(self, target: str) -> Reply:
        parts = target.split("?", 1)[0].strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "c" and parts[1] in CASES:
            case = CASES[parts[1]]
            if len(parts) == 2:
                return case.status, case.headers, case.body
            if parts[2] in case.more:
                return case.more[parts[2]]
        if target.endswith((".gif", ".json")):
            return 200, ((CT, "image/gif"),), b"GIF89a"
        return 404, ((CT, "text/plain"),), b"not found"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode("latin-1")
            status, headers, body = self.reply(target)
            lines = [f"HTTP/1.1 {status} X".encode()]
            lines += [f"{k}: {v}".encode("latin-1") for k, v in headers if k.lower() != "content-length"]
            lines += [f"Content-Length: {len(body)}".encode(), b"Connection: close", b"Cache-Control: no-store"]
            writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, IndexError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(world: World) -> AsyncIterator[tuple[Origin, Running]]:
    origin = Origin()
    await origin.start()
    try:
        async with running_proxy(f"http://127.0.0.1:{origin.port}") as tg_running:
            yield origin, tg_running
    finally:
        await origin.stop()


async def visit(world: World, port: int, case: Case, cookies: str = "") -> list[tuple[str, str, str]]:
    """Load the case through `port`; every (host, path, category) the page contacted."""
    async with world.tab(cookie_dict(cookies) or None, port=port) as tab:
        with contextlib.suppress(Exception):  # a download, an error page, a navigation away
            await tab.page.goto(f"http://{SITE_HOST}:{port}/c/{case.name}", wait_until="load", timeout=10_000)
        await asyncio.sleep(0.3)  # redirects, refreshes and reports after load
        await settle(tab)
        hits, handshakes = world.internet.since(tab.mark)
    contacts = [(h.host, h.path, h.category or "") for h in hits if h.from_page]
    contacts += [(name, "(TLS handshake)", category_of_host(name) or "") for name in handshakes]
    return contacts


async def settle(tab: Tab) -> None:
    with contextlib.suppress(AssertionError):
        await tab.settle(quiet=0.3, timeout=8)


@pytest.mark.parametrize("name", list(CASES))
async def test_reaches_the_tracker_only_without_tag_gate(
    world: World, stack: tuple[Origin, Running], name: str
) -> None:
    origin, proxy = stack
    case = CASES[name]
    control = await visit(world, origin.port, case)
    assert any(host == case.host and path.startswith(case.tracker_path) for host, path, _ in control), (
        f"control: Chromium did not reach {case.host}{case.tracker_path} from the origin: {control}"
    )
    gated = await visit(world, proxy.port, case, case.cookies)
    refused = [c for c in gated if c[2] and c[2] not in ESSENTIAL]
    assert refused == [], f"through tag-gate: {refused}"
