"""The gate's element handlers: what each selected element may fetch, and what to do about it.

One handler object per selector of `proxy.html.gate.SELECTORS` per response (`HANDLERS`,
by selector name); lol-html calls `element(e)` for each start tag it selects and
`text(t)` for the text of `<script>`/`<noscript>`. A handler reads the fetching
attributes (as the browser reads them: `proxy.html.attributes`), asks its `GateRun` to
decide each URL, and has the run act on a refused element; it never decides or writes
markup itself, except where the element's text is the payload:

- inline scripts are held back until their text is complete (up to
  `max_inline_script`), then kept, emptied, or moved into an inert
  `<script type="text/plain">` right after the original (now empty) element;
- `<noscript>` content and `srcdoc` documents run through a nested gate (`GateRun.nested_gate`),
  small ones whole and memoised per plan (`gate_fragment`), larger ones streaming.

lol-html's element and text chunk objects are typed `Any` (the binding has no stubs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from ..core.actions import Action, Kind
from ..core.defer import apply_edit, defer_edit, runs_somewhere, start_tag
from ..core.policy import Decision
from .attributes import LINK_RELS, ascii_tokens, attribute_text, may_name_a_host, srcset_urls
from .fetching import (
    AnimationHandler,
    AttributionHandler,
    MetaHandler,
    PresentationHandler,
    StyleAttributeHandler,
    StyleElementHandler,
    SvgHrefHandler,
    gate_data_url,
)
from .fragment import FRAGMENT_MEMO_MAX_TEXT, MAX_NESTING, gate_fragment
from .markup import GOOGLE_TAG_VENDORS, activation_script
from .run import GateRun, Handler, TextGate, nonce_kept
from .run import RunHandler as _Handler
from .sources import import_map_addresses, is_data_url, speculation_urls, url_scheme

__all__ = [
    "DOCUMENT_HANDLER",
    "FOREIGN_HANDLER",
    "HANDLERS",
    "PAGE_HANDLER",
    "PAGE_SELECTOR",
    "SVG_NS",
    "gate_fragment",
]

SVG_NS: Final = "http://www.w3.org/2000/svg"
_KEEP, _REMOVE, _DEFER = Action.KEEP, Action.REMOVE, Action.DEFER
# Per element, a module global costs a sixth of an enum member lookup (Python 3.11).
_SCRIPT, _INLINE, _MEDIA, _FRAME, _LINK, _PING = Kind.SCRIPT, Kind.INLINE, Kind.MEDIA, Kind.FRAME, Kind.LINK, Kind.PING


def _attr(e: Any, name: str) -> str | None:
    return attribute_text(e.get_attribute(name))


class _ScriptHandler(Handler):
    """External scripts by URL; inline scripts held back and decided by signature."""

    __slots__ = ("run", "mode", "attrs", "buf", "size", "rules")

    IGNORE = 0
    BUFFER = 1
    PASS = 2
    SWALLOW = 3

    def __init__(self, run: GateRun) -> None:
        self.run = run
        self.mode = self.IGNORE
        self.attrs: list[tuple[str, str]] = []
        self.buf: list[str] = []
        self.size = 0
        self.rules = ""
        """The buffered script is JSON, not JavaScript: "speculationrules" or "importmap"."""

    def element(self, e: Any) -> None:
        run = self.run
        self.rules = ""
        svg = e.namespace_uri == SVG_NS
        url = (_attr(e, "href") or _attr(e, "xlink:href")) if svg else _attr(e, "src")
        nonce = e.get_attribute("nonce")
        if nonce and run.nonce is None:
            run.nonce = nonce
        if run.head_pending:
            # Neither an <html> or <head> start tag nor another element came first (text
            # did; `HtmlGate._place_head`): the head-start addition goes before the first
            # script, which is what it must precede.
            e.before(run.take_head_start(), run.html)
        if url is not None and url.strip():
            self.mode = self.IGNORE
            if not runs_somewhere(_attr(e, "type")):
                return
            decision = run.decide(_SCRIPT, "script", url)
            if decision.keeps:
                if run.gcm_pending and _is_google(decision):
                    e.before(run.consent_mode_script(), run.html)
                return
            run.act(e, _SCRIPT, decision)
            return
        kind = _attr(e, "type")
        if not runs_somewhere(kind):
            self.mode = self.IGNORE
            rules = kind.strip(_ASCII_WS).lower() if kind is not None else ""
            if rules not in _JSON_SCRIPTS:
                return
            self.rules = rules
        self.mode = self.BUFFER
        self.attrs = e.attributes
        self.buf = []
        self.size = 0

    def text(self, t: Any) -> None:
        mode = self.mode
        if mode == self.IGNORE or mode == self.PASS:
            return
        if mode == self.SWALLOW:
            t.remove()
            return
        chunk = t.text
        self.buf.append(chunk)
        self.size += len(chunk)
        last = t.last_in_text_node
        if not last and self.size <= self.run.plan.max_inline_script:
            t.remove()
            return
        text = "".join(self.buf)
        self.buf = []
        # Over the cap the decision rests on the first part; the rest then follows it.
        self.mode = self.IGNORE if last else self.PASS
        self._finish(t, text)

    def _finish(self, t: Any, text: str) -> None:
        run = self.run
        if self.rules == "importmap":
            self._finish_import_map(t, text)
            return
        if self.rules:
            self._finish_rules(t, text)
            return
        decision = run.decide_inline(text)
        if decision.keeps:
            if run.gcm_pending and _is_google(decision):
                # Close the original (now empty) script, run the defaults in their own
                # element, then reopen an identical script for the original text.
                t.replace(f"</script>{run.consent_mode_script()}{start_tag('script', self.attrs)}{text}", run.html)
            else:
                t.replace(text, run.html)
            return
        action = run.action(decision)
        if run.report_only or action is _KEEP:
            t.replace(text, run.html)
            return
        if action is _REMOVE or run.in_foreign:  # no markup inserted inside foreign content
            t.replace("", run.html)
            if self.mode == self.PASS:
                self.mode = self.SWALLOW
            return
        if action is not _DEFER:
            raise ValueError(f"the gate cannot take the effect {action!r} on an inline script")
        edit = defer_edit(
            run.style, _INLINE, dict(self.attrs), decision.category or "", decision.vendor, run.plan.cmp_names
        )
        inert = start_tag("script", apply_edit(self.attrs, edit))
        t.replace(f"{edit.before}</script>{inert}{text}", run.html)
        # Didomi's wrapper has no closing part for scripts: the type change is enough.

    def _finish_rules(self, t: Any, text: str) -> None:
        """Speculation rules prefetch or prerender their URLs: any refused one, or a
        document rule that may match links beyond the page's own paths while the visitor
        refused something, empties the rules (the browser then speculates nothing)."""
        run = self.run
        found = speculation_urls(text)
        refusal: Decision | None = None
        if found is not None:
            urls, contained = found
            for url in urls:
                d = run.decide(_LINK, "script", url)
                if not d.keeps:
                    refusal = d
                    break
            if refusal is None and not contained:
                d = run.policy.unparseable_host.decide(run.consent, _LINK)
                refusal = None if d.keeps else d
        if refusal is None:
            t.replace(text, run.html)
            return
        run.count(refusal)
        t.replace(text if run.report_only else "", run.html)
        if self.mode == self.PASS and not run.report_only:
            self.mode = self.SWALLOW

    def _finish_import_map(self, t: Any, text: str) -> None:
        """An import map names the URLs of the page's modules (`import "name"`): each one
        of a refused vendor points at tag-gate's empty module instead (an address at
        `/__tag-gate/blocked.js`, a prefix at `/__tag-gate/blocked/`), so the page's own
        modules that import it still resolve and run, and the vendor is never fetched.
        A map too large to read whole goes as an unreadable host does."""
        run = self.run
        refusals: list[Decision] = []
        found = import_map_addresses(text) if self.mode != self.PASS else None
        if self.mode == self.PASS:
            d = run.policy.unparseable_host.decide(run.consent, _SCRIPT)
            if not d.keeps:
                refusals.append(d)
        elif found is not None:
            parsed, places = found
            blocked = f"//{run.page_host}{BLOCKED_MODULE}" if run.base_host and run.page_host else BLOCKED_MODULE
            for specifiers, key in places:
                d = run.decide(_SCRIPT, "script", specifiers[key])
                if not d.keeps:
                    refusals.append(d)
                    specifiers[key] = blocked + ("/" if key.endswith("/") else ".js")
        for d in refusals:
            run.count(d)
        if not refusals or run.report_only:
            t.replace(text, run.html)
        elif found is None:  # the map was too large: none of it
            t.replace("", run.html)
            self.mode = self.SWALLOW
        else:
            t.replace(json.dumps(found[0], ensure_ascii=True).replace("<", "\\u003c"), run.html)


_ASCII_WS: Final = "\t\n\f\r "
_JSON_SCRIPTS: Final = frozenset(("speculationrules", "importmap"))
BLOCKED_MODULE: Final = "/__tag-gate/blocked"
"""Where an import map's refused addresses point: `.js` (an empty module), or a prefix
under `/` (any module below it is the same empty module)."""


def _is_google(decision: Decision) -> bool:
    return decision.vendor is not None and decision.vendor.id in GOOGLE_TAG_VENDORS


class _ImgHandler(_Handler):
    """`<img>`: the most common element on any page, so the fast path is spelled out:
    a plainly relative src (the site's own photo) costs one attribute read."""

    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        src = e.get_attribute("src")
        if src:
            if "&" in src:
                src = attribute_text(src) or ""
            d = run.decide(_MEDIA, "img", src)
            if not d.keeps:
                run.act(e, _MEDIA, d)
                return
        srcset = e.get_attribute("srcset")
        if srcset:
            if "&" in srcset:
                srcset = attribute_text(srcset) or ""
            if not run.relative_first_party or may_name_a_host(srcset):
                for url in srcset_urls(srcset):
                    d = run.decide(_MEDIA, "img", url)
                    if not d.keeps:
                        run.act(e, _MEDIA, d)
                        return


class _MediaHandler(_Handler):
    __slots__ = ()

    URL_ATTRIBUTES: Final = {
        "source": ("src",),
        "video": ("src", "poster"),
        "audio": ("src",),
        "input": ("src",),
        "body": ("background",),
        "table": ("background",),
        "td": ("background",),
        "th": ("background",),
        "tr": ("background",),
        "thead": ("background",),
        "tbody": ("background",),
        "tfoot": ("background",),
        "col": ("background",),
        "colgroup": ("background",),
        "track": ("src",),
    }
    SRCSET: Final = frozenset({"source"})
    BACKGROUND: Final = frozenset({"body", "table", "td", "th", "tr", "thead", "tbody", "tfoot", "col", "colgroup"})

    def element(self, e: Any) -> None:
        run = self.run
        tag = e.tag_name
        worst: Decision | None = None
        for name in self.URL_ATTRIBUTES.get(tag, ("src",)):
            url = _attr(e, name)
            if url:
                d = run.decide(_MEDIA, tag, url)
                if not d.keeps:
                    worst = d
                    break
        if worst is None and tag in self.SRCSET:
            srcset = _attr(e, "srcset")
            if srcset and (not run.relative_first_party or may_name_a_host(srcset)):
                for url in srcset_urls(srcset):
                    d = run.decide(_MEDIA, tag, url)
                    if not d.keeps:
                        worst = d
                        break
        if worst is not None:
            if tag == "input" and (_attr(e, "type") or "").strip().lower() != "image":
                return
            run.act(e, _MEDIA, worst, "background" if tag in self.BACKGROUND else None)


class _UrlHandler(Handler):
    """Elements with one fetching attribute: frames, embeds, links."""

    __slots__ = ("run", "kind", "attribute")

    def __init__(self, run: GateRun, kind: Kind, attribute: Mapping[str, str]) -> None:
        self.run = run
        self.kind = kind
        self.attribute = attribute

    def element(self, e: Any) -> None:
        tag = e.tag_name
        run = self.run
        urls = [_attr(e, self.attribute.get(tag, "src"))]
        if self.kind is _LINK:
            if LINK_RELS.isdisjoint(ascii_tokens(_attr(e, "rel"))):
                return
            images = _attr(e, "imagesrcset")
            if images:
                urls.extend(srcset_urls(images))
        for url in urls:
            if url:
                decision = run.decide(self.kind, tag, url)
                if decision.keeps and is_data_url(url):
                    replacement, refusal = gate_data_url(run, tag, self.kind, url)
                    if refusal is not None:
                        run.remove(e, refusal)
                        return
                    if replacement is not None and not run.report_only:
                        e.set_attribute(self.attribute.get(tag, "src"), replacement)
                    continue
                if not decision.keeps:
                    run.act(e, self.kind, decision)
                    return


class _PingHandler(_Handler):
    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        urls = (_attr(e, "ping") or "").split()
        kept = []
        refused: Decision | None = None
        for url in urls:
            d = run.decide(_PING, e.tag_name, url)
            if d.keeps:
                kept.append(url)
            else:
                refused = d
        if refused is None:
            return
        run.action(refused)
        if run.report_only:
            return
        if kept:
            e.set_attribute("ping", " ".join(kept))
        else:
            e.remove_attribute("ping")


class _FrameHandler(_Handler):
    """`<iframe>`/`<frame>` by src. An iframe's srcdoc holds a whole document (shown
    instead of src): it goes through a nested gate first, so that a placeholder's saved
    copy of the element holds the gated document too."""

    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        tag = e.tag_name
        source = e.get_attribute("srcdoc")
        # the markup that installs the runtime guard in a frame the page reaches at once
        # (not in a sandbox that keeps the frame's scripts from running or from reaching
        # this document: the script would only be blocked, with a console error)
        frame = run.frame_markup
        if frame and (tag != "iframe" or run.in_foreign or not _reachable(e)):
            frame = ""
        if source and run.nested >= MAX_NESTING:
            if not run.report_only:
                e.set_attribute("srcdoc", "")  # too deep to gate: an empty document
        elif source:
            source = attribute_text(source) or ""
            out = gate_fragment(run, source)
            if frame and nonce_kept(frame, source):
                out = _frame_first(out if out is not None else source, frame)
            if out is not None and not run.report_only:
                # lol-html escapes the quotes; `&` must be escaped too or the browser
                # would read character references that were text in the gated document.
                e.set_attribute("srcdoc", out.replace("&", "&amp;"))
        url = _attr(e, "src")
        if url:
            decision = run.decide(_FRAME, tag, url)
            if decision.keeps and is_data_url(url):
                replacement, refusal = gate_data_url(run, tag, _FRAME, url)
                if refusal is not None:
                    run.remove(e, refusal)
                elif replacement is not None and not run.report_only:
                    e.set_attribute("src", replacement)
                return
            if not decision.keeps:
                run.act(e, _FRAME, decision)
                return
        if frame and (source is not None or not url or url_scheme(url) == "about"):
            e.after(frame, run.html)


_BOTH: Final = frozenset(("allow-scripts", "allow-same-origin"))
_DOCTYPE: Final = re.compile(r"[\t\n\f\r ]*<!doctype[^>]*>", re.IGNORECASE)


def _reachable(e: Any) -> bool:
    """Whether an iframe's document may run scripts that reach its parent: no sandbox, or
    one allowing both (tokens in any case, between any ASCII whitespace)."""
    box = e.get_attribute("sandbox")
    return box is None or ascii_tokens(attribute_text(box)) >= _BOTH


def _frame_first(document: str, markup: str) -> str:
    """A srcdoc document with `markup` first: after its doctype, which a script before it
    would make the parser ignore."""
    m = _DOCTYPE.match(document)
    at = m.end() if m else 0
    return document[:at] + markup + document[at:]


class _BaseHandler(_Handler):
    """`<base href>`: the browser resolves relative URLs against the first one. Elements
    before it may still resolve against it (an `<object data>`, `<embed src>` or video
    `poster` is fetched after parsing goes on), so a base on a refused host loses its
    `href` wherever it stands: no URL of the page, earlier or later, can reach that host
    through it, and the next base (if any) applies instead, as in the browser."""

    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        if run.base_fixed:
            return  # the browser ignores every base after the first with an href
        href = _attr(e, "href") or ""
        host = run.host_of(href)
        if host and host != run.page_host:
            decision = run.decide(_MEDIA, "base", href)
            if not decision.keeps:
                run.action(decision)
                if not run.report_only:
                    e.remove_attribute("href")
                    return
            run.base_host = host
            run.relative_first_party = False
        run.base_fixed = True


class _NoscriptHandler(Handler):
    """lol-html hands <noscript> content over as text (scripting-on parsing). Small
    content is collected and gated whole (`gate_fragment`); content past
    `FRAGMENT_MEMO_MAX_TEXT` streams through a nested gate instead."""

    __slots__ = ("run", "gate", "buf", "size")

    def __init__(self, run: GateRun) -> None:
        self.run = run
        self.gate: TextGate | None = None
        self.buf: list[str] = []
        self.size = 0

    def text(self, t: Any) -> None:
        run = self.run
        if run.nested >= MAX_NESTING:
            # A <noscript> that deep is nobody's markup but an evasion's: what it holds
            # would render without scripts, ungated, so it goes.
            if not run.report_only:
                t.remove()
            return
        chunk = t.text
        last = t.last_in_text_node
        gate = self.gate
        if gate is None:
            self.buf.append(chunk)
            self.size += len(chunk)
            if not last and self.size <= FRAGMENT_MEMO_MAX_TEXT:
                t.remove()
                return
            text = "".join(self.buf)
            self.buf = []
            self.size = 0
            if last:
                out = gate_fragment(run, text)
                t.replace(text if out is None else out, run.html)
                return
            gate = self.gate = run.nested_gate(run.stats)
            chunk = text
        out = gate.feed_text(chunk)
        if last:
            out += gate.end_text()
            self.gate = None
        t.replace(out, run.html)


class _DocumentHandler(_Handler):
    __slots__ = ()

    def end(self, e: Any) -> None:
        run = self.run
        if run.nested or run.fragment:
            return
        text = activation_script(run.nonce) if run.stats.activation_needed else ""
        text += run.end_additions()
        if run.end_deferred is not None:
            run.end_deferred = text  # the gate puts it after the bytes it did not write
        elif text:
            e.append(text, run.html)


class _ForeignHandler(_Handler):
    """`<svg>` and `<math>`: tells the gate that lol-html read a foreign start tag (the
    gate knows which input bytes it was writing, `HtmlGate._write`)."""

    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        run.foreign_entered = True
        if run.stop_on_foreign:
            raise RuntimeError("foreign content: gate the document again, following it")


class _TopHandler(_Handler):
    """`<head>` and the children of `<html>`: the head-start addition goes right after the
    `<head>` start tag, or right before the first element of an `<html>` without one
    (never right after `<html>`: a `<head>` that follows would lose its attributes)."""

    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        if run.head_pending:
            if e.tag_name == "head":
                e.prepend(run.take_head_start(), run.html)
            else:
                e.before(run.take_head_start(), run.html)


class _PageHandler(_Handler):
    """`<html>` and `<body>`, for the page additions: the page's language (read once),
    and the head-end addition right before the `<body>` start tag."""

    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        if e.tag_name == "html":
            if run.page_lang is None:
                run.page_lang = (_attr(e, "lang") or "").strip()
        elif run.head_end_pending:
            e.before(run.take_head_end(), run.html)


class _SvgHandler(Handler):
    """The SVG elements that fetch, under one selector registration: presentation
    attributes of every element inside `<svg>`, `<image>`, `<feImage>`, `<use>`, SMIL
    `<set>`/`<animate>`; and an HTML `<image>` (an `<img>` to the parser)."""

    __slots__ = ("svg", "animation", "presentation")

    _SVG_HREF: Final = frozenset({"image", "feimage", "use"})
    _ANIMATION: Final = frozenset({"set", "animate"})

    def __init__(self, run: GateRun) -> None:
        self.svg = SvgHrefHandler(run)
        self.animation = AnimationHandler(run)
        self.presentation = PresentationHandler(run)

    def element(self, e: Any) -> None:
        tag = e.tag_name
        if e.namespace_uri == SVG_NS:
            if tag in self._SVG_HREF:
                self.svg.element(e)
            elif tag in self._ANIMATION:
                self.animation.element(e)
            if not e.removed:
                self.presentation.element(e)
        elif tag == "image":
            self.svg.element(e)


_EMBED_ATTRS: Final = {"object": "data", "embed": "src"}
_LINK_ATTRS: Final = {"link": "href"}

HANDLERS: Final[Mapping[str, Callable[[GateRun], Any]]] = {
    "script": _ScriptHandler,
    "img": _ImgHandler,
    "media": _MediaHandler,
    "background": _MediaHandler,
    "frame": _FrameHandler,
    "embed": lambda run: _UrlHandler(run, Kind.EMBED, _EMBED_ATTRS),
    "link": lambda run: _UrlHandler(run, Kind.LINK, _LINK_ATTRS),
    "ping": _PingHandler,
    "style": StyleAttributeHandler,
    "style_element": StyleElementHandler,
    "attribution": AttributionHandler,
    "meta": MetaHandler,
    "svg": _SvgHandler,
    "base": _BaseHandler,
    "noscript": _NoscriptHandler,
    "top": _TopHandler,
}
"""A new handler for each of `gate.SELECTORS`, by name."""

FOREIGN_HANDLER: Final = _ForeignHandler
"""The handler of `gate.FOREIGN_SELECTOR`."""

DOCUMENT_HANDLER: Final = _DocumentHandler
"""The document-end handler (inserts activate.js when the page needs it)."""

PAGE_SELECTOR: Final = "html, body"
PAGE_HANDLER: Final = _PageHandler
"""Registered when the page gets a head-end or page-language addition."""
