"""Bounded memo tables for lookups that repeat across requests (pure, no IO).

Many keys are chosen by whoever sends the request (cookie names, whole Cookie headers,
Host values), so a table is bounded by the bytes it holds as well as by its number of
entries: 9,000 requests with distinct 15 KB Cookie headers must not keep 130 MiB. A
key too large to be worth keeping is not stored at all (it is computed again next
time, which is what a miss costs anyway).

A table that reaches either bound is emptied whole rather than evicting one entry at a
time: hits then cost one dict lookup with no bookkeeping (callers read `table`
directly), and the working set (the same few hosts, cookies and snippets on every page
of a site) refills it within a few requests.
"""

from __future__ import annotations

from typing import Final, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

ENTRY_OVERHEAD: Final = 200
"""Bytes an entry costs beyond its key text: the dict slot, the key and value objects."""


class Memo(Generic[K, V]):
    """A dict of at most `entries` items whose keys' text totals at most `max_bytes`.

    Read with `memo.table.get(key)` (or `key in memo.table`); store with `put`."""

    __slots__ = ("_entries", "_max_bytes", "_max_item", "_used", "table")

    def __init__(self, entries: int, max_bytes: int) -> None:
        self.table: dict[K, V] = {}
        self._entries = entries
        self._max_bytes = max_bytes
        self._max_item = max_bytes // 64
        self._used = 0

    def put(self, key: K, value: V, size: int) -> V:
        """Store `value` under `key`, whose text is `size` characters (or bytes), and
        return `value`. Keys over 1/64 of the byte budget are not kept."""
        if size > self._max_item:
            return value
        cost = size + ENTRY_OVERHEAD
        if len(self.table) >= self._entries or self._used + cost > self._max_bytes:
            self.table.clear()
            self._used = 0
        self.table[key] = value
        self._used += cost
        return value

    @property
    def bytes_used(self) -> int:
        """The budget used so far (key text plus the per-entry overhead)."""
        return self._used

    def clear(self) -> None:
        self.table.clear()
        self._used = 0
