"""The gate for XML documents the browser renders (XHTML, SVG, `text/xml`): streaming,
over the XML parser the browser uses the rules of (expat; pure bytes in and out).

An XML document is not HTML: entities declared in its DTD expand into elements, a
`<textarea>` or `<title>` holds elements, prefixes name the XHTML namespace, and an HTML
tokenizer such as the HTML gate's reads all of that as something else. So XML documents
are relayed under the strict fail-safe Content-Security-Policy (the caller adds it),
which keeps every fetch on the site and its essential vendors, and this gate only
handles what a Content-Security-Policy does not cover, in the XHTML namespace:

- `<meta http-equiv="refresh">` to a refused host (a navigation) loses `http-equiv`;
- `<script type="speculationrules">` (prefetch and prerender of any host) becomes
  `type="text/plain"`;
- `<link rel=preconnect|dns-prefetch|prefetch|prerender|preload|modulepreload|...>`
  to a refused host loses `rel`.

An element that an entity expansion produced cannot be edited in place: the entity
reference is removed instead. After a well-formedness error the browser renders
nothing further, so the rest of the document is not sent either.

Contract: the input is UTF-8 (the caller transcodes); bytes leave unchanged except for
those edits, as soon as no pending edit can reach them (everything before the last `<`
seen); `feed`/`end` never raise.
"""

from __future__ import annotations

import functools
import re
import weakref
import xml.parsers.expat
from collections.abc import Callable
from typing import Final

from ..core.header_urls import parse_refresh
from ..core.link_header import srcset_candidate_urls

XHTML: Final = "http://www.w3.org/1999/xhtml"
HINT_RELS: Final = frozenset(
    {"preconnect", "dns-prefetch", "prefetch", "prerender", "preload", "modulepreload", "compression-dictionary"}
)
_ATTRIBUTE: Final = re.compile(rb"""(\s+)([^\s=/>]+)(\s*=\s*)("[^"]*"|'[^']*')""")
_REFERENCE: Final = re.compile(rb"&[^;\s<&]*;")

Keep = Callable[[str], bool]


class XmlGate:
    """One XML document's gate (see the module docstring). `keep(url)` is the policy's
    verdict for a URL found in the document; `on_edit(what)` is told of every edit."""

    def __init__(self, keep: Keep, on_edit: Callable[[str], None] = lambda what: None) -> None:
        self._keep = keep
        self._on_edit = on_edit
        self._parser = xml.parsers.expat.ParserCreate(encoding="UTF-8", namespace_separator=" ")
        # An undefined entity (an XHTML page's &nbsp;) is skipped, not an error: the
        # browser resolves the XHTML ones itself.
        self._parser.UseForeignDTD(True)
        self._parser.SkippedEntityHandler = lambda name, is_parameter: None
        # The parser reaches the gate through a weak proxy: with `self._start` the two
        # would form a cycle, kept (with the bytes held back) until the garbage collector
        # runs instead of going when the response does. `partial` adds no Python frame
        # per element, and `_start` reads the gate only at the rare elements it edits.
        self._parser.StartElementHandler = functools.partial(XmlGate._start, weakref.proxy(self))
        self._held = bytearray()
        self._base = 0
        """The document offset of `_held[0]`, less what the edits made so far added to
        the bytes (so the held bytes of document offset `o` are at `o - _base`)."""
        self._edits: list[tuple[int, str]] = []
        self._broken = False

    # ------------------------------------------------------------------ parsing

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        namespace, _, local = name.rpartition(" ")
        if namespace != XHTML:
            return
        what: str | None = None
        if local == "meta" and attrs.get("http-equiv", "").strip().lower() == "refresh":
            ok, urls = parse_refresh(attrs.get("content", ""))
            if not ok or not all(self._keep(u) for u in urls):
                what = "http-equiv"
        elif local == "script" and attrs.get("type", "").strip().lower() == "speculationrules":
            what = "type"
        elif local == "link" and HINT_RELS.intersection(attrs.get("rel", "").lower().split()):
            urls = [attrs.get("href", "")]
            urls += srcset_candidate_urls(attrs.get("imagesrcset", ""))
            if not all(self._keep(u.strip()) for u in urls if u.strip()):
                what = "rel"
        if what is not None:
            self._edits.append((self._parser.CurrentByteIndex, what))

    def _apply(self) -> None:
        """Make the recorded edits on the held bytes, last first (offsets stay valid).
        An edit changes the length of what is held, so `_base` moves by the difference:
        `offset - _base` keeps finding the bytes of the input offsets still to come."""
        before = len(self._held)
        for offset, attribute in sorted(self._edits, reverse=True):
            at = offset - self._base
            held = self._held
            if held[at : at + 1] == b"&":  # inside an entity's expansion: drop the reference
                m = _REFERENCE.match(held, at)
                end = m.end() if m else at + 1
                del held[at:end]
                self._on_edit("entity")
                continue
            tag_end = _tag_end(held, at)
            tag = bytes(held[at:tag_end])
            held[at:tag_end] = _rename(tag, attribute)
            self._on_edit(attribute)
        self._edits.clear()
        self._base -= len(self._held) - before

    def _release(self, final: bool) -> bytes:
        self._apply()
        held = self._held
        cut = len(held) if final else held.rfind(b"<")
        if cut <= 0:
            return b""
        out = bytes(held[:cut])
        del held[:cut]
        self._base += cut
        return out

    def _parse(self, data: bytes, final: bool) -> bytes:
        if self._broken:
            return b""
        start = self._base + len(self._held)
        self._held += data
        try:
            self._parser.Parse(data, final)
        except xml.parsers.expat.ExpatError:
            self._broken = True
            error_at = max(self._parser.ErrorByteIndex, start)
            # Cut at the start of the markup the error is in (no half tag is sent).
            keep = max(0, self._held.rfind(b"<", 0, error_at - self._base + 1))
            self._edits = [e for e in self._edits if e[0] < error_at]
            self._apply()
            del self._held[keep:]
            return self._release(True)
        return self._release(final)

    # ------------------------------------------------------------------ gate API

    def feed(self, data: bytes) -> bytes:
        return self._parse(data, False) if data else b""

    def end(self) -> bytes:
        return self._parse(b"", True)

    def feed_whole(self, document: bytes) -> bytes:
        return self._parse(document, True)


def _tag_end(held: bytearray, start: int) -> int:
    """Where the start tag beginning at `start` ends (after its `>`), quotes honoured."""
    quote = 0
    for i in range(start, len(held)):
        c = held[i]
        if quote:
            if c == quote:
                quote = 0
        elif c in (0x22, 0x27):
            quote = c
        elif c == 0x3E:
            return i + 1
    return len(held)


def _rename(tag: bytes, attribute: str) -> bytes:
    """The start tag with its (unprefixed) `attribute` renamed `data-tg-<attribute>`;
    a renamed `type` is replaced by `type="text/plain"` so the script stays inert."""
    target = attribute.encode()

    def swap(m: re.Match[bytes]) -> bytes:
        if m.group(2) != target:
            return m.group(0)
        renamed = m.group(1) + b"data-tg-" + target + m.group(3) + m.group(4)
        if attribute == "type":
            renamed += b' type="text/plain"'
        return renamed

    return _ATTRIBUTE.sub(swap, tag)
