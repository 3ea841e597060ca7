"""orestbida cookieconsent (v2 and v3): the `cc_cookie` cookie, `[consent.cookieconsent]`,
and its `data-category` deferral."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from ..categories import ADVERTISING, ANALYTICS, ESSENTIAL, FUNCTIONAL, SOCIAL
from .markup import Deferral, Edit, Element, inverse_names
from .source import DEFAULT_VIEW, MALFORMED, Check, ParseContext, Reading, Source, Table, View
from .tables import (
    check_category_sets,
    check_cookie_name,
    check_lower_keys,
    frozen_sets,
    read_category_sets,
    read_string,
    shared,
)
from .values import decided, json_object, percent_decode, prepare, single_cookie, string_list

DEFAULT_CATEGORIES: Final = frozen_sets(
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

_PREFERRED: Final = {FUNCTIONAL: "functionality", ANALYTICS: "analytics", ADVERTISING: "marketing", SOCIAL: "social"}


@dataclass(frozen=True, slots=True)
class CookieconsentSettings:
    """`[consent.cookieconsent]`: the cookie's name, and the site's category names (lower
    case) → categories."""

    cookie: str = "cc_cookie"
    categories: Mapping[str, frozenset[str]] = shared(DEFAULT_CATEGORIES)


def read_cookieconsent(value: str, settings: View = DEFAULT_VIEW) -> Reading:
    """orestbida cookieconsent `cc_cookie`: JSON (percent-encoded or raw) with a
    `categories` list (v3) or a `level` list (v2) of accepted category names."""
    prepared = prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        obj = json_object(percent_decode(prepared))
        if "categories" in obj:
            names = string_list(obj["categories"], "categories")
        elif "level" in obj:
            names = string_list(obj["level"], "level")
        else:
            raise ValueError("neither categories nor level")
    except ValueError:
        return MALFORMED
    mapping = settings.of(SOURCE).categories
    granted: set[str] = set()
    for name in names:
        granted.update(mapping.get(name.lower(), ()))
    return decided(granted, settings)


def _cookie(view: View) -> str:
    return view.of(SOURCE).cookie


def _cookies(view: View) -> tuple[str, ...]:
    return (_cookie(view),)


def _parse(table: Table, context: ParseContext) -> CookieconsentSettings:
    d = CookieconsentSettings()
    return CookieconsentSettings(
        cookie=read_string(table, "cookie", d.cookie),
        categories={**d.categories, **read_category_sets(table, "categories")},
    )


def _check(settings: CookieconsentSettings, categories: frozenset[str]) -> Iterator[Check]:
    yield from check_cookie_name("cookie", settings.cookie)
    yield from check_category_sets("categories", settings.categories, categories)
    yield from check_lower_keys("categories", settings.categories)


def _names(settings: CookieconsentSettings) -> Mapping[str, str]:
    return inverse_names(settings.categories, _PREFERRED)


def _defer(e: Element, names: Mapping[str, str]) -> Edit:
    sets = [("data-category", names.get(e.category, e.category))]
    if e.vendor is not None:
        sets.append(("data-service", e.vendor.name))
    if e.script:
        sets.append(("type", "text/plain"))
        if e.attrs.get("type", "").strip().lower() == "module":
            sets.append(("data-type", "module"))
    sets += e.moved("data-")
    return Edit(set=tuple(sets), remove=e.moving)


SOURCE: Final = Source(
    name="cookieconsent",
    defaults=CookieconsentSettings(),
    read=single_cookie(_cookie, read_cookieconsent),
    cookies=_cookies,
    parse=_parse,
    check=_check,
    defer=Deferral(_defer, _names),
)
