"""Klaro: the `klaro` cookie, `[consent.klaro]`, and Klaro's `data-name` deferral."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from .markup import Deferral, Edit, Element, service_name
from .services import DEFAULT_SERVICE_CATEGORIES
from .source import DEFAULT_VIEW, MALFORMED, Check, ParseContext, Reading, Source, Table, View
from .tables import check_cookie_name, check_lower_keys, check_services, read_services, read_string, shared
from .values import json_object, percent_decode, prepare, refusal_wins, single_cookie


@dataclass(frozen=True, slots=True)
class KlaroSettings:
    """`[consent.klaro]`: the cookie's name, and service name (lower case) → category;
    the catalogue's service keys and the TOML entries are added to the defaults."""

    cookie: str = "klaro"
    services: Mapping[str, str] = shared(DEFAULT_SERVICE_CATEGORIES)


def read_klaro(value: str, settings: View = DEFAULT_VIEW) -> Reading:
    """Klaro `klaro`: percent-encoded JSON `{serviceName: bool}`. Service names are
    looked up lower-cased in `services`; a non-boolean value is malformed."""
    prepared = prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    services = settings.of(SOURCE).services
    try:
        obj = json_object(percent_decode(prepared))
        entries: list[tuple[frozenset[str], bool]] = []
        for service, flag in obj.items():
            if not isinstance(flag, bool):
                raise ValueError(f"service {service!r} is not a boolean")
            category = services.get(service.lower())
            if category is not None:
                entries.append((frozenset({category}), flag))
    except ValueError:
        return MALFORMED
    return refusal_wins(entries, settings)


def _cookie(view: View) -> str:
    return view.of(SOURCE).cookie


def _cookies(view: View) -> tuple[str, ...]:
    return (_cookie(view),)


def _parse(table: Table, context: ParseContext) -> KlaroSettings:
    d = KlaroSettings()
    return KlaroSettings(
        cookie=read_string(table, "cookie", d.cookie),
        services={**d.services, **context.catalog_services, **read_services(table, "services", context.categories)},
    )


def _check(settings: KlaroSettings, categories: frozenset[str]) -> Iterator[Check]:
    yield from check_cookie_name("cookie", settings.cookie)
    yield from check_services("services", settings.services, categories)
    yield from check_lower_keys("services", settings.services)


def _defer(e: Element, names: Mapping[str, str]) -> Edit:
    sets = [("data-name", service_name(e.vendor, e.category))]
    if e.script:
        sets += [("type", "text/plain"), ("data-type", e.attrs.get("type") or "text/javascript")]
    sets += e.moved("data-")
    return Edit(set=tuple(sets), remove=e.moving)


SOURCE: Final = Source(
    name="klaro",
    defaults=KlaroSettings(),
    read=single_cookie(_cookie, read_klaro),
    cookies=_cookies,
    parse=_parse,
    check=_check,
    defer=Deferral(_defer),
)
