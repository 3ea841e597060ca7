"""Which encoding the browser decodes a page with, from its first bytes (pure).

`resolve_charset` follows Chromium's `TextResourceDecoder` for HTML and XML documents:

1. a byte order mark (UTF-8, UTF-16BE, UTF-16LE) wins over everything;
2. then a `charset` in the `Content-Type` header, when it is a known label;
3. then (HTML and XML) an XML declaration at the very start: `<?xml ... encoding="x"`
   (UTF-16 there means UTF-8), or the bytes `<\\0?\\0x\\0` / `\\0<\\0?\\0x`, which are
   UTF-16LE / UTF-16BE without a mark;
4. then (HTML) a `<meta charset>` or `<meta http-equiv=content-type content=...>` found
   by Chromium's prescan: it tokenises the page (skipping comments and the text of
   script, style, title, textarea, ...) and keeps looking while it is still in the
   head, and for at least 1024 bytes (UTF-16 there means UTF-8, `x-user-defined`
   means windows-1252);
5. else the default (the browser's locale default, or its guess: `html.default_charset`
   stands for both, and the page is then told which one it is).

The answer says where it came from (`Charset.source`): a browser does not reconsider
a BOM or a valid header charset, but it may reconsider the rest (a `<meta>` further
down, its own detector), so the caller declares those in the header.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Final

from .encoding_labels import closest_byte_based, encoding_for_label

UNCONDITIONAL: Final = 1024
"""Bytes the prescan reads even after the head has ended (Chromium)."""

_WINDOW: Final = 2048
"""The prescan's first look (at least `UNCONDITIONAL`: past it, a window that ends
after the head has ended answers as the whole prefix would)."""

_XML_STARTS: Final = (b"<?xml", b"<\x00?\x00x\x00", b"\x00<\x00?\x00x")
_BOMS: Final = ((b"\xef\xbb\xbf", "UTF-8"), (b"\xfe\xff", "UTF-16BE"), (b"\xff\xfe", "UTF-16LE"))


@dataclass(frozen=True, slots=True)
class Charset:
    """The encoding the browser decodes a document with."""

    encoding: str
    """The Encoding Standard's name."""
    source: str
    """"bom", "header", "xml", "meta" or "default"."""
    bom: int = 0
    """Length of the byte order mark the body starts with (0: none)."""

    @property
    def settled(self) -> bool:
        """Whether the browser keeps this encoding whatever follows (a BOM or a valid
        header charset); otherwise the response must declare it to be sure."""
        return self.source in ("bom", "header")


MORE: Final = "more"
"""Returned by the sniffers below when too few bytes have arrived to tell."""


def sniff_bom(prefix: bytes, complete: bool) -> tuple[str, int] | str | None:
    """(encoding, length) for a byte order mark, None when there is none, `MORE`."""
    for mark, encoding in _BOMS:
        if prefix.startswith(mark):
            return encoding, len(mark)
    if len(prefix) < 3 and not complete and any(mark.startswith(prefix) for mark, _ in _BOMS):
        return MORE
    return None


def xml_declaration(prefix: bytes, complete: bool) -> tuple[str, str] | str | None:
    """Chromium's `CheckForXMLCharset`: ("xml", encoding) for `<?xml ... encoding=...?>`
    with a known label, ("autodetected", UTF-16LE/BE) for the UTF-16 spelling of `<?x`,
    None when neither applies, `MORE`."""
    if len(prefix) < 8 and not complete and any(p.startswith(prefix[: len(p)]) for p in _XML_STARTS):
        return MORE
    if prefix.startswith(b"<?xml"):
        end = prefix.find(b">")
        if end < 0:
            return None if complete else MORE
        declaration = prefix[:end]
        pos = declaration.find(b"encoding")
        if pos < 0:
            return None
        m = re.match(rb"[\x00- ]*=[\x00- ]*(['\"])", declaration[pos + 8 :])
        if m is None:
            return None
        start = pos + 8 + m.end()
        close = declaration.find(m.group(1), start)
        if close < 0:
            return None
        encoding = encoding_for_label(declaration[start:close].decode("latin-1"))
        return ("xml", closest_byte_based(encoding)) if encoding else None
    if prefix.startswith(b"<\x00?\x00x\x00"):
        return "autodetected", "UTF-16LE"
    if prefix.startswith(b"\x00<\x00?\x00x"):
        return "autodetected", "UTF-16BE"
    return None


# --------------------------------------------------------------------------- prescan

_HEAD_TAGS: Final = frozenset({"script", "noscript", "style", "link", "meta", "object", "title", "base"})
_RAWTEXT: Final = frozenset({"style", "xmp", "iframe", "noembed", "noframes", "script", "title", "textarea"})
_KNOWN: Final = frozenset(
    "a abbr address area article aside audio b base bdi bdo blockquote body br button canvas caption cite code "
    "col colgroup data datalist dd del details dfn dialog div dl dt em embed fieldset figcaption figure footer "
    "form h1 h2 h3 h4 h5 h6 head header hgroup hr html i iframe img input ins kbd label legend li link main map "
    "mark menu meta meter nav noembed noframes noscript object ol optgroup option output p param picture "
    "plaintext pre progress q rp rt ruby s samp script search section select slot small source span strong "
    "style sub summary sup table tbody td template textarea tfoot th thead time title tr track u ul var video "
    "wbr xmp image frame frameset center font big tt strike marquee nobr".split()
)
"""Tag names Chromium's prescan recognises (an unknown tag ends the head but changes no
tokeniser state)."""

_MARKUP: Final = re.compile(r"<(?:(!--)|(/?)([A-Za-z][^\t\n\f\r />]*)|([!?/]))")
_COMMENT_END: Final = re.compile(r"-->|--!>")
_ATTRIBUTE: Final = re.compile(
    r"[\t\n\f\r /]*([^\t\n\f\r />][^\t\n\f\r /=>]*)"
    r"(?:[\t\n\f\r ]*=[\t\n\f\r ]*(?:\"([^\"]*)\"?|'([^']*)'?|([^\t\n\f\r >]*)))?"
)
_TAG_END: Final = re.compile(r"[\t\n\f\r /]*>")
_CHARSET_IN_CONTENT: Final = re.compile(r"charset", re.IGNORECASE)


def _extract_charset(content: str) -> str:
    """Chromium's `ExtractCharset` for `<meta http-equiv=content-type content=...>`."""
    pos = 0
    n = len(content)
    while True:
        m = _CHARSET_IN_CONTENT.search(content, pos)
        if m is None:
            return ""
        pos = m.end()
        while pos < n and content[pos] <= " ":
            pos += 1
        if pos >= n or content[pos] != "=":
            continue
        pos += 1
        while pos < n and content[pos] <= " ":
            pos += 1
        quote = content[pos] if pos < n and content[pos] in "\"'" else ""
        if quote:
            pos += 1
        if pos >= n:
            return ""
        end = pos
        if quote:
            end = content.find(quote, pos)
            if end < 0:
                return ""
        else:
            while end < n and content[end] > " " and content[end] not in "\"';":
                end += 1
        return content[pos:end]


def meta_encoding(attributes: list[tuple[str, str]]) -> str | None:
    """Chromium's `EncodingFromMetaAttributes`, then what a meta declaration becomes."""
    pragma = has_charset = False
    mode = ""
    charset = ""
    for name, value in attributes:
        if name == "http-equiv":
            pragma = pragma or value.lower() == "content-type"
        elif name == "charset":
            has_charset = True
            charset = value
            mode = "charset"
        elif not has_charset and name == "content":
            charset = _extract_charset(value)
            if charset:
                mode = "pragma"
    if not (mode == "charset" or (mode == "pragma" and pragma)):
        return None
    encoding = encoding_for_label(charset)
    if encoding is None:
        return None
    return "windows-1252" if encoding == "x-user-defined" else closest_byte_based(encoding)


def _attributes(text: str, pos: int) -> tuple[list[tuple[str, str]], int] | None:
    """A tag's attributes from `pos` to its `>`; None when the tag is not complete."""
    attributes: list[tuple[str, str]] = []
    n = len(text)
    while True:
        end = _TAG_END.match(text, pos)
        if end is not None:
            return attributes, end.end()
        m = _ATTRIBUTE.match(text, pos)
        if m is None or m.end() == pos or m.end() >= n:
            return None
        name = m.group(1).lower()
        value = next((v for v in m.group(2, 3, 4) if v is not None), "")
        attributes.append((name, html.unescape(value) if "&" in value else value))
        pos = m.end()


_QUICK: Final = re.compile(
    rb"(?:[\t\n\f\r ]|<!doctype[^<>]*>|<html[^<>]*>|<head[^<>]*>)*"
    rb"<meta[\t\n\f\r ]+charset[\t\n\f\r ]*=[\t\n\f\r ]*([\"']?)([A-Za-z0-9_.:-]+)\1[\t\n\f\r /]*>",
    re.IGNORECASE,
)
"""The common start, `<!doctype html><html ...><head><meta charset="x">`, in one step:
what the full prescan below finds for it (no `<` or `>` inside the tags before it)."""


def prescan_meta(prefix: bytes, complete: bool) -> str | None:
    """Chromium's meta prescan over the bytes so far: the encoding a `<meta>` declares,
    None when the prescan is over without one, `MORE`."""
    quick = _QUICK.match(prefix, 0, UNCONDITIONAL)
    if quick is not None:
        found = meta_encoding([("charset", quick.group(2).decode("ascii"))])
        if found is not None:
            return found
    text = prefix.decode("latin-1")
    n = len(text)
    in_head = True
    pos = 0
    while True:
        if not in_head and pos >= UNCONDITIONAL:
            return None
        m = _MARKUP.search(text, pos)
        if m is None:
            return None if complete or (not in_head and n >= UNCONDITIONAL) else MORE
        if not in_head and m.start() >= UNCONDITIONAL:
            return None  # the text before this markup already took the prescan past its limit
        if m.group(1):  # <!--
            if text.startswith(("<!-->", "<!--->"), m.start()):
                pos = text.index(">", m.start() + 4) + 1
                continue
            end = _COMMENT_END.search(text, m.end())
            if end is None:
                return None if complete else MORE
            pos = end.end()
            continue
        if m.group(4) is not None:  # <!..>, <?..>, </ not followed by a letter: to the next >
            close = text.find(">", m.end())
            if close < 0:
                return None if complete else MORE
            pos = close + 1
            continue
        end_tag = m.group(2) == "/"
        name = m.group(3).lower()
        parsed = _attributes(text, m.end())
        if parsed is None:
            return None if complete else MORE
        attributes, pos = parsed
        known = name in _KNOWN
        if not end_tag and known:
            if name == "meta":
                found = meta_encoding(attributes)
                if found is not None:
                    return found
            elif name == "plaintext":
                return None
            elif name in _RAWTEXT:
                closing = re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE).search(text, pos)
                if closing is None:
                    return None if complete else MORE
                pos = closing.start()
        if not (known and (name in _HEAD_TAGS or (not end_tag and name in ("html", "head")))):
            in_head = False


def resolve_charset(
    header_label: str | None, prefix: bytes, complete: bool, *, default: str, html_page: bool = True
) -> Charset | None:
    """The encoding the browser decodes this document with (see the module docstring),
    or None when more bytes are needed. `prefix` is the start of the (content-decoded)
    body, `complete` says whether it is all of it; `html_page` False for an XML
    document (no meta prescan; its default is UTF-8)."""
    bom = sniff_bom(prefix, complete)
    if bom == MORE:
        return None
    if isinstance(bom, tuple):
        return Charset(bom[0], "bom", bom[1])
    if header_label is not None:
        encoding = encoding_for_label(header_label)
        if encoding is not None:
            return Charset(encoding, "header")
    declared = xml_declaration(prefix, complete)
    if declared == MORE:
        return None
    from_xml: str | None = None
    if isinstance(declared, tuple):
        kind, encoding = declared
        if kind == "autodetected":
            return Charset(encoding, "xml")
        from_xml = encoding
    if html_page:
        # Most pages declare their charset in the first few hundred bytes: look there
        # first, and at everything only when that window cannot tell.
        if len(prefix) <= _WINDOW:
            meta = prescan_meta(prefix, complete)
        else:
            meta = prescan_meta(prefix[:_WINDOW], False)
            if meta == MORE:
                meta = prescan_meta(prefix, complete)
        if meta == MORE:
            return None
        if meta is not None:
            return Charset(meta, "meta")
    if from_xml is not None:
        return Charset(from_xml, "xml")
    return Charset(default if html_page else "UTF-8", "default")
