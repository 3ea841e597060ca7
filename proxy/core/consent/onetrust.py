"""OneTrust: the `OptanonConsent` cookie, `[consent.onetrust]`, and OneTrust's
`optanon-category-<group>` deferral class."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ..categories import ADVERTISING, ANALYTICS, ESSENTIAL, FUNCTIONAL, SOCIAL
from .markup import Deferral, Edit, Element, inverse_names, with_class
from .source import DEFAULT_VIEW, MALFORMED, UNDECIDED, Check, ParseContext, Reading, Source, Table, View
from .tables import check_category_sets, frozen_sets, read_category_sets, shared
from .values import percent_decode, prepare, refusal_wins, single_cookie

COOKIE: Final = "OptanonConsent"
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
    consented; unmapped groups (custom ids, IAB stacks) grant nothing."""
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
    return refusal_wins(((mapping[g], ok) for g, ok in flags.items() if g in mapping), settings)


def _cookie(view: View) -> str:
    return COOKIE


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
    read=single_cookie(_cookie, read_onetrust),
    cookies=_cookies,
    parse=_parse,
    check=_check,
    defer=Deferral(_defer, _names),
    also_essential=("OptanonAlertBoxClosed",),
)
