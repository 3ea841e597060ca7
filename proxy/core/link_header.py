"""The `Link` response header (RFC 8288 §3) as Chromium reads it (pure).

A field value is a comma-separated list of link-values, `<URI-Reference>` followed by
`;`-separated parameters (`token [ "=" ( token / quoted-string ) ]`). Commas also occur
inside the `<...>` of a URI reference and inside quoted strings, so the list is split
the way Chromium's `link_header_util` splits it: `<` opens a reference that the first
`>` closes (no escapes inside), `"` opens a quoted string that an unescaped `"` closes
(backslash escapes the next character), and only a comma outside both ends a value.
Several `Link` lines are one list joined with ", " (RFC 9110 §5.3), which is how the
browser sees them: an unterminated `<` or `"` in one line runs into the next.

A value the browser would ignore (no `<...>`, a parameter name that is not a token, a
quoted string left open) parses as None here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from .quoted import split_outside_quotes

_LWS: Final = " \t"
_TCHAR_EXCLUDED: Final = frozenset("()<>@,;:\\\"/[]?={} \t*'%")
"""Characters a parameter name may not contain (RFC 9110 token, minus RFC 8187's `*'%`)."""


@dataclass(frozen=True, slots=True)
class LinkValue:
    """One parsed link-value: `text` is its source text (trimmed), `url` the reference
    between `<` and `>` (trimmed), `params` the parameters, names lower-cased, first
    occurrence only, None for a parameter without a value."""

    text: str
    url: str
    params: dict[str, str | None]

    def urls(self) -> list[str]:
        """Every URL the browser may fetch for this link: the reference, and the
        candidates of an `imagesrcset` parameter (a preload picks one of them)."""
        found = [self.url]
        srcset = self.params.get("imagesrcset")
        if srcset:
            found.extend(srcset_candidate_urls(srcset))
        return found


def split_link_values(field: str) -> list[tuple[str, bool]]:
    """The link-values of a field value, trimmed, empty ones left out; each with
    whether it ended outside any `<...>` or quoted string (False: it ran to the end
    of the field unterminated, swallowing whatever followed)."""
    values: list[tuple[str, bool]] = []
    start = 0
    i = 0
    n = len(field)
    while i <= n:
        closer = ""
        escape = False
        while i < n:
            c = field[i]
            if closer:
                if escape:
                    escape = False
                elif closer == '"' and c == "\\":
                    escape = True
                elif c == closer:
                    closer = ""
            elif c == ",":
                break
            elif c == '"' or c == "<":
                closer = ">" if c == "<" else '"'
            i += 1
        text = field[start:i].strip(_LWS)
        if text:
            values.append((text, not closer))
        i += 1
        start = i
    return values


def _split_params(text: str) -> list[str] | None:
    """`;`-separated parameters, honouring quoted strings; None if one is left open."""
    parts, left_open = split_outside_quotes(text, ";")
    return None if left_open else parts


def _unquote(value: str) -> str | None:
    """The content of a quoted-string (escapes resolved); None if it is not one cleanly."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return None
    out: list[str] = []
    escape = False
    for c in value[1:-1]:
        if escape:
            out.append(c)
            escape = False
        elif c == "\\":
            escape = True
        elif c == '"':
            return None
        else:
            out.append(c)
    return None if escape else "".join(out)


def parse_link_value(text: str) -> LinkValue | None:
    """One link-value (as `split_link_values` gives it), or None where the browser
    would ignore it."""
    if not text.startswith("<"):
        return None
    end = text.find(">")
    if end < 0:
        return None
    url = text[1:end].strip(_LWS)
    rest = text[end + 1 :].strip(_LWS)
    params: dict[str, str | None] = {}
    if rest:
        if rest[0] != ";":
            return None
        parts = _split_params(rest[1:])
        if parts is None:
            return None
        for part in parts:
            part = part.strip(_LWS)
            if not part:
                continue
            name, eq, value = part.partition("=")
            name = name.strip(_LWS)
            if not name or any(c in _TCHAR_EXCLUDED or not " " < c < "\x7f" for c in name):
                return None
            value = value.strip(_LWS)
            parsed: str | None
            if value.startswith('"'):
                parsed = _unquote(value)
                if parsed is None:
                    return None
            else:
                parsed = value if eq and value else None
            params.setdefault(name.lower(), parsed)
    return LinkValue(text, url, params)


def parse_link_field(values: Iterable[str]) -> list[tuple[str, LinkValue | None]]:
    """Every link-value of one or more `Link` lines (joined as the browser joins them),
    with its parse (None: malformed or unterminated)."""
    field = ", ".join(values)
    out: list[tuple[str, LinkValue | None]] = []
    for text, closed in split_link_values(field):
        out.append((text, parse_link_value(text) if closed else None))
    return out


_SRCSET_SPACE: Final = " \t\n\f\r"
_DESCRIPTOR_END: Final = re.compile(r"[,()]")


def srcset_candidate_urls(srcset: str) -> list[str]:
    """The URLs of a srcset value (HTML "parse a srcset attribute": a URL runs to the
    next whitespace, trailing commas are not part of it, descriptors run to the next
    comma outside parentheses)."""
    urls: list[str] = []
    i, n = 0, len(srcset)
    while i < n:
        while i < n and (srcset[i] in _SRCSET_SPACE or srcset[i] == ","):
            i += 1
        if i >= n:
            break
        start = i
        while i < n and srcset[i] not in _SRCSET_SPACE:
            i += 1
        url = srcset[start:i]
        if url.endswith(","):
            urls.append(url.rstrip(","))
            continue
        urls.append(url)
        depth = 0
        while i < n:
            c = srcset[i]
            if c == "(":
                depth += 1
            elif c == ")" and depth:
                depth -= 1
            elif c == "," and not depth:
                i += 1
                break
            i += 1
    return [u for u in urls if u]
