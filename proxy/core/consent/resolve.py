"""Request cookies + `Sec-GPC` → one `ConsentState` (`read_consent`, once per request).

The rules are in the package docstring (`proxy.core.consent`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Final

from ..categories import ESSENTIAL
from ..cookies import parse_cookie_header
from .settings import DEFAULT_SETTINGS, ConsentSettings
from .source import Reading
from .state import ConsentState, consent_key

MAX_COOKIE_HEADER_BYTES: Final = 16384
"""A Cookie header longer than this is not read at all (essential only, "oversized")."""


def read_gpc(value: str | None) -> bool:
    """True when the `Sec-GPC` header value is exactly "1" (surrounding OWS aside)."""
    return value is not None and value.strip(" \t") == "1"


def source_cookie_names(source: str, settings: ConsentSettings = DEFAULT_SETTINGS) -> tuple[str, ...]:
    """The cookie names a source reads (for cookie filtering: consent cookies are
    essential). Unknown source names have none."""
    found = settings.registry.get(source)
    return () if found is None else found.cookies(settings)


def consent_cookie_names(settings: ConsentSettings = DEFAULT_SETTINGS) -> tuple[str, ...]:
    """Every cookie the configured sources read consent from, sorted (the runtime guard
    watches them: a change means the visitor may have chosen again)."""
    return tuple(sorted({n for name, _ in settings.readers for n in source_cookie_names(name, settings)}))


def _state(
    granted: Iterable[str], decided: bool, source: str, gpc: bool, reason: str, settings: ConsentSettings
) -> ConsentState:
    final = set(granted) & settings.categories
    if gpc:
        final -= settings.gpc_refuses
    final.add(ESSENTIAL)
    frozen = frozenset(final)
    return ConsentState(frozen, decided, source, gpc, consent_key(frozen, gpc, settings), reason)


def _header_too_long(header: str) -> bool:
    if len(header) > MAX_COOKIE_HEADER_BYTES:
        return True
    return not header.isascii() and len(header.encode("utf-8", "surrogatepass")) > MAX_COOKIE_HEADER_BYTES


def read_consent(
    cookie_header: str | None, sec_gpc: str | None, settings: ConsentSettings = DEFAULT_SETTINGS
) -> ConsentState:
    """The request's consent: `cookie_header` is the Cookie header (several already
    joined with "; "), `sec_gpc` the Sec-GPC header, either may be None. Never raises;
    bad input grants essential only (see the package docstring for the rules)."""
    gpc = read_gpc(sec_gpc)
    if cookie_header and _header_too_long(cookie_header):
        return _state((), False, "none", gpc, "oversized", settings)
    jar: dict[str, list[str]] = {}
    if cookie_header:
        for name, value in parse_cookie_header(cookie_header):
            jar.setdefault(name, []).append(value)
    undecided_seen = False
    decisions: list[tuple[str, Reading]] = []
    for name, read in settings.readers:
        reading = read(jar, settings)
        if not reading.present:
            continue
        if reading.decided:
            decisions.append((name, reading))
        elif reading.reason != "ok":
            return _state((), False, name, gpc, reading.reason, settings)
        else:
            undecided_seen = True
    if len(decisions) == 1:
        name, reading = decisions[0]
        return _state(reading.granted, True, name, gpc, "ok", settings)
    if decisions:
        granted = combine_decisions([r for _, r in decisions], settings.categories)
        return _state(granted, True, _standing(decisions, granted), gpc, "ok", settings)
    if undecided_seen:
        return _state(settings.undecided, False, "default", gpc, "ok", settings)
    return _state(settings.undecided, False, "none", gpc, "missing", settings)


def stated_consent(
    categories: Iterable[str], sec_gpc: str | None, settings: ConsentSettings = DEFAULT_SETTINGS
) -> ConsentState:
    """A consent a page states rather than a cookie (the runtime guard asking for the
    rule table of a choice made on the page): the named categories this config knows,
    with Sec-GPC applied as for a cookie's. Unknown names grant nothing. Its `source` is
    "page" (no cookie's), its reason "ok"."""
    return _state(categories, True, "page", read_gpc(sec_gpc), "ok", settings)


def combine_decisions(readings: Sequence[Reading], categories: Collection[str]) -> frozenset[str]:
    """What several decided sources grant together, category by category (the rule is
    in the package docstring): the sources that speak for a category vote on it; the
    dated ones are reduced to the most recent decision (all of the latest, when their
    dates cannot be told apart); then every remaining vote must grant it."""
    granted: set[str] = set()
    for category in categories:
        if category == ESSENTIAL:
            continue
        voters = [r for r in readings if r.covers is None or category in r.covers]
        if voters and all(category in r.granted for r in _latest(voters)):
            granted.add(category)
    return frozenset(granted)


def _latest(voters: Sequence[Reading]) -> list[Reading]:
    """The undated voters, and of the dated ones those no other dated one certainly
    follows."""
    dated = [(r, r.at) for r in voters if r.at is not None]
    if len(dated) < 2:
        return list(voters)
    undated = [r for r in voters if r.at is None]
    return undated + [r for r, at in dated if not any(at.before(other) for s, other in dated if s is not r)]


def _standing(decisions: Sequence[tuple[str, Reading]], granted: frozenset[str]) -> str:
    """The source recorded for a combined decision: the first (in resolution order)
    whose own choice stands on every category it speaks for, else the first."""
    for name, reading in decisions:
        covers = reading.covers
        if covers is None:
            if reading.granted == granted:
                return name
        elif reading.granted & covers == granted & covers:
            return name
    return decisions[0][0]
