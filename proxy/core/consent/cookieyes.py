"""CookieYes: the `cookieyes-consent` cookie, `[consent.cookieyes]`, and CookieYes's
`data-cookieyes` deferral."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ..categories import ADVERTISING, ANALYTICS, ESSENTIAL, FUNCTIONAL
from .markup import Deferral, Edit, Element, inverse_names
from .source import DEFAULT_VIEW, MALFORMED, UNDECIDED, Check, ParseContext, Reading, Source, Table, View
from .tables import check_category_sets, frozen_sets, read_category_sets, shared
from .values import percent_decode, prepare, refusal_wins, single_cookie

COOKIE: Final = "cookieyes-consent"

DEFAULT_CATEGORIES: Final = frozen_sets(
    {
        "necessary": {ESSENTIAL},
        "functional": {FUNCTIONAL},
        "analytics": {ANALYTICS},
        "performance": {ANALYTICS},
        "advertisement": {ADVERTISING},
    }
)
"""CookieYes category → categories. `other` (uncategorised) is deliberately unmapped."""

_PREFERRED: Final = {FUNCTIONAL: "functional", ANALYTICS: "analytics", ADVERTISING: "advertisement"}


@dataclass(frozen=True, slots=True)
class CookieyesSettings:
    """`[consent.cookieyes]`: CookieYes category → categories."""

    categories: Mapping[str, frozenset[str]] = shared(DEFAULT_CATEGORIES)


def read_cookieyes(value: str, settings: View = DEFAULT_VIEW) -> Reading:
    """CookieYes `cookieyes-consent`: `key:value` pairs joined by `,`. `action:` empty
    means no decision yet; a missing `action` or a category value other than
    `yes`/`no` is malformed."""
    prepared = prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        pairs: dict[str, str] = {}
        for part in percent_decode(prepared).split(","):
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
            return UNDECIDED
        entries: list[tuple[frozenset[str], bool]] = []
        for name, categories in settings.of(SOURCE).categories.items():
            if name in pairs:
                if pairs[name] not in ("yes", "no"):
                    raise ValueError(f"{name} is neither yes nor no")
                entries.append((categories, pairs[name] == "yes"))
    except ValueError:
        return MALFORMED
    return refusal_wins(entries, settings)


def _cookie(view: View) -> str:
    return COOKIE


def _cookies(view: View) -> tuple[str, ...]:
    return (COOKIE,)


def _parse(table: Table, context: ParseContext) -> CookieyesSettings:
    d = CookieyesSettings()
    return CookieyesSettings(categories={**d.categories, **read_category_sets(table, "categories")})


def _check(settings: CookieyesSettings, categories: frozenset[str]) -> Iterable[Check]:
    return check_category_sets("categories", settings.categories, categories)


def _names(settings: CookieyesSettings) -> Mapping[str, str]:
    return inverse_names(settings.categories, _PREFERRED)


def _defer(e: Element, names: Mapping[str, str]) -> Edit:
    marker = f"cookieyes-{names.get(e.category, 'advertisement')}"
    if e.script:
        return Edit(set=(("type", "text/plain"), ("data-cookieyes", marker)))
    return Edit(set=(("data-cookieyes", marker), *e.moved("data-")), remove=e.moving)


SOURCE: Final = Source(
    name="cookieyes",
    defaults=CookieyesSettings(),
    read=single_cookie(_cookie, read_cookieyes),
    cookies=_cookies,
    parse=_parse,
    check=_check,
    defer=Deferral(_defer, _names),
)
