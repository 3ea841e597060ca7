"""OneTrust: the `OptanonConsent` cookie, `[consent.onetrust]`, and OneTrust's
`optanon-category-<group>` deferral class."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ..categories import ADVERTISING, ANALYTICS, ESSENTIAL, FUNCTIONAL, SOCIAL
from .dates import from_iso8601, from_js_date
from .markup import Deferral, Edit, Element, inverse_names, with_class
from .source import DEFAULT_VIEW, MALFORMED, UNDECIDED, Check, Jar, ParseContext, Reading, Source, Table, View
from .tables import check_category_sets, frozen_sets, read_category_sets, shared
from .values import dated, one, percent_decode, prepare, refusal_wins

COOKIE: Final = "OptanonConsent"
CLOSED: Final = "OptanonAlertBoxClosed"
_DIGITS: Final = re.compile(r"[0-9]{1,9}")

DEFAULT_GROUPS: Final = frozen_sets(
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


@dataclass(frozen=True, slots=True)
class OneTrustSettings:
    """`[consent.onetrust]`: `groups` maps OneTrust group ids to categories (entries in
    TOML are added to, or replace, the defaults)."""

    groups: Mapping[str, frozenset[str]] = shared(DEFAULT_GROUPS)


def read_onetrust(value: str, settings: View = DEFAULT_VIEW) -> Reading:
    """OneTrust `OptanonConsent`: form-urlencoded; `groups=C0001:1,C0002:0,...`.

    Decided only when `interactionCount` is 1 or more: OneTrust writes the cookie on the
    first page view with the *site's defaults* in `groups` (all 1 in opt-out regions),
    so without an interaction the groups are not the visitor's choice. A missing
    `interactionCount` is likewise undecided. A group absent from `groups` is not
    consented; unmapped groups (custom ids, IAB stacks) grant nothing. `datestamp`
    (JavaScript's `Date` text) dates the decision."""
    prepared = prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        fields: dict[str, str] = {}
        for part in prepared.split("&"):
            if not part:
                continue
            raw_key, _, raw_value = part.partition("=")
            key = percent_decode(raw_key, plus=True)
            item = percent_decode(raw_value, plus=True)
            if fields.get(key, item) != item:
                raise ValueError(f"key {key!r} repeated")
            fields[key] = item
        count = fields.get("interactionCount")
        if count is None:
            return UNDECIDED
        if _DIGITS.fullmatch(count) is None:
            raise ValueError("interactionCount is not a number")
        if int(count) == 0:
            return UNDECIDED
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
        return MALFORMED
    mapping = settings.of(SOURCE).groups
    reading = refusal_wins(((mapping[g], ok) for g, ok in flags.items() if g in mapping), settings)
    stamp = fields.get("datestamp")
    return dated(reading, from_js_date(stamp) if stamp else None)


def _read(jar: Jar, view: View) -> Reading:
    """`OptanonConsent`, dated by `OptanonAlertBoxClosed` (when the visitor closed the
    banner or saved a choice) where that is readable, else by its own `datestamp`
    (which OneTrust may rewrite on later page views, so it can be later than the choice)."""
    value = one(jar, COOKIE)
    if isinstance(value, Reading):
        return value
    reading = read_onetrust(value, view)
    closed = one(jar, CLOSED)
    at = from_iso8601(closed) if isinstance(closed, str) and len(closed) <= 64 else None
    return dated(reading, at)


def _cookies(view: View) -> tuple[str, ...]:
    return (COOKIE,)


def _parse(table: Table, context: ParseContext) -> OneTrustSettings:
    d = OneTrustSettings()
    return OneTrustSettings(groups={**d.groups, **read_category_sets(table, "groups")})


def _check(settings: OneTrustSettings, categories: frozenset[str]) -> Iterable[Check]:
    return check_category_sets("groups", settings.groups, categories)


def _names(settings: OneTrustSettings) -> Mapping[str, str]:
    return inverse_names(settings.groups, {})


def _defer(e: Element, names: Mapping[str, str]) -> Edit:
    group = names.get(e.category, "C0004")
    cls = with_class(e.attrs, f"optanon-category-{group}")
    if e.script:
        return Edit(set=(("type", "text/plain"), ("class", cls)))
    return Edit(set=(("class", cls), *e.moved("data-")), remove=e.moving)


SOURCE: Final = Source(
    name="onetrust",
    defaults=OneTrustSettings(),
    read=_read,
    cookies=_cookies,
    parse=_parse,
    check=_check,
    defer=Deferral(_defer, _names),
    also_essential=(CLOSED,),
)
