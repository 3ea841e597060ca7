"""Fail-safe pages keep no connection hints (issue 15, class 8): CSP does not cover
`preconnect`/`dns-prefetch`, so the relay neutralises them in the body and drops the
page's Link headers."""

from __future__ import annotations

import pytest

from proxy.html.hints import HintFilter
from tests.proxytools import running_proxy
from tests.test_gate_functional import fetch, page, serve

HINTS = (
    b'<link rel="preconnect" href="https://connect.facebook.net" crossorigin>'
    b"<LINK REL=DNS-PREFETCH href=//www.facebook.com>"
    b'<link rel="&#112;reconnect" href="https://bat.bing.com">'
    b"<link rel=stylesheet href=/site.css>"
)
NEUTRALISED = (
    b'<link data-tg-rel="preconnect" href="https://connect.facebook.net" crossorigin>'
    b"<LINK data-tg-rel=DNS-PREFETCH href=//www.facebook.com>"
    b'<link data-tg-rel="&#112;reconnect" href="https://bat.bing.com">'
    b"<link rel=stylesheet href=/site.css>"
)
# Foreign content lol-html cannot follow: the gate fails safe before the first byte.
BREAKOUT = b"<div><svg></div><![CDATA[><img src=https://www.facebook.com/tr>]]>"


@pytest.mark.parametrize("coding", ["identity", "gzip", "br"])
@pytest.mark.parametrize(
    "trigger", [BREAKOUT, b"<select><plaintext><script src='https://connect.facebook.net/x.js'></script>"]
)
async def test_fail_safe_page_loses_its_hints(coding: str, trigger: bytes) -> None:
    data = b"<!doctype html><html><head>" + HINTS + b"</head><body>" + trigger + b"<p>text</p>"
    server = await serve(
        page(data, coding=coding, Link="<https://connect.facebook.net>; rel=preconnect, </a.css>; rel=preload")
    )
    async with running_proxy(f"http://127.0.0.1:{server.port}") as tg:
        status, headers, body = await fetch(tg.url + "/", {"Accept-Encoding": "gzip, br"})
        assert status == 200
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert "Link" not in headers
        assert "Content-Encoding" not in headers  # sent decoded
        assert body == data.replace(HINTS, NEUTRALISED)
    await server.close()


@pytest.mark.parametrize(
    ("raw", "renamed"),
    [
        (b"<link rel=preconnect href=//a>", b"<link data-tg-rel=preconnect href=//a>"),
        (b"<link\trel='x dns-prefetch'/>", b"<link\tdata-tg-rel='x dns-prefetch'/>"),
        (b"<link rel=stylesheet rel=preconnect>", b"<link rel=stylesheet rel=preconnect>"),  # first rel wins
        (b"<link rel=preconnect rel=stylesheet>", b"<link data-tg-rel=preconnect data-tg-rel=stylesheet>"),
        (b"<link rel=pre&#x63;onnect href=//a>", b"<link data-tg-rel=pre&#x63;onnect href=//a>"),
        (b'<link title=">" rel=preconnect>', b'<link title=">" data-tg-rel=preconnect>'),
        (b"<linkx rel=preconnect>", b"<linkx rel=preconnect>"),
        (
            b'<!-- <link x=" --><link rel=preconnect href=//z>">',
            b'<!-- <link x=" --><link data-tg-rel=preconnect href=//z>">',
        ),
    ],
)
def test_hint_filter_whole_and_split(raw: bytes, renamed: bytes) -> None:
    f = HintFilter()
    assert f.feed(raw) + f.end() == renamed
    for cut in range(1, len(raw)):
        f = HintFilter()
        assert f.feed(raw[:cut]) + f.feed(raw[cut:]) + f.end() == renamed, cut
