"""Didomi: the `didomi_token` cookie (with `euconsent-v2` when Didomi runs under TCF),
`[consent.didomi]`, and Didomi's `didomi/javascript` and `didomi/html` deferral."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final

from ..categories import ADVERTISING, ANALYTICS, SOCIAL
from . import tcf
from .dates import from_iso8601
from .markup import Deferral, Edit, Element, escape_attr
from .source import CONFLICT, DEFAULT_VIEW, MALFORMED, Check, Jar, ParseContext, Reading, Source, Table, View
from .tables import (
    check_category_sets,
    check_services,
    frozen_sets,
    read_category_sets,
    read_services,
    shared,
)
from .values import dated, decided, json_object, one, percent_decode, prepare, refusal_wins, string_list

COOKIE: Final = "didomi_token"
STORAGE_PURPOSE: Final = "cookies"
"""Didomi's id for TCF purpose 1; disabling it refuses everything."""

_B64_STANDARD: Final = re.compile(r"[A-Za-z0-9+/]+={0,2}")

DEFAULT_PURPOSES: Final = frozen_sets(
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

DEFAULT_VENDORS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "google": ADVERTISING,
        "facebook": ADVERTISING,
        "c:hotjar": ANALYTICS,
        "c:mixpanel": ANALYTICS,
        "c:youtube": SOCIAL,
    }
)
"""Didomi vendor id → category; only a *disabled* vendor has an effect (it refuses)."""


@dataclass(frozen=True, slots=True)
class DidomiSettings:
    """`[consent.didomi]`: Didomi purpose id → categories, and vendor id → category."""

    purposes: Mapping[str, frozenset[str]] = shared(DEFAULT_PURPOSES)
    vendors: Mapping[str, str] = shared(DEFAULT_VENDORS)


def read_didomi(token: str, tc_string: str | None, settings: View = DEFAULT_VIEW) -> Reading:
    """Didomi: `didomi_token` (standard base64 of JSON) plus, usually, `euconsent-v2`.

    With a TC string, it alone grants (`categories_from_purposes`); the token can only
    take away: every category mapped from a `purposes.disabled` entry (`purposes`) or
    a `vendors.disabled` entry (`vendors`) is removed. Without a TC string (Didomi
    outside TCF), categories come from the token's `purposes.enabled` under the
    refusal-wins rule, minus the same removals. A disabled `cookies` purpose (TCF
    purpose 1) refuses everything. A broken token or a broken TC string makes the
    whole source malformed. The token's `updated` dates the decision, which speaks for
    the categories its purposes and vendors map to (with a TC string, also those of
    the TCF purposes)."""
    prepared = prepare(token, settings)
    if isinstance(prepared, Reading):
        return prepared
    from_tcf: frozenset[str] | None = None
    if tc_string is not None:
        categories = tcf.tcf_categories(tc_string, settings)
        if isinstance(categories, Reading):
            return categories
        from_tcf = categories
    try:
        raw = percent_decode(prepared)
        if _B64_STANDARD.fullmatch(raw) is None or len(raw.rstrip("=")) % 4 == 1:
            raise ValueError("not standard base64")
        obj = json_object(base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True).decode("utf-8"))
        lists: dict[str, list[str]] = {}
        for section in ("purposes", "vendors"):
            part = obj.get(section, {})
            if not isinstance(part, dict):
                raise ValueError(f"{section} is not an object")
            for state in ("enabled", "disabled"):
                lists[f"{section}.{state}"] = string_list(part.get(state, []), f"{section}.{state}")
    except ValueError:
        return MALFORMED
    updated = obj.get("updated")
    at = from_iso8601(updated) if isinstance(updated, str) else None
    if STORAGE_PURPOSE in lists["purposes.disabled"]:
        return dated(decided((), settings), at)
    own = settings.of(SOURCE)
    removed: set[str] = set()
    for purpose in lists["purposes.disabled"]:
        removed.update(own.purposes.get(purpose, ()))
    for vendor in lists["vendors.disabled"]:
        category = own.vendors.get(vendor)
        if category is not None:
            removed.add(category)
    if from_tcf is not None:
        covers = tcf.covered(settings) | removed
        return dated(replace(decided(from_tcf - removed, settings), covers=covers), at)
    enabled = [p for p in lists["purposes.enabled"] if p in own.purposes]
    from_token = refusal_wins(((own.purposes[p], True) for p in enabled), settings)
    covers = (from_token.covers or frozenset()) | removed
    return dated(replace(decided(from_token.granted - removed, settings), covers=covers), at)


def _read(jar: Jar, view: View) -> Reading:
    token = one(jar, COOKIE)
    if isinstance(token, Reading):
        return token
    tc_string = one(jar, tcf.COOKIE)
    if tc_string is CONFLICT:
        return CONFLICT
    return read_didomi(token, tc_string if isinstance(tc_string, str) else None, view)


def _cookies(view: View) -> tuple[str, ...]:
    return (COOKIE, tcf.COOKIE)


def _parse(table: Table, context: ParseContext) -> DidomiSettings:
    d = DidomiSettings()
    return DidomiSettings(
        purposes={**d.purposes, **read_category_sets(table, "purposes")},
        vendors={**d.vendors, **read_services(table, "vendors", context.categories)},
    )


def _check(settings: DidomiSettings, categories: frozenset[str]) -> Iterator[Check]:
    yield from check_category_sets("purposes", settings.purposes, categories)
    yield from check_services("vendors", settings.vendors, categories)


def _defer(e: Element, names: Mapping[str, str]) -> Edit:
    vendor = f"c:{e.vendor_id or e.category}"
    if e.script:
        sets = [("type", "didomi/javascript"), ("data-vendor", vendor)]
        if "type" in e.attrs:
            sets.append(("data-type", e.attrs["type"]))
        return Edit(set=tuple(sets))
    # Didomi holds any other markup as text inside a didomi/html script.
    return Edit(before=f'<script type="didomi/html" data-vendor="{escape_attr(vendor)}">', after="</script>")


SOURCE: Final = Source(
    name="didomi",
    defaults=DidomiSettings(),
    read=_read,
    cookies=_cookies,
    parse=_parse,
    check=_check,
    defer=Deferral(_defer),
)
