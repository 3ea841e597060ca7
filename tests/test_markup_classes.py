"""Issue 15, classes 2, 3 and 4 without a browser: the gate's output for each trick,
and the pure readers behind it (CSS URLs, UTS #46 hosts, data: URLs, refresh, rules).

The WHATWG URL and data: URL test data (web-platform-tests `url/resources/urltestdata.json`,
`fetch/data-urls/resources/data-urls.json`) are read from `<testdata>/wpt-url/` when the
run is given `--testdata` and the files are there; they are never copied into the repo.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from proxy.core.catalog import make_catalog
from proxy.core.consent import read_consent
from proxy.core.policy import Policy
from proxy.core.url import host_of
from proxy.html.css import css_urls, gate_css
from proxy.html.gate import GatePlan, HtmlGate
from proxy.html.hosts import UNPARSEABLE, ascii_host_url, readings
from proxy.html.selection import prescan, prescan_python
from proxy.html.sources import parse_data_url, refresh_url, speculation_urls

PLAN = GatePlan(Policy(make_catalog()))
NONE = read_consent(None, None)
ALL = read_consent("tg_consent=functional.analytics.advertising.social", None)


def gate(document: bytes, *, whole: bool, consent: object = NONE, charset: str | None = None) -> bytes:
    g = HtmlGate(PLAN, consent, page_host="www.shop.test", charset=charset)  # type: ignore[arg-type]
    if whole:
        return g.feed_whole(document)
    out = [g.feed(document[i : i + 7]) for i in range(0, len(document), 7)]
    return b"".join(out) + g.end()


FB = "https://www.facebook.com/tr"
BING = "https://bat.bing.com/action/0"

# (markup, text that must be gone, text that must stay)
GATED = [
    # class 2: non-ASCII hosts, raw in a UTF-8 page
    ('<img src="https://www\u3002facebook\u3002com/tr">', "facebook", ""),
    ('<img src="https://bat\uff0ebing\uff0ecom/a">', "bing", ""),
    ('<img src="https://bat\uff61bing\uff61com/a">', "bing", ""),
    ('<img src="https://bat.bi\u00adng.com/a">', "bi\u00adng", ""),
    ('<img src="https://bat.bi&shy;ng.com/a">', "bi&shy;ng", ""),
    ('<img src="https://bat.bi\u200bng.com/a">', "bi\u200bng", ""),
    ('<script src="https://\uff43onnect.facebook.net/en_US/fbevents.js"></script>', "facebook", ""),
    ('<img src="https://\uff22\uff21\uff34.bing.com/a">', "bing", ""),
    ('<img src="https://bat%E3%80%82bing.com/a">', "bing", ""),
    ('<img src="https://www&#12290;facebook&#12290;com/tr">', "facebook", ""),
    # a refused base loses its href (issue 15 class 5), so the relative img stays on the site
    ('<base href="https://www\u3002facebook\u3002com/"><img src="tr">', "facebook", '<base><img src="tr">'),
    # class 3: elements and attributes
    (f'<image src="{FB}">', "facebook", ""),
    # an HTML <image> is void to the parser but not to lol-html: only its URLs go
    (f'<p><image src="{FB}" srcset="{BING} 2x">after</p><p>more</p>', "bing", "<p><image>after</p><p>more</p>"),
    (f'<svg><image href="{FB}"/></svg>', "facebook", "<svg>"),
    (f'<svg><image xlink:href="{FB}"/></svg>', "facebook", "<svg>"),
    (f'<svg><filter><feImage href="{BING}"/></filter></svg>', "bing", "<filter>"),
    (f'<svg><use href="{BING}#x"/></svg>', "bing", "<svg>"),
    (f'<svg><image><set attributeName="href" to="{BING}"/></image></svg>', "bing", "<image>"),
    (f'<svg><image><animate attributeName="href" values="/a.png;{BING}"/></image></svg>', "bing", "<image>"),
    (f'<svg><rect><animate attributeName="fill" to="url({BING}#g)"/></rect></svg>', "bing", "<rect>"),
    (f'<svg><rect mask="url({BING}#m)"/></svg>', "bing", 'mask="none"'),
    (f'<svg fill="url({BING}#g)"><rect/></svg>', "bing", 'fill="none"'),
    (f'<svg><rect clip-path="url(&quot;{BING}#c&quot;)"/></svg>', "bing", 'clip-path="none"'),
    (f'<svg><rect fill="url({BING}#g) red"/></svg>', "bing", 'fill="none red"'),
    (f'<svg><path marker-end="url({BING}#m)"/></svg>', "bing", 'marker-end="none"'),
    (f'<svg><rect filter="url({BING}#f)"/></svg>', "bing", 'filter="none"'),
    (f'<video><track src="{BING}"></video>', "bing", "<video></video>"),
    (f'<table><tr background="{BING}"><td>x</td></tr></table>', "bing", "<tr><td>"),
    (f'<table><tbody background="{BING}"><tr><td>x</td></tr></tbody></table>', "bing", "<tbody><tr>"),
    (f'<table><thead background="{BING}"></thead><tfoot background="{BING}"></tfoot></table>', "bing", "<thead>"),
    (f'<table><colgroup background="{BING}"><col background="{BING}"></colgroup></table>', "bing", "<colgroup>"),
    (f'<link rel="compression-dictionary" href="{BING}">', "bing", ""),
    (f'<link rel="dictionary" href="{BING}">', "bing", ""),
    (f'<link rel="alternate stylesheet" href="{BING}">', "bing", ""),
    (f'<a href="/x" ping="/p" attributionsrc="{BING}">x</a>', "bing", '<a href="/x" ping="/p">x</a>'),
    (f'<script src="/a.js" attributionsrc="{BING}"></script>', "bing", '<script src="/a.js"></script>'),
    (f'<img src="/a.png" attributionsrc="{BING}">', "bing", '<img src="/a.png">'),
    (f'<meta http-equiv="refresh" content="0; url={FB}">', "facebook", ""),
    (f"<meta http-equiv=REFRESH content=\"5;URL='{FB}'\">", "facebook", ""),
    (f'<meta http-equiv="refresh" content="0,{FB}">', "facebook", ""),
    (f'<style>@import "{BING}";</style>', "bing", "@import none;"),
    (f"<style>@import url('{BING}') screen;</style>", "bing", "@import none screen;"),
    (f"<style>a{{background:url({BING})}}</style>", "bing", "a{background:none}"),
    ("<style>a{background:u\\72l(https\\3a //bat.bing.com/x)}</style>", "bing", "a{background:none}"),
    ("<style>@font-face{src:url(https://bat.bing.com/f.woff)}</style>", "bing", "src:none"),
    (f'<style>a{{b:image-set("{BING}" 1x)}}</style>', "bing", "image-set(none 1x)"),
    (f'<style>/* " */ a{{b:url({BING})}} /* " */</style>', "bing", "b:none"),
    (f"<svg><style>a{{b:url({BING})}}</style></svg>", "bing", "<svg><style>"),
    (f'<div style="background:url({BING})">x</div>', "bing", 'style="background:none"'),
    (f'<div style="background:url&#40;{BING})">x</div>', "bing", 'style="background:none"'),
    (f"<div style=\"background:image-set('{BING}' 1x)\">x</div>", "bing", "image-set(none 1x)"),
    (f"<div style='background:URL({BING})'>x</div>", "bing", "none"),
    (f"<div style=background:url({BING})>x</div>", "bing", "none"),
    (
        f'<script type="speculationrules">{{"prefetch":[{{"source":"list","urls":["{BING}"]}}]}}</script>',
        "bing",
        '<script type="speculationrules"></script>',
    ),
    (
        '<script type="speculationrules">{"prerender":[{"where":{"href_matches":"*"}}]}</script>',
        "href_matches",
        '<script type="speculationrules"></script>',
    ),
    # import maps: a refused vendor's address (or prefix, in imports or a scope) points
    # at tag-gate's empty module; the page's own stay
    (
        '<script type="importmap">{"imports":{"hj":"https://static.hotjar.com/c/hotjar-1.js",'
        '"app":"/js/app.js"}}</script><script type=module>import "hj"</script>',
        "hotjar",
        '{"imports": {"hj": "/__tag-gate/blocked.js", "app": "/js/app.js"}}</script>',
    ),
    (
        f'<script type=" ImportMap ">{{"scopes":{{"/":{{"bing/":"{BING}/"}}}}}}</script>',
        "bat.bing",
        '{"scopes": {"/": {"bing/": "/__tag-gate/blocked/"}}}',
    ),
    (
        '<base href="https://cdn.example/"><script type="importmap">'
        '{"imports":{"fb":"https://connect.facebook.net/x.js","<":"x"}}</script>',
        "facebook",
        '{"imports": {"fb": "//www.shop.test/__tag-gate/blocked.js", "\\u003c": "x"}}',
    ),
    # Partytown runs `type="text/partytown"` in a web worker: decided as a script
    ('<script type="text/partytown" src="https://connect.facebook.net/en_US/fbevents.js"></script>', "facebook", ""),
    ('<script type=" Text/PartyTown ">fbq("init","1")</script>', "fbq", '<script type=" Text/PartyTown "></script>'),
    # class 4: script types and data: documents
    ('<script type="text/javascript1.2">fbq("init","1")</script>', "fbq", ""),
    ('<script type="text/javascript1.0" src="https://connect.facebook.net/x.js"></script>', "facebook", ""),
    ('<script type=" TEXT/JAVASCRIPT1.5 " src="https://connect.facebook.net/x.js"></script>', "facebook", ""),
    (f'<iframe src="data:text/html,<img src={FB}>"></iframe>', "facebook", "<iframe"),
    (f'<iframe src=" DATA:text/html;charset=utf-8,%3Cimg%20src%3D{FB}%3E"></iframe>', "facebook", "<iframe"),
    (
        '<iframe src="data:text/html;base64,PGltZyBzcmM9aHR0cHM6Ly9iYXQuYmluZy5jb20vYT4="></iframe>',
        "PGltZyBzcmM9aHR0cHM6Ly9iYXQuYmluZy5jb20vYT4",
        "<iframe",
    ),
    (f'<object data="data:text/html,<img src={FB}>"></object>', "facebook", "<object"),
    (f'<embed src="data:image/svg+xml,<svg><image href=%22{BING}%22/></svg>">', "bing", ""),
    (f'<link rel="stylesheet" href="data:text/css,a{{b:url({BING})}}">', "bing", "data:text/css,"),
    (f'<style>@import url("data:text/css,a{{b:url({BING})}}");</style>', "bing", "@import none;"),
]


@pytest.mark.parametrize(("markup", "gone", "kept"), GATED)
def test_refused_markup_goes_in_every_chunking_and_stays_under_full_consent(markup: str, gone: str, kept: str) -> None:
    document = markup.encode("utf-8")
    out = gate(document, whole=False)
    text = out.decode("utf-8")
    assert gone not in text, text
    assert kept in text, text
    assert gate(document, whole=True) == out
    assert gate(document, whole=False, consent=ALL) == document


KEPT = [
    '<img src="https://www\u3002example\u3002org/own.png">',
    '<img src="https://b\u00fccher.de/x.png">',
    '<img src="/\u00fcber.png" alt="caf\u00e9">',
    '<p style="color:rgba(0,0,0,.5);width:calc(1px + 2px)">x</p>',
    '<p style="background:url(/own.png)">x</p>',
    '<style>a{background:url(/own.png)} b{content:"\\f101"}</style>',
    '<svg><rect fill="url(#local)"/><use href="#icon"/><image href="/a.png"/></svg>',
    '<table background="/t.png"><tr background="/r.png"><td>x</td></tr></table>',
    '<meta http-equiv="refresh" content="30">',
    '<meta http-equiv="refresh" content="0; url=/next">',
    '<link rel="canonical" href="https://www.facebook.com/page">',
    '<script type="speculationrules">{"prefetch":[{"where":{"and":[{"href_matches":"/*"},'
    '{"not":{"href_matches":"/wp-admin/*"}}]},"eagerness":"conservative"}]}</script>',
    '<script type="text/javascript;charset=utf-8">fbq("init","1")</script>',
    '<script type="importmap">{"imports":{"app":"/js/app.js","lib/":"https://cdn.example/lib/"}}</script>',
    '<script type="text/partytown" src="/js/worker-tag.js"></script>',
    # what the browser would not take as a map at all fetches nothing through it
    '<script type="importmap">{"imports":{"hj":"https://static.hotjar.com/c/x.js"},}</script>',
    '<script type="importmap">{"imports":["https://static.hotjar.com/c/x.js"]}</script>',
    '<script type="importmap">{"imports":{"hj":"https://static.hotjar.com/c/x.js"},"scopes":{"/":1}}</script>',
    '<iframe src="data:text/html,<p>hello</p>"></iframe>',
    '<object data="data:image/png;base64,iVBORw0KGgo="></object>',
]


@pytest.mark.parametrize("markup", KEPT)
def test_first_party_and_inert_markup_is_untouched(markup: str) -> None:
    document = markup.encode("utf-8")
    assert gate(document, whole=False) == document
    assert gate(document, whole=True) == document


def test_an_unparseable_host_is_refused_only_when_the_visitor_refused_something() -> None:
    document = '<img src="https://exa\ufdd0mple.com/x.png"><img src="https://bad\u2024host.test/y.png">'.encode()
    assert b"<img" not in gate(document, whole=False)
    assert gate(document, whole=False, consent=ALL) == document


def test_the_charset_decides_how_a_host_reads() -> None:
    # U+FF42 (fullwidth b) in Shift_JIS is 0x82 0x82: only that charset makes it bat.bing.com
    document = '<img src="https://\uff42at.bing.com/a">'.encode("shift_jis")
    assert b"<img" not in gate(document, whole=False, charset="shift_jis")
    meta = b'<meta charset="shift_jis">' + document
    assert b"<img" not in gate(meta, whole=False)
    assert b"<img" not in gate(meta, whole=True)


@pytest.mark.parametrize(
    ("transport", "charset", "first"),
    [
        ("https://www\xe3\x80\x82facebook\xe3\x80\x82com/", None, "https://www\u3002facebook\u3002com/"),
        ("https://www\xe3\x80\x82facebook\xe3\x80\x82com/", "utf-8", "https://www\u3002facebook\u3002com/"),
        ("https://caf\xe9.fr/", None, "https://caf\xe9.fr/"),
        ("https://\x82\x82at.bing.com/", "shift_jis", "https://\uff42at.bing.com/"),
        ("https://x\u3002y\xe3\x80\x82z/", None, "https://x\u3002y\u3002z/"),
    ],
)
def test_readings_put_the_page_charset_first(transport: str, charset: str | None, first: str) -> None:
    assert readings(transport, charset)[0] == first


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://www\u3002facebook\u3002com/tr", "www.facebook.com"),
        ("https://bat.bi\u00adng.com/", "bat.bing.com"),
        ("https://\uff43onnect.facebook.net/", "connect.facebook.net"),
        ("//B\u00dcCHER.de/x", "xn--bcher-kva.de"),
        ("https://fa\u00df.de/", "xn--fa-hia.de"),
        ("https://user:p\u00e4ss@bat.bing.com:443/x", "bat.bing.com"),
        ("https://bat%E3%80%82bing.com/", "bat.bing.com"),
        ("/relative/\u00fc.png", None),
        ("https://a\ufffdb.com/", UNPARSEABLE),
    ],
)
def test_ascii_host_url(url: str, host: str | None) -> None:
    mapped = ascii_host_url(url)
    assert (mapped if mapped is UNPARSEABLE else host_of(mapped)) == host


@pytest.mark.parametrize(
    ("css", "urls"),
    [
        ('a{b:url(https://x.test/a)} c{d:url( "//y.test/b" )}', ["https://x.test/a", "//y.test/b"]),
        ('@import "https://t.test/i.css";', ["https://t.test/i.css"]),
        ("a{b:u\\72l(https\\3a //esc.test/x)}", ["https://esc.test/x"]),
        ("a{b:\\75 RL(https://e2.test/x)}", ["https://e2.test/x"]),
        ('/* " */ url(https://c.test/) /* " */', ["https://c.test/"]),
        ("xurl(https://no.test)", []),
        ('a{content:"open\nb{x:url(https://n.test)}', ["open", "https://n.test"]),
    ],
)
def test_css_urls(css: str, urls: list[str]) -> None:
    assert css_urls(css) == urls


def test_gate_css_replaces_only_refused_urls() -> None:
    css = 'a{b:url("https://x.test/a") no-repeat} c{d:url(/own.png)} @import "https://x.test/b";'
    assert gate_css(css, lambda u: "x.test" in u) == "a{b:none no-repeat} c{d:url(/own.png)} @import none;"
    assert gate_css(css, lambda u: False) is None


@pytest.mark.parametrize(
    ("content", "url"),
    [
        ("0; url=https://a.test/", "https://a.test/"),
        ("0;URL='https://a.test/x'", "https://a.test/x"),
        ("5, https://a.test/", "https://a.test/"),
        ('  3.5 ; url = "/p" ', "/p"),
        ("30", None),
        ("x; url=https://a.test/", None),
    ],
)
def test_refresh_url(content: str, url: str | None) -> None:
    assert refresh_url(content) == url


def test_speculation_urls() -> None:
    assert speculation_urls('{"prefetch":[{"urls":["/a","https://b.test/"]}]}') == (["/a", "https://b.test/"], True)
    assert speculation_urls('{"prerender":[{"where":{"href_matches":"/*"}}]}') == ([], True)
    assert speculation_urls('{"prerender":[{"where":{"selector_matches":"a"}}]}') == ([], False)
    assert speculation_urls("not json") is None


@pytest.mark.parametrize("scan", [prescan, prescan_python], ids=["hyperscan", "python"])
def test_prescan_leaves_out_only_what_a_document_cannot_need(scan: Callable[[bytes], frozenset[str]]) -> None:
    plain = b'<p style="color:red">x</p><a href="/a">a</a><table><td>cell</td></table>'
    assert scan(plain) == frozenset()
    assert scan(b'<p style="color:var(x)">') == {"style"}
    assert scan(b"<p STYLE = 'a:b&#40;'>") == {"style"}
    assert scan(b"<p style=a(b>") == {"style"}
    assert scan(b"<p style=&#40;x>") == {"style"}  # unquoted, the first character `&` or `(`
    assert scan(b"<p style=(x>") == {"style"}
    assert scan(b'<p style="(x">') == {"style"}
    assert scan(b"<p style = 'x' (>") == frozenset()  # the `(` is after the value
    assert scan(b"<a\tping\x0c=x>") == {"ping"}
    assert scan(b"ping=x") == {"ping"}  # at the very start
    assert scan(b"<a mapping=x>") == frozenset()
    assert scan(b"<a PING=x>") == {"ping"}
    assert scan(b"<STYLE>a{}</STYLE>") == {"style_element"}
    assert scan(b"<SVG>") == {"svg", "foreign"}
    assert scan(b"<math>") == {"foreign"}
    assert scan(b"<image>") == {"svg"}  # an `<img>` to the parser, gated by the svg handler
    assert scan(b"<tr background=x>") == {"background"}
    assert scan(b"<img attributionsrc>") == {"img", "attribution"}
    assert scan(b"<BASE href=x>") == {"base"}
    for tag in ("video", "audio", "source", "track", "input"):
        assert scan(f"<{tag.upper()} src=x>".encode()) == {"media"}, tag
    for markup, name in (("<iframe>", "frame"), ("<frameset><frame>", "frame"), ("<object>", "embed")):
        assert scan(markup.encode()) == {name}, markup
    assert scan(b"<html><head><meta charset=utf-8><link rel=x><script></script><noscript>") == {
        "top",
        "meta",
        "link",
        "script",
        "noscript",
    }
    large = plain + b" " * (16 << 10)
    if scan is prescan_python:
        # past 6 KiB, one `bytes.find` per needle: only the scans that leave out costly compounds
        assert scan(large) == {"script", "img", "media", "frame", "embed", "link", "noscript", "top", "foreign"} | {
            "style_element",
            "meta",
            "svg",
            "base",
        }
    else:
        assert scan(large) == frozenset()  # one pass for every needle, whatever the size
        assert scan(large + b"<SCRIPT>" + large) == {"script"}
    assert scan(large + b"<td background") == scan(large) | {"background"}
    assert scan(large + b"<a attributionsrc>") == scan(large) | {"attribution"}


def _wpt(testdata: Path, name: str) -> list[object]:
    path = testdata / "wpt-url" / name
    if not path.is_file():
        pytest.skip(f"{path} not present (web-platform-tests data, not shipped with tag-gate)")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, list)
    return data


def test_hosts_agree_with_the_url_standard_test_data(testdata: Path) -> None:
    """Every WPT URL test whose input is an absolute http(s) URL: where the browser
    finds a host, tag-gate finds the same one (or refuses the URL as unparseable, which
    is safe); where the browser fails, whatever tag-gate finds is never contacted."""
    wrong = []
    checked = 0
    for case in _wpt(testdata, "urltestdata.json"):
        if not isinstance(case, dict) or case.get("failure"):
            continue
        url = str(case["input"]).strip("".join(map(chr, range(0x21))))
        scheme, _, rest = url.partition(":")
        after = rest.replace("\t", "").replace("\n", "").replace("\r", "")
        if scheme.lower() not in ("http", "https") or after[:1] not in ("/", "\\") or after[1:2] not in ("/", "\\"):
            continue  # `http:/x` is a path on an http base page (see host_of's docstring)
        if not case["hostname"].strip("."):
            continue  # a host of dots only: nothing to contact
        checked += 1
        mapped = ascii_host_url(url)
        found = None if mapped is UNPARSEABLE else host_of(mapped)
        if mapped is not UNPARSEABLE and found != case["hostname"] and case["hostname"].strip(".") != found:
            wrong.append((case["input"], case["hostname"], found))
    assert checked > 150
    assert wrong == []


def test_data_urls_agree_with_the_fetch_standard_test_data(testdata: Path) -> None:
    wrong = []
    for case in _wpt(testdata, "data-urls.json"):
        if not isinstance(case, list):
            continue
        url, mime, *body = case
        parsed = parse_data_url(url)
        if mime is None:
            # The browser loads nothing; tag-gate may still read a body (harmless).
            continue
        if parsed is None or parsed.body != bytes(body[0]):
            wrong.append(url)
    assert wrong == []


async def test_the_header_charset_reaches_the_gate(aiohttp_server: Any) -> None:
    """Through the proxy: a Shift_JIS page declared only in the Content-Type header."""
    from aiohttp import web

    from tests.proxytools import running_proxy

    page = '<html><body><img src="https://\uff42at.bing.com/a"><p>ok</p></body></html>'.encode("shift_jis")

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=page, headers={"Content-Type": "text/html; charset=Shift_JIS"})

    app = web.Application()
    app.router.add_get("/", handle)
    server = await aiohttp_server(app)
    async with running_proxy(f"http://127.0.0.1:{server.port}") as running:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            for _ in range(2):  # the second answer comes from the gated-page cache
                async with session.get(f"http://127.0.0.1:{running.port}/") as resp:
                    body = await resp.read()
                assert b"<img" not in body and b"<p>ok</p>" in body


def test_an_import_map_too_large_to_read_whole_goes_and_report_only_mode_keeps_every_one() -> None:
    """Over `max_inline_script` a map cannot be read whole: it goes (an unreadable host
    is refused when the visitor refused something); report-only mode changes nothing."""
    big = '{"imports":{' + ",".join(f'"m{i}":"/js/m{i}.js"' for i in range(20)) + "}}"
    page = f'<script type="importmap">{big}</script><p>x</p>'.encode()
    small = GatePlan(Policy(make_catalog()), max_inline_script=64)
    for step in (7, len(page)):
        g = HtmlGate(small, NONE, page_host="www.shop.test")
        out = b"".join(g.feed(page[i : i + step]) for i in range(0, len(page), step)) + g.end()
        assert out == b'<script type="importmap"></script><p>x</p>', out
    g = HtmlGate(small, ALL, page_host="www.shop.test")
    assert g.feed(page) + g.end() == page
    refused = f'<script type="importmap">{{"imports":{{"fb":"{FB}"}}}}</script>'.encode()
    g = HtmlGate(PLAN, NONE, page_host="www.shop.test", report_only=True)
    assert g.feed(refused) + g.end() == refused and sum(g.stats.counts.values()) == 1


def test_url_scheme_and_tokens_read_as_the_browser_reads_them() -> None:
    from proxy.html.attributes import ascii_tokens
    from proxy.html.sources import is_data_url, url_scheme

    assert url_scheme(" \x01About:blank") == "about" and url_scheme("a\tb\nout:blank") == "about"
    assert url_scheme("/x:y") == "" and url_scheme("//host/a:b") == "" and url_scheme("") == ""
    assert is_data_url("da\nta:text/html,x") and not is_data_url("/data:x")
    assert ascii_tokens(" Allow-Scripts\nallow-same-origin ") == {"allow-scripts", "allow-same-origin"}
    assert ascii_tokens("preconnect\u00a0x") == {"preconnect\u00a0x"} and ascii_tokens(None) == frozenset()


def test_a_data_url_with_a_newline_in_its_scheme_is_gated_as_one() -> None:
    document = f'<iframe src="da&#10;ta:text/html,<img src={FB}>"></iframe>'.encode()
    out = gate(document, whole=False).decode()
    assert "facebook" not in out and "<iframe" in out, out
