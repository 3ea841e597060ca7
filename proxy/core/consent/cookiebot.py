"""Cookiebot: the `CookieConsent` cookie, `[consent.cookiebot]`, and Cookiebot's
`data-cookieconsent` deferral."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ..categories import ADVERTISING, ANALYTICS, ESSENTIAL, FUNCTIONAL, SOCIAL
from .dates import from_unix_millis
from .markup import Deferral, Edit, Element, inverse_names
from .source import DEFAULT_VIEW, MALFORMED, UNDECIDED, Check, ParseContext, Reading, Source, Table, View
from .tables import check_category_sets, frozen_sets, read_category_sets, shared
from .values import dated, percent_decode, prepare, refusal_wins, single_cookie

COOKIE: Final = "CookieConsent"
_JS_PAIR: Final = re.compile(
    r"""\s*([A-Za-z_$][\w$]{0,63})\s*:\s*('[^']*'|"[^"]*"|true|false|-?[0-9]{1,20}(?:\.[0-9]{1,20})?)\s*"""
)

DEFAULT_FIELDS: Final = frozen_sets(
    {
        "necessary": {ESSENTIAL},
        "preferences": {FUNCTIONAL},
        "statistics": {ANALYTICS},
        # Cookiebot files social embeds and pixels under marketing.
        "marketing": {ADVERTISING, SOCIAL},
    }
)

_PREFERRED: Final = {FUNCTIONAL: "preferences", ANALYTICS: "statistics", ADVERTISING: "marketing", SOCIAL: "marketing"}
"""The Cookiebot category written when several map to one of ours."""


@dataclass(frozen=True, slots=True)
class CookiebotSettings:
    """`[consent.cookiebot]`: `fields` maps the cookie's consent fields to categories."""

    fields: Mapping[str, frozenset[str]] = shared(DEFAULT_FIELDS)


def _parse_js_object(text: str) -> dict[str, str | bool]:
    """Parse Cookiebot's object literal (`{key:'str',key:true,key:12}`): unquoted keys,
    single- or double-quoted strings without escapes, booleans and numbers (kept as
    their text). Anything else raises ValueError."""
    text = text.strip()
    if len(text) < 2 or text[0] != "{" or text[-1] != "}":
        raise ValueError("not an object literal")
    inner = text[1:-1]
    out: dict[str, str | bool] = {}
    if not inner.strip():
        return out
    pos = 0
    while True:
        match = _JS_PAIR.match(inner, pos)
        if match is None:
            raise ValueError(f"unreadable object literal at offset {pos}")
        key, raw = match.group(1), match.group(2)
        if key in out:
            raise ValueError(f"key {key!r} repeated")
        if raw == "true" or raw == "false":
            out[key] = raw == "true"
        else:
            out[key] = raw[1:-1] if raw[0] in "'\"" else raw
        pos = match.end()
        if pos == len(inner):
            return out
        if inner[pos] != ",":
            raise ValueError(f"expected ',' at offset {pos}")
        pos += 1


def read_cookiebot(value: str, settings: View = DEFAULT_VIEW) -> Reading:
    """Cookiebot `CookieConsent`: a percent-encoded JS object literal with booleans
    `necessary`, `preferences`, `statistics`, `marketing`.

    Undecided (the visitor chose nothing): the bare value `-1`, `stamp:'-1'` (Cookiebot
    writes it where no consent is required, with everything pre-accepted) and
    `method:'implied'` (consent inferred, not given). A category field that is present
    but not a boolean, or no category field at all, is malformed. `utc` (Unix
    milliseconds) dates the decision."""
    prepared = prepare(value, settings)
    if isinstance(prepared, Reading):
        return prepared
    try:
        text = percent_decode(prepared)
        if text.strip() == "-1":
            return UNDECIDED
        obj = _parse_js_object(text)
        if obj.get("stamp") == "-1" or obj.get("method") == "implied":
            return UNDECIDED
        entries: list[tuple[frozenset[str], bool]] = []
        for name, categories in settings.of(SOURCE).fields.items():
            if name in obj:
                flag = obj[name]
                if not isinstance(flag, bool):
                    raise ValueError(f"{name} is not a boolean")
                entries.append((categories, flag))
        if not entries:
            raise ValueError("no consent field")
    except ValueError:
        return MALFORMED
    utc = obj.get("utc")
    return dated(refusal_wins(entries, settings), from_unix_millis(utc) if isinstance(utc, str) else None)


def _cookie(view: View) -> str:
    return COOKIE


def _cookies(view: View) -> tuple[str, ...]:
    return (COOKIE,)


def _parse(table: Table, context: ParseContext) -> CookiebotSettings:
    d = CookiebotSettings()
    return CookiebotSettings(fields={**d.fields, **read_category_sets(table, "fields")})


def _check(settings: CookiebotSettings, categories: frozenset[str]) -> Iterable[Check]:
    return check_category_sets("fields", settings.fields, categories)


def _names(settings: CookiebotSettings) -> Mapping[str, str]:
    return inverse_names(settings.fields, _PREFERRED)


def _defer(e: Element, names: Mapping[str, str]) -> Edit:
    cb = names.get(e.category, "marketing")
    if e.script:
        return Edit(set=(("type", "text/plain"), ("data-cookieconsent", cb)))
    return Edit(set=(("data-cookieconsent", cb), *e.moved("data-cookieblock-")), remove=e.moving)


SOURCE: Final = Source(
    name="cookiebot",
    defaults=CookiebotSettings(),
    read=single_cookie(_cookie, read_cookiebot),
    cookies=_cookies,
    parse=_parse,
    check=_check,
    defer=Deferral(_defer, _names),
)
