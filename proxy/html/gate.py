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

Where the parts live: this module owns the rewriter and the byte transport;
`proxy.html.selection` the selectors and the pre-scan of a whole document,
`proxy.html.handlers` the element handlers, `proxy.html.run` the plan, the
per-response state and the acting on a decision, `proxy.html.attributes` attribute
parsing (srcset, character references), `proxy.html.markup` the markup inserted,
`proxy.html.prologue` where a whole page's head-start addition is spliced in. The
names that moved are still importable from here.
"""

from __future__ import annotations

import codecs
import dataclasses
from collections.abc import Callable
from typing import Any, Final, NoReturn

import lolhtml

from ..core.consent import ConsentState
from ..core.memo import Memo
from .attributes import may_carry_ping, srcset_urls
from .foreign import ForeignContentError, ForeignTracker, find_tag_end
from .handlers import DOCUMENT_HANDLER, FOREIGN_HANDLER, HANDLERS, PAGE_HANDLER, PAGE_SELECTOR
from .prologue import FIRST_ELEMENT_LIMIT, first_element_spot, head_start_spot
from .run import NO_ADDITIONS, Additions, ElementRecord, GatePlan, GateRun, GateStats, head_bytes, nonce_kept
from .selection import (
    _STREAMED,
    FOREIGN,
    SELECTORS,
    TAIL_MIN,
    TAIL_READ,
    gate_selectors,
    img_narrow,
    prescan,
    quiet_images,
    tail_start,
    whole_selection,
)

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
        self.detail = detail


def _nested_gate(run: GateRun, stats: GateStats, document: str | None) -> HtmlGate:
    """A gate for markup inside this document (<noscript> content, a srcdoc document):
    same consent and plan, and the document's foreign <base href>, which both inherit.
    What it adds carries the page's nonce only where `document` (the whole markup, when
    known) holds it already (`nonce_kept`)."""
    nonce, frame = run.nonce, run.frame_markup
    if document is not None:
        if nonce is not None and nonce not in document:
            nonce = None
        if frame and not nonce_kept(frame, document):
            frame = ""
    gate = HtmlGate(
        run.plan,
        run.consent,
        page_host=run.page_host,
        nonce=nonce,
        report_only=run.report_only,
        stats=stats,
        nested=run.nested + 1,
        additions=Additions(frame_markup=frame) if frame else NO_ADDITIONS,
        charset=run.charset,
    )
    if run.base_host is not None:
        gate._run.base_host = run.base_host
        gate._run.relative_first_party = False
    return gate


_IMG: Final = frozenset(("img",))

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
        self.images_skipped = False
        """Whether `<img>` was not selected at all (`quiet_images`; known once built)."""
        self.tail_copied = 0
        """How many bytes at the end of a whole document went out without lol-html
        (`selection.tail_start`)."""
        self.spliced: tuple[int, bytes, bytes] | None = None
        """Where `feed_whole` spliced the head-start addition into its output, and its
        bytes (`head_bytes`): an encoder copies the second part in from its compressed
        form, made once (`Encoder.splice`)."""
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
        self._head_bytes = head_bytes(additions) if run.head_pending else None
        """The head-start addition as bytes (`head_bytes`), made once for the response."""
        self._page_charset = charset or "windows-1252"
        self._out: list[bytes] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._ascii = True
        self._pending = 0
        self._max_pending = plan.max_pending
        # A failure is kept as (reason, detail) and raised as a new GateError each time:
        # a raised exception kept on the gate would hold its traceback's frames, which
        # hold the gate and its lol-html rewriter, a cycle only the garbage collector
        # frees; run in another thread (a log writer's, a metrics render's), it cannot
        # drop the rewriter (lol-html objects belong to the thread that made them),
        # reports an error and leaks it.
        self._failure: tuple[str, str] | None = None
        self._head: bytes | None = b""  # the input's first bytes, until there are two
        self._held: bytes | None = b"" if self._head_bytes is not None else None
        """The document's first bytes, held until `first_element_spot` knows whether the
        guard goes before its first element (`_place_head`); None once it is known."""
        self._tried = 0  # how many held bytes `first_element_spot` last read
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

    def _may_adapt(self) -> bool:
        """Whether `<img>` may be selected per document: not forced wide, and no rule
        classifies relative URLs (the img handler's plainly-relative shortcut)."""
        return self._adaptive is not False and self._run.relative_first_party

    def _build(
        self,
        *,
        needed: frozenset[str] = _STREAMED,
        narrow: bool = False,
        foreign: bool = True,
        quiet_images: bool = False,
    ) -> Any:
        """The lol-html rewriter with this gate's selectors; `needed` names the
        `PRESCANNED` ones to include (a streamed document needs them all); `narrow`
        selects `<img>` with `IMG_NARROW` (only where no rule classifies relative URLs:
        the img handler's plainly-relative shortcut is what makes it exact);
        `quiet_images`: no `<img>` of the document holds what `IMG_NARROW` selects
        (`proxy.html.reach`), so, where it could be narrowed, `<img>` is not selected at
        all; `foreign=False` leaves out the `svg, math` selector."""
        run = self._run
        adaptive = self._may_adapt()
        narrow = (narrow or self._adaptive is True) and adaptive
        self.narrowed = narrow
        if quiet_images and adaptive and "img" in needed:
            needed = needed - _IMG
            self.images_skipped = True
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
        if self._failure is not None:
            raise GateError(*self._failure)
        try:
            step()
        except Exception as exc:  # lol-html reports handler and parser errors as RuntimeError
            if self._optimistic and self._run.foreign_entered:
                raise _Restart from None
            message = str(exc)
            lowered = message.lower()
            ambiguous = "ambiguity" in lowered or "text content tag" in lowered
            reason = "parse_ambiguity" if ambiguous else "rewrite_error"
            self._fail(reason, message[:300])

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
                self._fail("unsupported_charset", "the page starts with a UTF-16 byte order mark")
        if self._held is not None:
            return self._place_head(chunk, complete=False)
        return self._feed(chunk)

    def _place_head(self, chunk: bytes, *, complete: bool) -> bytes:
        """A document without an `<html>` or `<head>` start tag first (minifiers drop
        both) gets the head-start addition right before its first element, where the
        parser makes the head (`first_element_spot`), spliced in between the gated bytes
        before it and that element's: the `head, html > *` handler has no element there,
        and the script handler's fallback left event handlers before the first script,
        and pages without one, unguarded. The first bytes are held until that is known
        (at most `FIRST_ELEMENT_LIMIT`, read again once twice as many are held)."""
        held = self._held + chunk if self._held else chunk
        if not complete and len(held) < min(2 * self._tried, FIRST_ELEMENT_LIMIT):
            self._held = held
            return b""
        self._tried = len(held)
        spot = first_element_spot(held, complete)
        if spot is None:
            self._held = held
            return b""
        self._held = None
        head = self._head_bytes
        if spot < 0 or head is None or not self._run.head_pending:
            return self._feed(held)
        before = self._feed(held[:spot]) if spot else b""
        if before == held[:spot]:
            self._run.take_head_start()
            before = b"".join((before, *head))
        return before + self._feed(held[spot:])

    def _feed(self, chunk: bytes) -> bytes:
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
                self._fail("pending_limit", f"no output for {self._pending} bytes of input")
        return out

    def end(self) -> bytes:
        """Finish the document; return the remaining output."""
        head, self._head = self._head, None
        first = self.feed(head) if head else b""  # a one-byte document
        if self._held is not None:
            first += self._place_head(b"", complete=True)
        rewriter = self._rewriter or self._build()
        self._flush_carry(rewriter)
        self._call(rewriter.end)
        if self._ascii:
            return first + self._drain_bytes()
        text = self._drain_transport() + self._decoder.decode(b"", final=True)
        return first + text.encode("latin-1")

    @property
    def documents_only(self) -> bool:
        """Its additions go only into a whole document (`Additions.documents_only`)."""
        return self._run.additions.documents_only

    def drop_additions(self) -> None:
        """Add nothing to this body: a fragment (`Additions.documents_only`). Called by
        `DocumentStart`, before the first feed."""
        assert self._rewriter is None, "drop_additions after the first feed"
        self._run.drop_additions()
        self._head_bytes = self._held = None
        self._args = (*self._args[:-1], NO_ADDITIONS)

    @property
    def pending_head(self) -> tuple[bytes, bytes] | None:
        """The head-start addition's bytes (`head_bytes`) while the gate has yet to put
        them out (None when there are none, they are not ASCII, or they are out): the
        body pipeline finds them in the output that puts them out and splices the
        shared part compressed."""
        return self._head_bytes if self._run.head_pending else None

    def feed_whole(self, document: bytes) -> bytes:
        """`feed(document) + end()` for a caller that holds the complete document before
        the first feed: the same output, with only the registrations `prescan` finds the
        document may need, and, in one without `<base` and with many images for its size
        (`images_are_dense`), only the `<img>` that could leave the page's host. The
        head-start addition (the runtime guard) is spliced into the output where
        `head_start_spot` finds the first `<html>`/`<head>` start tag to end, instead of
        going through lol-html, when the gate left those first bytes as they came."""
        run = self._run
        head = self._head_bytes if self._rewriter is None and run.head_pending else None
        self._held = None  # `head_start_spot` reads the whole prologue, that one too
        if head is not None:
            spot = head_start_spot(document)
            if spot >= 0:
                # Spliced in after gating: no `html, head` handler, no trip through lol-html.
                run.head_pending = False
                out = self._gate_whole(document)
                if self._redone:
                    return out  # the fresh gate of `_redo` inserted it
                if out.startswith(document[:spot]):
                    view = memoryview(out)  # one copy of the page, not two
                    self.spliced = (spot, *head)
                    return b"".join((view[:spot], *head, view[spot:]))
                return self._redo(document)  # a handler changed the prologue: its way
        return self._gate_whole(document)

    def _gate_whole(self, document: bytes) -> bytes:
        if self._rewriter is None:
            run = self._run
            needed, narrow = whole_selection(document)
            if FOREIGN not in needed:
                self._foreign = None  # no `<svg`, no `<math`: no foreign content to follow
            # `<img>` may go unselected where it may be narrowed (nothing classifies
            # relative URLs, no `<base`): the images that could leave the host decide.
            images = self._may_adapt() and "base" not in needed
            if (
                len(document) >= TAIL_READ + TAIL_MIN
                and self._foreign is None
                and self._adaptive is not False
                and not run.head_pending
            ):
                tail = tail_start(document, run.plan, needed, run.page_pending, images)
                if tail > 0:
                    self._build(needed=needed, narrow=narrow)
                    return self._gate_start(document, tail)
            self._build(needed=needed, narrow=narrow, quiet_images=images and narrow and quiet_images(document))
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

    def _gate_start(self, document: bytes, tail: int) -> bytes:
        """Gate `document[:tail]` and copy the rest (`tail_start`: nothing there for any
        registration), the document-end markup after it. The same bytes as gating it
        all: lol-html writes text and tags no handler touches as they came, and the
        start ends in the data state, between tokens."""
        run = self._run
        self.tail_copied = len(document) - tail
        run.end_deferred = ""
        out = self.feed(document[:tail]) + self.end()
        end = run.end_deferred
        if not end.isascii():
            self.tail_copied = 0
            return self._redo(document)  # markup lol-html would write in the page's encoding
        return b"".join((out, memoryview(document)[tail:], end.encode("ascii")))

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
        if self._run.fragment:
            fresh._run.drop_additions()
        try:
            return fresh.feed(document) + fresh.end()
        except GateError as exc:
            self._fail(exc.reason, exc.detail)
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
        self._fail("foreign_content", detail)

    def _fail(self, reason: str, detail: str) -> NoReturn:
        """Fail the gate: this call and every later one raise GateError(reason, detail)."""
        self._failure = (reason, detail)
        raise GateError(reason, detail) from None


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
