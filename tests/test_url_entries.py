"""proxy.core.url_entries and the query helpers of proxy.core.url: how a catalogue URL
entry's path and query condition meet a URL (the lookup order is tests/test_catalog.py's;
the browser's side is the shared table, tests/data/url_decisions.json)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.url import path_rewritten, query_values, url_path, url_query
from proxy.core.url_entries import make_url_entry, make_url_gate, parse_path_condition


@pytest.mark.parametrize(
    ("url", "query"),
    [
        ("https://h/p?a=1&b=2", "a=1&b=2"),
        ("https://h/p?a=1#f?x", "a=1"),
        ("https://h/p#f?x=1", ""),
        ("https://h/p", ""),
        ("https://h?", ""),
        ("https://h?a=/b", "a=/b"),
        ("/rel?x=1", "x=1"),
        ("https://h/p?a=\t1\n", "a=1"),
    ],
)
def test_url_query(url: str, query: str) -> None:
    assert url_query(url) == query


@pytest.mark.parametrize(
    ("query", "name", "values"),
    [
        ("id=AW-1", "id", ["AW-1"]),
        ("x=1&id=AW-1&id=G-2", "id", ["AW-1", "G-2"]),
        ("id", "id", [""]),
        ("id=", "id", [""]),
        ("id=a=b", "id", ["a=b"]),
        ("&&id=1&&", "id", ["1"]),
        ("id=a+b%20c", "id", ["a b c"]),
        ("%69d=1", "id", ["1"]),
        ("i+d=1", "i d", ["1"]),
        ("ID=1", "id", []),
        ("id=%E2%82%AC", "id", ["\u20ac"]),
        ("id=%FF", "id", ["\ufffd"]),  # invalid UTF-8, as URLSearchParams decodes it
        ("id=%zz%4", "id", ["%zz%4"]),  # not an escape: kept
        ("id=caf\u00e9", "id", ["caf\u00e9"]),
        ("id=%C3%A9", "id", ["\u00e9"]),
    ],
)
def test_query_values(query: str, name: str, values: list[str]) -> None:
    assert query_values(query, name) == values


@given(st.text(alphabet="ab=&+%2DF", max_size=30), st.sampled_from(["a", "b", "ab", "a b", "-"]))
def test_query_values_agrees_with_form_decoding(query: str, name: str) -> None:
    # the standard library's form decoder, on ASCII input, decodes as URLSearchParams does
    expected = [v for k, v in parse_qsl(query, keep_blank_values=True, errors="replace") if k == name]
    assert query_values(query, name) == expected


@pytest.mark.parametrize(
    ("entry", "url", "matches"),
    [
        ("h.example/gtag/js?id=AW-*", "https://h.example/gtag/js?id=AW-1", True),
        ("h.example/gtag/js?id=AW-*", "https://h.example/gtag/js?id=G-1", False),
        ("h.example/gtag/js?id=AW-*", "https://h.example/gtag/js", False),
        ("h.example/gtag/js?id=*", "https://h.example/gtag/js?id", True),
        ("h.example/a?q=x*y", "https://h.example/a?q=x%0Ay", True),  # `*` crosses newlines
        ("h.example/a?q=x.y", "https://h.example/a?q=xzy", False),  # only `*` is special
        ("h.example/*/sdk.js", "https://h.example/en/sdk.js", True),
        ("h.example/*/sdk.js", "https://h.example//sdk.js", True),  # `*` may be empty
        ("h.example/*/sdk.js", "https://h.example/a/b/sdk.js", False),
        ("h.example/a*", "https://h.example/abc/d", True),
        ("h.example/a*", "https://h.example/b", False),
        ("h.example/a*/", "https://h.example/ab", False),
        ("h.example/?utm=*", "https://h.example/any/path?utm=1", True),
    ],
)
def test_entry_matches(entry: str, url: str, matches: bool) -> None:
    compiled = make_url_entry(entry)
    assert compiled.text == entry
    assert compiled.matches(url, url_path(url)) is matches


@pytest.mark.parametrize(
    "text",
    ["/a", "/a/", "/*/b", "/a?x=*", "/?x=1", "/a?x=", "/a?x=a=b", "/a?x= spaced ", "/%2e?x=%"],
)
def test_parse_path_condition_accepts(text: str) -> None:
    assert parse_path_condition(text) == text


@pytest.mark.parametrize(
    "text",
    ["", "/", "/a?", "/a?x", "/a?=1", "/a?x&y=1", "/a?x=1&y=2", "/a#b", "/a b", "/a\\b", "//a", "/a\u00e9", "/a<b>"],
)
def test_parse_path_condition_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_path_condition(text)


PATHS = ["/*/sdk.js", "/*/sdk/", "/a", "/a*", "/ab/", "/%2e/x", "/s.j"]


@given(
    st.sampled_from(["https://h.test", "//h.test", "HTTP://h.test:8", "https:h.test", "https://h.test?q"]),
    st.text(alphabet="/.%2eEa?#\\\tsdk.j*", max_size=16),
    st.lists(st.sampled_from(PATHS), min_size=1, max_size=4),
)
def test_url_gate_never_hides_a_matching_path(origin: str, rest: str, paths: list[str]) -> None:
    url = origin + rest
    gate = make_url_gate(paths)
    assert gate is not None
    path = url_path(url)
    if any(make_url_entry("h.test" + p).matches_path(path) for p in paths):
        assert gate.match(url) is not None or path_rewritten(url), (url, path)


def test_url_gate_lets_most_urls_of_the_host_skip_the_path() -> None:
    gate = make_url_gate(["/*/sdk.js", "/*/sdk/", "/gtag/js"])
    assert gate is not None
    for url in (
        "https://connect.facebook.net/en_US/fbevents.js",
        "https://h/signals/config/1?v=/x/sdk.js",
        "https://h/gtag/jsx",
    ):
        assert gate.match(url) is None, url
    for url in ("https://h/en/sdk.js", "https://h/gtag/js?id=1", "https://h/en/sdk.js/x"):
        assert gate.match(url) is not None, url
    for url in ("https://h/x/../en/sdk.js", "https://h/gtag\\js", "https://h/%2E%2e/gtag/js", "https://h/gtag/j\ts"):
        assert gate.match(url) is None and path_rewritten(url), url
    assert make_url_gate(["/", "/a"]) is None  # an entry for every path: no gate
