"""Osano's legacy banner: the `cookieconsent_status` cookie and `[consent.osano]`.
(Osano's current cookie is opaque; /__tag-gate/bridge.js copies its choice into
`tg_consent`.)"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ..categories import NON_ESSENTIAL
from .source import DEFAULT_VIEW, MALFORMED, UNDECIDED, Check, ParseContext, Reading, Source, Table, View
from .tables import check_categories, read_categories
from .values import decided, prepare, single_cookie

COOKIE: Final = "cookieconsent_status"


@dataclass(frozen=True, slots=True)
class OsanoSettings:
    """`[consent.osano]`: `allow` is what the banner's all-or-nothing "allow" grants."""

    allow: frozenset[str] = frozenset(NON_ESSENTIAL)


def read_osano(value: str, settings: View = DEFAULT_VIEW) -> Reading:
    """Legacy Osano banner `cookieconsent_status`: `allow` grants `allow`, `deny`
    grants nothing, `dismiss` (an information-only banner was closed) is undecided."""
    prepared = prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    if prepared == "allow":
        return decided(settings.of(SOURCE).allow, settings)
    if prepared == "deny":
        return decided((), settings)
    if prepared == "dismiss":
        return UNDECIDED
    return MALFORMED


def _cookie(view: View) -> str:
    return COOKIE


def _cookies(view: View) -> tuple[str, ...]:
    return (COOKIE,)


def _parse(table: Table, context: ParseContext) -> OsanoSettings:
    return OsanoSettings(allow=read_categories(table, "allow", OsanoSettings().allow))


def _check(settings: OsanoSettings, categories: frozenset[str]) -> Iterable[Check]:
    return check_categories("allow", settings.allow, categories)


SOURCE: Final = Source(
    name="osano",
    defaults=OsanoSettings(),
    read=single_cookie(_cookie, read_osano),
    cookies=_cookies,
    parse=_parse,
    check=_check,
    also_essential=("osano_consentmanager", "osano_consentmanager_uuid"),
)
