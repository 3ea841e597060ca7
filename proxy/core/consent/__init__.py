"""Request cookies + `Sec-GPC` → one `ConsentState`. Pure: no IO, no aiohttp.

Called once per request by the proxy (`read_consent`). Each consent manager (CMP) is
one module of this package defining a `Source` (see `source.py`): its cookie names, its
reader (raw cookie values in, a `Reading` out), its settings and their TOML table
`[consent.<name>]`, and its deferral convention. `registry.py` lists them in the default
resolution order. Formats are the ones recorded in docs/field-survey.md §b.

Resolution reads every source in `settings.sources`:

1. A source whose cookie is absent is skipped.
2. A source that is present but **broken** (malformed, oversized, or the same cookie
   sent twice with different values) decides "essential only", wherever it is in the
   order, with `reason` saying why: the choice it holds could be a refusal.
3. A source that is present but **undecided** (OneTrust `interactionCount=0`, CookieYes
   `action:` empty, ...) is skipped.
4. One source present and **decided**: its categories are granted and its name is
   recorded in `ConsentState.source`.
5. Several decided sources (a stale cookie of a former consent manager beside the
   current one, two managers on one site) are combined category by category, so that
   no source can grant what a later or undatable refusal in another took back
   (`combine_decisions`): the sources that speak for a category vote on it (the native
   cookie and the all-or-nothing managers speak for every category; a manager with
   groups, fields, purposes or services only for the categories of the keys its cookie
   holds, e.g. the TC string only for what its purposes map to); of the voters whose
   cookie dates the decision (`Reading.at`: `tg_consent`'s `~time~`, OneTrust's
   `OptanonAlertBoxClosed` or `datestamp`, Cookiebot's `utc`, Didomi's `updated`, the TC
   string's `LastUpdated`) only the most recent votes, or all of the latest when their
   precision cannot order them (a day-level TC string and a stamp of the same day);
   the category is granted only when every remaining vote grants it, so an undated
   refusal always wins. `source` names the first source whose own choice stands on
   every category it speaks for. Source order no longer decides anything else.
6. Nobody decided: `settings.undecided` is granted. `source` is "default" when some
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
from .resolve import (
    MAX_COOKIE_HEADER_BYTES,
    combine_decisions,
    consent_cookie_names,
    read_consent,
    read_gpc,
    source_cookie_names,
    stated_consent,
)
from .settings import DEFAULT_SETTINGS, ConsentSettings, Problem, settings_problems, validate_settings
from .source import REASONS, DecidedAt, Jar, ParseContext, Reading, Source, Table, View
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
    "DecidedAt",
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
    "combine_decisions",
    "consent_cookie_names",
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
    "stated_consent",
    "validate_settings",
]
