"""Complianz: one `cmplz_<category>` cookie per category, `[consent.complianz]`, and
Complianz's `data-category`/`data-service` deferral."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ..categories import ADVERTISING, ANALYTICS, FUNCTIONAL, SOCIAL
from .markup import Deferral, Edit, Element, inverse_names, with_class
from .source import ABSENT, CONFLICT, DEFAULT_VIEW, MALFORMED, Check, Jar, ParseContext, Reading, Source, Table, View
from .tables import check_category_sets, frozen_sets, read_category_sets, shared
from .values import one, prepare, refusal_wins

PREFIX: Final = "cmplz_"

DEFAULT_CATEGORIES: Final = frozen_sets(
    {
        "functional": {FUNCTIONAL},
        "preferences": {FUNCTIONAL},
        "statistics": {ANALYTICS},
        "marketing": {ADVERTISING, SOCIAL},
    }
)
"""Complianz category (the part after `cmplz_`) → categories."""

_PREFERRED: Final = {FUNCTIONAL: "functional", ANALYTICS: "statistics", ADVERTISING: "marketing", SOCIAL: "marketing"}


@dataclass(frozen=True, slots=True)
class ComplianzSettings:
    """`[consent.complianz]`: Complianz category → categories; each one read is a cookie
    `cmplz_<category>`."""

    categories: Mapping[str, frozenset[str]] = shared(DEFAULT_CATEGORIES)


def read_complianz(values: Mapping[str, str], settings: View = DEFAULT_VIEW) -> Reading:
    """Complianz: one `cmplz_<category>` cookie per category, `allow` or `deny`.
    `values` maps the Complianz category (e.g. "statistics") to its raw cookie value.
    Decided when any is present. A category cookie that is absent grants nothing
    (Complianz's opt-out-region default of "consent when absent" is not followed)."""
    mapping = settings.of(SOURCE).categories
    entries: list[tuple[frozenset[str], bool]] = []
    for name, raw in values.items():
        categories = mapping.get(name)
        if categories is None:
            continue
        prepared = prepare(raw, settings)
        if isinstance(prepared, Reading):
            return prepared
        if prepared not in ("allow", "deny"):
            return MALFORMED
        entries.append((categories, prepared == "allow"))
    if not entries:
        return ABSENT
    return refusal_wins(entries, settings)


def _read(jar: Jar, view: View) -> Reading:
    values: dict[str, str] = {}
    for category in view.of(SOURCE).categories:
        value = one(jar, PREFIX + category)
        if value is CONFLICT:
            return CONFLICT
        if isinstance(value, str):
            values[category] = value
    return read_complianz(values, view)


def _cookies(view: View) -> tuple[str, ...]:
    return tuple(PREFIX + category for category in view.of(SOURCE).categories)


def _parse(table: Table, context: ParseContext) -> ComplianzSettings:
    d = ComplianzSettings()
    return ComplianzSettings(categories={**d.categories, **read_category_sets(table, "categories")})


def _check(settings: ComplianzSettings, categories: frozenset[str]) -> Iterable[Check]:
    return check_category_sets("categories", settings.categories, categories)


def _names(settings: ComplianzSettings) -> Mapping[str, str]:
    return inverse_names(settings.categories, _PREFERRED)


def _defer(e: Element, names: Mapping[str, str]) -> Edit:
    sets = [("data-category", names.get(e.category, "marketing")), ("data-service", e.vendor_id or e.category)]
    if e.script:
        sets.append(("type", "text/plain"))
        sets += e.moved("data-cmplz-")
        return Edit(set=tuple(sets), remove=e.moving)
    sets += e.moved("data-", "-cmplz")
    if e.frame:
        sets += [
            ("src", "about:blank"),
            ("data-cmplz-target", "src"),
            ("class", with_class(e.attrs, "cmplz-iframe cmplz-placeholder-element")),
        ]
        return Edit(set=tuple(sets))
    return Edit(set=tuple(sets), remove=e.moving)


SOURCE: Final = Source(
    name="complianz",
    defaults=ComplianzSettings(),
    read=_read,
    cookies=_cookies,
    parse=_parse,
    check=_check,
    defer=Deferral(_defer, _names),
    also_essential=("cmplz_banner-status",),
    cookie_prefixes=(PREFIX,),
)
