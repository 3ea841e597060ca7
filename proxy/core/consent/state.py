"""The visitor's consent for one request (`ConsentState`), its key, and its reports."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from ..categories import ADVERTISING, ANALYTICS, BUILTIN_CATEGORIES, ESSENTIAL, FUNCTIONAL, SOCIAL
from .source import DEFAULT_VIEW, View

_KEY_LETTERS: Final = (("f", FUNCTIONAL), ("a", ANALYTICS), ("d", ADVERTISING), ("s", SOCIAL))


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The visitor's consent for one request. `granted` always contains "essential" and
    is final (undecided defaults and GPC already applied). `key` is a short stable
    summary for Vary/ETag/logs that reveals no cookie value."""

    granted: frozenset[str]
    decided: bool
    source: str
    gpc: bool
    key: str
    reason: str

    def allows(self, category: str) -> bool:
        """True when `category` may run for this visitor; "essential" always may."""
        return category == ESSENTIAL or category in self.granted


def consent_key(granted: Collection[str], gpc: bool, settings: View = DEFAULT_VIEW) -> str:
    """`f0a1d0s1g0`: functional, analytics, advertising, social, then GPC. When the
    settings define custom categories, `x` + 6 hex chars of sha256 of the sorted
    granted custom names is appended (always, so the key length is fixed per config)."""
    key = "".join(f"{letter}{int(category in granted)}" for letter, category in _KEY_LETTERS)
    key += f"g{int(gpc)}"
    custom = settings.categories.difference(BUILTIN_CATEGORIES)
    if custom:
        names = ",".join(sorted(custom.intersection(granted)))
        key += "x" + hashlib.sha256(names.encode()).hexdigest()[:6]
    return key


def consent_report(state: ConsentState) -> dict[str, object]:
    """The JSON shape printed by `tag-gate explain-consent --json`."""
    return {
        "granted": sorted(state.granted),
        "decided": state.decided,
        "source": state.source,
        "gpc": state.gpc,
        "key": state.key,
    }


def _ordered(names: Collection[str]) -> list[str]:
    builtin = [c for c in BUILTIN_CATEGORIES if c in names]
    return builtin + sorted(set(names).difference(BUILTIN_CATEGORIES))


def format_consent(state: ConsentState, settings: View = DEFAULT_VIEW) -> str:
    """A few human-readable lines: granted, refused, source, gpc, key, reason."""
    refused = settings.categories - state.granted
    decided = "decided" if state.decided else "not decided"
    return "\n".join(
        (
            f"granted: {', '.join(_ordered(state.granted))}",
            f"refused: {', '.join(_ordered(refused)) or '-'}",
            f"source:  {state.source} ({decided})",
            f"gpc:     {'yes (Sec-GPC: 1)' if state.gpc else 'no'}",
            f"key:     {state.key}",
            f"reason:  {state.reason}",
        )
    )
