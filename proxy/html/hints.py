"""Connection hints in a page relayed fail-safe (issue 15, class 8).

A fail-safe page goes out under a strict Content-Security-Policy, but CSP does not cover
`<link rel=preconnect>` or `<link rel=dns-prefetch>` (whatwg/html#9035): Chromium opens
the connection, or resolves the host, whatever the policy says. `HintFilter` renames the
`rel` attributes of every `<link>` start tag whose effective `rel` holds either token,
so the element stays (a void `<link>`, the tree unchanged) and hints nothing.

It works on bytes without a parser (the page is fail-safe because the gate could not
follow it): every `<link` followed by a tag-name end is read as a tag from there, in any
context, and the search goes on from the next byte, so a real tag inside what looked
like another tag's attribute is still found. The only edits are `rel` → `data-tg-rel`
at the start of an attribute name, which never overlap; in text that was no tag they
change three letters of harmless text. ASCII-compatible charsets only (the caller's
concern); character references in the value are decoded as the browser decodes them.
"""

from __future__ import annotations

import re
from typing import Final

from .attributes import ascii_tokens, attribute_text
from .foreign import find_tag_end, tag_attributes

__all__ = ["HINT_RELS", "HintFilter"]

HINT_RELS: Final = frozenset({"preconnect", "dns-prefetch"})
"""`rel` tokens CSP does not govern."""

_LINK: Final = re.compile(rb"<link[\t\n\f\r />]", re.IGNORECASE)
_MAX_TAG: Final = 1 << 16
_RENAMED: Final = b"data-tg-rel"


def _hint_rel_offsets(tag: bytes) -> list[int]:
    """Offsets in `tag` (a whole `<link ...>` tag) of each `rel` attribute name, when the
    first `rel` (the one the browser keeps) names a hint; else none."""
    attrs = tag_attributes(tag)
    rels = [(offset, value) for name, value, offset in attrs if name == b"rel"]
    if not rels:
        return []
    tokens = ascii_tokens(attribute_text(rels[0][1].decode("utf-8", "replace")))
    if HINT_RELS.isdisjoint(tokens):
        return []
    return [offset for offset, _ in rels]


class HintFilter:
    """Streaming: `feed(data)` returns the bytes ready to send (an unfinished `<link` tag
    is held, up to 64 KiB), `end()` the rest. Output is the input with hint `rel`
    attributes renamed."""

    __slots__ = ("_held", "renamed")

    def __init__(self) -> None:
        self._held = b""
        self.renamed = 0
        """How many `rel` attributes were renamed."""

    def feed(self, data: bytes) -> bytes:
        buf = self._held + data if self._held else data
        self._held = b""
        edits: set[int] = set()
        tags: list[tuple[int, int]] = []
        ready = len(buf)
        for m in _LINK.finditer(buf):
            start = m.start()
            end = find_tag_end(buf, start)
            if end is None:
                if len(buf) - start <= _MAX_TAG:
                    # Hold from here, and from any earlier tag that reaches past here.
                    ready = min([start] + [s for s, e in tags if e > start])
                    break
                continue  # no tag after all, or one too long to be a hint worth holding
            tags.append((start, end))
        for start, end in tags:
            if start < ready:
                edits.update(start + offset for offset in _hint_rel_offsets(buf[start:end]))
        if ready == len(buf):
            tail = buf[-5:].lower()
            for n in range(min(5, len(buf)), 0, -1):  # a `<link` cut by the end of `data`
                if b"<link"[:n] == tail[-n:]:
                    ready = len(buf) - n
                    break
        self._held = buf[ready:]
        out = buf[:ready]
        if not edits:
            return out
        self.renamed += len(edits)
        pieces = []
        pos = 0
        for offset in sorted(edits):
            pieces.append(out[pos:offset])
            pieces.append(_RENAMED)
            pos = offset + 3
        pieces.append(out[pos:])
        return b"".join(pieces)

    def end(self) -> bytes:
        held, self._held = self._held, b""
        return held
