"""Splitting HTTP header text on a separator outside double-quoted strings (pure).

One scanner for every header that holds quoted strings: `Content-Type` lists, `Link`
parameters, `Report-To`/`Alt-Svc` members. Inside a quoted string a backslash escapes
the next character, as RFC 9110's quoted-pair says and as Chromium reads them."""

from __future__ import annotations

__all__ = ["split_outside_quotes"]


def split_outside_quotes(value: str, separator: str) -> tuple[list[str], bool]:
    """`value` split on `separator` where it stands outside double-quoted strings: the
    parts as written (untrimmed, empty ones kept), and whether a quoted string was still
    open at the end."""
    if '"' not in value:
        return value.split(separator), False
    parts: list[str] = []
    start = 0
    quoted = escape = False
    for i, c in enumerate(value):
        if quoted:
            if escape:
                escape = False
            elif c == "\\":
                escape = True
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == separator:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return parts, quoted
