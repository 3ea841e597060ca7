"""Where, in a whole document, tags are as a browser reads them, and whether any `<img>`
could need the `<img>` selector at all (pure).

On a page whose images are all plainly relative (a shop's listing page: 850 product
tiles), the narrow `<img>` compounds (`selection.IMG_NARROW`) still make lol-html read
the attributes of every `<img>`: a third of the gate's time on that page. When no
`<img>` start tag can carry what those compounds select (a `src` with `//`, `:`, `\\`,
`&`, a tab, newline or carriage return, a `srcset`, an `attributionsrc`), the gate can
leave `<img>` unselected (`selection.quiet_images`), or copy a tail of the page that
holds nothing else a registration selects past lol-html (`selection.tail_start`).

Both steps are conservative (they may say "it could" of a document where nothing needs
it, never the reverse):

- `IMG_REACH`, a Hyperscan pattern, matches such an attribute in any `<img` tag (a
  superset: it also matches where the bytes are not a tag at all, in a comment, a
  script or a `<noscript>`). No match: no `<img>` needs the selector.
- `read_to` tokenizes the start of a document as a browser does (the WHATWG tokenizer:
  comments, doctype, raw text and RCDATA elements, script data, end tags, attribute
  quoting) to a position in the data state, and answers whether an `<img>` start tag
  on the way holds such an attribute. It gives up on what it does not follow exactly:
  foreign content (`<svg>`, `<math>`), `<plaintext>`, and a script whose text holds
  `<!--` (the escaped script states). `images_quiet` reads past the matches near the
  start that turn out hidden (the tracking pixel in a head's `<noscript>`).

The scripting flag is on: a `<noscript>`'s content is raw text, as lol-html reads it
(the gate's `noscript` handler gates that text in a nested gate). tests/test_tail.py
checks `read_to` against lol-html's own reading on the html5lib corpus.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from .foreign import COMMENT_END, TAG_NAME, find_tag_end, tag_attributes

__all__ = ["IMG_REACH", "REACH_ROUNDS", "REACH_SCAN", "images_quiet", "read_to"]

_WS: Final = rb"[\t\n\x0c\r ]"
_REACHING_SRC: Final = (
    rb"src" + _WS + rb"*=" + _WS + rb"*(?:\"[^\"]*(?://|[:\\&\t\n\r])|'[^']*(?://|[:\\&\t\n\r])"
    rb"|[^\t\n\x0c >]*(?://|[:\\&\r]))"
)

IMG_REACH: Final = (
    rb"<img[\t\n\x0c\r /](?:(?:[^>]*[\t\n\x0c\r /\"'])?"
    rb"(?:" + _REACHING_SRC + rb"|srcset[\t\n\x0c\r />=]|attributionsrc[\t\n\x0c\r />=])"
    rb"|[^>]*=" + _WS + rb"*(?:\"[^\">]*|'[^'>]*)>)"
)
"""A Hyperscan pattern (matched without case) for an `<img` start tag that may hold an
attribute the narrow `<img>` compounds select: a `src` whose value holds `//`, `:`,
`\\`, `&` or (in quotes) a tab, newline or carriage return, or a `srcset` or
`attributionsrc` attribute.

Either the attribute comes before the tag's first `>` (its own quoted value may hold
one), or a `>` comes first: the tag not having ended, that `>` is inside an earlier
quoted value (`alt="a > b"`), and the second branch matches any quoted value holding a
`>`. So a real tag with such an attribute always matches; the pattern also matches
where the bytes are no tag at all (in a comment, a script, a `<noscript>`), and where
`src` ends another name (`data-src`). A carriage return counts as white space and as
part of a value (the browser normalises it to a newline; lol-html's reading counts
too). One pattern, not a full reading of the attributes: Hyperscan starts it at every
`<img` (about 100 ns each, 90 µs on the 850-image listing page); a pattern that read
the attributes as the tokenizer does cost seven times that."""

REACH_SCAN: Final = 32 << 10
"""`images_quiet` reads (`read_to`) only as far as this many bytes from the start: it
tokenizes in Python, about a microsecond a tag."""

REACH_ROUNDS: Final = 8
"""How many of `IMG_REACH`'s matches `images_quiet` reads past at most (each costs a
Hyperscan scan of the rest of the document)."""

_REACHING_VALUE: Final = re.compile(rb"//|[:\\&\t\n\r]")
_LISTS: Final = frozenset((b"srcset", b"attributionsrc"))

_RAW_TEXT: Final = {
    name: re.compile(b"</" + name + rb"[\t\n\x0c\r />]", re.IGNORECASE)
    for name in (b"style", b"xmp", b"iframe", b"noembed", b"noframes", b"noscript", b"title", b"textarea", b"script")
}
"""Elements whose content the tokenizer reads as text (raw text, RCDATA, script data)
until the matching end tag: the appropriate end tag, in any case, then white space, `/`
or `>`."""

_GIVE_UP: Final = frozenset((b"svg", b"math", b"plaintext"))


def _image_reaches(tag: bytes) -> bool:
    """Whether a whole `<img>` start tag holds an attribute the narrow compounds select."""
    for name, value, _ in tag_attributes(tag):
        if name in _LISTS or (name == b"src" and _REACHING_VALUE.search(value) is not None):
            return True
    return False


def read_to(document: bytes, at: int, end: int, images: bool = True) -> int:
    """Tokenize `document` as a browser does from `at` (a position in the data state) to
    the first `<` at or past `end`: that position (the data state again, with nothing
    of the text before it left to read; the document's length where no tag can follow),
    or -1 where an `<img>` start tag met on the way holds an attribute `IMG_REACH`
    matches (`images=False`: `<img>` is a tag like any other), or where the reading is
    not followed exactly (see the module docstring).
    Raw text, comments and other tags' attribute values hide what looks like a tag
    inside them."""
    find = document.find
    size = len(document)
    while True:
        lt = find(b"<", at)
        if lt < 0:
            return size
        if lt >= end:
            return lt
        nxt = document[lt + 1 : lt + 2]
        if nxt.isalpha() or (nxt == b"/" and document[lt + 2 : lt + 3].isalpha()):
            tag_end = find_tag_end(document, lt)
            if tag_end is None:
                return size  # the tag runs to the end: nothing after it is a tag
            at = tag_end
            if nxt == b"/":
                continue
            m = TAG_NAME.match(document, lt + 1)
            assert m is not None  # `<` and a letter
            name = m.group().lower()
            if name == b"img" and images and _image_reaches(document[lt:at]):
                return -1
            if name in _GIVE_UP:
                return -1
            closing = _RAW_TEXT.get(name)
            if closing is not None:
                close = closing.search(document, at)
                if name == b"script" and find(b"<!--", at, size if close is None else close.start()) >= 0:
                    return -1  # escaped script data: not followed here
                if close is None:
                    return size
                # past the end tag too: the element is whole before the position returned
                tag_end = find_tag_end(document, close.start())
                if tag_end is None:
                    return size
                at = tag_end
            continue
        if nxt == b"/":
            after = document[lt + 2 : lt + 3]
            if after == b">":
                at = lt + 3
                continue
            if not after:
                return size
            # a bogus comment, to the next `>`
        elif nxt == b"!":
            if document.startswith(b"<!--", lt):
                start = lt + 4
                if document.startswith(b">", start) or document.startswith(b"->", start):
                    at = document.index(b">", start) + 1  # `<!-->`, `<!--->`
                    continue
                close = COMMENT_END.search(document, start)
                if close is None:
                    return size
                at = close.end()
                continue
            # a doctype, CDATA outside foreign content, or a bogus comment: to the next `>`
        elif nxt != b"?":
            at = lt + 1  # `<` as text
            continue
        gt = find(b">", lt + 2)
        if gt < 0:
            return size
        at = gt + 1


_HIDERS: Final = tuple((b"<" + name, b"</" + name) for name in _RAW_TEXT) + ((b"<!--", b"-->"),)
_HIDING_WINDOW: Final = 4 << 10


def _may_be_hidden(document: bytes, at: int, end: int) -> bool:
    """A quick look before `read_to`: whether the `IMG_REACH` match ending at `end`
    could be text the tokenizer does not read as tags, an opener of raw text or of a
    comment (`<noscript`, `<script`, `<!--`, ...) coming after the last closer within
    the `_HIDING_WINDOW` bytes before it. False answers "it is an `<img>` tag" without
    reading, which is what `images_quiet` assumes of any match it does not read."""
    window = document[max(at, end - _HIDING_WINDOW) : end].lower()
    return any(window.rfind(opener) > window.rfind(closer) for opener, closer in _HIDERS)


def images_quiet(document: bytes, next_match: Callable[[int], int | None]) -> bool:
    """Whether no `<img>` of `document` holds an attribute the narrow `<img>` compounds
    select, as a browser tokenizes it: `IMG_REACH`'s matches (`next_match(at)`: the end of
    the first one past `at`, or None) are read exactly (`read_to`) one after the other
    while they end within `REACH_SCAN` bytes, at most `REACH_ROUNDS` times; False where
    one is an `<img>` that reaches out, or is too far to read."""
    at = 0
    for _ in range(REACH_ROUNDS):
        end = next_match(at)
        if end is None:
            return True
        if end > REACH_SCAN or not _may_be_hidden(document, at, end):
            return False
        at = read_to(document, at, end)
        if at < 0:
            return False
        if at >= len(document):
            return True
    return False
