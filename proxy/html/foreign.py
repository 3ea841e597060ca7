"""Foreign content (SVG, MathML): where lol-html and the browser may read different markup.

lol-html does not build a tree. It approximates the tree builder's feedback to the
tokenizer with a stack of namespaces (`tree_builder_simulator` in lol-html 2.7): `<svg>`
and `<math>` push one, a breakout start tag or `</svg>`/`</math>`/`</p>`/`</br>` pops
*one*, integration points push HTML. The browser's tree builder pops every foreign
element on a breakout, closes foreign elements with HTML end tags (`</div>`,
`</template>`), gives a `<svg>` inside MathML (or `<math>` inside SVG) the parent's
namespace, and treats `<mglyph>` in a MathML text integration point as MathML. Where the
two disagree, one of them reads a `<![CDATA[` section or a raw-text element (`<style>`,
`<textarea>`, `<script>`, ...) that the other reads as markup, and a real element hides
from the gate inside what lol-html takes for text.

`ForeignTracker` runs both models side by side over the input bytes of one foreign
region, from the `<svg>`/`<math>` start tag that opened it (the gate confirms through
lol-html that the tag is one) until both are back in HTML content. The lol-html model is
exact (it is a copy of the simulator); the browser model is exact for ordinary SVG and
MathML (balanced elements, integration points, breakouts, `</p>`), and where it cannot
follow the standard's rules (an end tag that would be handled by the HTML insertion
mode of an element outside the region, a table or form inside an integration point) it
becomes *unknown*. The only tokens whose reading depends on the namespace are a CDATA
section opening and a raw-text start tag ("consequential" tokens): at each, the two
models must agree, and an unknown browser model agrees with nothing. Disagreement raises
`ForeignContentError`; the gate then fails safe for the document.

Pure bytes in (the gate's transport form: ASCII stays ASCII, other bytes are UTF-8
sequences that never contain an ASCII delimiter); no lol-html import.
"""

from __future__ import annotations

import re
from typing import Final

from .attributes import attribute_text

__all__ = ["COMMENT_END", "TAG_NAME", "ForeignContentError", "ForeignTracker", "find_tag_end", "tag_attributes"]


class ForeignContentError(Exception):
    """lol-html and the browser may read the markup differently from here on."""


# (name, namespace, integration point) for the browser's open elements in the region.
# Namespace: "h" HTML, "s" SVG, "m" MathML. Integration point: 0 none, 1 MathML text
# integration point, 2 HTML integration point.
_Frame = tuple[bytes, str, int]

_RAW: Final = frozenset(b"textarea title plaintext script style iframe xmp noembed noframes noscript".split())
"""Start tags after which both parsers switch the tokenizer to a text state in HTML
content (RCDATA, RAWTEXT, script data, PLAINTEXT; scripting on) and neither does in
foreign content."""

_BREAKOUT: Final = frozenset(
    b"b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i img li "
    b"listing menu meta nobr ol p pre ruby s small span strong strike sub sup table tt u ul var".split()
)
_FONT_BREAKOUT: Final = frozenset((b"color", b"face", b"size"))
_TEXT_IP: Final = frozenset(b"mi mo mn ms mtext".split())
_SVG_IP: Final = frozenset((b"foreignobject", b"desc", b"title"))
_HTML_ENCODINGS: Final = frozenset((b"text/html", b"application/xhtml+xml"))

_VOID: Final = frozenset(
    b"area base basefont bgsound br col embed hr img image input keygen link meta param source track wbr".split()
)
_UNMODELLED: Final = frozenset(
    b"html head body frameset frame caption col colgroup tbody td tfoot th thead tr table select option "
    b"optgroup template form li dd dt a button nobr applet marquee object h1 h2 h3 h4 h5 h6 rb rp rt rtc "
    b"math svg".split()
    # math/svg are handled before this set is consulted; they are listed so that a
    # change of order cannot silently model them as plain containers.
)
"""Start tags inside an integration point whose "in body" rules depend on more of the
tree than the region holds (implied end tags, insertion modes, scope, an `<a>` or
`<nobr>` that closes an earlier one): the browser model becomes unknown. Other
formatting elements (`<b>`, `<em>`, ...) are plain containers here: the model pops
an element only on its own end tag (anything else is unknown), so none is left in the
list of active formatting elements to be reopened inside the region."""
_CLOSES_P: Final = frozenset(
    b"address article aside blockquote center details dialog dir div dl fieldset figcaption figure "
    b"footer header hgroup main menu nav ol p search section summary ul pre listing hr xmp".split()
)
_IMPLIED_END: Final = frozenset(b"p li dd dt option optgroup rb rp rt rtc".split())

_WS: Final = rb"[\t\n\f\r ]"
_VALUE: Final = rb"""(?:"[^"]*+"|'[^']*+'|[^\t\n\f\r >"'][^\t\n\f\r >]*+|(?=>))"""
_NAME: Final = rb"[^\t\n\f\r />][^\t\n\f\r /=>]*+"
_EQUALS: Final = rb"(?:" + _WS + rb"*+=" + _WS + rb"*+(%s)|(?!" + _WS + rb"*+=))"
_TAG: Final = re.compile(
    rb"<(/?)([A-Za-z][^\t\n\f\r />]*+)((?:[\t\n\f\r /]++|" + _NAME + _EQUALS % (b"?:" + _VALUE) + rb")*+)>"
)
"""A whole start or end tag as the tokenizer reads it: a quoted value may hold `>`, an
`=` after a name always starts a value (an unclosed quote means an unfinished tag);
possessive, so an unfinished tag fails fast instead of backtracking."""
_ATTR: Final = re.compile(rb"([\t\n\f\r /]++)|(" + _NAME + rb")" + _EQUALS % _VALUE)
COMMENT_END: Final = re.compile(rb"--!?>")
"""A comment's end as the tokenizer reads it (`-->` or `--!>`)."""
TAG_NAME: Final = re.compile(rb"[A-Za-z][^\t\n\f\r />]*+")
"""A tag's name after its `<` or `</`, as `_TAG` reads it."""
_LT: Final = ord("<")

_MAX_TOKEN: Final = 1 << 16
"""A tag, comment or CDATA section still unfinished after this many bytes inside a
region: give up following it (fail safe) rather than hold the page."""


def find_tag_end(data: bytes, start: int) -> int | None:
    """The offset just after the tag that starts at `data[start]` (`<` + a letter), or
    None when `data` ends before the tag does."""
    m = _TAG.match(data, start)
    return m.end() if m else None


def tag_attributes(tag: bytes) -> list[tuple[bytes, bytes, int]]:
    """Each attribute of a whole tag: name (ASCII-lowercased), raw value (quotes
    removed) and the name's offset in `tag`; every occurrence, duplicates included."""
    m = _TAG.match(tag)
    if m is None:
        return []
    out = []
    for a in _ATTR.finditer(tag, m.start(3), m.end(3)):
        name = a.group(2)
        if name is None:
            continue
        value = a.group(3) or b""
        if value[:1] in (b'"', b"'"):
            value = value[1:-1]
        out.append((name.lower(), value, a.start(2)))
    return out


def _pairs(raw: bytes) -> list[tuple[bytes, bytes]]:
    """Every (name, raw value) of a tag's attribute text, duplicates included."""
    out = []
    for m in _ATTR.finditer(raw):
        name = m.group(2)
        if name is not None:
            value = m.group(3) or b""
            out.append((name.lower(), value[1:-1] if value[:1] in (b'"', b"'") else value))
    return out


def _decoded(value: bytes) -> bytes:
    """An attribute value as the browser reads it (character references decoded)."""
    if b"&" not in value:
        return value
    text = attribute_text(value.decode("utf-8", "replace")) or ""
    return text.encode("utf-8", "replace")


def _attributes(raw: bytes) -> tuple[dict[bytes, bytes], bool]:
    """Attribute names (ASCII-lowercased) and values of a tag's attribute text, and
    whether the tag is self-closing (a `/` right before `>`, not inside a value)."""
    attrs: dict[bytes, bytes] = {}
    closing = False
    for m in _ATTR.finditer(raw):
        sep, name, value = m.group(1), m.group(2), m.group(3)
        if sep is not None:
            closing = sep.endswith(b"/")
            continue
        closing = False
        if value is not None and value[:1] in (b'"', b"'"):
            value = value[1:-1]
        attrs.setdefault(name.lower(), value or b"")
    return attrs, closing


_NO_ATTRS: Final[dict[bytes, bytes]] = {}


def _breaks_out(name: bytes, attrs: dict[bytes, bytes]) -> bool:
    return name in _BREAKOUT or (name == b"font" and not _FONT_BREAKOUT.isdisjoint(attrs))


class ForeignTracker:
    """Both parsers' view of one document's foreign content, fed the input in order.

    The gate calls `start` when lol-html has read a `<svg>` or `<math>` start tag that
    opens a region, then `feed` with every later input piece until `feed` says where
    the region ended. `feed` raises `ForeignContentError` at the first token the two
    parsers may read differently."""

    __slots__ = ("active", "_lol", "_frames", "_unknown", "_buf", "_text_end", "_cdata")

    def __init__(self) -> None:
        self.active = False
        self._lol: list[str] = ["h"]
        self._frames: list[_Frame] = []
        self._unknown = False
        self._buf = b""
        self._text_end: re.Pattern[bytes] | None = None  # inside a raw-text element
        self._cdata = False  # inside a CDATA section both parsers read

    def start(self, tag: bytes) -> None:
        """lol-html has just read `tag` (a whole `<svg ...>` or `<math ...>` start tag) in
        HTML content: a region begins after it."""
        self.active = True
        self._lol = ["h"]
        self._frames = []
        self._unknown = False
        self._buf = b""
        self._text_end = None
        self._cdata = False
        m = _TAG.match(tag)
        if m is None or m.group(1):  # pragma: no cover - the gate passes a whole start tag
            raise ForeignContentError("a foreign region opened by something other than a start tag")
        self._start_tag(m.group(2).lower(), m.group(3))
        self._check_end()

    def feed(self, data: bytes) -> int | None:
        """Follow the region through `data`, the input right after what came before.
        Returns the offset in `data` just after the token that ended the region, or None
        when the region goes on past `data` (an unfinished token is kept for the next
        call)."""
        held = len(self._buf)
        buf = self._buf + data if held else data
        pos = 0
        size = len(buf)
        while self.active:
            if self._text_end is not None:
                pos = self._raw_text(buf, pos)
                if pos < 0:
                    return None
                continue
            if self._cdata:
                end = buf.find(b"]]>", pos)
                if end < 0:
                    self._keep(buf, max(pos, size - 2))
                    return None
                self._cdata = False
                pos = end + 3
                continue
            lt = buf.find(b"<", pos)
            if lt < 0 or lt + 1 >= size:
                self._keep(buf, size if lt < 0 else lt)
                return None
            nxt = buf[lt + 1]
            if nxt == 0x21:  # "!"
                pos = self._markup_declaration(buf, lt)
            elif nxt == 0x2F or (0x41 <= nxt <= 0x5A) or (0x61 <= nxt <= 0x7A):  # "/" or a letter
                pos = self._tag(buf, lt)
            elif nxt == 0x3F:  # "?": a bogus comment
                pos = self._to(buf, lt, b">")
            else:
                pos = lt + 1
                continue
            if pos < 0:
                return None
            self._check_end()
        self._buf = b""
        return pos - held

    # ------------------------------------------------------------ tokens

    def _keep(self, buf: bytes, pos: int) -> None:
        rest = buf[pos:]
        if len(rest) > _MAX_TOKEN:
            raise ForeignContentError("an unfinished token longer than 64 KiB inside foreign content")
        self._buf = rest

    def _to(self, buf: bytes, start: int, end: bytes) -> int:
        """The offset after the first `end` from `start`, or -1 (kept for later)."""
        found = buf.find(end, start + 2)
        if found < 0:
            self._keep(buf, start)
            return -1
        return found + len(end)

    def _markup_declaration(self, buf: bytes, lt: int) -> int:
        head = buf[lt : lt + 9]
        if (
            not head.startswith(b"<!--")
            and len(head) < 9
            and (b"<!--".startswith(head) or b"<![CDATA[".startswith(head))
        ):
            self._keep(buf, lt)  # too short to tell yet
            return -1
        if head.startswith(b"<!--"):
            if buf[lt + 4 : lt + 5] == b">":
                return lt + 5
            if buf[lt + 4 : lt + 6] == b"->":
                return lt + 6
            if len(buf) < lt + 6:
                self._keep(buf, lt)
                return -1
            m = COMMENT_END.search(buf, lt + 4)
            if m is None:
                self._keep(buf, lt)
                return -1
            return m.end()
        if head == b"<![CDATA[":
            foreign = self._lol[-1] != "h"
            if self._unknown or foreign != self._browser_foreign():
                raise ForeignContentError("a CDATA section where lol-html and the browser disagree on the namespace")
            if foreign:
                self._cdata = True
                return lt + 9
        return self._to(buf, lt, b">")  # a bogus comment or a doctype

    def _tag(self, buf: bytes, lt: int) -> int:
        if buf[lt + 1] == 0x2F:  # "/"
            if lt + 2 >= len(buf):
                self._keep(buf, lt)
                return -1
            c = buf[lt + 2]
            if c == 0x3E:  # "</>": nothing
                return lt + 3
            if not ((0x41 <= c <= 0x5A) or (0x61 <= c <= 0x7A)):
                return self._to(buf, lt, b">")
        m = _TAG.match(buf, lt)
        if m is None:
            self._keep(buf, lt)
            return -1
        name = m.group(2).lower()
        if m.group(1):
            self._end_tag(name)
        else:
            self._start_tag(name, m.group(3))
        return m.end()

    def _raw_text(self, buf: bytes, pos: int) -> int:
        """Skip the text of a raw-text element both parsers read as text, up to and
        including its end tag; -1 when `buf` ends first."""
        pattern = self._text_end
        assert pattern is not None
        script = pattern.pattern.startswith(rb"</script")
        m = pattern.search(buf, pos)
        tag = _TAG.match(buf, m.start()) if m is not None else None
        if script and b"<!--" in buf[pos : m.start() if m is not None else len(buf)]:
            # Script data escapes can move the end of a script; nobody writes them in SVG.
            raise ForeignContentError("an escaped script inside foreign content")
        if tag is None:
            self._keep(buf, m.start() if m is not None else max(pos, len(buf) - 12))
            return -1
        self._text_end = None
        # The browser pops the raw-text element it pushed (the model never pushed it);
        # lol-html's simulator sees one more end tag (`</title>` even leaves an SVG
        # integration point there).
        self._lol_end(tag.group(2).lower())
        return tag.end()

    # ------------------------------------------------------------ the two models

    def _browser_foreign(self) -> bool:
        frames = self._frames
        return bool(frames) and frames[-1][1] != "h"

    def _check_end(self) -> None:
        if len(self._lol) == 1 and not self._frames and not self._unknown and self._text_end is None:
            self.active = False

    def _start_tag(self, name: bytes, raw_attrs: bytes) -> None:
        # Attributes matter for two names only; self-closing needs a parse only when the
        # tag ends in "/" (which an unquoted value may hold): most tags need neither.
        closing = raw_attrs.endswith(b"/") and _attributes(raw_attrs)[1]
        attrs = _attributes(raw_attrs)[0] if name == b"font" or name == b"annotation-xml" else _NO_ATTRS
        lol_raw = self._lol_start(name, attrs, closing, raw_attrs)
        browser_raw = self._browser_start(name, attrs, closing)
        if lol_raw or browser_raw:
            if self._unknown or lol_raw != browser_raw:
                raise ForeignContentError(
                    f"<{name.decode('latin-1')}> where lol-html and the browser disagree on the namespace"
                )
            if name == b"plaintext":
                # Everything after it is text to both: nothing left to disagree on.
                self._lol = ["h"]
                self._frames = []
                return
            self._text_end = re.compile(rb"</" + re.escape(name) + rb"[\t\n\f\r />]", re.IGNORECASE)

    def _lol_start(self, name: bytes, attrs: dict[bytes, bytes], closing: bool, raw_attrs: bytes) -> bool:
        """lol-html's simulator on a start tag; whether it switches to a text state."""
        lol = self._lol
        if name == b"svg":
            lol.append("s")  # even when self-closing
            return False
        if name == b"math":
            lol.append("m")
            return False
        current = lol[-1]
        if current == "h":
            return name in _RAW
        if _breaks_out(name, attrs):
            lol.pop()
        elif (current == "s" and name in _SVG_IP) or (current == "m" and name in _TEXT_IP):
            if not closing:
                lol.append("h")
        elif (
            current == "m"
            and name == b"annotation-xml"
            and not closing
            # lol-html takes any `encoding` attribute, undecoded; the browser the first, decoded.
            and any(v.lower() in _HTML_ENCODINGS for n, v in _pairs(raw_attrs) if n == b"encoding")
        ):
            lol.append("h")
        return False

    def _browser_start(self, name: bytes, attrs: dict[bytes, bytes], closing: bool) -> bool:
        """The browser's tree builder on a start tag; whether it switches to a text state."""
        if self._unknown:
            return name in _RAW
        frames = self._frames
        top = frames[-1] if frames else None
        html_rules = (
            top is None
            or top[1] == "h"
            or top[2] == 2
            or (top[2] == 1 and name not in (b"mglyph", b"malignmark"))
            or (top[0] == b"annotation-xml" and top[1] == "m" and name == b"svg")
        )
        if not html_rules:
            if not _breaks_out(name, attrs):
                assert top is not None
                ns = top[1]
                if not closing:
                    frames.append((name, ns, _integration_point(name, ns, attrs)))
                return False
            while frames and not (frames[-1][1] == "h" or frames[-1][2]):
                frames.pop()
            top = frames[-1] if frames else None
        if name == b"svg" or name == b"math":
            if not closing:
                ns = "s" if name == b"svg" else "m"
                frames.append((name, ns, 0))
            return False
        if name in _RAW:
            return True
        if top is None:
            return False  # HTML content outside the region: nothing foreign changes
        if name in _UNMODELLED:
            self._unknown = True
            return False
        if name in _CLOSES_P:
            self._close_p()
        if name not in _VOID:
            frames.append((name, "h", 0))
        return False

    def _close_p(self) -> None:
        frames = self._frames
        for i in range(len(frames) - 1, -1, -1):
            frame = frames[i]
            if frame[1] != "h":
                return
            if frame[0] == b"p":
                if all(f[0] in _IMPLIED_END for f in frames[i + 1 :]):
                    del frames[i:]
                else:
                    self._unknown = True
                return

    def _end_tag(self, name: bytes) -> None:
        self._lol_end(name)
        if not self._unknown:
            self._browser_end(name)

    def _lol_end(self, name: bytes) -> None:
        lol = self._lol
        current = lol[-1]
        if current == "h":
            if len(lol) < 2:
                return
            previous = lol[-2]
            if (previous == "m" and (name in _TEXT_IP or name == b"annotation-xml")) or (
                previous == "s" and name in _SVG_IP
            ):
                lol.pop()
        elif (current == "s" and name == b"svg") or (current == "m" and name == b"math") or name in (b"p", b"br"):
            lol.pop()

    def _browser_end(self, name: bytes) -> None:
        frames = self._frames
        if not frames:
            return  # HTML content outside the region
        if frames[-1][1] == "h":
            self._html_end(name)
            return
        if name == b"p" or name == b"br":
            while frames and not (frames[-1][1] == "h" or frames[-1][2]):
                frames.pop()
            if frames and frames[-1][1] == "h":
                self._html_end(name)
            return
        for i in range(len(frames) - 1, -1, -1):
            frame = frames[i]
            if i < len(frames) - 1 and frame[1] == "h":
                # The HTML insertion mode takes the end tag (it may close the region's
                # elements from outside): more tree than the model holds.
                self._unknown = True
                return
            if frame[0] == name:
                del frames[i:]
                return
        # Past the region's first element: an element outside it may take the end tag.
        self._unknown = True

    def _html_end(self, name: bytes) -> None:
        """An end tag the HTML insertion mode takes while an HTML element of the region
        (inside an integration point) is the current node."""
        frames = self._frames
        if name == b"br":
            return
        for i in range(len(frames) - 1, -1, -1):
            frame = frames[i]
            if frame[1] != "h":
                break
            if frame[0] == name:
                if all(f[0] in _IMPLIED_END for f in frames[i + 1 :]):
                    del frames[i:]
                    return
                break
        if name == b"p" and not any(f[0] == b"p" for f in frames if f[1] == "h"):
            return  # an empty <p> is inserted and closed
        self._unknown = True


def _integration_point(name: bytes, ns: str, attrs: dict[bytes, bytes]) -> int:
    if ns == "s":
        return 2 if name in _SVG_IP else 0
    if name in _TEXT_IP:
        return 1
    encoding = attrs.get(b"encoding")
    if name == b"annotation-xml" and encoding is not None and _decoded(encoding).lower() in _HTML_ENCODINGS:
        return 2
    return 0
