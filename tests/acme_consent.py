"""A fictional consent manager, "Acme Consent", written the way a built-in one is.

It is the one new file a consent manager needs (the other change is one registry
line; tests/test_consent_registry.py builds that registry). Acme keeps the visitor's
choice in one cookie, `acme_consent=analytics|social` (its purpose names joined by
`|`; `pending` until the visitor chooses), maps its purposes to our categories in
`[consent.acme-consent]`, and defers refused elements with `data-acme-purpose`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from proxy.core.categories import ADVERTISING, ANALYTICS, SOCIAL
from proxy.core.consent.markup import Deferral, Edit, Element, inverse_names
from proxy.core.consent.source import MALFORMED, UNDECIDED, Check, ParseContext, Reading, Source, Table, View
from proxy.core.consent.tables import (
    check_category_sets,
    check_cookie_name,
    frozen_sets,
    read_category_sets,
    read_string,
    shared,
)
from proxy.core.consent.values import decided, percent_decode, prepare, single_cookie

DEFAULT_PURPOSES: Final = frozen_sets({"analytics": {ANALYTICS}, "social": {SOCIAL}, "ads": {ADVERTISING}})


@dataclass(frozen=True, slots=True)
class AcmeSettings:
    cookie: str = "acme_consent"
    purposes: Mapping[str, frozenset[str]] = shared(DEFAULT_PURPOSES)


def read_acme(value: str, view: View) -> Reading:
    """Purposes joined by `|`: the categories of each one named are granted (unknown
    names grant nothing); `pending` is undecided; bad percent-encoding is malformed.
    Never raises."""
    prepared = prepare(value, view)
    if isinstance(prepared, Reading):
        return prepared
    try:
        text = percent_decode(prepared)
    except ValueError:
        return MALFORMED
    if text == "pending":
        return UNDECIDED
    purposes = view.of(SOURCE).purposes
    return decided((c for name in text.split("|") for c in purposes.get(name, ())), view)


def _cookie(view: View) -> str:
    return view.of(SOURCE).cookie


def _cookies(view: View) -> tuple[str, ...]:
    return (_cookie(view),)


def _parse(table: Table, context: ParseContext) -> AcmeSettings:
    d = AcmeSettings()
    return AcmeSettings(
        cookie=read_string(table, "cookie", d.cookie),
        purposes={**d.purposes, **read_category_sets(table, "purposes")},
    )


def _check(settings: AcmeSettings, categories: frozenset[str]) -> Iterator[Check]:
    yield from check_cookie_name("cookie", settings.cookie)
    yield from check_category_sets("purposes", settings.purposes, categories)


def _names(settings: AcmeSettings) -> Mapping[str, str]:
    return inverse_names(settings.purposes, {})


def _defer(e: Element, names: Mapping[str, str]) -> Edit:
    purpose = names.get(e.category, "ads")
    if e.script:
        return Edit(set=(("type", "text/plain"), ("data-acme-purpose", purpose)))
    return Edit(set=(("data-acme-purpose", purpose), *e.moved("data-acme-")), remove=e.moving)


SOURCE: Final = Source(
    name="acme-consent",
    defaults=AcmeSettings(),
    read=single_cookie(_cookie, read_acme),
    cookies=_cookies,
    parse=_parse,
    check=_check,
    defer=Deferral(_defer, _names),
)
