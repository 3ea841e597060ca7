"""One gate run: the per-config plan, the per-response state, deciding and acting (no lol-html import).

`GatePlan` is built once per config and shared by every response; `GateRun` is one
response's state, shared by the element handlers of its gate (`proxy.html.handlers`).
The handlers find the URLs; the run decides them (`decide`, `decide_inline`: the
policy's classification plus the visitor's consent, recorded for `explain` when asked)
and acts on a refused element (`act`): the effect is the decision's action, or its
`final` form where nothing could activate it later (`proxy.core.actions.TRAITS`),
counted in `GateStats` and turned into markup here, once per effect.

Elements are lol-html's (typed `Any`: the binding has no stubs); markup is inserted as
HTML with the content type the gate passes in, so this module needs no lol-html import.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from ..core.actions import TRAITS, Action, Activation, Kind
from ..core.consent import ConsentState
from ..core.defer import CmpNames, defer_edit
from ..core.memo import Memo
from ..core.policy import Decision, Origin, Policy
from ..core.url import host_of
from .attributes import attribute_text, plainly_relative
from .hosts import UNPARSEABLE, ascii_host_url, readings
from .markup import consent_mode_script, placeholder

__all__ = [
    "NO_ADDITIONS",
    "Additions",
    "ElementRecord",
    "GatePlan",
    "GateRun",
    "GateStats",
    "TextGate",
    "head_bytes",
    "nonce_kept",
]

_FRAGMENT_MEMO_LIMIT: Final = 512
_FRAGMENT_MEMO_BYTES: Final = 4 << 20

FragmentResult = tuple[str | None, tuple[tuple[tuple[str, str], int], ...], bool, bool]
"""A gated fragment (None: unchanged), its counts, and whether it needed activation or
inserted the Consent Mode block."""


@dataclass(frozen=True, slots=True)
class Additions:
    """Markup tag-gate adds to one page beside what its decisions insert, computed per
    response by the header stage (never in report-only mode, never in nested documents).
    Inserted markup is not itself gated."""

    head_start: str = ""
    """Inserted as the first child of `<head>` (the runtime guard), after `head_tag`:
    right after the `<head>` start tag, or before the first element of an `<html>`
    without one; in a document with neither, before its first element (where the parser
    makes the head); when text comes first, before the document's first `<script>`."""
    body_end: str = ""
    """Appended at the end of the document, after activate.js (the consent banner, the
    site's managed tags)."""
    head_end: str = ""
    """Inserted at the end of `<head>` (the site's managed head tags): right before the
    `<body>` start tag, where the parser puts a script at the end of the head whether or
    not `</head>` was written; in a document without a `<body>` tag, at the document end
    before everything else added there. Scripts only: anything else there opens the body."""
    localised: Callable[[str | None], str] | None = None
    """Document-end markup that depends on the page's language (the consent banner):
    called once at the end with the `lang` of the page's `<html>` start tag (None
    without one), appended after activate.js and before `body_end`."""
    activation: bool = False
    """The added markup holds elements deferred in the native style: load activate.js
    even when the page itself needed none."""
    head_tag: str = ""
    """The opening of the head-start markup, the part that may differ per response (the
    guard's `<script nonce="…">`): `head_tag + head_start` is what goes in. Kept apart so
    that `head_start`, the same for every page of a consent key, stays one string:
    hashed once, and spliced compressed from a form made once (`Encoder.splice`)."""
    documents_only: bool = False
    """The response answers a request of the page's own code (`Sec-Fetch-Dest: empty`:
    htmx, Turbo, Unpoly, jQuery's `load`...): all this goes in only when its body is a
    whole document (`prologue.whole_document`, Turbo's page visits); a fragment, which
    the page's code puts into the page, gets none of it, nor activate.js."""
    frame_markup: str = ""
    """Inserted right after each `<iframe>` of the markup whose document the page can
    reach without a navigation (no `src`, an `about:` one, a `srcdoc`) and first in each
    `srcdoc` document, nested ones too (the runtime guard's install into those frames:
    code may reach them as `window.frames[i]`, which no hook sees). Not in report-only
    mode."""


NO_ADDITIONS: Final = Additions()


@functools.lru_cache(maxsize=64)
def _ascii_markup(markup: str) -> bytes | None:
    """Markup as the bytes spliced into a page, None when it is not ASCII (then lol-html
    inserts it, in the page's encoding). The head-start markup is one string per consent
    key and host (`RuntimeLayers.add_guard`), so this runs once per distinct guard."""
    return markup.encode("ascii") if markup.isascii() else None


def head_bytes(additions: Additions) -> tuple[bytes, bytes] | None:
    """`additions.head_tag` and `head_start` as the bytes spliced into a page, or None
    when either is not ASCII. The tag (the guard's `<script nonce="…">`, new for each
    response of a strict-CSP site) is encoded as it comes; the rest, the same for every
    page of a consent key, once (`_ascii_markup`)."""
    tag = additions.head_tag
    rest = _ascii_markup(additions.head_start)
    if rest is None or not tag.isascii():
        return None
    return tag.encode("ascii"), rest


_NONCE_ATTR: Final = re.compile(r' nonce="([^"]*)"')


def nonce_kept(markup: str, document: str) -> bool:
    """Whether `markup` tag-gate adds may go into a document held in an attribute's
    value (a srcdoc, a `data:` URL): it carries no nonce, or the document holds that
    nonce already (the site's own scripts there). A nonce in an attribute's value is not
    hidden as a `nonce` attribute is: CSS selectors and injected markup could read it
    out of the page, which would undo what a strict CSP is for. Such a document without
    it runs no script of its own under that policy; the page's code reaching into it
    meets the guard's hooks at its `load`."""
    m = _NONCE_ATTR.search(markup)
    return m is None or m.group(1) in document


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
    inline_styles: bool = True
    """Gate `url()` and the like in style attributes. lol-html then reads every element's
    attributes, which costs about a fifth of the gate's speed; a document the gate holds
    whole is pre-scanned, so only pages with a style attribute that may fetch pay it."""
    max_pending: int = 32 << 20
    """Input bytes the gate may take without producing output before it gives up."""
    fragment_memo: Memo[tuple[object, ...], FragmentResult] = field(
        default_factory=lambda: Memo(_FRAGMENT_MEMO_LIMIT, _FRAGMENT_MEMO_BYTES), compare=False, repr=False
    )
    """Gated small fragments (see `handlers.gate_fragment`); bounded, shared by every response."""
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


class TextGate(Protocol):
    """A nested gate over markup inside the document, in the transport form (text)."""

    def feed_text(self, text: str) -> str: ...

    def end_text(self) -> str: ...


_KEEP, _REMOVE, _DEFER, _PLACEHOLDER = Action.KEEP, Action.REMOVE, Action.DEFER, Action.PLACEHOLDER
_FETCHING: Final = (
    "src", "srcset", "href", "xlink:href", "data", "poster", "background", "srcdoc", "imagesrcset", "ping"
)  # fmt: skip
"""Attributes removed from a refused element inside foreign content (`GateRun.act`)."""

_NOT_A_TRACKER: Final = Origin.NOT_A_TRACKER
_SPECIAL_START: Final = re.compile(r"[\x00-\x20]*(?:[hH][tT][tT][pP][sS]?:|[/\\][\t\n\r]*[/\\])")


def _names_a_host(url: str) -> bool:
    """Whether a URL the policy found no host in is still an http(s) or network-path
    URL (so its host is one nobody could read, not an absent one)."""
    return _SPECIAL_START.match(url) is not None


_INLINE: Final = Kind.INLINE  # a module global costs a sixth of an enum member lookup (Python 3.11)
_FINAL: Final = {action: traits.final for action, traits in TRAITS.items()}
_ACTIVATING: Final = {
    own_style: frozenset(
        action
        for action, traits in TRAITS.items()
        if traits.activation is Activation.ALWAYS or (own_style and traits.activation is Activation.OWN_STYLE)
    )
    for own_style in (False, True)
}
"""Effects that need activate.js, by whether tag-gate writes its own deferral convention."""


class GateRun:
    """Per-response state shared by the handlers of one gate.

    `html` is the content type for inserted markup (lol-html's HTML); `nest` makes the
    gate for markup inside this document (`<noscript>` content, a `srcdoc` document)."""

    def __init__(
        self,
        plan: GatePlan,
        consent: ConsentState,
        page_host: str | None,
        nonce: str | None,
        report_only: bool,
        stats: GateStats,
        nested: int,
        *,
        html: Any,
        nest: Callable[[GateRun, GateStats, str | None], TextGate],
        additions: Additions = NO_ADDITIONS,
        charset: str | None = None,
    ) -> None:
        self.plan = plan
        self.charset = charset
        """The page's charset label as far as known (header, BOM, `<meta charset>`):
        how non-ASCII bytes in a URL read (`proxy.html.hosts`)."""
        self.charset_known = charset is not None
        self.policy = plan.policy
        self.consent = consent
        self.page_host = page_host
        self.base_host: str | None = None
        self.base_fixed = False
        """A `<base href>` the browser uses has been seen (later ones do nothing)."""
        self.nonce = nonce
        self.report_only = report_only
        self.stats = stats
        self.nested = nested
        self.html = html
        self._nest = nest
        self.style = plan.defer_style
        self.gcm_pending = plan.consent_mode and not report_only
        self.first_party = self.policy.first_party.keep
        self.gpc_refused = plan.gpc_refuses if consent.gpc else None
        self.relative_first_party = not self.policy.relative_can_match
        self.activating = _ACTIVATING[self.style == "tag-gate"]
        self.additions = additions
        self.frame_markup = "" if report_only else additions.frame_markup
        """`additions.frame_markup`, where it applies (nested documents too)."""
        self.head_pending = bool(additions.head_tag or additions.head_start) and not nested and not report_only
        """`additions.head_tag + head_start` is still to be inserted."""
        self.page_pending = not nested and not report_only and bool(additions.head_end or additions.localised)
        """The gate watches `<html>` and `<body>` for `additions.head_end` and `localised`."""
        self.head_end_pending = self.page_pending and bool(additions.head_end)
        self.page_lang: str | None = None
        """The `lang` of the page's first `<html>` start tag ("" when it has none)."""
        if additions.activation and not nested and not report_only:
            stats.activation_needed = True
        self.foreign_entered = False
        """lol-html has read an `<svg>` or `<math>` start tag (set by its handler; the gate
        follows foreign content, `proxy.html.foreign`)."""
        self.stop_on_foreign = False
        """The `svg, math` handler stops the write (`HtmlGate.feed_whole`'s plain pass)."""
        self.end_deferred: str | None = None
        """Not None: the document-end markup (activate.js, `end_additions`) is kept here
        instead of appended, for a gate that writes only the start of a document to
        lol-html (`HtmlGate._gate_start`) and puts the markup after the rest."""
        self.in_foreign = False
        """The gate is writing bytes of a foreign region to lol-html: a refused element
        is neutralised in place (`act`), never removed or wrapped."""
        self.fragment = False
        """`drop_additions` was called: not even activate.js goes in."""

    def drop_additions(self) -> None:
        """The body is a fragment the page's code fetched (`Additions.documents_only`):
        nothing is added to it. Before the first byte is gated."""
        self.additions = NO_ADDITIONS
        self.frame_markup = ""
        self.head_pending = self.page_pending = self.head_end_pending = False
        self.fragment = True
        self.stats.activation_needed = False

    def take_head_start(self) -> str:
        """The head-start markup, once (the caller inserts it)."""
        self.head_pending = False
        return self.additions.head_tag + self.additions.head_start

    def take_head_end(self) -> str:
        """The head-end markup, once (the caller inserts it)."""
        self.head_end_pending = False
        return self.additions.head_end

    def end_additions(self) -> str:
        """What goes at the document end after activate.js: the head-end markup when no
        `<body>` tag took it, the page-language markup, then `body_end` ("" in
        report-only mode and in nested documents)."""
        if self.nested or self.report_only:
            return ""
        additions = self.additions
        head = self.take_head_end() if self.head_end_pending else ""
        localised = additions.localised(self.page_lang or None) if additions.localised is not None else ""
        return head + localised + additions.body_end

    def nested_gate(self, stats: GateStats, document: str | None = None) -> TextGate:
        """A gate for markup inside this document (<noscript> content, a srcdoc
        document): same consent and plan, one level deeper, counting into `stats`.
        `document`: the whole markup, when the gate has it (see `nonce_kept`)."""
        return self._nest(self, stats, document)

    # ------------------------------------------------------------ deciding

    def decide(self, kind: Kind, tag: str, url: str) -> Decision:
        if self.relative_first_party and plainly_relative(url):
            return self.first_party
        if not url.isascii() or "%" in url:
            return self._decide_readings(kind, tag, url)
        return self._decide(kind, tag, url, True)

    def _decide_readings(self, kind: Kind, tag: str, url: str) -> Decision:
        """A URL with non-ASCII characters (or a percent sign) may name a host the
        Latin-1 transport garbles: decide every way it may read in the page (its charset
        first), with the host mapped as the browser maps it. Any refusal wins; a host
        that does not parse in the browser's own reading is `policy.unparseable_host`."""
        first: Decision | None = None
        for i, text in enumerate(readings(url, self.charset) if not url.isascii() else [url]):
            mapped = ascii_host_url(text)
            if mapped is UNPARSEABLE:
                if i:
                    continue
                decision = self.policy.unparseable_host.decide(self.consent, kind)
            else:
                decision = self._decide(kind, tag, mapped, i == 0)
            if not decision.keeps:
                return decision
            if first is None:
                first = decision
        return first if first is not None else self.first_party

    def _decide(self, kind: Kind, tag: str, url: str, record: bool) -> Decision:
        base_host = self.base_host
        if base_host is not None and host_of(url) is None and "//" not in url[:8] and ":" not in url.split("/", 1)[0]:
            # Relative to a foreign <base href>: classify where the browser will go.
            url_for_policy = f"//{base_host}/{url.lstrip('/')}"
        else:
            url_for_policy = url
        classification = self.policy.classify_url(url_for_policy, self.page_host)
        if classification.origin is _NOT_A_TRACKER and _names_a_host(url_for_policy):
            classification = self.policy.unparseable_host  # http(s) with a host nobody can read
        decision = classification.decide(self.consent, kind)
        stats = self.stats
        if not record:
            return decision
        if decision.category is not None:
            if stats.records is not None:
                stats.records.append(ElementRecord(tag, url, kind, self._effective(decision)))
        elif stats.unclassified_hosts is not None and decision.origin is Origin.UNKNOWN_HOST:
            host = host_of(url_for_policy)
            if host:
                stats.unclassified_hosts.add(host)
        return decision

    def host_of(self, url: str) -> str | None:
        """The host a URL read from the page contacts, as the browser reads it
        (`UNPARSEABLE` for an http(s) host tag-gate cannot parse)."""
        if url.isascii() and "%" not in url:
            return host_of(url)
        mapped = ascii_host_url(readings(url, self.charset)[0] if not url.isascii() else url)
        return UNPARSEABLE if mapped is UNPARSEABLE else host_of(mapped)

    def decide_inline(self, text: str) -> Decision:
        decision = self.policy.classify_inline(text).decide(self.consent, _INLINE)
        if decision.category is not None and self.stats.records is not None:
            self.stats.records.append(ElementRecord("script", "", _INLINE, self._effective(decision)))
        return decision

    def _final(self, decision: Decision) -> bool:
        """Whether a refusal must take its final form: inside <noscript> or srcdoc nothing
        can activate it later, and a category refused by Sec-GPC stays refused whatever
        the consent cookie later says (activate.js reads only the cookie)."""
        return bool(self.nested) or (self.gpc_refused is not None and decision.category in self.gpc_refused)

    def _taken(self, decision: Decision) -> Action:
        action = decision.action
        final = _FINAL[action]
        if final is not action and self._final(decision):
            return final
        return action

    def _effective(self, decision: Decision) -> Decision:
        action = self._taken(decision)
        if action is decision.action:
            return decision
        return Decision(action, decision.category, decision.vendor, decision.rule, decision.origin)

    def action(self, decision: Decision) -> Action:
        """The effect actually taken (`decision.action` or its final form), counted."""
        action = self._taken(decision)
        # Action is a StrEnum: the member is its value, as a key and as a label.
        self.stats.counts[(action, decision.category or "")] += 1
        if not self.report_only and action in self.activating:
            self.stats.activation_needed = True
        return action

    # ------------------------------------------------------------ acting

    def count(self, decision: Decision) -> None:
        """Count a refusal the caller acts on itself (a URL inside CSS made `none`)."""
        self.stats.counts[(_REMOVE, decision.category or "")] += 1

    def remove(self, e: Any, decision: Decision, attribute: str | None = None) -> None:
        """Act on a refused element that no consent manager could activate later (SVG
        and SMIL references, refresh, attributionsrc): it goes, or only `attribute`."""
        self.count(decision)
        if self.report_only:
            return
        if attribute is None:
            e.remove()
        else:
            e.remove_attribute(attribute)

    def act(self, e: Any, kind: Kind, decision: Decision, attribute: str | None = None) -> None:
        """Act on a refused element. With `attribute`, only that attribute fetches (a
        `<body background>`): removing means removing the attribute, not the element.
        An effect this method does not know is a `ValueError` (the gate fails closed)."""
        action = self.action(decision)
        if self.report_only or action is _KEEP:
            return
        if self.in_foreign:
            # The foreign-content tracker follows the input's tree and the browser reads
            # the output's: inside foreign content only attributes change, so both trees
            # stay the same (a removed `<img>` would no longer break out of an `<svg>`).
            for name in _FETCHING:
                e.remove_attribute(name)
            if e.tag_name == "script":
                e.set_attribute("type", "text/plain")  # its own text must not run instead
            return
        if action is _REMOVE:
            if attribute is None:
                e.remove()
            else:
                e.remove_attribute(attribute)
            return
        if action is not _DEFER and action is not _PLACEHOLDER:
            raise ValueError(f"the gate cannot take the effect {action!r} on a {kind} element")
        if attribute is not None and self.style == "didomi":
            # Didomi wraps blocked markup in a script element; a <body> cannot be wrapped.
            e.remove_attribute(attribute)
            return
        if action is _PLACEHOLDER:
            e.before(self.placeholder(e, decision), self.html)
            e.remove()
            return
        category = decision.category or ""
        edit = defer_edit(self.style, kind, dict(e.attributes), category, decision.vendor, self.plan.cmp_names)
        for name in edit.remove:
            e.remove_attribute(name)
        for name, value in edit.set:
            e.set_attribute(name, value)
        if edit.before:
            e.before(edit.before, self.html)
        if edit.after:
            e.after(edit.after, self.html)

    def placeholder(self, e: Any, decision: Decision) -> str:
        """The placeholder markup for a refused iframe (`markup.placeholder`)."""
        vendor = decision.vendor
        src = attribute_text(e.get_attribute("src")) or ""
        return placeholder(
            e.tag_name,
            e.attributes,
            name=vendor.name if vendor else (host_of(src) or "External content"),
            category=decision.category or "",
            vendor=vendor,
            width=e.get_attribute("width"),
            height=e.get_attribute("height"),
            text=self.plan.placeholder_text,
            button=self.plan.placeholder_button,
        )

    def consent_mode_script(self) -> str:
        """The Consent Mode default block, once per document (the caller checks `gcm_pending`)."""
        self.stats.consent_mode_inserted = True
        self.gcm_pending = False
        return consent_mode_script(self.consent, self.nonce)


class Handler:
    """Base of the gate's lol-html handlers. lol-html's binding looks `element`,
    `comments` and `text` up on a handler when it is registered (`doctype`, `comments`,
    `text` and `end` on a document handler): a missing one costs an AttributeError each
    time, about eight per page, while None says "no such handler" for free (contract:
    tests/test_rewrite.py `test_lolhtml_takes_none_for_a_handler_method_it_looks_up`)."""

    __slots__ = ()
    element: Any = None
    comments: Any = None
    text: Any = None
    doctype: Any = None
    end: Any = None


class RunHandler(Handler):
    """A handler that acts for one gate run."""

    __slots__ = ("run",)

    def __init__(self, run: GateRun) -> None:
        self.run = run
