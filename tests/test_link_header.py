"""The Link header: splitting and parsing as Chromium does (RFC 8288), and the filter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.catalog import make_catalog
from proxy.core.consent import read_consent
from proxy.core.link_header import parse_link_field, parse_link_value, split_link_values, srcset_candidate_urls
from proxy.core.policy import Kind, Policy, filter_link_header

POLICY = Policy(make_catalog())
NONE = read_consent(None, None)

SPLITS: list[tuple[str, list[tuple[str, bool]]]] = [
    ("</a>; rel=preload, </b>", [("</a>; rel=preload", True), ("</b>", True)]),
    ("<https://a/x,y>; rel=preload", [("<https://a/x,y>; rel=preload", True)]),
    # a quote inside <...> opens nothing: the comma after the reference still splits
    ('<https://a/"x>; rel=preload, <https://t/>', [('<https://a/"x>; rel=preload', True), ("<https://t/>", True)]),
    ('</a>; title="a, <b>", </c>', [('</a>; title="a, <b>"', True), ("</c>", True)]),
    ('</a>; title="say \\"hi, there\\"", </c>', [('</a>; title="say \\"hi, there\\""', True), ("</c>", True)]),
    (" , ,</a> ,", [("</a>", True)]),
    ("</a; rel=preload, </b>; rel=preconnect", [("</a; rel=preload, </b>; rel=preconnect", True)]),
    ('</a>; title="open, </b>', [('</a>; title="open, </b>', False)]),
    ("</a>; x=<y, </b>", [("</a>; x=<y, </b>", True)]),
]


@pytest.mark.parametrize(("field", "expected"), SPLITS)
def test_split(field: str, expected: list[tuple[str, bool]]) -> None:
    assert split_link_values(field) == expected


PARSES: list[tuple[str, tuple[str, dict[str, str | None]] | None]] = [
    ("</a.css>; rel=preload; as=style", ("/a.css", {"rel": "preload", "as": "style"})),
    ('< https://h/x >;REL="pre,connect"', ("https://h/x", {"rel": "pre,connect"})),
    ("</a>; rel=preload; rel=prefetch", ("/a", {"rel": "preload"})),
    ("</a>; crossorigin; as=", ("/a", {"crossorigin": None, "as": None})),
    ('</a>; title="q\\"uote"', ("/a", {"title": 'q"uote'})),
    ("</a>", ("/a", {})),
    ("/a; rel=preload", None),
    ("</a", None),
    ("</a> rel=preload", None),
    ("</a>; title*=UTF-8''x", None),
    ("</a>; bad name=1", None),
    ('</a>; title="open', None),
    ('</a>; title="x"y', None),
]


@pytest.mark.parametrize(("text", "expected"), PARSES)
def test_parse(text: str, expected: tuple[str, dict[str, str | None]] | None) -> None:
    link = parse_link_value(text)
    assert (None if link is None else (link.url, link.params)) == expected


SRCSETS: list[tuple[str, list[str]]] = [
    ("/a.jpg 1x, https://t.example/b.jpg 2x", ["/a.jpg", "https://t.example/b.jpg"]),
    ("/a.jpg,https://t.example/b.jpg", ["/a.jpg,https://t.example/b.jpg"]),
    ("/a.jpg, https://t.example/b.jpg", ["/a.jpg", "https://t.example/b.jpg"]),
    ("/a.jpg,, /b.jpg 100w", ["/a.jpg", "/b.jpg"]),
    ("data:image/png;base64,AAA= 1x, /c.png (x, y) 2x, /d.png", ["data:image/png;base64,AAA=", "/c.png", "/d.png"]),
    ("  ", []),
]


@pytest.mark.parametrize(("srcset", "urls"), SRCSETS)
def test_srcset_urls(srcset: str, urls: list[str]) -> None:
    assert srcset_candidate_urls(srcset) == urls


def keep(url: str) -> bool:
    return POLICY.decide_url(NONE, Kind.HEADER, url, "www.shop.test").keeps


FB = "https://connect.facebook.net/en_US/fbevents.js"
FILTERS: list[tuple[list[str], str | None, list[str]]] = [
    # lines, new field value, removed texts
    (
        ["<https://www.google-analytics.com>; rel=preconnect"],
        None,
        ["<https://www.google-analytics.com>; rel=preconnect"],
    ),
    (
        [f'</style.css>; rel=preload; as=style, <{FB}>; rel=preload; as="script,x"'],
        "</style.css>; rel=preload; as=style",
        [f'<{FB}>; rel=preload; as="script,x"'],
    ),
    (["</a.css>; rel=preload"], "</a.css>; rel=preload", []),
    # the tracker hidden in imagesrcset of a first-party preload
    (
        ['</hero.jpg>; rel=preload; as=image; imagesrcset="/hero.jpg 1x, https://www.facebook.com/tr?id=1 2x"'],
        None,
        ['</hero.jpg>; rel=preload; as=image; imagesrcset="/hero.jpg 1x, https://www.facebook.com/tr?id=1 2x"'],
    ),
    # a quote inside <...>: a naive splitter would swallow the tracker into the first value
    (
        [f'</a"b.css>; rel=preload; as=style, <{FB}>; rel=preload; as=script'],
        '</a"b.css>; rel=preload; as=style',
        [f"<{FB}>; rel=preload; as=script"],
    ),
    # a comma inside <...> does not split
    (["</a,b.css>; rel=preload; as=style"], "</a,b.css>; rel=preload; as=style", []),
    # two lines are one list: an unterminated quote in the first swallows the second
    (
        ['</a.css>; rel=preload; title="x', f"<{FB}>; rel=preload; as=script"],
        None,
        [f'</a.css>; rel=preload; title="x, <{FB}>; rel=preload; as=script'],
    ),
    (["</a.css>; rel=preload", f"<{FB}>; rel=preload"], "</a.css>; rel=preload", [f"<{FB}>; rel=preload"]),
    # unknown hosts follow html.unknown_hosts (keep by default); malformed values go
    (["<https://cdn.example/x.js>; rel=preload, junk"], "<https://cdn.example/x.js>; rel=preload", ["junk"]),
]


@pytest.mark.parametrize(("lines", "value", "removed"), FILTERS)
def test_filter(lines: list[str], value: str | None, removed: list[str]) -> None:
    assert filter_link_header(lines, keep) == (value, removed)


def test_filter_unchanged_is_the_same_string() -> None:
    line = "</a.css>; rel=preload; as=style"
    value, removed = filter_link_header(line, keep)
    assert value is line and removed == []


_PIECES = st.sampled_from(['"', "<", ">", ",", ";", "\\", " ", "a", "=", "</x>", FB, "rel=preload"])


@given(st.lists(st.lists(_PIECES, max_size=12).map("".join), min_size=1, max_size=3))
def test_filter_output_reparses_to_what_was_kept(lines: list[str]) -> None:
    """Whatever the input, the emitted field splits back into exactly the kept values,
    every one of them parses, and none reaches a refused host."""
    value, _ = filter_link_header(lines, keep)
    if value is None:
        return
    parsed = parse_link_field([value])
    assert all(link is not None and all(keep(u) for u in link.urls()) for _, link in parsed)
    again, removed = filter_link_header([value], keep)
    assert removed == [] and again == value
