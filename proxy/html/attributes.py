"""Reading attribute values as the browser reads them (pure string functions, no lol-html).

lol-html hands over attribute values as raw source text; the browser decodes character
references first (`attribute_text`). The rest answers the gate's questions about a
value without parsing a URL where that can be avoided: the URLs of a `srcset`, whether
a URL certainly stays on the page's host (`plainly_relative`, the common case settled
in a few string tests), whether a document may carry a `ping` attribute at all, the
`url(...)` references in a style, and an iframe's size for its placeholder.
"""

from __future__ import annotations

import html
import html.entities
import re
from typing import Final

__all__ = [
    "CSS_URL",
    "LINK_RELS",
    "ascii_tokens",
    "attribute_text",
    "dimension",
    "may_carry_ping",
    "may_name_a_host",
    "plainly_relative",
    "srcset_urls",
]

LINK_RELS: Final = frozenset(
    {
        "preconnect",
        "dns-prefetch",
        "preload",
        "prefetch",
        "modulepreload",
        "stylesheet",
        "prerender",
        "icon",
        "apple-touch-icon",
        "apple-touch-icon-precomposed",
        "mask-icon",
        "manifest",
        "compression-dictionary",
        "dictionary",
        "alternate",
        "next",
        "subresource",
        "serviceworker",
        "import",
        "payment",
        "facilitated-payment",
        "fluid-icon",
        "apple-touch-startup-image",
        "shortcut",
        "expect",
        "pingback",
        "search",
    }
)
"""`<link rel>` tokens that make the browser contact the URL (or might: `alternate`
stylesheets are fetched, `compression-dictionary` and its trial name `dictionary`
download a dictionary, and the rest are cheap to cover)."""

CSS_URL: Final = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)\s]*))\s*\)""", re.IGNORECASE)
"""A CSS `url(...)`: group 1, 2 or 3 holds the URL (double-quoted, single-quoted, bare)."""


_PING_NAME: Final = re.compile(rb"ping[\t\n\f\r ]*=")
_BEFORE_ATTRIBUTE_NAME: Final = frozenset(b"\t\n\f\r \"'/")


def may_carry_ping(document: bytes, lowered: bytes | None = None) -> bool:
    """Whether some element of `document` may have a `ping` attribute with a value: the
    bytes `ping` in any case, after whitespace, `/` or a closing quote (whatever ends the
    token before an attribute name), then `=`. Conservative: `"ping=` inside text counts
    too; `mapping = {...}` in a script does not. lol-html reads the same bytes (in the
    Latin-1 transport ASCII letters are unchanged), and attribute names have no
    character references, so a `ping` the parser sees is never missed. `lowered`:
    `document.lower()` when the caller has it already."""
    if lowered is None:
        lowered = document.lower()
    # A `bytes.find` walk: a regex search that fails scans a page several times slower.
    start = lowered.find(b"ping")
    while start >= 0:
        if (start == 0 or lowered[start - 1] in _BEFORE_ATTRIBUTE_NAME) and _PING_NAME.match(lowered, start):
            return True
        start = lowered.find(b"ping", start + 1)
    return False


_CHAR_REF: Final = re.compile(r"&(?:#[xX][0-9a-fA-F]+;?|#[0-9]+;?|[A-Za-z][A-Za-z0-9]*;?)")


def _decode_ref(m: re.Match[str]) -> str:
    ref = m.group()
    if ref[1] == "#":
        return html.unescape(ref)
    name = ref[1:]
    if not name.endswith(";") and m.string.startswith("=", m.end()):
        return ref  # a legacy reference before "=" stays as written in an attribute
    return html.entities.html5.get(name, ref)


def attribute_text(raw: str | None) -> str | None:
    """An attribute value as the browser reads it: lol-html hands over the raw source
    text, the browser decodes character references first (`https:&#x2F;&#x2F;host`
    and `&#47;&#47;host` load from `host`). In an attribute, a reference without `;`
    followed by `=` or an alphanumeric stays as written, as in the HTML tokenizer."""
    if raw is None or "&" not in raw:
        return raw
    return _CHAR_REF.sub(_decode_ref, raw)


_ASCII_WS_RUN: Final = re.compile(r"[\t\n\f\r ]+")


def ascii_tokens(value: str | None) -> frozenset[str]:
    """The tokens of a set-of-space-separated-tokens attribute (`rel`, `sandbox`), split
    at ASCII whitespace only, as HTML does (a no-break space is part of a token), and
    lower-cased (their keywords are ASCII case-insensitive)."""
    if not value:
        return frozenset()
    return frozenset(t for t in _ASCII_WS_RUN.split(value.lower()) if t)


def srcset_urls(value: str) -> list[str]:
    """The URLs of a srcset attribute (WHATWG "parse a srcset attribute", URLs only)."""
    urls: list[str] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and (value[i] in " \t\n\r\f,"):
            i += 1
        start = i
        while i < n and value[i] not in " \t\n\r\f":
            i += 1
        url = value[start:i]
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            depth = 0
            while i < n and (depth or value[i] != ","):
                depth += value[i] == "("
                depth -= value[i] == ")" and depth > 0
                i += 1
        if url:
            urls.append(url)
    return urls


_C0_OR_SPACE: Final = "".join(map(chr, range(0x21)))


def plainly_relative(url: str) -> bool:
    """True for URLs that certainly stay on the page's host: no scheme, no network-path
    `//` (browsers also read `\\` and drop tabs and newlines, so those go the slow way)."""
    first = url[:1]
    if first == "/":
        # `/path` (not `//`, `/\`, or a tab or newline the URL parser would drop) never
        # leaves the page's host, whatever follows: the common case, settled at once.
        if url[1:2] not in _NOT_A_PATH_START:
            return True
    elif first <= " ":
        url = url.lstrip(_C0_OR_SPACE)  # the URL parser strips these first
    return not may_name_a_host(url[:24])


_NOT_A_PATH_START: Final = "/\\\t\n\r"
"""After a leading `/`, what may turn a URL into a network-path one (`"" in` is true too:
a bare `/` goes the slow way)."""


def may_name_a_host(text: str) -> bool:
    """Whether a URL (or any srcset candidate) could name a host: `//`, a scheme's `:`,
    or a backslash, tab or newline the URL parser reads as or drops before one. Six `in`
    tests on a short string cost half of one set-disjointness walk. Conservative."""
    return "//" in text or ":" in text or "\\" in text or "\t" in text or "\n" in text or "\r" in text


def dimension(value: str | None, default: str) -> str:
    """A `width`/`height` attribute as a CSS length: digits in pixels, a percentage as
    it is, anything else `default`."""
    if value is None:
        return default
    value = value.strip()
    if value.isdigit():
        return f"{value}px"
    if value.endswith("%") and value[:-1].isdigit():
        return value
    return default
