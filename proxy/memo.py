"""Bounded memo tables for lookups that repeat across requests (pure, no IO).

A table that reaches its limit is emptied whole rather than evicting one entry at a
time: hits then cost one dict lookup with no bookkeeping, and the working set (the
same few hosts, cookies and snippets on every page of a site) refills it within a
few requests.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(table: dict[K, V], limit: int, key: K, value: V) -> V:
    """Store `value` under `key` (emptying `table` first when it holds `limit` entries)
    and return it."""
    if len(table) >= limit:
        table.clear()
    table[key] = value
    return value
