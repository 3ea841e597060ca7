"""IAB TCF v2: the `euconsent-v2` cookie and `[consent.tcf]` (the TC string itself is
decoded by `proxy.core.tcf`; this module decides what its purposes grant)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final

from ..categories import ADVERTISING, ANALYTICS, ESSENTIAL
from ..tcf import TCString, parse_tc_string
from .dates import from_tcf_deciseconds
from .source import DEFAULT_VIEW, MALFORMED, Check, ParseContext, Reading, Source, Table, View
from .tables import check_category_sets, read_category_sets, shared, toml_key
from .values import dated, decided, percent_decode, prepare, single_cookie

COOKIE: Final = "euconsent-v2"

DEFAULT_PURPOSES: Final[Mapping[int, frozenset[str]]] = MappingProxyType(
    {p: frozenset({ADVERTISING}) for p in range(2, 8)} | {p: frozenset({ANALYTICS}) for p in (8, 9, 10)}
)
"""TCF purpose → categories. Purpose 1 (store/access on a device) is a precondition
for every category and is not mapped. Purpose 11 (limited data to select content) is
left unmapped: it is neither measurement nor advertising, and TCF v2.0 strings have
no bit for it, so mapping it would make that category unreachable for them."""


@dataclass(frozen=True, slots=True)
class TcfSettings:
    """`[consent.tcf]`: `purposes` maps TCF purpose numbers (1 to 24) to categories."""

    purposes: Mapping[int, frozenset[str]] = shared(DEFAULT_PURPOSES)


def categories_from_purposes(purposes: Collection[int], settings: View = DEFAULT_VIEW) -> frozenset[str]:
    """Categories granted by a set of consented TCF purposes: none without purpose 1;
    otherwise each category whose mapped purposes are *all* consented. Legitimate
    interest never counts: it cannot cover storing cookies."""
    if 1 not in purposes:
        return frozenset()
    needed: dict[str, set[int]] = {}
    for purpose, categories in settings.of(SOURCE).purposes.items():
        for category in categories:
            needed.setdefault(category, set()).add(purpose)
    return frozenset(
        category
        for category, wanted in needed.items()
        if all(p in purposes for p in wanted) and category in settings.categories and category != ESSENTIAL
    )


def covered(settings: View = DEFAULT_VIEW) -> frozenset[str]:
    """The categories a TC string speaks for: those its mapped purposes lead to (a
    string cannot grant or refuse a category no purpose maps to, e.g. social embeds)."""
    mapped = {c for categories in settings.of(SOURCE).purposes.values() for c in categories}
    return frozenset(mapped) & settings.categories - {ESSENTIAL}


def _decode(value: str, settings: View) -> TCString | Reading:
    prepared = prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        return parse_tc_string(percent_decode(prepared))
    except ValueError:
        return MALFORMED


def tcf_categories(value: str, settings: View) -> frozenset[str] | Reading:
    """The categories a raw `euconsent-v2` value grants, or the broken `Reading`."""
    tc = _decode(value, settings)
    if isinstance(tc, Reading):
        return tc
    return categories_from_purposes(tc.purposes_consent, settings)


def read_tcf(value: str, settings: View = DEFAULT_VIEW) -> Reading:
    """IAB TCF `euconsent-v2` (raw, percent-encoded or double-quoted): decided by the
    purpose consents; see `categories_from_purposes`. A string that does not decode
    is malformed. It speaks for `covered` categories, dated by `LastUpdated`."""
    tc = _decode(value, settings)
    if isinstance(tc, Reading):
        return tc
    granted = categories_from_purposes(tc.purposes_consent, settings)
    reading = replace(decided(granted, settings), covers=covered(settings))
    return dated(reading, from_tcf_deciseconds(tc.last_updated))


def _cookie(view: View) -> str:
    return COOKIE


def _cookies(view: View) -> tuple[str, ...]:
    return (COOKIE,)


def _parse(table: Table, context: ParseContext) -> TcfSettings:
    given: dict[int, frozenset[str]] = {}
    for key, categories in read_category_sets(table, "purposes").items():
        if key.isascii() and key.isdigit():
            given[int(key)] = categories
        else:
            table.problem(f"purposes.{toml_key(key)}", "TCF purposes are numbered 1 to 24")
    return TcfSettings(purposes={**DEFAULT_PURPOSES, **given})


def _check(settings: TcfSettings, categories: frozenset[str]) -> Iterator[Check]:
    for purpose in sorted(settings.purposes):
        if not 1 <= purpose <= 24:
            yield "purposes", purpose, "TCF purposes are numbered 1 to 24"
    yield from check_category_sets("purposes", settings.purposes, categories)


SOURCE: Final = Source(
    name="tcf",
    defaults=TcfSettings(),
    read=single_cookie(_cookie, read_tcf),
    cookies=_cookies,
    parse=_parse,
    check=_check,
)
