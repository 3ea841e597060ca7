"""Request cookies + `Sec-GPC` → one `ConsentState` (`read_consent`, once per request).

The rules are in the package docstring (`proxy.core.consent`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from ..categories import ESSENTIAL
from ..cookies import parse_cookie_header
from .settings import DEFAULT_SETTINGS, ConsentSettings
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
    for name, read in settings.readers:
        reading = read(jar, settings)
        if not reading.present:
            continue
        if reading.decided:
            return _state(reading.granted, True, name, gpc, "ok", settings)
        if reading.reason != "ok":
            return _state((), False, name, gpc, reading.reason, settings)
        undecided_seen = True
    if undecided_seen:
        return _state(settings.undecided, False, "default", gpc, "ok", settings)
    return _state(settings.undecided, False, "none", gpc, "missing", settings)
