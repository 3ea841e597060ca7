"""Which selectors the gate registers with lol-html, and, for a document held whole,
which of them it can leave out (pure: no lol-html).

`SELECTORS` are the gate's registrations by name; `gate_selectors` the ones a plan
uses. A document that arrives whole is pre-scanned (`prescan`, `whole_selection`): a
registration is left out when no element it selects can be in the bytes, and the
`<img>` selector is narrowed (`IMG_NARROW`, trimmed by `img_narrow`) where images are
dense and no `<base>` moves relative URLs. Hyperscan answers every question in one pass
(`proxy.html.needles`); without it the Python scans run (`prescan_python`).
"""

from __future__ import annotations

import functools
import re
import sys
from typing import Final

from .attributes import may_carry_ping
from .needles import Needles
from .reach import IMG_REACH, images_quiet, read_to
from .run import GatePlan

__all__ = [
    "FOREIGN",
    "IMG_NARROW",
    "PRESCANNED",
    "SELECTORS",
    "gate_selectors",
    "images_are_dense",
    "img_narrow",
    "may_narrow_images",
    "prescan",
    "prescan_python",
    "quiet_images",
    "tail_start",
    "whole_selection",
]

SELECTORS: Final = {
    # the head-start addition's place: right after `<head>`, or before the first element
    # of an `<html>` that has none (a script or a tag there would make the parser invent
    # a head and ignore the page's own `<head id=...>` with its attributes); first,
    # so that what it inserts before an element precedes what other handlers do
    "top": "head, html > *",
    "script": "script",
    "img": "img",
    "media": "source, video, audio[src], input[src], track",
    "background": "body[background], table[background], td[background], th[background], tr[background], "
    "thead[background], tbody[background], tfoot[background], col[background], colgroup[background]",
    "frame": "iframe, frame",
    "embed": "object[data], embed[src]",
    "link": "link",
    "ping": "a[ping], area[ping]",
    "style": "[style]",
    "base": "base[href]",
    "noscript": "noscript",
    "style_element": "style",
    "attribution": "a[attributionsrc], area[attributionsrc], img[attributionsrc], script[attributionsrc]",
    "meta": "meta",
    # One registration, one dispatching handler (`handlers.HANDLERS["svg"]`): each
    # registration costs a rewriter about 2.5 us to build, each compound in it 0.7.
    "svg": "image, feimage, use, set, animate, svg, svg *",
}
"""The selectors the gate registers (the rewrite benchmark's reference uses the same).

lol-html tests every start tag against every compound selector (about 25 instructions
each, a third of its whole cost on an element-heavy page), and a compound with an
attribute condition makes it parse the attributes of every element of that tag, so rare
elements are selected by tag alone and their handlers read the attributes; an attribute
condition stays where the tag is common (`a[ping]`, `td[background]`). A selector
without a tag (`[style]`) makes lol-html read the attributes of every element, which
costs a fifth of the gate's speed. When the gate holds the whole document first
(`feed_whole`), `prescan` leaves out every registration the document cannot need."""

_IMG_NARROW_PARTS: Final = (
    ('img[src*="//"]', None),
    ('img[src*=":"]', None),
    ('img[src*="\\\\"]', "narrow_backslash"),
    ('img[src*="&"]', None),
    ('img[src*="\\9"]', "narrow_tab"),
    ('img[src*="\\a"]', None),
    ('img[src*="\\d"]', "narrow_cr"),
    ("img[srcset]", "narrow_srcset"),
    ("img[attributionsrc]", "attribution"),
)
"""`IMG_NARROW`'s compounds, each with the `prescan` name without which the document
cannot hold an `<img>` it selects (None: always kept): a document without a backslash,
a tab, a carriage return, the word `srcset` or `attributionsrc` (in any case) has no
`src` value or attribute of that kind, raw or through a character reference (an `&`,
which its own compound selects). Hyperscan's pre-scan looks for them; the Python one
does not, and keeps every compound (`_NARROW_NAMES`)."""

_NARROW_NAMES: Final = frozenset(name for _, name in _IMG_NARROW_PARTS if name is not None and name != "attribution")

_NARROW_BYTES: Final = ((b"\\", "narrow_backslash"), (b"\t", "narrow_tab"), (b"\r", "narrow_cr"))
"""The narrow compounds' single-byte needles: looked for with `bytes.__contains__`
(memchr, about 1 µs per 100 KB) and only when `<img>` is selected narrowly, since in
Hyperscan's pass each of them cost 6 µs per 100 KB (`srcset` goes there)."""

IMG_NARROW: Final = ", ".join(compound for compound, _ in _IMG_NARROW_PARTS)
"""The adaptive `<img>` selector for a document in hand with no `<base` and no rule that
classifies relative URLs: only the images whose `src` could leave the page's host (`//`,
a scheme's `:`, a backslash, a tab, newline or carriage return the URL parser drops, an
`&` that may hide any of them as a character reference; lol-html matches the raw value)
or that carry a `srcset` or `attributionsrc`. Every other `<img>` is one the img handler
would keep after one attribute read (`plainly_relative`), so it costs no Python call.
Any attribute the img handler learns to read must be added here."""

FOREIGN: Final = "foreign"
"""`prescan`'s name for `FOREIGN_SELECTOR` (not one of `SELECTORS`)."""

_ALWAYS_SCANNED: Final = {
    "background": (b"background",),
    "attribution": (b"attributionsrc",),
}
"""Registrations a document in hand gets only if one of these byte strings occurs in it
(lower-cased). Where `prescan` runs in Python (`prescan_python`: no Hyperscan), a scan
costs about 45 µs per 100 KB (CPython's `bytes.find`), so only these pay for theirs in
any page: ten compounds on table parts, and attribute
conditions on `<a>` and `<img>` that make lol-html parse the attributes of every link
and image (paired runs on the 100 KB and listing pages: 50-90 µs and 140-150 µs saved;
the SVG scans cost 70-100 µs more than the seven compounds they leave out)."""

_SMALL_SCANNED: Final = {
    "script": (b"<script",),
    "img": (b"<img",),
    "media": (b"<source", b"<video", b"<audio", b"<input", b"<track"),
    "frame": (b"<iframe", b"<frame"),
    "embed": (b"<object", b"<embed"),
    "link": (b"<link",),
    "noscript": (b"<noscript",),
    "top": (b"<html", b"<head"),
    "style_element": (b"<style",),
    "meta": (b"<meta",),
    "svg": (b"<svg", b"<image"),
    "base": (b"<base",),
    FOREIGN: (b"<svg", b"<math"),
}
"""The same for the other tag-selected registrations: with Hyperscan in any document
(one pass finds every needle), in Python only in a document of at most
`_SMALL_DOCUMENT` bytes: a scan costs by the byte and a registration by the element
(and 2.5 us to build), so only a small page saves by scanning for each."""

_LARGE_SCANS: Final = tuple(_ALWAYS_SCANNED.items())
_SMALL_SCANS: Final = _LARGE_SCANS + tuple(_SMALL_SCANNED.items())
"""`prescan`'s scans past `_SMALL_DOCUMENT` and up to it (name, needles)."""

PRESCANNED: Final = ("ping", "style", *_ALWAYS_SCANNED, *(name for name in _SMALL_SCANNED if name != FOREIGN))
"""Selectors a whole document is pre-scanned for (`prescan`); a streamed one gets them all."""

_STYLE_VALUE: Final = re.compile(
    rb"style[\t\n\f\r ]*=[\t\n\f\r ]*(?:\"[^\"(&]*[(&]|'[^'(&]*[(&]|(?![\"'])[^\t\n\f\r >(&]*[(&])"
)


def _any_match(lowered: bytes, word: bytes, pattern: re.Pattern[bytes]) -> bool:
    """Whether `pattern` matches at some occurrence of `word` (its literal start): a
    `bytes.find` walk, since a regex search that fails scans a page several times slower."""
    i = lowered.find(word)
    while i >= 0:
        if pattern.match(lowered, i) is not None:
            return True
        i = lowered.find(word, i + 1)
    return False


def prescan(document: bytes, lowered: bytes | None = None) -> frozenset[str]:
    """The `PRESCANNED` selectors (and `FOREIGN`) a complete document may need, from its
    bytes. Exact in the one direction that matters: a registration is left out only when
    no element it selects can be in the document, so its handler could never run and the
    output is the same as with it. lol-html reads the same bytes (in the Latin-1
    transport ASCII letters are unchanged); a start tag named `video` needs the bytes
    `<video` in some case, and attribute and tag names have no character references.
    Conservative: text that only looks like markup (in a script, a comment) counts too.
    `style`: a `style` attribute whose value holds `(` or `&` (CSS fetches only through a
    function or url token, and a character reference may spell the parenthesis); `ping`:
    `may_carry_ping`. One pass with Hyperscan (`proxy.html.needles`) looks for every
    needle in a document of any size; without it, `prescan_python` (`lowered`:
    `document.lower()` when the caller has it already)."""
    present = _NEEDLES.present(document)
    if present is None:
        return prescan_python(document, lowered)
    return frozenset(name for i in present for name in _NEEDLE_NAMES[i] if name in _ALL)


def prescan_python(document: bytes, lowered: bytes | None = None) -> frozenset[str]:
    """`prescan` by CPython's `bytes.find`, one scan per needle: every needle in a page
    of at most `_SMALL_DOCUMENT` bytes, past that only `_ALWAYS_SCANNED` (every other
    registration is then included)."""
    if lowered is None:
        lowered = document.lower()
    needed: set[str] = set()
    if may_carry_ping(document, lowered):
        needed.add("ping")
    if _any_match(lowered, b"style", _STYLE_VALUE):
        needed.add("style")
    if len(document) <= _SMALL_DOCUMENT:
        scans = _SMALL_SCANS
    else:
        scans = _LARGE_SCANS
        needed.update(_SMALL_SCANNED)
    found: dict[bytes, bool] = {}
    for name, needles in scans:
        for needle in needles:
            hit = found.get(needle)
            if hit is None:
                hit = found[needle] = needle in lowered
            if hit:
                needed.add(name)
                break
    return frozenset(needed)


def _needle_table() -> tuple[tuple[bytes, tuple[str, ...]], ...]:
    """`prescan`'s Hyperscan patterns and the names each one's presence adds: every
    needle of `_ALWAYS_SCANNED` and `_SMALL_SCANNED` (as a literal), `may_carry_ping`'s
    test and `_STYLE_VALUE` (the same regexes, written without look-ahead)."""
    names: dict[bytes, list[str]] = {}
    for name, needles in (*_ALWAYS_SCANNED.items(), *_SMALL_SCANNED.items()):
        for needle in needles:
            names.setdefault(re.escape(needle), []).append(name)
    names[b"srcset"] = ["narrow_srcset"]
    ws = rb"[\t\n\x0c\r ]"
    names[rb"(?:^|[\t\n\x0c\r \"'/])ping" + ws + rb"*="] = ["ping"]
    value = rb"(?:\"[^\"(&]*[(&]|'[^'(&]*[(&]|[(&]|[^\t\n\x0c\r >(&\"'][^\t\n\x0c\r >(&]*[(&])"
    names[rb"style" + ws + rb"*=" + ws + rb"*" + value] = ["style"]
    return tuple((pattern, tuple(found)) for pattern, found in names.items())


_SMALL_DOCUMENT: Final = 6 << 10
"""Up to this size a document is also scanned for the tags of every registration: each
registration left out saves building it and matching it (paired runs, the whole gate:
37 µs saved on a 1.7 KB page, 5 µs on 5 KB, 26 µs lost on 10 KB, 94 µs on 18 KB)."""


_ALL: Final = frozenset((*PRESCANNED, FOREIGN))

_STREAMED: Final = _ALL | _NARROW_NAMES
"""What a gate registers for a document it does not hold whole: everything."""

_NEEDLE_TABLE: Final = _needle_table()
_TAIL_NEEDLES: Final = {
    **{name: needles for name, needles in (*_ALWAYS_SCANNED.items(), *_SMALL_SCANNED.items()) if name != FOREIGN},
    "ping": (b"ping",),
    "style": (b"style",),
    "page": (b"<html", b"<body"),
}
"""What an element a registration selects must hold (in any case), by registration name
(`page`: `PAGE_SELECTOR`): for `ping` and `style`, the attribute's name alone."""

_CONTENT_NEEDLES: Final = (b"<object", b"<video", b"<audio", b"<frame")
"""Elements with content the gate may remove whole (and `<frame>`, which lol-html may
not read as void): a document with any of them is always gated whole (the end of a
removed one may lie anywhere after its start). The others it removes are void or raw
text, whole before the position `read_to` returns."""

_TAIL_LITERALS: Final = tuple(sorted({n for needles in _TAIL_NEEDLES.values() for n in needles} | {*_CONTENT_NEEDLES}))
_TAIL: Final = Needles([re.escape(literal[::-1]) for literal in _TAIL_LITERALS])
"""`_TAIL_LITERALS` written backwards, for a scan of the reversed start of a document:
each one's first match there is its last occurrence in that start."""

TAIL_READ: Final = 16 << 10
"""`tail_start` looks for the tail only within this many bytes (it tokenizes them)."""
_TAIL_INDEX: Final = {literal: i for i, literal in enumerate(_TAIL_LITERALS)}

_LATE: Final = Needles([re.escape(literal) for literal in _TAIL_LITERALS])
"""`_TAIL_LITERALS` forwards: is one of them past `TAIL_READ` (no tail can start before
such a needle of a registration)? The scan stops at the first."""
_NEEDLES: Final = Needles([pattern for pattern, _ in _NEEDLE_TABLE])
_NEEDLE_NAMES: Final = tuple(names for _, names in _NEEDLE_TABLE)

_IMG_REACH: Final = Needles([IMG_REACH])
"""`IMG_REACH` on its own: a scan stops at its first match (Hyperscan has nothing left to
look for), so the scans of `images_quiet` together read the document about once."""


def gate_selectors(plan: GatePlan, *, top: bool = False, needed: frozenset[str] = _ALL) -> tuple[str, ...]:
    """The names of the SELECTORS a gate with this plan registers, in order (`top`: the
    page gets a head-start addition; `needed`: the prescanned selectors to include)."""
    return _selector_names(plan.inline_styles, top, needed)


def _selector_names(inline_styles: bool, top: bool, needed: frozenset[str]) -> tuple[str, ...]:
    return tuple(
        name
        for name in SELECTORS
        if (name != "top" or top) and (name not in _ALL or name in needed) and (name != "style" or inline_styles)
    )


def img_narrow(needed: frozenset[str]) -> str:
    """`IMG_NARROW` without the compounds whose `_IMG_NARROW_PARTS` name is not `needed`."""
    return ", ".join(compound for compound, name in _IMG_NARROW_PARTS if name is None or name in needed)


_BASE_TAG: Final = b"<base"


def may_narrow_images(lowered: bytes) -> bool:
    """Whether a document (lower-cased) may be gated with `IMG_NARROW`: it has no `<base`
    (a base element moves relative URLs to its host, and the gate learns of it only when
    it arrives). Conservative: `<base` inside a comment or script counts too."""
    return _BASE_TAG not in lowered


_IMG_TAG: Final = b"<img"
_NARROW_SPACING: Final = 1024
"""`IMG_NARROW` pays for a document with at least one `<img` per this many bytes: its
nine compounds cost lol-html about 650 instructions per start tag of the page and an
attribute read per `<img>`, a Python call about 6,600 per `<img>` (callgrind, the
benchmark's pages: a 100 KB news page with 57 images gates 7 % faster wide, the 850-image
listing page 28 % faster narrow)."""


_DENSITY_WINDOW: Final = 4 << 10
"""Half the width of the window of a large document `images_are_dense` counts in: an
8 KiB sample costs 8 µs (lower-casing and counting run at about 1 ns a byte)."""


def images_are_dense(document: bytes) -> bool:
    """Whether a document (in any case) has many `<img>` for its size
    (`_NARROW_SPACING`), counted in a window of its middle third when it is large (the
    tiles of a listing page): speed only, the output is the same either way."""
    size = len(document)
    if size > _SMALL_DOCUMENT:
        middle, half = size // 2, min(size // 6, _DENSITY_WINDOW)
        document = document[middle - half : middle + half]
        size = len(document)
    return document.lower().count(_IMG_TAG) * _NARROW_SPACING > size


TAIL_MIN: Final = 16 << 10
"""A tail shorter than this is gated like the rest: the scans cost more than it saves."""


@functools.lru_cache(maxsize=256)
def _tail_needles(
    inline_styles: bool, needed: frozenset[str], page: bool, images: bool
) -> tuple[frozenset[bytes], frozenset[int]] | None:
    """The needles of what a gate registers for `needed` (`gate_selectors`, and `page`
    for `PAGE_SELECTOR`; without `<img` when `images`), and the indices in `_LATE` of
    those and `_CONTENT_NEEDLES`; None where a tail cannot be (a `background`
    registration: a placeholder for a refused one takes its element, a `<body>` or a
    `<table>`, with its content). Bounded: the page's bytes choose `needed`."""
    names = _selector_names(inline_styles, False, needed)
    if "background" in names:
        return None
    if page:
        names += ("page",)
    wanted = frozenset(n for name in names if name != "img" or not images for n in _TAIL_NEEDLES.get(name, ()))
    return wanted, frozenset(_TAIL_INDEX[n] for n in (*wanted, *_CONTENT_NEEDLES))


def tail_start(document: bytes, plan: GatePlan, needed: frozenset[str], page: bool, images: bool) -> int:
    """Where the part of a whole document begins that no registration a gate with `plan`
    makes for `needed` (and `page`: `PAGE_SELECTOR`) could select anything in, or -1: a
    position in the data
    state (`reach.read_to`, a browser's reading) within `TAIL_READ` bytes, after the last
    occurrence of every needle of those registrations, with no `<img>` after it that
    `IMG_REACH` matches (`images`: plainly relative images need no registration;
    otherwise `<img` counts as a needle of `img`) and no element with content the gate
    may remove anywhere. The gate writes only the bytes before it to lol-html and
    copies the rest.
    Conservative in the same way as `prescan`: a needle in a script or a comment counts."""
    size = len(document)
    needles = _tail_needles(plan.inline_styles, needed, page, images) if size - TAIL_READ >= TAIL_MIN else None
    if needles is None:
        return -1
    wanted, late = needles
    view = memoryview(document)
    if _LATE.any_of(view[TAIL_READ:], late) is not False:
        return -1
    ends = _TAIL.ends(document[TAIL_READ - 1 :: -1])
    if ends is None:
        return -1
    last = {_TAIL_LITERALS[i]: TAIL_READ - end + len(_TAIL_LITERALS[i]) for i, end in ends.items()}
    if any(needle in last for needle in _CONTENT_NEEDLES):
        return -1
    at = read_to(document, 0, max((last.get(n, 0) for n in wanted), default=0), images=False)
    if at < 0 or size - at < TAIL_MIN:
        return -1
    if images:
        found = _IMG_REACH.present(view[at:])
        if found is None or found:
            return -1
    return at


def _next_reach(document: bytes, at: int) -> int | None:
    """The end of `IMG_REACH`'s first match in `document` past `at` (None: none; past
    any bound where there is no engine or it failed: `images_quiet` then gives up)."""
    ends = _IMG_REACH.ends(memoryview(document)[at:])
    if ends is None:
        return sys.maxsize
    end = ends.get(0)
    return None if end is None else at + end


def whole_selection(document: bytes) -> tuple[frozenset[str], bool]:
    """For a document held whole: the names `_registrations` needs (the `PRESCANNED`
    selectors, `FOREIGN` and the narrow `<img>` compounds' names) and whether `<img>`
    may be selected narrowly (dense images, no `<base`)."""
    present = _NEEDLES.present(document)
    if present is None:
        lowered = document.lower()
        needed = prescan_python(document, lowered) | _NARROW_NAMES
        return needed, "img" in needed and may_narrow_images(lowered) and images_are_dense(lowered)
    needed = frozenset(name for i in present for name in _NEEDLE_NAMES[i])
    if "img" not in needed or "base" in needed or not images_are_dense(document):
        return needed, False
    return needed.union(name for byte, name in _NARROW_BYTES if byte in document), True


def quiet_images(document: bytes) -> bool:
    """Whether no `<img>` of a whole document, as a browser reads it, holds what the
    narrow `<img>` compounds select (`proxy.html.reach.images_quiet`): then a gate that
    may narrow `<img>` need not select it at all. False without Hyperscan. Worth asking
    where images are dense (`whole_selection`'s narrow answer) in a document of at least
    `QUIET_MIN` bytes: a scan costs about 100 ns an `<img>`, and reading a match that
    turns out hidden microseconds, more than a few narrowly selected images cost."""
    if len(document) < QUIET_MIN:
        return False
    return images_quiet(document, functools.partial(_next_reach, document))


QUIET_MIN: Final = 16 << 10
