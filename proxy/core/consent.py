"""Request cookies + `Sec-GPC` → one `ConsentState`. Pure: no IO, no aiohttp.

Called once per request by the app (`read_consent`). Each consent source has a small
reader (`read_<source>`) that turns the raw cookie value(s) into a `Reading`. Formats
are the ones recorded in docs/field-survey.md §b.

Resolution, in `settings.sources` order:

1. A source whose cookie is absent is skipped.
2. A source that is present and **decided** decides: its categories are granted and its
   name is recorded in `ConsentState.source`.
3. A source that is present but **broken** (malformed, oversized, or the same cookie sent
   twice with different values) also decides, as "essential only", with `reason` saying
   why. A broken higher-priority source never lets a lower-priority one grant more.
4. A source that is present but **undecided** (OneTrust `interactionCount=0`, CookieYes
   `action:` empty, ...) is skipped, so a later source may still decide.
5. Nobody decided: `settings.undecided` is granted. `source` is "default" when some
   consent cookie was present (but undecided) and "none" when there was none at all.

Then, when `Sec-GPC: 1` was sent, the `settings.gpc_refuses` categories are removed,
whatever any cookie says, and `essential` is always added back.

`reason` is one of `REASONS`: "ok" (a source decided, or the undecided default applied
because a CMP said so), "missing" (no consent cookie at all), "malformed", "oversized"
(one consent cookie over `max_cookie_bytes`, or the whole Cookie header over
`MAX_COOKIE_HEADER_BYTES`: then nothing is read, since a cookie past the cut could be a
conflicting duplicate), "conflict". For broken sources `decided` is False: the visitor's
choice could not be established; `granted` is final either way.

Mapping rule shared by every reader that maps several CMP keys (groups, services,
purposes) onto one category: a category is granted when at least one key mapped to it
is granted and **no key mapped to it is present and refused** ("refusal wins"). A
visitor who accepted Google Analytics but refused Matomo has not accepted analytics.
Keys absent from the cookie neither grant nor refuse. Unknown keys grant nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, TypeVar
from urllib.parse import unquote

from proxy.core.categories import (
    ADVERTISING,
    ANALYTICS,
    BUILTIN_CATEGORIES,
    ESSENTIAL,
    FUNCTIONAL,
    NON_ESSENTIAL,
    SOCIAL,
)
from proxy.core.cookies import parse_cookie_header
from proxy.core.tcf import parse_tc_string

REASONS: Final[tuple[str, ...]] = ("ok", "missing", "malformed", "oversized", "conflict")
"""Every value `ConsentState.reason` can take (a fixed set, for metrics labels)."""

SOURCES: Final[tuple[str, ...]] = (
    "tag-gate",
    "onetrust",
    "cookiebot",
    "klaro",
    "cookieconsent",
    "tarteaucitron",
    "complianz",
    "cookieyes",
    "didomi",
    "osano",
    "tcf",
)
"""Every known source name, in the default resolution order."""

MAX_COOKIE_HEADER_BYTES: Final = 16384
"""A Cookie header longer than this is not read at all (essential only, "oversized")."""

_T = TypeVar("_T")
_KEY_LETTERS: Final = (("f", FUNCTIONAL), ("a", ANALYTICS), ("d", ADVERTISING), ("s", SOCIAL))
_CATEGORY_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_COOKIE_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_NATIVE_SEPARATORS: Final = re.compile(r"[.,|]")
_DIGITS: Final = re.compile(r"[0-9]{1,9}")
_JS_PAIR: Final = re.compile(
    r"""\s*([A-Za-z_$][\w$]{0,63})\s*:\s*('[^']*'|"[^"]*"|true|false|-?[0-9]{1,20}(?:\.[0-9]{1,20})?)\s*"""
)
_B64_STANDARD: Final = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _frozen(mapping: Mapping[str, Collection[str]]) -> Mapping[str, frozenset[str]]:
    return MappingProxyType({k: frozenset(v) for k, v in mapping.items()})


DEFAULT_ONETRUST_GROUPS: Final = _frozen(
    {
        "C0001": {ESSENTIAL},
        "C0002": {ANALYTICS},
        "C0003": {FUNCTIONAL},
        "C0004": {ADVERTISING},
        "C0005": {SOCIAL},
    }
)
"""OneTrust's default group ids. Sites' custom ids (`BG…`, `C0042`, `STACK42`) grant
nothing until mapped in config."""

DEFAULT_COOKIEBOT_FIELDS: Final = _frozen(
    {
        "necessary": {ESSENTIAL},
        "preferences": {FUNCTIONAL},
        "statistics": {ANALYTICS},
        # Cookiebot files social embeds and pixels under marketing.
        "marketing": {ADVERTISING, SOCIAL},
    }
)

DEFAULT_SERVICE_CATEGORIES: Final[Mapping[str, str]] = MappingProxyType(
    {
        # analytics
        "analytics": ANALYTICS,
        "clarity": ANALYTICS,
        "ga": ANALYTICS,
        "ga4": ANALYTICS,
        "gajs": ANALYTICS,
        "google-analytics": ANALYTICS,
        "googleanalytics": ANALYTICS,
        "googletagmanager": ANALYTICS,
        "gtag": ANALYTICS,
        "gtm": ANALYTICS,
        "hotjar": ANALYTICS,
        "matomo": ANALYTICS,
        "matomocloud": ANALYTICS,
        "mixpanel": ANALYTICS,
        "multiplegtag": ANALYTICS,
        "piwik": ANALYTICS,
        "plausible": ANALYTICS,
        "xiti": ANALYTICS,
        # advertising
        "adsense": ADVERTISING,
        "adwordsconversion": ADVERTISING,
        "adwordsremarketing": ADVERTISING,
        "bingads": ADVERTISING,
        "criteo": ADVERTISING,
        "doubleclick": ADVERTISING,
        "facebookpixel": ADVERTISING,
        "googleads": ADVERTISING,
        "linkedininsighttag": ADVERTISING,
        "metapixel": ADVERTISING,
        "tiktok": ADVERTISING,
        "tiktokpixel": ADVERTISING,
        # social networks, video players, embeds
        "dailymotion": SOCIAL,
        "facebook": SOCIAL,
        "googlemaps": SOCIAL,
        "instagram": SOCIAL,
        "linkedin": SOCIAL,
        "twitter": SOCIAL,
        "twitterembed": SOCIAL,
        "vimeo": SOCIAL,
        "youtube": SOCIAL,
        # chat and support widgets
        "crisp": FUNCTIONAL,
        "intercom": FUNCTIONAL,
        "tawkto": FUNCTIONAL,
        "zendesk": FUNCTIONAL,
    }
)
"""Klaro and tarteaucitron service name (lower case) → category."""

DEFAULT_COOKIECONSENT_CATEGORIES: Final = _frozen(
    {
        "necessary": {ESSENTIAL},
        "functional": {FUNCTIONAL},
        "functionality": {FUNCTIONAL},
        "preferences": {FUNCTIONAL},
        "analytics": {ANALYTICS},
        "measurement": {ANALYTICS},
        "performance": {ANALYTICS},
        "statistics": {ANALYTICS},
        "ads": {ADVERTISING},
        "advertising": {ADVERTISING},
        "marketing": {ADVERTISING},
        "targeting": {ADVERTISING},
        "social": {SOCIAL},
    }
)

DEFAULT_COMPLIANZ_CATEGORIES: Final = _frozen(
    {
        "functional": {FUNCTIONAL},
        "preferences": {FUNCTIONAL},
        "statistics": {ANALYTICS},
        "marketing": {ADVERTISING, SOCIAL},
    }
)
"""Complianz category (the part after `cmplz_`) → categories."""

DEFAULT_COOKIEYES_CATEGORIES: Final = _frozen(
    {
        "necessary": {ESSENTIAL},
        "functional": {FUNCTIONAL},
        "analytics": {ANALYTICS},
        "performance": {ANALYTICS},
        "advertisement": {ADVERTISING},
    }
)
"""CookieYes category → categories. `other` (uncategorised) is deliberately unmapped."""

DEFAULT_DIDOMI_PURPOSES: Final = _frozen(
    {
        "select_basic_ads": {ADVERTISING},
        "create_ads_profile": {ADVERTISING},
        "select_personalized_ads": {ADVERTISING},
        "create_content_profile": {ADVERTISING},
        "select_personalized_content": {ADVERTISING},
        "measure_ad_performance": {ADVERTISING},
        "measure_content_performance": {ANALYTICS},
        "market_research": {ANALYTICS},
        "improve_products": {ANALYTICS},
    }
)
"""Didomi purpose id → categories (Didomi's ids for TCF purposes 2–10)."""

DEFAULT_DIDOMI_VENDORS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "google": ADVERTISING,
        "facebook": ADVERTISING,
        "c:hotjar": ANALYTICS,
        "c:mixpanel": ANALYTICS,
        "c:youtube": SOCIAL,
    }
)
"""Didomi vendor id → category; only a *disabled* vendor has an effect (it refuses)."""

DEFAULT_TCF_PURPOSES: Final[Mapping[int, frozenset[str]]] = MappingProxyType(
    {p: frozenset({ADVERTISING}) for p in range(2, 8)} | {p: frozenset({ANALYTICS}) for p in (8, 9, 10)}
)
"""TCF purpose → categories. Purpose 1 (store/access on a device) is a precondition
for every category and is not mapped. Purpose 11 (limited data to select content) is
left unmapped: it is neither measurement nor advertising, and TCF v2.0 strings have
no bit for it, so mapping it would make that category unreachable for them."""

DIDOMI_STORAGE_PURPOSE: Final = "cookies"
"""Didomi's id for TCF purpose 1; disabling it refuses everything."""


def _shared(value: _T) -> _T:
    """A dataclass default that is an immutable mapping shared by every instance."""
    return field(default_factory=lambda: value)


@dataclass(frozen=True, slots=True)
class ConsentSettings:
    """How consent is read. Defaults are the built-in behaviour; `proxy.core.config` builds
    one from `[consent]`. Every field is a plain value; mappings may be given as dicts.
    Service and category-name keys (Klaro, tarteaucitron, cookieconsent) are matched
    case-insensitively and must be written in lower case; `validate_settings` says so.
    Compare settings with `==`; they are not hashable (the mapping fields are not).
    """

    sources: tuple[str, ...] = SOURCES
    undecided: frozenset[str] = frozenset()
    gpc_refuses: frozenset[str] = frozenset({ADVERTISING})
    categories: frozenset[str] = frozenset(BUILTIN_CATEGORIES)
    cookie_name: str = "tg_consent"
    max_cookie_bytes: int = 4096
    onetrust_groups: Mapping[str, frozenset[str]] = _shared(DEFAULT_ONETRUST_GROUPS)
    cookiebot_fields: Mapping[str, frozenset[str]] = _shared(DEFAULT_COOKIEBOT_FIELDS)
    klaro_cookie: str = "klaro"
    klaro_services: Mapping[str, str] = _shared(DEFAULT_SERVICE_CATEGORIES)
    cookieconsent_cookie: str = "cc_cookie"
    cookieconsent_categories: Mapping[str, frozenset[str]] = _shared(DEFAULT_COOKIECONSENT_CATEGORIES)
    tarteaucitron_cookie: str = "tarteaucitron"
    tarteaucitron_services: Mapping[str, str] = _shared(DEFAULT_SERVICE_CATEGORIES)
    complianz_categories: Mapping[str, frozenset[str]] = _shared(DEFAULT_COMPLIANZ_CATEGORIES)
    cookieyes_categories: Mapping[str, frozenset[str]] = _shared(DEFAULT_COOKIEYES_CATEGORIES)
    didomi_purposes: Mapping[str, frozenset[str]] = _shared(DEFAULT_DIDOMI_PURPOSES)
    didomi_vendors: Mapping[str, str] = _shared(DEFAULT_DIDOMI_VENDORS)
    tcf_purposes: Mapping[int, frozenset[str]] = _shared(DEFAULT_TCF_PURPOSES)
    osano_allow: frozenset[str] = frozenset(NON_ESSENTIAL)
    """What the legacy Osano banner's all-or-nothing `allow` grants."""


DEFAULT_SETTINGS: Final = ConsentSettings()


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The visitor's consent for one request. `granted` always contains "essential" and
    is final (undecided defaults and GPC already applied). `key` is a short stable
    summary for Vary/ETag/logs that reveals no cookie value."""

    granted: frozenset[str]
    decided: bool
    source: str
    gpc: bool
    key: str
    reason: str

    def allows(self, category: str) -> bool:
        """True when `category` may run for this visitor; "essential" always may."""
        return category == ESSENTIAL or category in self.granted


@dataclass(frozen=True, slots=True)
class Reading:
    """What one source says. `present` False: its cookie was not sent. `decided` True:
    `granted` (non-essential names, already limited to known categories) is the choice.
    Present, undecided and `reason` "ok": the CMP says no choice was made yet. Present
    with any other `reason`: broken, which decides "essential only"."""

    present: bool
    decided: bool
    granted: frozenset[str] = frozenset()
    reason: str = "ok"


_ABSENT: Final = Reading(False, False, reason="missing")
_UNDECIDED: Final = Reading(True, False)
_MALFORMED: Final = Reading(True, False, reason="malformed")
_OVERSIZED: Final = Reading(True, False, reason="oversized")
_CONFLICT: Final = Reading(True, False, reason="conflict")


def _decided(granted: Iterable[str], settings: ConsentSettings) -> Reading:
    return Reading(True, True, frozenset(granted) & settings.categories - {ESSENTIAL})


def _refusal_wins(entries: Iterable[tuple[Collection[str], bool]], settings: ConsentSettings) -> Reading:
    """A decided reading from (categories, granted?) pairs; see the module docstring."""
    granted: set[str] = set()
    refused: set[str] = set()
    for categories, ok in entries:
        (granted if ok else refused).update(categories)
    return _decided(granted - refused, settings)


def _prepare(value: str, settings: ConsentSettings) -> str | Reading:
    """Size-check a raw cookie value and drop RFC 6265 double quotes around it."""
    if len(value) > settings.max_cookie_bytes or (
        not value.isascii() and len(value.encode("utf-8", "surrogatepass")) > settings.max_cookie_bytes
    ):
        return _OVERSIZED
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value


def _percent_decode(value: str, *, plus: bool = False) -> str:
    """Strict percent-decoding: a stray `%` or bytes that are not UTF-8 raise ValueError
    (urllib's `unquote` would pass the first through silently)."""
    if "%" not in value:
        return value.replace("+", " ") if plus else value
    if _BAD_PERCENT.search(value):
        raise ValueError("invalid percent-encoding")
    if plus:
        value = value.replace("+", " ")
    return unquote(value, errors="strict")


def _json_object(text: str) -> dict[str, object]:
    """Parse a JSON object, refusing duplicated keys (which would let the last copy
    silently win) and deep nesting (RecursionError is turned into ValueError)."""

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, item in pairs:
            if key in out:
                raise ValueError(f"JSON key {key!r} repeated")
            out[key] = item
        return out

    try:
        parsed: object = json.loads(text, object_pairs_hook=no_duplicates)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(parsed, dict):
        raise ValueError("JSON value is not an object")
    return parsed


def _string_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{what} is not a list of strings")
    return value


def _parse_js_object(text: str) -> dict[str, str | bool]:
    """Parse Cookiebot's object literal (`{key:'str',key:true,key:12}`): unquoted keys,
    single- or double-quoted strings without escapes, booleans and numbers (kept as
    their text). Anything else raises ValueError."""
    text = text.strip()
    if len(text) < 2 or text[0] != "{" or text[-1] != "}":
        raise ValueError("not an object literal")
    inner = text[1:-1]
    out: dict[str, str | bool] = {}
    if not inner.strip():
        return out
    pos = 0
    while True:
        match = _JS_PAIR.match(inner, pos)
        if match is None:
            raise ValueError(f"unreadable object literal at offset {pos}")
        key, raw = match.group(1), match.group(2)
        if key in out:
            raise ValueError(f"key {key!r} repeated")
        if raw == "true" or raw == "false":
            out[key] = raw == "true"
        else:
            out[key] = raw[1:-1] if raw[0] in "'\"" else raw
        pos = match.end()
        if pos == len(inner):
            return out
        if inner[pos] != ",":
            raise ValueError(f"expected ',' at offset {pos}")
        pos += 1


def categories_from_purposes(purposes: Collection[int], settings: ConsentSettings) -> frozenset[str]:
    """Categories granted by a set of consented TCF purposes: none without purpose 1;
    otherwise each category whose mapped purposes are *all* consented. Legitimate
    interest never counts: it cannot cover storing cookies."""
    if 1 not in purposes:
        return frozenset()
    needed: dict[str, set[int]] = {}
    for purpose, categories in settings.tcf_purposes.items():
        for category in categories:
            needed.setdefault(category, set()).add(purpose)
    return frozenset(
        category
        for category, wanted in needed.items()
        if all(p in purposes for p in wanted) and category in settings.categories and category != ESSENTIAL
    )


# --- readers: raw cookie value(s) in, Reading out; never raise ---------------------


def read_native(value: str, settings: ConsentSettings = DEFAULT_SETTINGS) -> Reading:
    """tag-gate's own cookie (`tg_consent`): granted names joined by `.` (`,` and `|`
    also accepted, percent-encoding tolerated). Empty or `none` is a decision for
    essential only. Unknown names are ignored. Everything from the first `~` on is the
    banner's record (`~policy version~time~consent id`, see proxy.core.banner) and grants
    nothing."""
    prepared = _prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        decoded = _percent_decode(prepared).partition("~")[0]
    except ValueError:
        return _MALFORMED
    names = {name.strip(" \t").lower() for name in _NATIVE_SEPARATORS.split(decoded)}
    return _decided(names, settings)


def read_onetrust(value: str, settings: ConsentSettings = DEFAULT_SETTINGS) -> Reading:
    """OneTrust `OptanonConsent`: form-urlencoded; `groups=C0001:1,C0002:0,...`.

    Decided only when `interactionCount` is 1 or more: OneTrust writes the cookie on the
    first page view with the *site's defaults* in `groups` (all 1 in opt-out regions),
    so without an interaction the groups are not the visitor's choice. A missing
    `interactionCount` is likewise undecided. A group absent from `groups` is not
    consented; unmapped groups (custom ids, IAB stacks) grant nothing."""
    prepared = _prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        fields: dict[str, str] = {}
        for part in prepared.split("&"):
            if not part:
                continue
            raw_key, _, raw_value = part.partition("=")
            key = _percent_decode(raw_key, plus=True)
            item = _percent_decode(raw_value, plus=True)
            if fields.get(key, item) != item:
                raise ValueError(f"key {key!r} repeated")
            fields[key] = item
        count = fields.get("interactionCount")
        if count is None:
            return _UNDECIDED
        if _DIGITS.fullmatch(count) is None:
            raise ValueError("interactionCount is not a number")
        if int(count) == 0:
            return _UNDECIDED
        groups = fields.get("groups")
        if groups is None:
            raise ValueError("no groups after an interaction")
        flags: dict[str, bool] = {}
        for entry in groups.split(","):
            if not entry:
                continue
            group, colon, flag = entry.partition(":")
            if not colon or flag not in ("0", "1") or not group:
                raise ValueError(f"bad group entry {entry!r}")
            if flags.get(group, flag == "1") != (flag == "1"):
                raise ValueError(f"group {group!r} repeated")
            flags[group] = flag == "1"
    except ValueError:
        return _MALFORMED
    return _refusal_wins(
        ((settings.onetrust_groups[g], ok) for g, ok in flags.items() if g in settings.onetrust_groups),
        settings,
    )


def read_cookiebot(value: str, settings: ConsentSettings = DEFAULT_SETTINGS) -> Reading:
    """Cookiebot `CookieConsent`: a percent-encoded JS object literal with booleans
    `necessary`, `preferences`, `statistics`, `marketing`.

    Undecided (the visitor chose nothing): the bare value `-1`, `stamp:'-1'` (Cookiebot
    writes it where no consent is required, with everything pre-accepted) and
    `method:'implied'` (consent inferred, not given). A category field that is present
    but not a boolean, or no category field at all, is malformed."""
    prepared = _prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        decoded = _percent_decode(prepared)
        if decoded.strip() == "-1":
            return _UNDECIDED
        obj = _parse_js_object(decoded)
        if obj.get("stamp") == "-1" or obj.get("method") == "implied":
            return _UNDECIDED
        entries: list[tuple[frozenset[str], bool]] = []
        for name, categories in settings.cookiebot_fields.items():
            if name in obj:
                flag = obj[name]
                if not isinstance(flag, bool):
                    raise ValueError(f"{name} is not a boolean")
                entries.append((categories, flag))
        if not entries:
            raise ValueError("no consent field")
    except ValueError:
        return _MALFORMED
    return _refusal_wins(entries, settings)


def read_klaro(value: str, settings: ConsentSettings = DEFAULT_SETTINGS) -> Reading:
    """Klaro `klaro`: percent-encoded JSON `{serviceName: bool}`. Service names are
    looked up lower-cased in `klaro_services`; a non-boolean value is malformed."""
    prepared = _prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        obj = _json_object(_percent_decode(prepared))
        entries: list[tuple[frozenset[str], bool]] = []
        for service, flag in obj.items():
            if not isinstance(flag, bool):
                raise ValueError(f"service {service!r} is not a boolean")
            category = settings.klaro_services.get(service.lower())
            if category is not None:
                entries.append((frozenset({category}), flag))
    except ValueError:
        return _MALFORMED
    return _refusal_wins(entries, settings)


def read_cookieconsent(value: str, settings: ConsentSettings = DEFAULT_SETTINGS) -> Reading:
    """orestbida cookieconsent `cc_cookie`: JSON (percent-encoded or raw) with a
    `categories` list (v3) or a `level` list (v2) of accepted category names."""
    prepared = _prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        obj = _json_object(_percent_decode(prepared))
        if "categories" in obj:
            names = _string_list(obj["categories"], "categories")
        elif "level" in obj:
            names = _string_list(obj["level"], "level")
        else:
            raise ValueError("neither categories nor level")
    except ValueError:
        return _MALFORMED
    mapping = settings.cookieconsent_categories
    granted: set[str] = set()
    for name in names:
        granted.update(mapping.get(name.lower(), ()))
    return _decided(granted, settings)


_TARTEAUCITRON_STATES: Final = {"true": True, "false": False, "wait": False, "engage": False}


def read_tarteaucitron(value: str, settings: ConsentSettings = DEFAULT_SETTINGS) -> Reading:
    """tarteaucitron: `!service=state` segments. Only `true` grants; `false`, `wait`
    and `engage` refuse. Decided once any service is `true` or `false` (all `wait`
    means the visitor has not chosen). The `!id=` segment is ignored."""
    prepared = _prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        decoded = _percent_decode(prepared)
        if not decoded:
            return _UNDECIDED
        if decoded[0] != "!":
            raise ValueError("does not start with '!'")
        states: dict[str, str] = {}
        for segment in decoded[1:].split("!"):
            service, eq, state = segment.partition("=")
            if not eq or not service:
                raise ValueError(f"bad segment {segment!r}")
            if service == "id":
                continue
            state = state.lower()
            if state not in _TARTEAUCITRON_STATES:
                raise ValueError(f"bad state {state!r}")
            if states.get(service, state) != state:
                raise ValueError(f"service {service!r} repeated")
            states[service] = state
    except ValueError:
        return _MALFORMED
    if not any(state in ("true", "false") for state in states.values()):
        return _UNDECIDED
    return _refusal_wins(
        (
            (frozenset({category}), _TARTEAUCITRON_STATES[state])
            for service, state in states.items()
            if (category := settings.tarteaucitron_services.get(service.lower())) is not None
        ),
        settings,
    )


def read_complianz(values: Mapping[str, str], settings: ConsentSettings = DEFAULT_SETTINGS) -> Reading:
    """Complianz: one `cmplz_<category>` cookie per category, `allow` or `deny`.
    `values` maps the Complianz category (e.g. "statistics") to its raw cookie value.
    Decided when any is present. A category cookie that is absent grants nothing
    (Complianz's opt-out-region default of "consent when absent" is not followed)."""
    entries: list[tuple[frozenset[str], bool]] = []
    for name, raw in values.items():
        categories = settings.complianz_categories.get(name)
        if categories is None:
            continue
        prepared = _prepare(raw, settings)
        if isinstance(prepared, Reading):
            return prepared
        if prepared not in ("allow", "deny"):
            return _MALFORMED
        entries.append((categories, prepared == "allow"))
    if not entries:
        return _ABSENT
    return _refusal_wins(entries, settings)


def read_cookieyes(value: str, settings: ConsentSettings = DEFAULT_SETTINGS) -> Reading:
    """CookieYes `cookieyes-consent`: `key:value` pairs joined by `,`. `action:` empty
    means no decision yet; a missing `action` or a category value other than
    `yes`/`no` is malformed."""
    prepared = _prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        pairs: dict[str, str] = {}
        for part in _percent_decode(prepared).split(","):
            key, colon, item = part.partition(":")
            if not colon:
                raise ValueError(f"bad pair {part!r}")
            if key in pairs:
                raise ValueError(f"key {key!r} repeated")
            pairs[key] = item
        action = pairs.get("action")
        if action is None:
            raise ValueError("no action")
        if not action:
            return _UNDECIDED
        entries: list[tuple[frozenset[str], bool]] = []
        for name, categories in settings.cookieyes_categories.items():
            if name in pairs:
                if pairs[name] not in ("yes", "no"):
                    raise ValueError(f"{name} is neither yes nor no")
                entries.append((categories, pairs[name] == "yes"))
    except ValueError:
        return _MALFORMED
    return _refusal_wins(entries, settings)


def _tcf_categories(value: str, settings: ConsentSettings) -> frozenset[str] | Reading:
    prepared = _prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        tc = parse_tc_string(_percent_decode(prepared))
    except ValueError:
        return _MALFORMED
    return categories_from_purposes(tc.purposes_consent, settings)


def read_tcf(value: str, settings: ConsentSettings = DEFAULT_SETTINGS) -> Reading:
    """IAB TCF `euconsent-v2` (raw, percent-encoded or double-quoted): decided by the
    purpose consents; see `categories_from_purposes`. A string that does not decode
    is malformed."""
    categories = _tcf_categories(value, settings)
    if isinstance(categories, Reading):
        return categories
    return _decided(categories, settings)


def read_didomi(token: str, tc_string: str | None, settings: ConsentSettings = DEFAULT_SETTINGS) -> Reading:
    """Didomi: `didomi_token` (standard base64 of JSON) plus, usually, `euconsent-v2`.

    With a TC string, it alone grants (`categories_from_purposes`); the token can only
    take away: every category mapped from a `purposes.disabled` entry
    (`didomi_purposes`) or a `vendors.disabled` entry (`didomi_vendors`) is removed.
    Without a TC string (Didomi outside TCF), categories come from the token's
    `purposes.enabled` under the refusal-wins rule, minus the same removals. A
    disabled `cookies` purpose (TCF purpose 1) refuses everything. A broken token or
    a broken TC string makes the whole source malformed."""
    prepared = _prepare(token, settings)
    if isinstance(prepared, Reading):
        return prepared
    from_tcf: frozenset[str] | None = None
    if tc_string is not None:
        categories = _tcf_categories(tc_string, settings)
        if isinstance(categories, Reading):
            return categories
        from_tcf = categories
    try:
        raw = _percent_decode(prepared)
        if _B64_STANDARD.fullmatch(raw) is None or len(raw.rstrip("=")) % 4 == 1:
            raise ValueError("not standard base64")
        obj = _json_object(base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True).decode("utf-8"))
        lists: dict[str, list[str]] = {}
        for section in ("purposes", "vendors"):
            part = obj.get(section, {})
            if not isinstance(part, dict):
                raise ValueError(f"{section} is not an object")
            for state in ("enabled", "disabled"):
                lists[f"{section}.{state}"] = _string_list(part.get(state, []), f"{section}.{state}")
    except ValueError:
        return _MALFORMED
    if DIDOMI_STORAGE_PURPOSE in lists["purposes.disabled"]:
        return _decided((), settings)
    removed: set[str] = set()
    for purpose in lists["purposes.disabled"]:
        removed.update(settings.didomi_purposes.get(purpose, ()))
    for vendor in lists["vendors.disabled"]:
        category = settings.didomi_vendors.get(vendor)
        if category is not None:
            removed.add(category)
    if from_tcf is not None:
        return _decided(from_tcf - removed, settings)
    enabled = [p for p in lists["purposes.enabled"] if p in settings.didomi_purposes]
    granted = _refusal_wins(((settings.didomi_purposes[p], True) for p in enabled), settings).granted
    return _decided(granted - removed, settings)


def read_osano(value: str, settings: ConsentSettings = DEFAULT_SETTINGS) -> Reading:
    """Legacy Osano banner `cookieconsent_status`: `allow` grants `osano_allow`, `deny`
    grants nothing, `dismiss` (an information-only banner was closed) is undecided."""
    prepared = _prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    if prepared == "allow":
        return _decided(settings.osano_allow, settings)
    if prepared == "deny":
        return _decided((), settings)
    if prepared == "dismiss":
        return _UNDECIDED
    return _MALFORMED


def read_gpc(value: str | None) -> bool:
    """True when the `Sec-GPC` header value is exactly "1" (surrounding OWS aside)."""
    return value is not None and value.strip(" \t") == "1"


# --- resolution --------------------------------------------------------------------

_Jar = Mapping[str, list[str]]

COOKIE_ONETRUST: Final = "OptanonConsent"
COOKIE_COOKIEBOT: Final = "CookieConsent"
COOKIE_COOKIEYES: Final = "cookieyes-consent"
COOKIE_DIDOMI: Final = "didomi_token"
COOKIE_TCF: Final = "euconsent-v2"
COOKIE_OSANO: Final = "cookieconsent_status"
COMPLIANZ_PREFIX: Final = "cmplz_"


def _one(jar: _Jar, name: str) -> str | Reading:
    """The single value of a cookie; duplicates with different values conflict."""
    values = jar.get(name)
    if not values:
        return _ABSENT
    first = values[0]
    for other in values[1:]:
        if other != first:
            return _CONFLICT
    return first


def _single_cookie(
    name: Callable[[ConsentSettings], str], reader: Callable[[str, ConsentSettings], Reading]
) -> Callable[[_Jar, ConsentSettings], Reading]:
    def read(jar: _Jar, settings: ConsentSettings) -> Reading:
        value = _one(jar, name(settings))
        return value if isinstance(value, Reading) else reader(value, settings)

    return read


def _read_complianz_jar(jar: _Jar, settings: ConsentSettings) -> Reading:
    values: dict[str, str] = {}
    for category in settings.complianz_categories:
        value = _one(jar, COMPLIANZ_PREFIX + category)
        if value is _CONFLICT:
            return _CONFLICT
        if isinstance(value, str):
            values[category] = value
    return read_complianz(values, settings)


def _read_didomi_jar(jar: _Jar, settings: ConsentSettings) -> Reading:
    token = _one(jar, COOKIE_DIDOMI)
    if isinstance(token, Reading):
        return token
    tc_string = _one(jar, COOKIE_TCF)
    if tc_string is _CONFLICT:
        return _CONFLICT
    return read_didomi(token, tc_string if isinstance(tc_string, str) else None, settings)


_SINGLE_COOKIE_SOURCES: Final[
    Mapping[str, tuple[Callable[[ConsentSettings], str], Callable[[str, ConsentSettings], Reading]]]
] = MappingProxyType(
    {
        "tag-gate": (lambda s: s.cookie_name, read_native),
        "onetrust": (lambda s: COOKIE_ONETRUST, read_onetrust),
        "cookiebot": (lambda s: COOKIE_COOKIEBOT, read_cookiebot),
        "klaro": (lambda s: s.klaro_cookie, read_klaro),
        "cookieconsent": (lambda s: s.cookieconsent_cookie, read_cookieconsent),
        "tarteaucitron": (lambda s: s.tarteaucitron_cookie, read_tarteaucitron),
        "cookieyes": (lambda s: COOKIE_COOKIEYES, read_cookieyes),
        "osano": (lambda s: COOKIE_OSANO, read_osano),
        "tcf": (lambda s: COOKIE_TCF, read_tcf),
    }
)
"""Sources that read one cookie: its name (from the settings) and the reader."""

_SOURCE_READERS: Final[Mapping[str, Callable[[_Jar, ConsentSettings], Reading]]] = MappingProxyType(
    {
        **{source: _single_cookie(name, reader) for source, (name, reader) in _SINGLE_COOKIE_SOURCES.items()},
        "complianz": _read_complianz_jar,
        "didomi": _read_didomi_jar,
    }
)


def source_cookie_names(source: str, settings: ConsentSettings = DEFAULT_SETTINGS) -> tuple[str, ...]:
    """The cookie names a source reads (for cookie filtering: consent cookies are
    essential). Unknown source names have none."""
    single = _SINGLE_COOKIE_SOURCES.get(source)
    if single is not None:
        return (single[0](settings),)
    if source == "complianz":
        return tuple(COMPLIANZ_PREFIX + c for c in settings.complianz_categories)
    if source == "didomi":
        return (COOKIE_DIDOMI, COOKIE_TCF)
    return ()


def consent_key(granted: Collection[str], gpc: bool, settings: ConsentSettings = DEFAULT_SETTINGS) -> str:
    """`f0a1d0s1g0`: functional, analytics, advertising, social, then GPC. When the
    settings define custom categories, `x` + 6 hex chars of sha256 of the sorted
    granted custom names is appended (always, so the key length is fixed per config)."""
    key = "".join(f"{letter}{int(category in granted)}" for letter, category in _KEY_LETTERS)
    key += f"g{int(gpc)}"
    custom = settings.categories.difference(BUILTIN_CATEGORIES)
    if custom:
        names = ",".join(sorted(custom.intersection(granted)))
        key += "x" + hashlib.sha256(names.encode()).hexdigest()[:6]
    return key


def _state(
    granted: Iterable[str], decided: bool, source: str, gpc: bool, reason: str, settings: ConsentSettings
) -> ConsentState:
    final = set(granted) & settings.categories
    if gpc:
        final -= settings.gpc_refuses
    final.add(ESSENTIAL)
    frozen = frozenset(final)
    return ConsentState(frozen, decided, source, gpc, consent_key(frozen, gpc, settings), reason)


def _header_too_long(header: str) -> bool:
    if len(header) > MAX_COOKIE_HEADER_BYTES:
        return True
    return not header.isascii() and len(header.encode("utf-8", "surrogatepass")) > MAX_COOKIE_HEADER_BYTES


def read_consent(
    cookie_header: str | None, sec_gpc: str | None, settings: ConsentSettings = DEFAULT_SETTINGS
) -> ConsentState:
    """The request's consent: `cookie_header` is the Cookie header (several already
    joined with "; "), `sec_gpc` the Sec-GPC header, either may be None. Never raises;
    bad input grants essential only (see the module docstring for the rules)."""
    gpc = read_gpc(sec_gpc)
    if cookie_header and _header_too_long(cookie_header):
        return _state((), False, "none", gpc, "oversized", settings)
    jar: dict[str, list[str]] = {}
    if cookie_header:
        for name, value in parse_cookie_header(cookie_header):
            jar.setdefault(name, []).append(value)
    undecided_seen = False
    for source in settings.sources:
        reader = _SOURCE_READERS.get(source)
        if reader is None:
            continue
        reading = reader(jar, settings)
        if not reading.present:
            continue
        if reading.decided:
            return _state(reading.granted, True, source, gpc, "ok", settings)
        if reading.reason != "ok":
            return _state((), False, source, gpc, reading.reason, settings)
        undecided_seen = True
    if undecided_seen:
        return _state(settings.undecided, False, "default", gpc, "ok", settings)
    return _state(settings.undecided, False, "none", gpc, "missing", settings)


# --- reporting and validation ------------------------------------------------------


def consent_report(state: ConsentState) -> dict[str, object]:
    """The JSON shape printed by `tag-gate explain-consent --json`."""
    return {
        "granted": sorted(state.granted),
        "decided": state.decided,
        "source": state.source,
        "gpc": state.gpc,
        "key": state.key,
    }


def _ordered(names: Collection[str]) -> list[str]:
    builtin = [c for c in BUILTIN_CATEGORIES if c in names]
    return builtin + sorted(set(names).difference(BUILTIN_CATEGORIES))


def format_consent(state: ConsentState, settings: ConsentSettings = DEFAULT_SETTINGS) -> str:
    """A few human-readable lines: granted, refused, source, gpc, key, reason."""
    refused = settings.categories - state.granted
    decided = "decided" if state.decided else "not decided"
    return "\n".join(
        (
            f"granted: {', '.join(_ordered(state.granted))}",
            f"refused: {', '.join(_ordered(refused)) or '-'}",
            f"source:  {state.source} ({decided})",
            f"gpc:     {'yes (Sec-GPC: 1)' if state.gpc else 'no'}",
            f"key:     {state.key}",
            f"reason:  {state.reason}",
        )
    )


def validate_settings(settings: ConsentSettings) -> list[str]:
    """Every problem with a settings object, as `field: message` lines (empty when
    fine): bad or unknown category names, unknown or repeated sources, invalid cookie
    names, non-lower-case service keys, TCF purposes outside 1..24."""
    problems: list[str] = []
    known = settings.categories
    for name in sorted(known):
        if _CATEGORY_NAME.fullmatch(name) is None:
            problems.append(f"categories: {name!r} is not a valid category name ([a-z][a-z0-9_-]*, max 32)")
    for name in BUILTIN_CATEGORIES:
        if name not in known:
            problems.append(f"categories: built-in category {name!r} is missing")
    seen: set[str] = set()
    for i, source in enumerate(settings.sources):
        if source not in SOURCES:
            problems.append(f"sources[{i}]: unknown source {source!r} (known: {', '.join(SOURCES)})")
        elif source in seen:
            problems.append(f"sources[{i}]: {source!r} listed twice")
        seen.add(source)

    def check(where: str, names: Iterable[str]) -> None:
        for name in sorted(names):
            if name not in known:
                problems.append(f"{where}: unknown category {name!r}")

    check("undecided", settings.undecided)
    check("gpc_refuses", settings.gpc_refuses)
    check("osano_allow", settings.osano_allow)
    if ESSENTIAL in settings.gpc_refuses:
        problems.append("gpc_refuses: 'essential' cannot be refused")
    for where in ("cookie_name", "klaro_cookie", "cookieconsent_cookie", "tarteaucitron_cookie"):
        cookie = getattr(settings, where)
        if not isinstance(cookie, str) or _COOKIE_NAME.fullmatch(cookie) is None:
            problems.append(f"{where}: {cookie!r} is not a valid cookie name")
    if settings.max_cookie_bytes < 1:
        problems.append(f"max_cookie_bytes: {settings.max_cookie_bytes} must be at least 1")
    group_maps: dict[str, Mapping[str, frozenset[str]]] = {
        "onetrust_groups": settings.onetrust_groups,
        "cookiebot_fields": settings.cookiebot_fields,
        "cookieconsent_categories": settings.cookieconsent_categories,
        "complianz_categories": settings.complianz_categories,
        "cookieyes_categories": settings.cookieyes_categories,
        "didomi_purposes": settings.didomi_purposes,
    }
    for where, group_map in group_maps.items():
        for key in sorted(group_map):
            check(f"{where}[{key!r}]", group_map[key])
    service_maps = {
        "klaro_services": settings.klaro_services,
        "tarteaucitron_services": settings.tarteaucitron_services,
        "didomi_vendors": settings.didomi_vendors,
    }
    for where, service_map in service_maps.items():
        for key in sorted(service_map):
            check(f"{where}[{key!r}]", (service_map[key],))
    for where, case_map in (
        ("klaro_services", settings.klaro_services),
        ("tarteaucitron_services", settings.tarteaucitron_services),
        ("cookieconsent_categories", settings.cookieconsent_categories),
    ):
        for key in sorted(case_map):
            if key != key.lower():
                problems.append(f"{where}[{key!r}]: keys are matched in lower case; write {key.lower()!r}")
    for purpose in sorted(settings.tcf_purposes):
        if not 1 <= purpose <= 24:
            problems.append(f"tcf_purposes[{purpose}]: TCF purposes are numbered 1 to 24")
        check(f"tcf_purposes[{purpose}]", settings.tcf_purposes[purpose])
    return problems
