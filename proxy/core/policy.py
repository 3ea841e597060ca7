"""Consent + what an element or cookie is → a `Decision` (pure: no IO, no aiohttp, no lol-html).

Classification (what is this, who decided) depends only on config and is memoised;
the decision then depends on the visitor's consent alone, so both precomputed
outcomes live on the classification and deciding costs a set lookup.

Order of precedence for a URL (first that applies wins):
1. operator rules (`[[rule]]`), in file order: `allow` keeps the element untouched,
   `category` classifies it, `action` overrides what happens when it is refused;
2. the vendor catalogue, by host (longest listed suffix);
3. first-party URLs (relative, the page's own host, `html.first_party_hosts`): kept;
4. any other third-party host: `html.unknown_hosts` (keep, or gate as a category).
Inline scripts: rules with `inline` signatures, then the catalogue's signatures.
Cookies: consent-manager cookies are essential, then `[[cookie]]` rules, then
`cookies.essential`, then the catalogue, then `cookies.unknown`.

A classification carries the step that decided as an `Origin` (code branches on it;
`rule` is its human-readable name for explain and logs) and what consent keeps it as a
`Grant` (by its category, always, only when everything is granted, never). What a
refused action does to each element kind is `proxy.core.actions.EFFECTS`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from .actions import EFFECTS, Action, Kind
from .catalog import Catalog
from .categories import ESSENTIAL
from .consent import ConsentState
from .link_header import parse_link_field
from .memo import Memo
from .url import host_of, url_path
from .vendors import Vendor

__all__ = [
    "Action",
    "Classification",
    "CookieRule",
    "Decision",
    "Grant",
    "Kind",
    "Origin",
    "Policy",
    "UrlRule",
    "compile_globs",
    "filter_link_header",
]


class Origin(enum.Enum):
    """Which step of the classification decided (the order is in the module docstring).

    The value is the name `explain` and the logs show when the step has no name of its
    own; operator rules show their `name` instead (`Decision.rule`)."""

    RULE = "rule"
    """An operator `[[rule]]`, by URL or inline signature."""
    COOKIE_RULE = "cookie-rule"
    """An operator `[[cookie]]`."""
    CATALOG = "catalog"
    """The vendor catalogue (for cookies, also the Open Cookie Database)."""
    FIRST_PARTY = "first-party"
    NOT_A_TRACKER = "not-a-tracker"
    """No host to contact (`data:`, `javascript:`, other schemes), or an inline script
    without a known signature."""
    UNKNOWN_HOST = "unknown-host"
    """A third-party host nobody classified: `html.unknown_hosts` decides."""
    CONSENT_COOKIE = "consent-cookie"
    """A consent manager's own cookie: essential."""
    ESSENTIAL_COOKIE = "cookies.essential"
    NAMELESS_COOKIE = "nameless"
    UNKNOWN_COOKIE = "unknown-cookie"
    """A cookie nobody classified: `cookies.unknown` decides."""


class Grant(enum.Enum):
    """What consent keeps a classified thing."""

    ALWAYS = "always"
    """Nothing to consent to: not a tracker, first party, essential, or allowlisted."""
    CATEGORY = "category"
    """Kept when the visitor granted its category."""
    EVERYTHING = "everything"
    """Kept only when the visitor granted every category the policy gates (a nameless
    cookie is nobody's session cookie, and has no category of its own)."""
    NEVER = "never"
    """No consent keeps it (`cookies.unknown = "drop"`)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one element or cookie, and why."""

    action: Action
    """Already the effect on the kind asked about (`proxy.core.actions.EFFECTS`)."""
    category: str | None
    """None: no category (not a tracker as far as tag-gate knows, or a cookie that
    `Grant.EVERYTHING`/`Grant.NEVER` decides)."""
    vendor: Vendor | None
    rule: str
    """Human-readable: the operator rule's name, else `origin.value`."""
    origin: Origin
    keeps: bool = field(init=False)
    """`action is Action.KEEP`, computed once (read for every element on every page)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "keeps", self.action is Action.KEEP)


@dataclass(frozen=True, slots=True)
class Classification:
    """What something is (config only). `decide` adds the visitor's consent."""

    category: str | None
    vendor: Vendor | None
    rule: str
    origin: Origin
    grant: Grant
    keep: Decision
    refused: Mapping[Kind, Decision]
    """The decision per kind when consent does not keep it (`EFFECTS` applied)."""
    needs: frozenset[str] = frozenset()
    """With `Grant.EVERYTHING`: the categories that must all be granted."""
    always: bool = field(init=False)
    """`grant is Grant.ALWAYS`, computed once (the common first-party case)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "always", self.grant is Grant.ALWAYS)

    def decide(self, consent: ConsentState, kind: Kind) -> Decision:
        # Only Grant.CATEGORY can pass the membership test: other grants have no
        # category, or have "essential" with Grant.ALWAYS, settled by the first test.
        if self.always or self.category in consent.granted:
            return self.keep
        if self.grant is _EVERYTHING and self.needs <= consent.granted:
            return self.keep
        return self.refused[kind]


_EVERYTHING: Final = Grant.EVERYTHING  # a module global is read faster than an enum member


def _classification(
    category: str | None,
    vendor: Vendor | None,
    origin: Origin,
    action: Action,
    *,
    rule: str | None = None,
    grant: Grant | None = None,
    needs: frozenset[str] = frozenset(),
) -> Classification:
    """A classification whose refused decisions apply `EFFECTS` to `action`. Without
    `grant`, a category other than essential needs consent and no category needs none."""
    if grant is None:
        grant = Grant.CATEGORY if category is not None and category != ESSENTIAL else Grant.ALWAYS
    name = origin.value if rule is None else rule
    keep = Decision(Action.KEEP, category, vendor, name, origin)
    refused = {kind: Decision(effect, category, vendor, name, origin) for kind, effect in EFFECTS[action].items()}
    return Classification(category, vendor, name, origin, grant, keep, refused, needs)


@dataclass(frozen=True, slots=True)
class UrlRule:
    """A compiled `[[rule]]`. Every matcher given must match (they AND together)."""

    name: str
    hosts: frozenset[str] = frozenset()
    """Host suffixes on label boundaries; a relative URL has the page's host."""
    path_prefixes: tuple[str, ...] = ()
    url_regex: re.Pattern[str] | None = None
    vendor: str | None = None
    inline: tuple[str, ...] = ()
    category: str | None = None
    action: Action | None = None
    allow: bool = False

    @property
    def for_inline(self) -> bool:
        return bool(self.inline)

    def matches_url(self, url: str, host: str | None, path: str, vendor: Vendor | None) -> bool:
        if self.inline:
            return False
        if self.hosts and not (host is not None and _suffix_in(host, self.hosts)):
            return False
        if self.path_prefixes and not any(path.startswith(p) for p in self.path_prefixes):
            return False
        if self.url_regex is not None and self.url_regex.search(url) is None:
            return False
        return not (self.vendor is not None and (vendor is None or vendor.id != self.vendor))


@dataclass(frozen=True, slots=True)
class CookieRule:
    """A compiled `[[cookie]]`: names (exact or `*` globs) → category, or kept."""

    name: str
    exact: frozenset[str]
    pattern: re.Pattern[str] | None
    category: str | None
    allow: bool

    def matches(self, cookie: str) -> bool:
        return cookie in self.exact or (self.pattern is not None and self.pattern.fullmatch(cookie) is not None)


def compile_globs(patterns: Iterable[str]) -> re.Pattern[str] | None:
    parts = [".*".join(re.escape(p) for p in g.split("*")) for g in patterns if "*" in g]
    return re.compile("|".join(parts), re.DOTALL) if parts else None


def _suffix_in(host: str, suffixes: Collection[str]) -> bool:
    i = 0
    while True:
        if (host[i:] if i else host) in suffixes:
            return True
        i = host.find(".", i) + 1
        if i == 0:
            return False


_CACHE_LIMIT: Final = 8192
_CACHE_BYTES: Final = 4 << 20


@dataclass
class Policy:
    """Everything the request path needs to decide, compiled from config once."""

    catalog: Catalog
    rules: Sequence[UrlRule] = ()
    cookie_rules: Sequence[CookieRule] = ()
    default_action: Action = Action.REMOVE
    category_actions: Mapping[str, Action] = field(default_factory=dict)
    unknown_hosts: str | None = None
    """None keeps unknown third-party hosts; a category name gates them as that category."""
    first_party_hosts: frozenset[str] = frozenset()
    exceptions: tuple[str, ...] = ()
    """Page path prefixes where the HTML gate does not run."""
    cookie_unknown: str = "keep"
    """`keep`, `drop`, or a category name for cookies nobody classified."""
    essential_cookies: frozenset[str] = frozenset()
    consent_cookies: frozenset[str] = frozenset()
    consent_cookie_prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        gated = {v.category for v in self.catalog.vendors} | {r.category for r in self.rules if r.category}
        gated |= {r.category for r in self.cookie_rules if r.category}
        if self.unknown_hosts:
            gated.add(self.unknown_hosts)
        if self.cookie_unknown not in ("keep", "drop"):
            gated.add(self.cookie_unknown)
        gated.discard(ESSENTIAL)
        self.gated_categories: frozenset[str] = frozenset(c for c in gated if c)
        self._url_cache: Memo[tuple[str | None, str], Classification] = Memo(_CACHE_LIMIT, _CACHE_BYTES)
        self._cookie_cache: Memo[str, Classification] = Memo(_CACHE_LIMIT, _CACHE_BYTES)
        self._cookie_classes = self._make_cookie_classes()
        self._inline_rules = tuple(r for r in self.rules if r.for_inline)
        self._url_rules = tuple(r for r in self.rules if not r.for_inline)
        self._vendor_classes: dict[str, Classification] = {}
        self._rule_classes: dict[tuple[int, str | None], Classification] = {}
        self.first_party = _classification(None, None, Origin.FIRST_PARTY, Action.KEEP)
        self.not_a_tracker = _classification(None, None, Origin.NOT_A_TRACKER, Action.KEEP)
        self.unknown_gated = (
            _classification(self.unknown_hosts, None, Origin.UNKNOWN_HOST, self.action_for(self.unknown_hosts, None))
            if self.unknown_hosts
            else _classification(None, None, Origin.UNKNOWN_HOST, Action.KEEP)
        )
        self.unparseable_host = _classification(
            None,
            None,
            Origin.UNKNOWN_HOST,
            Action.REMOVE,
            rule="unparseable-host",
            grant=Grant.EVERYTHING,
            needs=self.gated_categories,
        )
        """An http(s) URL whose host tag-gate cannot parse (the browser may): not first
        party; kept only when the visitor granted every category the policy gates."""
        self.relative_can_match = any(r.path_prefixes or r.url_regex is not None or r.hosts for r in self._url_rules)
        """Whether any rule could classify a relative URL; if not, those are first-party outright."""

    # ------------------------------------------------------------------ actions

    def action_for(self, category: str | None, rule: UrlRule | None) -> Action:
        if rule is not None and rule.action is not None:
            return rule.action
        if category is None:
            return Action.KEEP
        return self.category_actions.get(category, self.default_action)

    def _vendor_class(self, vendor: Vendor) -> Classification:
        c = self._vendor_classes.get(vendor.id)
        if c is None:
            c = _classification(vendor.category, vendor, Origin.CATALOG, self.action_for(vendor.category, None))
            self._vendor_classes[vendor.id] = c
        return c

    def _rule_class(self, rule: UrlRule, vendor: Vendor | None) -> Classification:
        """A rule's classification, built once per (rule, vendor): inline rules are not
        memoised per text, so this runs for every matching inline script."""
        key = (id(rule), vendor.id if vendor else None)
        c = self._rule_classes.get(key)
        if c is None:
            c = self._rule_classes[key] = self._build_rule_class(rule, vendor)
        return c

    def _build_rule_class(self, rule: UrlRule, vendor: Vendor | None) -> Classification:
        if rule.allow:
            return _classification(None, vendor, Origin.RULE, Action.KEEP, rule=rule.name)
        category = rule.category or (vendor.category if vendor else None)
        if category is None and rule.action is not None:
            # An action without a category applies to whatever the element is; an
            # unclassified element is never refused, so there is nothing to change.
            return _classification(None, vendor, Origin.RULE, Action.KEEP, rule=rule.name)
        return _classification(category, vendor, Origin.RULE, self.action_for(category, rule), rule=rule.name)

    # ------------------------------------------------------------------ elements

    def gates_page(self, path: str) -> bool:
        """False for pages under an exception prefix (`[[exception]]`)."""
        return not path.startswith(self.exceptions)  # asked on every gated page: no generator

    def refusable(self, consent: ConsentState) -> bool:
        """Whether this visitor refuses any category the policy could act on."""
        return not self.gated_categories <= consent.granted

    def classify_url(self, url: str, page_host: str | None) -> Classification:
        """Classify a src/href/ping URL as found on a page served for `page_host`."""
        key = (page_host, url)
        cached = self._url_cache.table.get(key)
        if cached is not None:
            return cached
        size = len(url) + (len(page_host) if page_host else 0)
        return self._url_cache.put(key, self._classify_url(url.strip(), page_host), size)

    def _classify_url(self, url: str, page_host: str | None) -> Classification:
        host = host_of(url)
        relative = host is None
        if relative:
            lowered = url[:11].lower()
            if lowered.startswith(("data:", "javascript:", "blob:", "about:", "mailto:", "tel:")) or not url:
                return self.not_a_tracker
            if ":" in url.split("/", 1)[0]:
                return self.not_a_tracker  # another scheme (ftp:, chrome-extension:, ...)
            host = page_host
        vendor = self.catalog.vendor_for_location(host, url) if (host and not relative) else None
        if self._url_rules:
            path = url_path(url)
            for rule in self._url_rules:
                if rule.matches_url(url, host, path, vendor):
                    return self._rule_class(rule, vendor)
        if vendor is not None:
            return self._vendor_class(vendor)
        if relative or host == page_host or (host is not None and _suffix_in(host, self.first_party_hosts)):
            return self.first_party
        return self.unknown_gated

    def decide_url(self, consent: ConsentState, kind: Kind, url: str, page_host: str | None) -> Decision:
        return self.classify_url(url, page_host).decide(consent, kind)

    def classify_inline(self, text: str) -> Classification:
        """Classify an inline script by the first signature in it."""
        for rule in self._inline_rules:
            if any(sig in text for sig in rule.inline):
                return self._rule_class(rule, None)
        vendor = self.catalog.vendor_for_inline(text)
        if vendor is None:
            return self.not_a_tracker
        return self._vendor_class(vendor)

    def decide_inline(self, consent: ConsentState, text: str) -> Decision:
        return self.classify_inline(text).decide(consent, Kind.INLINE)

    # ------------------------------------------------------------------ cookies

    def classify_cookie(self, name: str) -> Classification:
        """Classify a cookie by its name as the browser stores it (`cookies.SetCookie.key`)."""
        cached = self._cookie_cache.table.get(name)
        if cached is not None:
            return cached
        return self._cookie_cache.put(name, self._classify_cookie(name), len(name))

    def _classify_cookie(self, name: str) -> Classification:
        """Every result is one of a fixed set of classifications built once per policy
        (names are often chosen by the visitor: a new name costs a lookup, nothing more)."""
        classes = self._cookie_classes
        if name in self.consent_cookies or (name and name.startswith(self.consent_cookie_prefixes)):
            return classes[Origin.CONSENT_COOKIE]
        for i, rule in enumerate(self.cookie_rules):
            if rule.matches(name):
                return classes[i]
        if name in self.essential_cookies:
            return classes[Origin.ESSENTIAL_COOKIE]
        vendor = self.catalog.vendor_for_cookie(name) if name else None
        if vendor is not None:
            c = classes.get(vendor.id)
            if c is None:
                c = classes[vendor.id] = _classification(vendor.category, vendor, Origin.CATALOG, Action.DROP)
            return c
        if not name:
            return classes[Origin.NAMELESS_COOKIE]
        return classes[Origin.UNKNOWN_COOKIE]

    def _make_cookie_classes(self) -> dict[object, Classification]:
        """The fixed classifications by origin, `[[cookie]]` ones by index (vendors'
        are added as met)."""
        unknown = self.cookie_unknown
        classes: dict[object, Classification] = {
            Origin.CONSENT_COOKIE: _classification(ESSENTIAL, None, Origin.CONSENT_COOKIE, Action.KEEP),
            Origin.ESSENTIAL_COOKIE: _classification(ESSENTIAL, None, Origin.ESSENTIAL_COOKIE, Action.KEEP),
            Origin.NAMELESS_COOKIE: _classification(
                None, None, Origin.NAMELESS_COOKIE, Action.DROP, grant=Grant.EVERYTHING, needs=self.gated_categories
            ),
            Origin.UNKNOWN_COOKIE: (
                _classification(None, None, Origin.UNKNOWN_COOKIE, Action.KEEP)
                if unknown == "keep"
                else _classification(None, None, Origin.UNKNOWN_COOKIE, Action.DROP, grant=Grant.NEVER)
                if unknown == "drop"
                else _classification(unknown, None, Origin.UNKNOWN_COOKIE, Action.DROP)
            ),
        }
        for i, rule in enumerate(self.cookie_rules):
            classes[i] = (
                _classification(None, None, Origin.COOKIE_RULE, Action.KEEP, rule=rule.name)
                if rule.allow
                else _classification(rule.category, None, Origin.COOKIE_RULE, Action.DROP, rule=rule.name)
            )
        return classes

    def decide_cookie(self, consent: ConsentState, name: str) -> Decision:
        return self.classify_cookie(name).decide(consent, Kind.HEADER)

    def known_essential_cookie(self, name: str) -> bool:
        """Whether a cookie is essential or allowlisted (the fail-safe keeps only these)."""
        c = self.classify_cookie(name)
        return c.category == ESSENTIAL or (c.always and c.origin is not Origin.UNKNOWN_COOKIE)


# --------------------------------------------------------------------------- headers


def filter_link_header(values: str | Sequence[str], keep: Callable[[str], bool]) -> tuple[str | None, list[str]]:
    """The `Link` field (one line, or every line in order) without the link-values the
    browser could fetch from a URL `keep` refuses: the `<...>` reference or any
    `imagesrcset` candidate. The lines are read as one list, as the browser reads them
    (`proxy.core.link_header`); a link-value the browser would ignore as malformed is
    removed too, since its bytes could change how the next one is split.

    Returns (the new field value, None when nothing is left; the removed link-values'
    texts). With nothing removed the first element is the input unchanged (the very
    same string for one line)."""
    lines = [values] if isinstance(values, str) else list(values)
    kept: list[str] = []
    removed: list[str] = []
    for text, link in parse_link_field(lines):
        if link is not None and all(keep(url) for url in link.urls()):
            kept.append(text)
        else:
            removed.append(text)
    if not removed:
        return (lines[0] if len(lines) == 1 else ", ".join(lines)), removed
    return (", ".join(kept) if kept else None), removed
