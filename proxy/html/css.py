"""The URLs a piece of CSS makes the browser fetch, and CSS with the refused ones taken out (pure).

Used for `<style>` elements, `style` attributes, SVG presentation attributes and `data:`
stylesheets. The scan follows CSS Syntax Level 3 as far as fetching goes: comments,
strings (any string may be a URL: `@import "..."`, `image-set("..." 1x)`, `src: "..."`)
and url tokens, with CSS escapes decoded (`u\\72l(`, `url(https\\3a //host)`). Every
url token and string is offered to `decide`; one it refuses is replaced by `none`, which
fetches nothing in any of those places (an `@import none` or `image-set(none 1x)` is
simply invalid). A string that is not a URL at all (`content: "x"`) is decided as a
relative URL, which never names a host.

`may_fetch` is the cheap test in front of it: CSS that fetches must hold a `(` (a url
or function token) or an `@import` with a string; text without `(`, `@` and `\\` can
fetch nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

__all__ = ["css_urls", "gate_css", "may_fetch"]

_ESCAPE: Final = r"\\(?:[0-9A-Fa-f]{1,6}(?:\r\n|[ \t\n\r\f])?|[\s\S])"
_DQ: Final = r"\"((?:[^\"\\\n\r\f]|\\[\s\S])*)"
_SQ: Final = r"'((?:[^'\\\n\r\f]|\\[\s\S])*)"
_WS: Final = r"[ \t\n\r\f]*"
_TOKENS: Final = re.compile(
    r"/\*[\s\S]*?(?:\*/|\Z)"  # a comment
    # a url function (its name may hold escapes: checked after decoding): group 1 its
    # name; groups 2, 3, 4 a double-quoted, single-quoted or bare URL
    rf"|(?<![A-Za-z0-9_\-\\\u0080-\U0010ffff])((?:[uU]|{_ESCAPE})(?:[rR]|{_ESCAPE})(?:[lL]|{_ESCAPE}))\({_WS}"
    rf"(?:{_DQ}\"|{_SQ}'|((?:[^\"'()\\ \t\n\r\f]|{_ESCAPE})*)){_WS}(?:\)|\Z)"
    # groups 5, 6: any other string (unterminated ones end at a newline, as in CSS)
    rf"|{_DQ}(?:\"|(?=[\n\r\f])|\Z)"
    rf"|{_SQ}(?:'|(?=[\n\r\f])|\Z)"
)
_UNESCAPE: Final = re.compile(r"\\(?:([0-9A-Fa-f]{1,6})(?:\r\n|[ \t\n\r\f])?|(\r\n|[\n\r\f])|([\s\S]))")


def _unescape_one(m: re.Match[str]) -> str:
    hex_digits, newline, char = m.groups()
    if hex_digits is not None:
        code = int(hex_digits, 16)
        return "\ufffd" if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF else chr(code)
    if newline is not None:
        return ""  # an escaped newline inside a string continues it
    return char


def unescape(text: str) -> str:
    """CSS escapes decoded (`\\3a ` is `:`, `\\/` is `/`)."""
    return _UNESCAPE.sub(_unescape_one, text) if "\\" in text else text


def may_fetch(text: str) -> bool:
    """Whether CSS text could fetch anything: without `(` (url and function tokens) or
    `@` (`@import "..."`) nothing in it is a URL the browser loads."""
    return "(" in text or "@" in text


def _value(m: re.Match[str]) -> str | None:
    """The URL of one token match (None: a comment, or a function named otherwise)."""
    name, url_dq, url_sq, url_bare, dq, sq = m.groups()
    if name is not None:
        if unescape(name).lower() != "url":
            return None
        value = url_dq if url_dq is not None else url_sq if url_sq is not None else url_bare
    else:
        value = dq if dq is not None else sq
    return None if value is None else unescape(value).strip(" \t\n\r\f")


def css_urls(text: str) -> list[str]:
    """Every url token and string of `text`, escapes decoded, in order."""
    return [v for v in map(_value, _TOKENS.finditer(text)) if v is not None]


def gate_css(text: str, refuses: Callable[[str], bool]) -> str | None:
    """`text` with every url token or string `refuses` is true for replaced by `none`;
    None when nothing was refused (the caller keeps the text as it was)."""
    if not may_fetch(text):
        return None
    changed = False

    def replace(m: re.Match[str]) -> str:
        nonlocal changed
        value = _value(m)
        if value is None or not refuses(value):
            return m.group(0)
        changed = True
        return "none"

    out = _TOKENS.sub(replace, text)
    return out if changed else None
