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
"""

from __future__ import annotations

import codecs
import html
import html.entities
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import lolhtml

from ..core.actions import TRAITS, Action, Activation, Kind
from ..core.consent import ConsentState
from ..core.defer import CmpNames, apply_edit, defer_edit, runs_as_script, start_tag
from ..core.memo import Memo
from ..core.policy import Decision, Origin, Policy
from ..core.url import host_of
from ..core.vendors import Vendor

HTML: Final = lolhtml.ContentType.HTML
SVG_NS: Final = "http://www.w3.org/2000/svg"

SELECTORS: Final = {
    "script": "script",
    "img": "img",
    "media": "source, video, audio[src], input[src], "
    "body[background], table[background], td[background], th[background]",
    "frame": "iframe, frame",
    "embed": "object[data], embed[src]",
    "link": "link",
    "ping": "a[ping], area[ping]",
    "style": '[style*="url("]',
    "base": "base[href]",
    "noscript": "noscript",
}
"""The selectors the gate registers (the rewrite benchmark's reference uses the same).

lol-html tests every start tag against every compound selector (about 3 ns each), so
rare elements are selected by tag alone and their handlers read the attributes; an
attribute condition stays where the tag is common (`a[ping]`, `td[background]`)."""

LINK_RELS: Final = frozenset(
    {
        "preconnect",
        "dns-prefetch",
        "preload",
        "prefetch",
        "modulepreload",
        "stylesheet",
        "prerender",
        "icon",
        "apple-touch-icon",
        "apple-touch-icon-precomposed",
        "mask-icon",
        "manifest",
    }
)
"""`<link rel>` tokens that make the browser contact the URL."""

_CSS_URL: Final = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)\s]*))\s*\)""", re.IGNORECASE)

GOOGLE_TAG_VENDORS: Final = frozenset({"google-analytics", "google-tag-manager", "google-ads"})
"""Vendors whose kept tags get a Consent Mode v2 default block in front of them."""

ACTIVATE_PATH: Final = "/__tag-gate/activate.js"


_SELECTOR_NAMES: Final = {
    False: tuple(name for name in SELECTORS if name != "style"),
    True: tuple(SELECTORS),
}


def gate_selectors(plan: GatePlan) -> tuple[str, ...]:
    """The names of the SELECTORS a gate with this plan registers, in order."""
    return _SELECTOR_NAMES[plan.inline_styles]


_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")

_PING_NAME: Final = re.compile(rb"ping[\t\n\f\r ]*=")
_BEFORE_ATTRIBUTE_NAME: Final = frozenset(b"\t\n\f\r \"'/")


def may_carry_ping(document: bytes) -> bool:
    """Whether some element of `document` may have a `ping` attribute with a value: the
    bytes `ping` in any case, after whitespace, `/` or a closing quote (whatever ends the
    token before an attribute name), then `=`. Conservative: `"ping=` inside text counts
    too; `mapping = {...}` in a script does not. lol-html reads the same bytes (in the
    Latin-1 transport ASCII letters are unchanged), and attribute names have no
    character references, so a `ping` the parser sees is never missed."""
    lowered = document.lower()
    for match in _PING_NAME.finditer(lowered):
        start = match.start()
        if start == 0 or lowered[start - 1] in _BEFORE_ATTRIBUTE_NAME:
            return True
    return False


class GateError(Exception):
    """The gate failed; `reason` is a short metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ElementRecord:
    """One gated element, for `tag-gate explain` and debugging."""

    tag: str
    url: str
    kind: Kind
    decision: Decision


@dataclass(frozen=True, slots=True)
class GatePlan:
    """Per-config gate settings, built once and shared by every response."""

    policy: Policy
    defer_style: str = "tag-gate"
    cmp_names: CmpNames = field(default_factory=CmpNames)
    consent_mode: bool = True
    max_inline_script: int = 1 << 20
    gpc_refuses: frozenset[str] = frozenset({"advertising"})
    """`consent.gpc_refuses`: with Sec-GPC these are removed, never deferred."""
    inline_styles: bool = False
    """Gate `url()` in style attributes. lol-html then reads every element's attributes,
    which costs about a fifth of the gate's speed, so it is off unless asked for."""
    max_pending: int = 32 << 20
    """Input bytes the gate may take without producing output before it gives up."""
    fragment_memo: Memo[tuple[object, ...], tuple[str | None, tuple[tuple[tuple[str, str], int], ...], bool, bool]] = (
        field(default_factory=lambda: Memo(_FRAGMENT_MEMO_LIMIT, _FRAGMENT_MEMO_BYTES), compare=False, repr=False)
    )
    """Gated small fragments (see `_gate_fragment`); bounded, shared by every response."""
    placeholder_text: str = "{vendor} is blocked because you have not allowed {category} content."
    placeholder_button: str = "Load {vendor}"


@dataclass
class GateStats:
    """What one response's gate did (and, with `record`, every tracker it saw)."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    records: list[ElementRecord] | None = None
    unclassified_hosts: set[str] | None = None
    activation_needed: bool = False
    consent_mode_inserted: bool = False

    def total(self, action: Action) -> int:
        return sum(n for (a, _), n in self.counts.items() if a == action)


def gcm_block(consent: ConsentState) -> str:
    """`gtag('consent','default', ...)` with every Consent Mode v2 signal from the consent."""

    def state(category: str) -> str:
        return "granted" if consent.allows(category) else "denied"

    ads = state("advertising")
    values = {
        "ad_storage": ads,
        "ad_user_data": ads,
        "ad_personalization": ads,
        "analytics_storage": state("analytics"),
        "functionality_storage": state("functional"),
        "personalization_storage": state("functional"),
        "security_storage": "granted",
    }
    body = ",".join(f"'{k}':'{v}'" for k, v in values.items())
    return (
        "window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments);}"
        f"gtag('consent','default',{{{body}}});"
    )


def _ascii_html(text: str) -> str:
    """Escape text for element content or a double-quoted attribute, as pure ASCII
    (inserted markup must survive the Latin-1 transport, whatever the page's charset)."""
    return html.escape(text, quote=True).encode("ascii", "xmlcharrefreplace").decode("ascii")


_CHAR_REF: Final = re.compile(r"&(?:#[xX][0-9a-fA-F]+;?|#[0-9]+;?|[A-Za-z][A-Za-z0-9]*;?)")


def _decode_ref(m: re.Match[str]) -> str:
    ref = m.group()
    if ref[1] == "#":
        return html.unescape(ref)
    name = ref[1:]
    if not name.endswith(";") and m.string.startswith("=", m.end()):
        return ref  # a legacy reference before "=" stays as written in an attribute
    return html.entities.html5.get(name, ref)


def attribute_text(raw: str | None) -> str | None:
    """An attribute value as the browser reads it: lol-html hands over the raw source
    text, the browser decodes character references first (`https:&#x2F;&#x2F;host`
    and `&#47;&#47;host` load from `host`). In an attribute, a reference without `;`
    followed by `=` or an alphanumeric stays as written, as in the HTML tokenizer."""
    if raw is None or "&" not in raw:
        return raw
    return _CHAR_REF.sub(_decode_ref, raw)


def _attr(e: Any, name: str) -> str | None:
    return attribute_text(e.get_attribute(name))


def srcset_urls(value: str) -> list[str]:
    """The URLs of a srcset attribute (WHATWG "parse a srcset attribute", URLs only)."""
    urls: list[str] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and (value[i] in " \t\n\r\f,"):
            i += 1
        start = i
        while i < n and value[i] not in " \t\n\r\f":
            i += 1
        url = value[start:i]
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            depth = 0
            while i < n and (depth or value[i] != ","):
                depth += value[i] == "("
                depth -= value[i] == ")" and depth > 0
                i += 1
        if url:
            urls.append(url)
    return urls


class _Run:
    """Per-response state shared by the handlers of one gate."""

    def __init__(
        self,
        plan: GatePlan,
        consent: ConsentState,
        page_host: str | None,
        nonce: str | None,
        report_only: bool,
        stats: GateStats,
        nested: int,
    ) -> None:
        self.plan = plan
        self.policy = plan.policy
        self.consent = consent
        self.page_host = page_host
        self.base_host: str | None = None
        self.nonce = nonce
        self.report_only = report_only
        self.stats = stats
        self.nested = nested
        self.style = plan.defer_style
        self.gcm_pending = plan.consent_mode and not report_only
        self.first_party = self.policy.first_party.keep
        self.gpc_refused = plan.gpc_refuses if consent.gpc else None
        self.relative_first_party = not self.policy.relative_can_match

    # ------------------------------------------------------------ deciding

    def decide(self, kind: Kind, tag: str, url: str) -> Decision:
        if self.relative_first_party and _plainly_relative(url):
            return self.first_party
        if self.base_host is not None and host_of(url) is None and "//" not in url[:8]:
            # Relative to a foreign <base href>: classify where the browser will go.
            url_for_policy = f"//{self.base_host}/{url.lstrip('/')}"
        else:
            url_for_policy = url
        decision = self.policy.classify_url(url_for_policy, self.page_host).decide(self.consent, kind)
        stats = self.stats
        if decision.category is not None:
            if stats.records is not None:
                stats.records.append(ElementRecord(tag, url, kind, self._effective(decision)))
        elif stats.unclassified_hosts is not None and decision.origin is Origin.UNKNOWN_HOST:
            host = host_of(url_for_policy)
            if host:
                stats.unclassified_hosts.add(host)
        return decision

    def decide_inline(self, text: str) -> Decision:
        decision = self.policy.classify_inline(text).decide(self.consent, Kind.INLINE)
        if decision.category is not None and self.stats.records is not None:
            self.stats.records.append(ElementRecord("script", "", Kind.INLINE, self._effective(decision)))
        return decision

    def _final(self, decision: Decision) -> bool:
        """Whether a refusal must be a removal: inside <noscript> or srcdoc nothing can
        activate it later, and a category refused by Sec-GPC stays refused whatever the
        consent cookie later says (activate.js reads only the cookie)."""
        return bool(self.nested) or (self.gpc_refused is not None and decision.category in self.gpc_refused)

    def _taken(self, decision: Decision) -> Action:
        """The effect taken: `decision.action`, or its `final` form (see `_final`)."""
        action = decision.action
        final = TRAITS[action].final
        if final is not action and self._final(decision):
            return final
        return action

    def _effective(self, decision: Decision) -> Decision:
        action = self._taken(decision)
        if action is decision.action:
            return decision
        return Decision(action, decision.category, decision.vendor, decision.rule, decision.origin)

    def action(self, decision: Decision) -> Action:
        """The action actually taken (see `_final`), counted."""
        action = self._taken(decision)
        # Action is a StrEnum: the member is its value, as a key and as a label.
        self.stats.counts[(action, decision.category or "")] += 1
        if not self.report_only:
            activation = TRAITS[action].activation
            if activation is Activation.ALWAYS or (activation is Activation.OWN_STYLE and self.style == "tag-gate"):
                self.stats.activation_needed = True
        return action

    # ------------------------------------------------------------ acting

    def apply(self, e: Any, kind: Kind, decision: Decision, attribute: str | None = None) -> None:
        """Act on a refused element. With `attribute`, only that attribute fetches (a
        `<body background>`): removing means removing the attribute, not the element."""
        action = self.action(decision)
        if self.report_only or action is Action.KEEP:
            return
        if action is Action.REMOVE:
            if attribute is None:
                e.remove()
            else:
                e.remove_attribute(attribute)
            return
        category = decision.category or ""
        if attribute is not None and self.style == "didomi":
            # Didomi wraps blocked markup in a script element; a <body> cannot be wrapped.
            e.remove_attribute(attribute)
            return
        if action is Action.PLACEHOLDER:
            e.before(self.placeholder(e, decision), HTML)
            e.remove()
            return
        edit = defer_edit(self.style, kind, dict(e.attributes), category, decision.vendor, self.plan.cmp_names)
        for name in edit.remove:
            e.remove_attribute(name)
        for name, value in edit.set:
            e.set_attribute(name, value)
        if edit.before:
            e.before(edit.before, HTML)
        if edit.after:
            e.after(edit.after, HTML)

    def placeholder(self, e: Any, decision: Decision) -> str:
        """A same-size first-party box with the vendor's name and a load button; the
        original iframe waits inside a <template> and nothing is requested until click."""
        vendor: Vendor | None = decision.vendor
        attrs = e.attributes
        name = vendor.name if vendor else (host_of(_attr(e, "src") or "") or "External content")
        category = decision.category or ""
        width = _dimension(e.get_attribute("width"), "100%")
        height = _dimension(e.get_attribute("height"), "auto")
        text = self.plan.placeholder_text.format(vendor=name, category=category)
        button = self.plan.placeholder_button.format(vendor=name)
        description = f'<p style="margin:0;opacity:.8">{_ascii_html(vendor.description)}</p>' if vendor else ""
        original = start_tag(e.tag_name, attrs) + f"</{e.tag_name}>"
        return (
            f'<div data-tg-placeholder data-tg-category="{_ascii_html(category)}"'
            f'{_vendor_attr(vendor)} role="group" aria-label="{_ascii_html(name)}: blocked content" '
            f'style="box-sizing:border-box;width:{width};height:{height};max-width:100%;min-height:8em;'
            "display:flex;flex-direction:column;align-items:center;justify-content:center;gap:.6em;padding:1em;"
            "background:#f3f3f3;color:#1a1a1a;border:1px solid #c8c8c8;font:15px/1.4 system-ui,sans-serif;"
            'text-align:center">'
            f'<p style="margin:0">{_ascii_html(text)}</p>{description}'
            f'<button type="button" data-tg-load style="font:inherit;padding:.4em 1em;cursor:pointer">'
            f"{_ascii_html(button)}</button>"
            f"<template>{original}</template></div>"
        )

    def consent_mode_script(self) -> str:
        nonce = f' nonce="{_ascii_html(self.nonce)}"' if self.nonce else ""
        self.stats.consent_mode_inserted = True
        self.gcm_pending = False
        return f"<script{nonce}>{gcm_block(self.consent)}</script>"


_C0_OR_SPACE: Final = "".join(map(chr, range(0x21)))


def _plainly_relative(url: str) -> bool:
    """True for URLs that certainly stay on the page's host: no scheme, no network-path
    `//` (browsers also read `\\` and drop tabs and newlines, so those go the slow way)."""
    first = url[:1]
    if first == "/":
        # `/path` (not `//`, `/\`, or a tab or newline the URL parser would drop) never
        # leaves the page's host, whatever follows: the common case, settled at once.
        if url[1:2] not in _NOT_A_PATH_START:
            return True
    elif first <= " ":
        url = url.lstrip(_C0_OR_SPACE)  # the URL parser strips these first
    return not _may_name_a_host(url[:24])


_NOT_A_PATH_START: Final = "/\\\t\n\r"
"""After a leading `/`, what may turn a URL into a network-path one (`"" in` is true too:
a bare `/` goes the slow way)."""


def _may_name_a_host(text: str) -> bool:
    """Whether a URL (or any srcset candidate) could name a host: `//`, a scheme's `:`,
    or a backslash, tab or newline the URL parser reads as or drops before one. Six `in`
    tests on a short string cost half of one set-disjointness walk. Conservative."""
    return "//" in text or ":" in text or "\\" in text or "\t" in text or "\n" in text or "\r" in text


def _dimension(value: str | None, default: str) -> str:
    if value is None:
        return default
    value = value.strip()
    if value.isdigit():
        return f"{value}px"
    if value.endswith("%") and value[:-1].isdigit():
        return value
    return default


def _vendor_attr(vendor: Vendor | None) -> str:
    return f' data-tg-vendor="{_ascii_html(vendor.id)}"' if vendor else ""


# --------------------------------------------------------------------------- handlers


class _Handler:
    """A lol-html handler of one gate; subclasses hold more state only where they need it."""

    __slots__ = ("run",)

    def __init__(self, run: _Run) -> None:
        self.run = run


class _ScriptHandler:
    """External scripts by URL; inline scripts held back and decided by signature."""

    __slots__ = ("run", "mode", "attrs", "buf", "size", "decision")

    IGNORE = 0
    BUFFER = 1
    PASS = 2
    SWALLOW = 3

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.mode = self.IGNORE
        self.attrs: list[tuple[str, str]] = []
        self.buf: list[str] = []
        self.size = 0
        self.decision: Decision | None = None

    def element(self, e: Any) -> None:
        run = self.run
        svg = e.namespace_uri == SVG_NS
        url = (_attr(e, "href") or _attr(e, "xlink:href")) if svg else _attr(e, "src")
        nonce = e.get_attribute("nonce")
        if nonce and run.nonce is None:
            run.nonce = nonce
        if url is not None and url.strip():
            self.mode = self.IGNORE
            if not runs_as_script(_attr(e, "type")):
                return
            decision = run.decide(Kind.SCRIPT, "script", url)
            if decision.keeps:
                if run.gcm_pending and _is_google(decision):
                    e.before(run.consent_mode_script(), HTML)
                return
            run.apply(e, Kind.SCRIPT, decision)
            return
        if not runs_as_script(_attr(e, "type")):
            self.mode = self.IGNORE
            return
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
        decision = run.decide_inline(text)
        if decision.keeps:
            if run.gcm_pending and _is_google(decision):
                # Close the original (now empty) script, run the defaults in their own
                # element, then reopen an identical script for the original text.
                t.replace(f"</script>{run.consent_mode_script()}{start_tag('script', self.attrs)}{text}", HTML)
            else:
                t.replace(text, HTML)
            return
        action = run.action(decision)
        if run.report_only or action is Action.KEEP:
            t.replace(text, HTML)
            return
        if action is Action.REMOVE:
            t.replace("", HTML)
            if self.mode == self.PASS:
                self.mode = self.SWALLOW
            return
        edit = defer_edit(
            run.style, Kind.INLINE, dict(self.attrs), decision.category or "", decision.vendor, run.plan.cmp_names
        )
        inert = start_tag("script", apply_edit(self.attrs, edit))
        t.replace(f"{edit.before}</script>{inert}{text}", HTML)
        # Didomi's wrapper has no closing part for scripts: the type change is enough.


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
            d = run.decide(Kind.MEDIA, "img", src)
            if not d.keeps:
                run.apply(e, Kind.MEDIA, d)
                return
        srcset = e.get_attribute("srcset")
        if srcset:
            if "&" in srcset:
                srcset = attribute_text(srcset) or ""
            if not run.relative_first_party or _may_name_a_host(srcset):
                for url in srcset_urls(srcset):
                    d = run.decide(Kind.MEDIA, "img", url)
                    if not d.keeps:
                        run.apply(e, Kind.MEDIA, d)
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
    }
    SRCSET: Final = frozenset({"source"})
    BACKGROUND: Final = frozenset({"body", "table", "td", "th"})

    def element(self, e: Any) -> None:
        run = self.run
        tag = e.tag_name
        worst: Decision | None = None
        for name in self.URL_ATTRIBUTES.get(tag, ("src",)):
            url = _attr(e, name)
            if url:
                d = run.decide(Kind.MEDIA, tag, url)
                if not d.keeps:
                    worst = d
                    break
        if worst is None and tag in self.SRCSET:
            srcset = _attr(e, "srcset")
            if srcset and (not run.relative_first_party or _may_name_a_host(srcset)):
                for url in srcset_urls(srcset):
                    d = run.decide(Kind.MEDIA, tag, url)
                    if not d.keeps:
                        worst = d
                        break
        if worst is not None:
            if tag == "input" and (_attr(e, "type") or "").strip().lower() != "image":
                return
            run.apply(e, Kind.MEDIA, worst, "background" if tag in self.BACKGROUND else None)


class _UrlHandler:
    """Elements with one fetching attribute: frames, embeds, links."""

    __slots__ = ("run", "kind", "attribute")

    def __init__(self, run: _Run, kind: Kind, attribute: Mapping[str, str]) -> None:
        self.run = run
        self.kind = kind
        self.attribute = attribute

    def element(self, e: Any) -> None:
        tag = e.tag_name
        run = self.run
        urls = [_attr(e, self.attribute.get(tag, "src"))]
        if self.kind is Kind.LINK:
            rels = (_attr(e, "rel") or "").lower().split()
            if not LINK_RELS.intersection(rels):
                return
            images = _attr(e, "imagesrcset")
            if images:
                urls.extend(srcset_urls(images))
        for url in urls:
            if url:
                decision = run.decide(self.kind, tag, url)
                if not decision.keeps:
                    run.apply(e, self.kind, decision)
                    return


class _PingHandler(_Handler):
    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        urls = (_attr(e, "ping") or "").split()
        kept = []
        refused: Decision | None = None
        for url in urls:
            d = run.decide(Kind.PING, e.tag_name, url)
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


class _StyleHandler(_Handler):
    """`url(...)` in a style attribute: a refused URL becomes `none` (no request, the
    rest of the declaration and of the attribute unchanged)."""

    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        value = _attr(e, "style")
        if not value:
            return
        refused: list[Decision] = []

        def replace(m: re.Match[str]) -> str:
            url = (m.group(1) or m.group(2) or m.group(3) or "").strip()
            if url:
                d = run.decide(Kind.LINK, e.tag_name, url)
                if not d.keeps:
                    refused.append(d)
                    return "none"
            return m.group(0)

        new = _CSS_URL.sub(replace, value)
        if not refused:
            return
        for decision in refused:
            run.action(decision)
        if not run.report_only:
            e.set_attribute("style", new.replace("&", "&amp;"))


class _FrameHandler(_Handler):
    """`<iframe>`/`<frame>` by src. An iframe's srcdoc holds a whole document (shown
    instead of src): it goes through a nested gate first, so that a placeholder's saved
    copy of the element holds the gated document too."""

    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        tag = e.tag_name
        source = e.get_attribute("srcdoc")
        if source and run.nested >= _MAX_NESTING:
            if not run.report_only:
                e.set_attribute("srcdoc", "")  # too deep to gate: an empty document
        elif source:
            source = attribute_text(source) or ""
            out = _gate_fragment(run, source)
            if out is not None and not run.report_only:
                # lol-html escapes the quotes; `&` must be escaped too or the browser
                # would read character references that were text in the gated document.
                e.set_attribute("srcdoc", out.replace("&", "&amp;"))
        url = _attr(e, "src")
        if url:
            decision = run.decide(Kind.FRAME, tag, url)
            if not decision.keeps:
                run.apply(e, Kind.FRAME, decision)


class _BaseHandler(_Handler):
    __slots__ = ()

    def element(self, e: Any) -> None:
        run = self.run
        if run.base_host is None:
            host = host_of(_attr(e, "href") or "")
            if host and host != run.page_host:
                run.base_host = host
                run.relative_first_party = False


class _NoscriptHandler:
    """lol-html hands <noscript> content over as text (scripting-on parsing). Small
    content is collected and gated whole (`_gate_fragment`); content past
    `_FRAGMENT_MEMO_MAX_TEXT` streams through a nested gate instead."""

    __slots__ = ("run", "gate", "buf", "size")

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.gate: HtmlGate | None = None
        self.buf: list[str] = []
        self.size = 0

    def text(self, t: Any) -> None:
        run = self.run
        if run.nested >= _MAX_NESTING:
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
            if not last and self.size <= _FRAGMENT_MEMO_MAX_TEXT:
                t.remove()
                return
            text = "".join(self.buf)
            self.buf = []
            self.size = 0
            if last:
                out = _gate_fragment(run, text)
                t.replace(text if out is None else out, HTML)
                return
            gate = self.gate = _nested_gate(run, run.stats)
            chunk = text
        out = gate.feed_text(chunk)
        if last:
            out += gate.end_text()
            self.gate = None
        t.replace(out, HTML)


def _nested_gate(run: _Run, stats: GateStats) -> HtmlGate:
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
    )
    if run.base_host is not None:
        gate._run.base_host = run.base_host
        gate._run.relative_first_party = False
    return gate


_MAX_NESTING: Final = 2
"""<noscript>/srcdoc levels gated inside one another; deeper content is dropped."""
_FRAGMENT_MEMO_LIMIT: Final = 512
_FRAGMENT_MEMO_BYTES: Final = 4 << 20
_FRAGMENT_MEMO_MAX_TEXT: Final = 4096


def _gate_fragment(run: _Run, text: str) -> str | None:
    """Gate a whole small fragment; None when it comes out unchanged.

    Sites repeat the same <noscript> pixels and srcdoc snippets on every page, and a
    nested lol-html rewriter costs more to build than the fragment costs to parse, so
    results are memoised per plan by everything they depend on (what was counted is
    replayed into this response's stats). Text without a tag holds no element at all."""
    if "<" not in text:
        return None
    stats = run.stats
    memoise = stats.records is None and stats.unclassified_hosts is None and len(text) <= _FRAGMENT_MEMO_MAX_TEXT
    if not memoise:
        gate = _nested_gate(run, stats)
        out = gate.feed_text(text) + gate.end_text()
        return None if out == text else out
    key = (text, run.consent, run.page_host, run.base_host, run.nonce, run.report_only, run.nested)
    memo = run.plan.fragment_memo
    hit = memo.table.get(key)
    if hit is None:
        own = GateStats()
        gate = _nested_gate(run, own)
        out = gate.feed_text(text) + gate.end_text()
        changed = None if out == text else out
        hit = (changed, tuple(own.counts.items()), own.activation_needed, own.consent_mode_inserted)
        memo.put(key, hit, 2 * len(text) + (len(run.page_host) if run.page_host else 0))
    result, counts, activation, consent_mode = hit
    for item, n in counts:
        stats.counts[item] += n
    stats.activation_needed |= activation
    stats.consent_mode_inserted |= consent_mode
    return result


class _DocumentHandler(_Handler):
    __slots__ = ()

    def end(self, e: Any) -> None:
        run = self.run
        if run.stats.activation_needed and not run.nested:
            nonce = f' nonce="{_ascii_html(run.nonce)}"' if run.nonce else ""
            e.append(f'<script src="{ACTIVATE_PATH}" defer{nonce}></script>', HTML)


# --------------------------------------------------------------------------- the gate


_EMBED_ATTRS: Final = {"object": "data", "embed": "src"}
_LINK_ATTRS: Final = {"link": "href"}

_HANDLERS: Final[Mapping[str, Callable[[_Run], Any]]] = {
    "script": _ScriptHandler,
    "img": _ImgHandler,
    "media": _MediaHandler,
    "frame": _FrameHandler,
    "embed": lambda run: _UrlHandler(run, Kind.EMBED, _EMBED_ATTRS),
    "link": lambda run: _UrlHandler(run, Kind.LINK, _LINK_ATTRS),
    "ping": _PingHandler,
    "style": _StyleHandler,
    "base": _BaseHandler,
    "noscript": _NoscriptHandler,
}
"""A new handler for each of SELECTORS, by name."""

_REGISTRATIONS: Final = {
    (inline_styles, ping): tuple((SELECTORS[name], _HANDLERS[name]) for name in names if ping or name != "ping")
    for inline_styles, names in _SELECTOR_NAMES.items()
    for ping in (False, True)
}
"""What a gate registers with lol-html, by (`html.inline_styles`, whether the page may
have a `ping` attribute): selector and handler factory, in SELECTORS order."""


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
    ) -> None:
        if stats is None:
            stats = GateStats(records=[] if record else None, unclassified_hosts=set() if record else None)
        self.stats = stats
        run = _Run(plan, consent, page_host.lower() if page_host else None, nonce, report_only, stats, nested)
        self._run = run
        self._out: list[bytes] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._ascii = True
        self._pending = 0
        self._max_pending = plan.max_pending
        self._failed: GateError | None = None
        self._head: bytes | None = b""  # the input's first bytes, until there are two
        self._rewriter: Any = None  # built on the first write (see `feed_whole`)

    def _build(self, *, ping: bool = True) -> Any:
        """The lol-html rewriter with this gate's selectors; `ping=False` leaves out
        `a[ping]`/`area[ping]` (which make lol-html read the attributes of every link)."""
        run = self._run
        sink: Any = self._out.append
        rewriter = lolhtml.HTMLRewriter(sink)
        for selector, handler in _REGISTRATIONS[run.plan.inline_styles, ping]:
            rewriter.on(selector, handler(run))
        rewriter.on_document(_DocumentHandler(run))
        self._rewriter = rewriter
        return rewriter

    def _call(self, step: Callable[[], None]) -> None:
        if self._failed is not None:
            raise self._failed
        try:
            step()
        except Exception as exc:  # lol-html reports handler and parser errors as RuntimeError
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
        rewriter = self._rewriter or self._build()
        self._call(lambda: rewriter.write(transport))
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
        self._call((self._rewriter or self._build()).end)
        if self._ascii:
            return first + self._drain_bytes()
        text = self._drain_transport() + self._decoder.decode(b"", final=True)
        return first + text.encode("latin-1")

    def feed_whole(self, document: bytes) -> bytes:
        """`feed(document) + end()` for a caller that holds the complete document before
        the first feed: the same output, and a document in which no element can carry a
        `ping` attribute is gated without the `<a ping>` selectors (on the benchmark's
        100 KB page with 655 links the pre-scan costs 68 µs, the selectors 105 µs)."""
        if self._rewriter is None:
            self._build(ping=may_carry_ping(document))
        return self.feed(document) + self.end()

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
        rewriter = self._rewriter or self._build()
        self._call(lambda: rewriter.write(text.encode("utf-8")))
        return self._drain_transport()

    def end_text(self) -> str:
        self._call((self._rewriter or self._build()).end)
        return self._drain_transport() + self._decoder.decode(b"", final=True)


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
