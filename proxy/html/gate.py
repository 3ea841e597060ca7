"""The streaming HTML gate over lol-html: the only module that imports the binding.

Contract of `HtmlGate`:
- `feed(chunk)` / `end()` return output bytes as soon as lol-html produces them;
  chunk boundaries are arbitrary and never change the output; `feed_whole(document)`
  is `feed` + `end` for a document already complete, with the same output;
- bytes the gate does not touch leave exactly as they came, in any ASCII-compatible
  charset: input is carried through lol-html as Latin-1 code points (each byte one
  character) and mapped back on output, so lol-html's UTF-8 decoding never loses a
  byte, and re-emitted script text is byte-exact;
- a failure raises `GateError`; the gate is then dead (lol-html may not be used after
  an error) and the caller fails closed.

Per element, `policy` decides (by URL, inline signature or rule); refused elements are
removed, deferred in the configured CMP's convention, or (iframes) replaced by a
first-party placeholder. Inline scripts are held back until their text is complete,
then kept, emptied, or moved into an inert `<script type="text/plain">` right after the
original (now empty) element. `<noscript>` text runs through a nested gate, streaming.

Where the parts live: this module owns the rewriter, the selectors and the byte
transport; `proxy.html.handlers` the element handlers, `proxy.html.run` the plan, the
per-response state and the acting on a decision, `proxy.html.attributes` attribute
parsing (srcset, character references), `proxy.html.markup` the markup inserted. The
names that moved are still importable from here.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
from collections.abc import Callable
from typing import Any, Final, NoReturn

import lolhtml

from ..core.consent import ConsentState
from ..core.memo import Memo
from .attributes import may_carry_ping, srcset_urls
from .foreign import ForeignContentError, ForeignTracker, find_tag_end
from .handlers import DOCUMENT_HANDLER, FOREIGN_HANDLER, HANDLERS, PAGE_HANDLER, PAGE_SELECTOR
from .needles import Needles
from .prologue import head_start_spot
from .run import NO_ADDITIONS, Additions, ElementRecord, GatePlan, GateRun, GateStats

__all__ = [
    "NO_ADDITIONS",
    "SELECTORS",
    "Additions",
    "ElementRecord",
    "GateError",
    "GatePlan",
    "GateStats",
    "HtmlGate",
    "gate_document",
    "gate_selectors",
    "prescan",
    "may_carry_ping",
    "srcset_urls",
]

HTML: Final = lolhtml.ContentType.HTML

SELECTORS: Final = {
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
    "top": "html, head",
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

_NARROW_NEEDLES: Final = (
    (b"\\", "narrow_backslash"),
    (b"\t", "narrow_tab"),
    (b"\r", "narrow_cr"),
    (b"srcset", "narrow_srcset"),
)

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
    for needle, name in (
        (b"\\", "narrow_backslash"),
        (b"\t", "narrow_tab"),
        (b"\r", "narrow_cr"),
        (b"srcset", "narrow_srcset"),
    ):
        names.setdefault(re.escape(needle), []).append(name)
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
_NEEDLES: Final = Needles([pattern for pattern, _ in _NEEDLE_TABLE])
_NEEDLE_NAMES: Final = tuple(names for _, names in _NEEDLE_TABLE)


def gate_selectors(plan: GatePlan, *, top: bool = False, needed: frozenset[str] = _ALL) -> tuple[str, ...]:
    """The names of the SELECTORS a gate with this plan registers, in order (`top`: the
    page gets a head-start addition; `needed`: the prescanned selectors to include)."""
    return tuple(
        name
        for name in SELECTORS
        if (name != "top" or top) and (name not in _ALL or name in needed) and (name != "style" or plan.inline_styles)
    )


_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")

FOREIGN_SELECTOR: Final = "svg, math"
"""Start tags that open foreign content; registered while the gate follows it."""
_FOREIGN_OPENERS: Final = (b"<svg", b"<math")
_FOREIGN_PREFIXES: Final = frozenset(p[:n] for p in _FOREIGN_OPENERS for n in range(1, len(p) + 1))
_MAX_CARRY: Final = 1 << 16
"""Most bytes of an unfinished `<svg`/`<math` tag held back from lol-html; a longer one
goes through, and if lol-html then reads it as a start tag the gate fails safe."""


class _Restart(Exception):
    """The optimistic pass of `feed_whole` met foreign content."""


class GateError(Exception):
    """The gate failed; `reason` is a short metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _nested_gate(run: GateRun, stats: GateStats) -> HtmlGate:
    """A gate for markup inside this document (<noscript> content, a srcdoc document):
    same consent and plan, and the document's foreign <base href>, which both inherit."""
    gate = HtmlGate(
        run.plan,
        run.consent,
        page_host=run.page_host,
        nonce=run.nonce,
        report_only=run.report_only,
        stats=stats,
        nested=run.nested + 1,
        charset=run.charset,
    )
    if run.base_host is not None:
        gate._run.base_host = run.base_host
        gate._run.relative_first_party = False
    return gate


_Registrations = tuple[tuple[str, Callable[[GateRun], Any]], ...]
_REGISTRATIONS: Final[Memo[tuple[bool, bool, frozenset[str], bool], _Registrations]] = Memo(512, 256 << 10)
"""What a gate registers with lol-html, by (`html.inline_styles`, whether the page gets
a head-start addition, the prescanned selectors needed, whether `<img>` is selected
narrowly): selector and handler factory, in SELECTORS order. Bounded: the selectors a
page needs are chosen by its bytes, so the combinations are the upstream's to choose."""


def _registrations(plan: GatePlan, top: bool, needed: frozenset[str], narrow: bool) -> _Registrations:
    key = (plan.inline_styles, top, needed, narrow)
    found = _REGISTRATIONS.table.get(key)
    if found is None:
        names = gate_selectors(plan, top=top, needed=needed)
        made = tuple(
            (img_narrow(needed) if narrow and name == "img" else SELECTORS[name], HANDLERS[name]) for name in names
        )
        found = _REGISTRATIONS.put(key, made, 16 * len(needed))
    return found


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


_DENSITY_WINDOW: Final = 16 << 10
"""Half the width of the window of a large document `images_are_dense` counts in."""


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


class HtmlGate:
    """One response's streaming gate (see the module docstring for the contract)."""

    def __init__(
        self,
        plan: GatePlan,
        consent: ConsentState,
        *,
        page_host: str | None = None,
        nonce: str | None = None,
        report_only: bool = False,
        record: bool = False,
        stats: GateStats | None = None,
        nested: int = 0,
        additions: Additions = NO_ADDITIONS,
        adaptive: bool | None = None,
        charset: str | None = None,
    ) -> None:
        """`adaptive`: None chooses the `<img>` selector per document when `feed_whole`
        has it in hand (`may_narrow_images` and `images_are_dense`); True narrows it for every document, streamed
        too (tests comparing both forms; the caller vouches there is no `<base>`), False
        never narrows."""
        self._adaptive = adaptive
        self.narrowed = False
        """Whether `<img>` was selected with `IMG_NARROW` (known once the gate is built)."""
        if stats is None:
            stats = GateStats(records=[] if record else None, unclassified_hosts=set() if record else None)
        self.stats = stats
        run = GateRun(
            plan,
            consent,
            page_host.lower() if page_host else None,
            nonce,
            report_only,
            stats,
            nested,
            html=HTML,
            nest=_nested_gate,
            additions=additions,
            charset=charset,
        )
        self._run = run
        self._page_charset = charset or "windows-1252"
        self._out: list[bytes] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._ascii = True
        self._pending = 0
        self._max_pending = plan.max_pending
        self._failed: GateError | None = None
        self._head: bytes | None = b""  # the input's first bytes, until there are two
        self._rewriter: Any = None  # built on the first write (see `feed_whole`)
        # Foreign content is followed wherever the gate changes the page (not in
        # report-only mode, where the page goes out as it came).
        self._foreign = None if report_only else ForeignTracker()
        self._carry = b""  # the start of a `<svg`/`<math` tag, until it is whole
        self._optimistic = False  # see `feed_whole`
        self._redone = False  # `_redo` gated the document in a fresh gate
        self._args = (plan, consent, page_host, nonce, report_only, nested, additions)

    @property
    def page_charset(self) -> str:
        """The encoding the browser decodes this page's bytes with (the Encoding
        Standard's name), set by `proxy.html.start` before the first feed: the bytes
        the gate sees are in it ("UTF-8" for a page transcoded for the gate). Setting it
        settles the charset the gate reads non-ASCII URLs in (`GateRun.charset`)."""
        return self._page_charset

    @page_charset.setter
    def page_charset(self, encoding: str) -> None:
        self._page_charset = encoding
        self._run.charset = encoding
        self._run.charset_known = True

    def _build(self, *, needed: frozenset[str] = _STREAMED, narrow: bool = False, foreign: bool = True) -> Any:
        """The lol-html rewriter with this gate's selectors; `needed` names the
        `PRESCANNED` ones to include (a streamed document needs them all); `narrow`
        selects `<img>` with `IMG_NARROW` (only where no rule classifies relative URLs:
        the img handler's plainly-relative shortcut is what makes it exact);
        `foreign=False` leaves out the `svg, math` selector."""
        run = self._run
        narrow = (narrow or self._adaptive is True) and self._adaptive is not False and run.relative_first_party
        self.narrowed = narrow
        sink: Any = self._out.append
        rewriter = lolhtml.HTMLRewriter(sink)
        for selector, handler in _registrations(run.plan, run.head_pending, needed, narrow):
            rewriter.on(selector, handler(run))
        if run.page_pending:
            rewriter.on(PAGE_SELECTOR, PAGE_HANDLER(run))
        if self._foreign is not None and foreign:
            rewriter.on(FOREIGN_SELECTOR, FOREIGN_HANDLER(run))
        rewriter.on_document(DOCUMENT_HANDLER(run))
        self._rewriter = rewriter
        return rewriter

    def _call(self, step: Callable[[], None]) -> None:
        if self._failed is not None:
            raise self._failed
        try:
            step()
        except Exception as exc:  # lol-html reports handler and parser errors as RuntimeError
            if self._optimistic and self._run.foreign_entered:
                raise _Restart from None
            message = str(exc)
            lowered = message.lower()
            ambiguous = "ambiguity" in lowered or "text content tag" in lowered
            reason = "parse_ambiguity" if ambiguous else "rewrite_error"
            self._failed = GateError(reason, message[:300])
            raise self._failed from None

    def _drain_transport(self) -> str:
        out = self._out
        if not out:
            return ""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return self._decoder.decode(data)

    def feed(self, chunk: bytes) -> bytes:
        """Process one input chunk; return whatever output is ready."""
        if self._head is not None:
            chunk = self._head + chunk
            if len(chunk) < 2:
                self._head = chunk
                return b""
            self._head = None
            if chunk[:3] == b"\xef\xbb\xbf":
                self._run.charset = "utf-8"  # a byte order mark outranks any label
                self._run.charset_known = True
            if chunk[:2] in _UTF16_BOMS:
                # Browsers obey a byte order mark over any charset label: the page is
                # UTF-16 to them, and markup lol-html cannot see would run.
                self._failed = GateError("unsupported_charset", "the page starts with a UTF-16 byte order mark")
                raise self._failed
        if chunk.isascii():
            transport = chunk
        else:
            self._ascii = False
            transport = chunk.decode("latin-1").encode("utf-8")
        self._write(self._rewriter or self._build(), transport)
        out = self._drain_bytes()
        if out:
            self._pending = 0
        else:
            # lol-html holds back an unfinished tag or text it must see whole; a document
            # that never lets go (a 50 MB attribute) would grow without bound.
            self._pending += len(chunk)
            if self._pending > self._max_pending:
                self._failed = GateError("pending_limit", f"no output for {self._pending} bytes of input")
                raise self._failed
        return out

    def end(self) -> bytes:
        """Finish the document; return the remaining output."""
        head, self._head = self._head, None
        first = self.feed(head) if head else b""  # a one-byte document
        rewriter = self._rewriter or self._build()
        self._flush_carry(rewriter)
        self._call(rewriter.end)
        if self._ascii:
            return first + self._drain_bytes()
        text = self._drain_transport() + self._decoder.decode(b"", final=True)
        return first + text.encode("latin-1")

    def feed_whole(self, document: bytes) -> bytes:
        """`feed(document) + end()` for a caller that holds the complete document before
        the first feed: the same output, with only the registrations `prescan` finds the
        document may need, and, in one without `<base` and with many images for its size
        (`images_are_dense`), only the `<img>` that could leave the page's host. The
        head-start addition (the runtime guard) is spliced into the output where
        `head_start_spot` finds the first `<html>`/`<head>` start tag to end, instead of
        going through lol-html, when the gate left those first bytes as they came."""
        run = self._run
        if self._rewriter is None and run.head_pending and run.additions.head_start.isascii():
            spot = head_start_spot(document)
            if spot >= 0:
                # Spliced in after gating: no `html, head` handler, no trip through lol-html.
                run.head_pending = False
                out = self._gate_whole(document)
                if self._redone:
                    return out  # the fresh gate of `_redo` inserted it
                if out[:spot] == document[:spot]:
                    return b"".join((out[:spot], run.additions.head_start.encode("ascii"), out[spot:]))
                return self._redo(document)  # a handler changed the prologue: its way
        return self._gate_whole(document)

    def _gate_whole(self, document: bytes) -> bytes:
        if self._rewriter is None:
            present = _NEEDLES.present(document)
            if present is None:
                lowered = document.lower()
                needed = prescan_python(document, lowered) | _NARROW_NAMES
                narrow = "img" in needed and may_narrow_images(lowered) and images_are_dense(lowered)
            else:
                needed = frozenset(name for i in present for name in _NEEDLE_NAMES[i])
                narrow = "img" in needed and "base" not in needed and images_are_dense(document)
            if FOREIGN not in needed:
                self._foreign = None  # no `<svg`, no `<math`: no foreign content to follow
            self._build(needed=needed, narrow=narrow)
            if self._foreign is not None and self._head == b"":
                # One plain pass, stopped by the `svg, math` handler at the first foreign
                # start tag; only a document that has one is gated again, precisely
                # (`_write`): pages without foreign content pay no scan at all.
                self._optimistic = self._run.stop_on_foreign = True
                try:
                    return self.feed(document) + self.end()
                except _Restart:
                    return self._redo(document)
        return self.feed(document) + self.end()

    def _redo(self, document: bytes) -> bytes:
        """Gate `document` again in a fresh gate that follows foreign content from the
        start; its counts become this gate's."""
        plan, consent, page_host, nonce, report_only, nested, additions = self._args
        self._redone = True
        stats = self.stats
        fresh_stats = GateStats(
            records=[] if stats.records is not None else None,
            unclassified_hosts=set() if stats.unclassified_hosts is not None else None,
        )
        fresh = HtmlGate(
            plan,
            consent,
            page_host=page_host,
            nonce=nonce,
            report_only=report_only,
            stats=fresh_stats,
            nested=nested,
            additions=additions,
        )
        try:
            return fresh.feed(document) + fresh.end()
        except GateError as exc:
            self._failed = exc
            raise
        finally:
            for f in dataclasses.fields(GateStats):
                setattr(stats, f.name, getattr(fresh_stats, f.name))

    def _drain_bytes(self) -> bytes:
        # While every input byte was ASCII the transport form is the output itself
        # (tag-gate only ever inserts ASCII), so skip the two conversions.
        if self._ascii:
            out = self._out
            if not out:
                return b""
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            return data
        return self._drain_transport().encode("latin-1")

    # Nested gates (<noscript>) speak the transport form directly: text in, text out.
    def feed_text(self, text: str) -> str:
        self._write(self._rewriter or self._build(), text.encode("utf-8"))
        return self._drain_transport()

    def end_text(self) -> str:
        rewriter = self._rewriter or self._build()
        self._flush_carry(rewriter)
        self._call(rewriter.end)
        return self._drain_transport() + self._decoder.decode(b"", final=True)

    # Foreign content (`proxy.html.foreign`): the input goes to lol-html in pieces cut at
    # each `<svg`/`<math` candidate, so that the gate knows which bytes lol-html read as
    # the start tag of a foreign region (its `svg, math` handler fires during that piece's
    # write); the region's bytes pass the tracker before lol-html sees them. Cutting the
    # input never changes lol-html's output (the gate's chunking contract).

    def _write(self, rewriter: Any, data: bytes) -> None:
        """Hand `data` (transport form) to lol-html, following foreign content."""
        tracker = self._foreign
        if tracker is None or self._optimistic:
            self._call(lambda: rewriter.write(data))
            return
        if self._carry:
            data = self._carry + data
            self._carry = b""
        run = self._run
        pos = 0
        size = len(data)
        lowered: bytes | None = None
        nearest: list[int] = []
        while pos < size:
            if tracker.active:
                try:
                    end = tracker.feed(data[pos:] if pos else data)
                except ForeignContentError as exc:
                    self._fail_foreign(str(exc))
                stop = size if end is None else pos + end
                run.in_foreign = True
                self._plain_write(rewriter, data[pos:stop], region=True)
                run.in_foreign = False
                pos = stop
                continue
            if lowered is None:
                lowered = data.lower()
                # Where each opener next occurs (-1: nowhere), searched again only once
                # passed: a page of icons would otherwise rescan to the end at each one.
                nearest = [lowered.find(opener) for opener in _FOREIGN_OPENERS]
            for k, opener in enumerate(_FOREIGN_OPENERS):
                if 0 <= nearest[k] < pos:
                    nearest[k] = lowered.find(opener, pos)
            found = [i for i in nearest if i >= 0]
            if not found:
                tail = size
                for n in (4, 3, 2, 1):  # a `<svg`/`<math` cut by the end of `data`: hold it
                    if size - n >= pos and lowered[size - n :] in _FOREIGN_PREFIXES:
                        tail = size - n
                        break
                self._plain_write(rewriter, data[pos:tail])
                self._carry = data[tail:]
                return
            start = min(found)
            self._plain_write(rewriter, data[pos:start])
            end = find_tag_end(data, start)
            if end is None and size - start <= _MAX_CARRY:
                self._carry = data[start:]
                return
            stop = size if end is None else end
            run.foreign_entered = False
            piece = data[start:stop]
            self._call(lambda: rewriter.write(piece))  # noqa: B023 (called at once)
            pos = stop
            if run.foreign_entered:
                run.foreign_entered = False
                if end is None:
                    self._fail_foreign("a foreign start tag longer than 64 KiB")
                tracker.start(data[start:stop])

    def _plain_write(self, rewriter: Any, data: bytes, *, region: bool = False) -> None:
        """A write in which lol-html must not open a foreign region, unless it is inside
        one (where the tracker follows nested `<svg>`/`<math>` itself)."""
        if not data:
            return
        run = self._run
        self._call(lambda: rewriter.write(data))
        if region:
            run.foreign_entered = False
        elif run.foreign_entered:
            self._fail_foreign("lol-html opened foreign content where the gate did not expect it")

    def _flush_carry(self, rewriter: Any) -> None:
        carry, self._carry = self._carry, b""
        if carry:
            self._plain_write(rewriter, carry)

    def _fail_foreign(self, detail: str) -> NoReturn:
        self._failed = GateError("foreign_content", detail)
        raise self._failed


def gate_document(
    plan: GatePlan,
    consent: ConsentState,
    data: bytes,
    *,
    page_host: str | None = None,
    record: bool = False,
    chunk_size: int = 16384,
) -> tuple[bytes, GateStats]:
    """Run a whole document through a gate (for `tag-gate explain` and tests)."""
    gate = HtmlGate(plan, consent, page_host=page_host, record=record)
    out = [gate.feed(data[i : i + chunk_size]) for i in range(0, len(data), chunk_size)]
    out.append(gate.end())
    return b"".join(out), gate.stats
