"""Handlers for the less common markup that fetches (issue 15, classes 3 and 4).

Each reads what Chromium fetches from one kind of element or attribute and has the run
act on a refusal: SVG `<image>`/`<feImage>`/`<use>` by `href`/`xlink:href`, SMIL
`<set>`/`<animate>` values, presentation attributes and `style` attributes holding
CSS (`proxy.html.css`), `attributionsrc`, `<meta http-equiv=refresh>` (and the page's
`<meta charset>`), `<style>` element text, and `data:` documents and stylesheets
(`proxy.html.sources`). Elements nobody could activate later are removed, whatever the
configured action (`GateRun.remove`).
"""

from __future__ import annotations

import html
import re
from typing import Any, Final

from ..core.actions import Kind
from ..core.policy import Decision
from .attributes import attribute_text
from .css import gate_css, may_fetch
from .fragment import gate_fragment
from .hosts import python_codec
from .run import GateRun
from .run import RunHandler as _Handler
from .sources import HTML_DOCUMENT, INERT, DataUrl, data_kind, is_data_url, make_data_url, parse_data_url, refresh_url

__all__ = [
    "PRESENTATION_ATTRIBUTES",
    "AnimationHandler",
    "AttributionHandler",
    "MetaHandler",
    "PresentationHandler",
    "StyleElementHandler",
    "SvgHrefHandler",
    "css_refusal",
    "gate_data_url",
]

_MEDIA, _LINK, _FRAME, _PING = Kind.MEDIA, Kind.LINK, Kind.FRAME, Kind.PING
SVG_NS: Final = "http://www.w3.org/2000/svg"

PRESENTATION_ATTRIBUTES: Final = (
    "fill",
    "stroke",
    "mask",
    "clip-path",
    "filter",
    "marker",
    "marker-start",
    "marker-mid",
    "marker-end",
    "cursor",
)
"""SVG presentation attributes whose value may be a CSS `url(...)` the browser fetches."""

_MAX_DATA_DEPTH: Final = 3
_BEYOND_LATIN1: Final = re.compile("[^\x00-\xff]")
"""Characters from character references (the transport holds bytes as U+0000-U+00FF)."""


def _attr(e: Any, name: str) -> str | None:
    return attribute_text(e.get_attribute(name))


def css_refusal(run: GateRun, tag: str, text: str, depth: int = 0) -> tuple[str | None, Decision | None]:
    """`text` (CSS) with refused URLs replaced (None: unchanged), and the first refusal.
    A `data:` stylesheet inside is read and gated in turn."""
    found: list[Decision] = []

    def refuses(url: str) -> bool:
        if is_data_url(url):
            parsed = parse_data_url(url)
            if parsed is None or parsed.essence != "text/css":
                return False  # data: images in CSS load in secure mode: they fetch nothing
            if depth >= _MAX_DATA_DEPTH:
                found.append(run.policy.unparseable_host.decide(run.consent, _LINK))
                return not found[-1].keeps
            _, inner = css_refusal(run, tag, parsed.body.decode("latin-1"), depth + 1)
            if inner is not None:
                found.append(inner)
                return True
            return False
        d = run.decide(_LINK, tag, url)
        if d.keeps:
            return False
        found.append(d)
        return True

    out = gate_css(text, refuses)
    return out, (found[0] if found else None)


def gate_data_url(run: GateRun, tag: str, kind: Kind, url: str) -> tuple[str | None, Decision | None]:
    """A data: document or stylesheet in `url`: (a replacement URL, None) when gating
    changed it, (None, a refusal) when it must go, (None, None) when it stays."""
    parsed = parse_data_url(url)
    if parsed is None:
        return None, None  # the browser loads nothing
    if kind is _LINK:
        if parsed.essence != "text/css":
            return None, None
        out, refusal = css_refusal(run, tag, parsed.body.decode("latin-1"))
        if out is None or refusal is None:
            return None, None
        run.count(refusal)
        return make_data_url(parsed.mediatype, out.encode("latin-1")), None
    what = data_kind(parsed.essence)
    if what == INERT:
        return None, None
    if what == HTML_DOCUMENT and run.nested < 2:
        return _gate_data_document(run, parsed)
    d = run.policy.unparseable_host.decide(run.consent, kind)
    return None, (None if d.keeps else d)


def _gate_data_document(run: GateRun, parsed: DataUrl) -> tuple[str | None, Decision | None]:
    text = parsed.body.decode("latin-1")
    charset = None
    for param in parsed.mediatype.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"')
    saved = run.charset
    run.charset = charset if python_codec(charset) else None
    try:
        out = gate_fragment(run, text)
    finally:
        run.charset = saved
    if out is None:
        return None, None
    return make_data_url(parsed.mediatype, out.encode("latin-1")), None


class SvgHrefHandler(_Handler):
    """`<image>` (an HTML `<image>` is an `<img>` to the parser), `<feImage>`, `<use>`."""

    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        tag = e.tag_name
        if e.namespace_uri == SVG_NS:
            names: tuple[str, ...] = ("href", "xlink:href")
        elif tag == "image":
            names = ("src", "srcset")  # the tree builder renames it img
        else:
            return
        for name in names:
            value = _attr(e, name)
            if not value:
                continue
            from .attributes import srcset_urls

            for url in srcset_urls(value) if name == "srcset" else (value,):
                d = run.decide(_MEDIA, tag, url)
                if not d.keeps:
                    if names[0] == "src":
                        # An HTML <image>: lol-html does not know it is void, and removing
                        # it would take the rest of the page along; without its URLs the
                        # <img> it becomes fetches nothing.
                        run.remove(e, d, "src")
                        if not run.report_only:
                            e.remove_attribute("srcset")
                    else:
                        run.remove(e, d)
                    return


_ANIMATED_VALUES: Final = ("to", "from", "by", "values")


class AnimationHandler(_Handler):
    """SMIL `<set>`/`<animate>`: a value animated into an `href` (or a presentation
    attribute holding `url(...)`) is fetched like the attribute itself."""

    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        tag = e.tag_name
        for name in _ANIMATED_VALUES:
            value = _attr(e, name)
            if not value:
                continue
            for part in value.split(";") if name == "values" else (value,):
                d = run.decide(_MEDIA, tag, part.strip())
                if d.keeps and may_fetch(part):
                    d = css_refusal(run, tag, part)[1] or d
                if not d.keeps:
                    run.remove(e, d)
                    return


class PresentationHandler(_Handler):
    """SVG presentation attributes with `url(...)`: a refused reference becomes `none`."""

    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        for name in PRESENTATION_ATTRIBUTES:
            raw = e.get_attribute(name)
            if raw is None or ("(" not in raw and "&" not in raw):
                continue
            out, d = css_refusal(run, e.tag_name, attribute_text(raw) or "")
            if d is not None and out is not None:
                run.count(d)
                if not run.report_only:
                    e.set_attribute(name, out.replace("&", "&amp;"))


class StyleAttributeHandler(_Handler):
    """`style` attributes: a refused `url(...)`, `image-set` string or the like becomes
    `none` (no request, the rest of the declaration unchanged). Cheap first: a value
    without `(` or `&` (a character reference may spell one) fetches nothing."""

    __slots__ = ()

    def element(self, e: Any) -> None:
        raw = e.get_attribute("style")
        if raw is None or ("(" not in raw and "&" not in raw):
            return
        run = self.run
        out, d = css_refusal(run, e.tag_name, attribute_text(raw) or "")
        if d is not None and out is not None:
            run.count(d)
            if not run.report_only:
                e.set_attribute("style", out.replace("&", "&amp;"))


class AttributionHandler(_Handler):
    """`attributionsrc` (Attribution Reporting): its URLs are contacted like a ping."""

    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        value = _attr(e, "attributionsrc")
        if value is None:
            return
        for url in value.split():
            d = run.decide(_PING, e.tag_name, url)
            if not d.keeps:
                run.remove(e, d, "attributionsrc")
                return


class MetaHandler(_Handler):
    """`<meta http-equiv=refresh>` navigates to its URL: refused, the element goes. The
    first `<meta charset>` (or content-type) names the page's charset when the response
    header did not."""

    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        charset = e.get_attribute("charset")
        equiv = (e.get_attribute("http-equiv") or "").strip().lower()
        if equiv == "content-type" and charset is None:
            content = (e.get_attribute("content") or "").lower()
            at = content.find("charset=")
            if at >= 0:
                charset = content[at + 8 :].strip(" \"';")
        if charset and not run.charset_known and python_codec(charset):
            run.charset = charset.strip()
            run.charset_known = True
        if equiv != "refresh":
            return
        url = refresh_url(_attr(e, "content") or "")
        if url is None:
            return
        d = run.decide(_FRAME, "meta", url)
        if d.keeps and is_data_url(url):
            d = gate_data_url(run, "meta", _FRAME, url)[1] or d
        if not d.keeps:
            run.remove(e, d)


class StyleElementHandler(_Handler):
    """`<style>` text, held back until complete, then gated as CSS."""

    __slots__ = ("buf", "svg")

    def __init__(self, run: GateRun) -> None:
        super().__init__(run)
        self.buf: list[str] = []
        self.svg = False

    def element(self, e: Any) -> None:
        self.buf = []
        self.svg = e.namespace_uri == SVG_NS

    def text(self, t: Any) -> None:
        self.buf.append(t.text)
        if not t.last_in_text_node:
            t.remove()
            return
        text = "".join(self.buf)
        self.buf = []
        run = self.run
        # In SVG, <style> is ordinary text: character references are decoded first.
        css = html.unescape(text) if self.svg and "&" in text else text
        out, d = css_refusal(run, "style", css) if may_fetch(css) else (None, None)
        if d is None or out is None:
            t.replace(text, run.html)
            return
        run.count(d)
        if run.report_only:
            t.replace(text, run.html)
        elif self.svg:
            escaped = html.escape(out, quote=False)
            t.replace(_BEYOND_LATIN1.sub(lambda m: f"&#{ord(m.group())};", escaped), run.html)
        else:
            # `</style` cannot appear in the output: `none` replaced a token of the input.
            t.replace(out, run.html)
