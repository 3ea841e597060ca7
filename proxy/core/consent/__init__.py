"""Request cookies + `Sec-GPC` → one `ConsentState`. Pure: no IO, no aiohttp.

Called once per request by the proxy (`read_consent`). Each consent manager (CMP) is
one module of this package defining a `Source` (see `source.py`): its cookie names, its
reader (raw cookie values in, a `Reading` out), its settings and their TOML table
`[consent.<name>]`, and its deferral convention. `registry.py` lists them in the default
resolution order. Formats are the ones recorded in docs/field-survey.md §b.

Resolution, in `settings.sources` order:

1. A source whose cookie is absent is skipped.
2. A source that is present and **decided** decides: its categories are granted and its
   name is recorded in `ConsentState.source`.
3. A source that is present but **broken** (malformed, oversized, or the same cookie sent
   twice with different values) also decides, as "essential only", with `reason` saying
   why. A broken higher-priority source never lets a lower-priority one grant more.
4. A source that is present but **undecided** (OneTrust `interactionCount=0`, CookieYes
   `action:` empty, ...) is skipped, so a later source may still decide.
5. Nobody decided: `settings.undecided` is granted. `source` is "default" when some
   consent cookie was present (but undecided) and "none" when there was none at all.

Then, when `Sec-GPC: 1` was sent, the `settings.gpc_refuses` categories are removed,
whatever any cookie says, and `essential` is always added back.

`reason` is one of `REASONS`: "ok" (a source decided, or the undecided default applied
because a CMP said so), "missing" (no consent cookie at all), "malformed", "oversized"
(one consent cookie over `max_cookie_bytes`, or the whole Cookie header over
`MAX_COOKIE_HEADER_BYTES`: then nothing is read, since a cookie past the cut could be a
conflicting duplicate), "conflict". For broken sources `decided` is False: the visitor's
choice could not be established; `granted` is final either way.

How readers map several CMP keys onto one category ("refusal wins") is in `values.py`.
"""

from __future__ import annotations

from typing import Final

from .complianz import read_complianz
from .cookiebot import read_cookiebot
from .cookieconsent import read_cookieconsent
from .cookieyes import read_cookieyes
from .didomi import read_didomi
from .klaro import read_klaro
from .markup import Deferral, Edit, Element
from .native import read_native
from .onetrust import read_onetrust
from .osano import read_osano
from .registry import BUILTIN, DEFAULT_REGISTRY, Registry
from .resolve import MAX_COOKIE_HEADER_BYTES, read_consent, read_gpc, source_cookie_names
from .settings import DEFAULT_SETTINGS, ConsentSettings, Problem, settings_problems, validate_settings
from .source import REASONS, Jar, ParseContext, Reading, Source, Table, View
from .state import ConsentState, consent_key, consent_report, format_consent
from .tarteaucitron import read_tarteaucitron
from .tcf import categories_from_purposes, read_tcf

SOURCES: Final[tuple[str, ...]] = DEFAULT_REGISTRY.sources
"""Every built-in source with a reader, in the default resolution order."""

__all__ = [
    "BUILTIN",
    "DEFAULT_REGISTRY",
    "DEFAULT_SETTINGS",
    "MAX_COOKIE_HEADER_BYTES",
    "REASONS",
    "SOURCES",
    "ConsentSettings",
    "ConsentState",
    "Deferral",
    "Edit",
    "Element",
    "Jar",
    "ParseContext",
    "Problem",
    "Reading",
    "Registry",
    "Source",
    "Table",
    "View",
    "categories_from_purposes",
    "consent_key",
    "consent_report",
    "format_consent",
    "read_complianz",
    "read_consent",
    "read_cookiebot",
    "read_cookieconsent",
    "read_cookieyes",
    "read_didomi",
    "read_gpc",
    "read_klaro",
    "read_native",
    "read_onetrust",
    "read_osano",
    "read_tarteaucitron",
    "read_tcf",
    "settings_problems",
    "source_cookie_names",
    "validate_settings",
]
