"""What the browser takes a response to be: its MIME type, charset label and sniffing
(pure). Chromium is the reference (net/http/http_util.cc `ParseContentType`,
net/base/mime_util.cc `ParseMimeType`, net/base/mime_sniffer.cc), checked against it
in headless Chromium by tests/e2e/test_transport.py.

- `resolve_content_type`: every `Content-Type` line, split on commas outside quoted
  strings, parsed in order; the last valid type wins, and a charset stays with its type
  (`text/html; charset=x, text/html` keeps `x`). A value without `/` or exactly `*/*`
  is skipped. Parameters are read with quoted strings honoured, so a `charset=` inside
  another parameter's quotes is not the charset.
- `sniffs_as_page`: whether the browser looks at the body to decide (an unknown type
  and no `X-Content-Type-Options: nosniff`).
- `sniff`: what the first bytes make of such a body (`<!DOCTYPE html`, `<script`, ...
  after leading whitespace, within 512 bytes: HTML; `<?xml`: an XML document).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .memo import Memo
from .quoted import split_outside_quotes

_LWS: Final = " \t"
_WS_ASCII: Final = b" \t\n\x0b\x0c\r"

HTML: Final = "text/html"
XML_TYPES: Final = frozenset({"text/xml", "application/xml", "text/xsl"})
UNKNOWN_TYPES: Final = frozenset({"", "unknown/unknown", "application/unknown", "*/*"})

DOCUMENT_DESTINATIONS: Final = frozenset({"document", "iframe", "frame", "object", "embed", "fencedframe"})
"""`Sec-Fetch-Dest` values whose response the browser renders as a document."""


@dataclass(frozen=True, slots=True)
class ContentType:
    """The browser's reading of a response's `Content-Type` lines."""

    essence: str
    """`type/subtype`, lower-cased; "" when no line held a valid type."""
    charset: str | None
    """The charset parameter's value (lower-cased, trimmed), None when none applies."""
    values: int
    """How many comma-separated values the lines held (more than one: ambiguous to
    anything that reads only the first)."""

    @property
    def html(self) -> bool:
        return self.essence == HTML

    @property
    def xml(self) -> bool:
        """A type the browser renders with its XML parser (XHTML and SVG included)."""
        return self.essence in XML_TYPES or self.essence.endswith("+xml")

    @property
    def unknown(self) -> bool:
        """A type the browser replaces by sniffing the body (absent, `unknown/unknown`,
        `application/unknown`, or no `/`)."""
        return self.essence in UNKNOWN_TYPES or "/" not in self.essence

    def serialise(self) -> str | None:
        """One `Content-Type` value meaning the same to the browser (None: no type)."""
        if not self.essence:
            return None
        if self.charset is None:
            return self.essence
        charset = self.charset
        if not charset or not all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in charset):
            charset = '"' + charset.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{self.essence}; charset={charset}"


NO_CONTENT_TYPE: Final = ContentType("", None, 0)

_SIMPLE: Final = re.compile(
    r"[ \t]*([A-Za-z0-9!#$%&'*+.^_`|~-]+/[A-Za-z0-9!#$%&'*+.^_`|~-]+)[ \t]*(?:;[ \t]*charset=([A-Za-z0-9._:-]+)[ \t]*)?"
)
"""The common case, parsed the same by the full algorithm: `type/subtype[; charset=x]`."""


def split_values(lines: Sequence[str]) -> list[str]:
    """Header lines as a list of values: split on commas outside double-quoted strings
    (a backslash escapes the next character inside them), trimmed, empty ones dropped."""
    out: list[str] = []
    for line in lines:
        if "," not in line:
            value = line.strip(_LWS)
            if value:
                out.append(value)
            continue
        for part in split_outside_quotes(line, ",")[0]:
            value = part.strip(_LWS)
            if value:
                out.append(value)
    return out


def parse_mime_type(value: str) -> tuple[str, list[tuple[str, str]]] | None:
    """Chromium's `ParseMimeType`: (the type as written, parameters) or None when the
    value holds no `/` before its end. Parameter values may be quoted (backslash
    escapes inside); unquoted ones run to the next `;`; names keep their case."""
    n = len(value)
    start = 0
    while start < n and value[start] in _LWS:
        start += 1
    end = start
    while end < n and value[end] not in " \t;(":
        end += 1
    slash = value.find("/")
    if slash < 0 or slash > end:
        return None
    essence = value[start:end]
    params: list[tuple[str, str]] = []
    pos = value.find(";", end)
    while 0 <= pos < n:
        pos += 1
        while pos < n and value[pos] in _LWS:
            pos += 1
        name_start = pos
        while pos < n and value[pos] not in ";=":
            pos += 1
        if pos >= n or value[pos] == ";":
            continue
        name = value[name_start:pos]
        pos += 1
        while pos < n and value[pos] in _LWS:
            pos += 1
        if pos >= n or value[pos] == ";":
            continue
        if value[pos] != '"':
            semi = value.find(";", pos)
            stop = n if semi < 0 else semi
            params.append((name, value[pos:stop].rstrip(_LWS)))
            pos = stop
            continue
        pos += 1
        chars: list[str] = []
        while pos < n and value[pos] != '"':
            if value[pos] == "\\" and pos + 1 < n:
                pos += 1
            chars.append(value[pos])
            pos += 1
        params.append((name, "".join(chars)))
        semi = value.find(";", pos)
        pos = n if semi < 0 else semi
    return essence, params


_RESOLVED: Final[Memo[tuple[str, ...], ContentType]] = Memo(512, 64 << 10)
"""`resolve_content_type` per tuple of lines: a site sends the same few values on every
response, and the headers stage reads them on each (a dict lookup instead of a parse)."""


def resolve_content_type(lines: Sequence[str]) -> ContentType:
    """The MIME type and charset the browser takes from every `Content-Type` line
    (see the module docstring)."""
    key = tuple(lines)
    hit = _RESOLVED.table.get(key)
    if hit is not None:
        return hit
    return _RESOLVED.put(key, _resolve(key), sum(map(len, key)))


def _resolve(lines: Sequence[str]) -> ContentType:
    if len(lines) == 1:
        m = _SIMPLE.fullmatch(lines[0])
        if m is not None:
            label = m.group(2)
            return ContentType(m.group(1).lower(), label.lower() if label else None, 1)
    values = split_values(lines)
    essence = ""
    charset: str | None = None
    for value in values:
        parsed = parse_mime_type(value)
        if parsed is None or value == "*/*":
            continue
        this_type, params = parsed
        this_charset: str | None = None
        for name, param in params:
            if name.lower() == "charset":
                this_charset = param.strip(_LWS).lower()
                break
        same = this_type.lower() == essence
        if not same:
            essence = this_type.lower()
        if (not same and charset is not None) or this_charset is not None:
            charset = this_charset
    return ContentType(essence, charset, len(values))


def nosniff(lines: Sequence[str]) -> bool:
    """`X-Content-Type-Options` as Fetch reads it: its first value is `nosniff`."""
    values = split_values(lines)
    return bool(values) and values[0].lower() == "nosniff"


_HTML_MAGIC: Final = tuple(
    m.encode()
    for m in (
        "<!doctype html",
        "<script",
        "<html",
        "<!--",
        "<head",
        "<iframe",
        "<h1",
        "<div",
        "<font",
        "<table",
        "<a",
        "<style",
        "<title",
        "<b",
        "<body",
        "<br",
        "<p",
    )
)
SNIFF_HTML_BYTES: Final = 512
"""Chromium looks for an HTML tag within the first 512 bytes."""


def sniff(prefix: bytes, complete: bool) -> str | None:
    """What the browser makes of a body of unknown type from its first bytes (already
    content-decoded): "html", "xml" (`<?xml`), "other", or None when more bytes could
    still change the answer. A tag name is matched as a prefix (`<a` also matches
    `<abbr>`): wider than a browser that checks the next byte, never narrower."""
    window = prefix[:SNIFF_HTML_BYTES]
    trimmed = window.lstrip(_WS_ASCII)
    if trimmed.startswith(b"<?xml"):
        return "xml"
    lowered = trimmed[:16].lower()
    if lowered.startswith(_HTML_MAGIC):
        return "html"
    if len(window) < SNIFF_HTML_BYTES and not complete and any(m.startswith(lowered) for m in (b"<?xml", *_HTML_MAGIC)):
        return None
    return "other"
