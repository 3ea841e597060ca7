"""tarteaucitron: the `tarteaucitron` cookie and `[consent.tarteaucitron]` (no deferral
convention: tarteaucitron loads services itself)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from .services import DEFAULT_SERVICE_CATEGORIES
from .source import DEFAULT_VIEW, MALFORMED, UNDECIDED, Check, ParseContext, Reading, Source, Table, View
from .tables import check_cookie_name, check_lower_keys, check_services, read_services, read_string, shared
from .values import percent_decode, prepare, refusal_wins, single_cookie

_STATES: Final = {"true": True, "false": False, "wait": False, "engage": False}


@dataclass(frozen=True, slots=True)
class TarteaucitronSettings:
    """`[consent.tarteaucitron]`: the cookie's name, and service key (lower case) →
    category; the catalogue's service keys and the TOML entries are added to the
    defaults."""

    cookie: str = "tarteaucitron"
    services: Mapping[str, str] = shared(DEFAULT_SERVICE_CATEGORIES)


def read_tarteaucitron(value: str, settings: View = DEFAULT_VIEW) -> Reading:
    """tarteaucitron: `!service=state` segments. Only `true` grants; `false`, `wait`
    and `engage` refuse. Decided once any service is `true` or `false` (all `wait`
    means the visitor has not chosen). The `!id=` segment is ignored."""
    prepared = prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        text = percent_decode(prepared)
        if not text:
            return UNDECIDED
        if text[0] != "!":
            raise ValueError("does not start with '!'")
        states: dict[str, str] = {}
        for segment in text[1:].split("!"):
            service, eq, state = segment.partition("=")
            if not eq or not service:
                raise ValueError(f"bad segment {segment!r}")
            if service == "id":
                continue
            state = state.lower()
            if state not in _STATES:
                raise ValueError(f"bad state {state!r}")
            if states.get(service, state) != state:
                raise ValueError(f"service {service!r} repeated")
            states[service] = state
    except ValueError:
        return MALFORMED
    if not any(state in ("true", "false") for state in states.values()):
        return UNDECIDED
    services = settings.of(SOURCE).services
    return refusal_wins(
        (
            (frozenset({category}), _STATES[state])
            for service, state in states.items()
            if (category := services.get(service.lower())) is not None
        ),
        settings,
    )


def _cookie(view: View) -> str:
    return view.of(SOURCE).cookie


def _cookies(view: View) -> tuple[str, ...]:
    return (_cookie(view),)


def _parse(table: Table, context: ParseContext) -> TarteaucitronSettings:
    d = TarteaucitronSettings()
    return TarteaucitronSettings(
        cookie=read_string(table, "cookie", d.cookie),
        services={**d.services, **context.catalog_services, **read_services(table, "services", context.categories)},
    )


def _check(settings: TarteaucitronSettings, categories: frozenset[str]) -> Iterator[Check]:
    yield from check_cookie_name("cookie", settings.cookie)
    yield from check_services("services", settings.services, categories)
    yield from check_lower_keys("services", settings.services)


SOURCE: Final = Source(
    name="tarteaucitron",
    defaults=TarteaucitronSettings(),
    read=single_cookie(_cookie, read_tarteaucitron),
    cookies=_cookies,
    parse=_parse,
    check=_check,
)
